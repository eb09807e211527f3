//! The Mercato peer: ledger, committer and validator, WASM chaincode host, endorser, gateway.
//!
//! Nothing is built here yet: the ledger and committer, the chaincode runtime and the gateway are
//! their own issues. This crate holds the place in the workspace.
//!
//! # Layout
//! Empty.
