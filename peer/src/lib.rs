//! The Mercato peer: the ledger and the committer that validates ordered blocks and commits them,
//! the chaincode host, the chaincode lifecycle, the endorser, the gateway, the client of the
//! ordering service, and the node that puts them together.
//!
//! # Layout
//! - [`ledger`]: the [`ledger::LedgerStore`] trait, [`ledger::SledLedgerStore`] and
//!   [`ledger::MemLedgerStore`]: blocks, versioned world state, history and txid indexes,
//!   savepoint; one atomic batch per block.
//! - [`rwset`]: read/write sets (with Mercato's commutative deltas), converted from Fabric's wire
//!   format in one place.
//! - [`validator`]: the channel's [`validator::ValidationContext`]; stage 1
//!   ([`validator::verify`], parallel signatures and policies) and stage 2 ([`validator::mvcc`],
//!   duplicates, MVCC, phantom reads, deltas).
//! - [`chaincode`]: the wasm sandbox ([`chaincode::runtime`]), simulation against the world
//!   state ([`chaincode::simulator`]) and the [`chaincode::Executor`].
//! - [`lifecycle`]: installed packages, the `_lifecycle` system chaincode (approve, commit,
//!   upgrade), definitions for validation and the rules that validate lifecycle transactions.
//! - [`endorser`]: checks a signed proposal, simulates it and signs the proposal response.
//! - [`gateway`]: endorsement planning and gathering across organisations, for Endorse.
//! - [`orderers`]: Broadcast and Deliver against the ordering service, with fail-over.
//! - [`lanes`]: the long-lived Broadcast streams to one orderer that [`orderers`] sends over.
//! - [`service`]: the gRPC services over TLS: `protos.Endorser`, `gateway.Gateway` and
//!   `protos.Deliver`.
//! - [`node`]: the peer node's configuration and start-up, and its operations port.
//! - [`committer`]: the [`committer::Committer`], its verify → commit pipeline, block events and
//!   the rebuild of state from blocks.
//! - [`error`]: [`Error`] and [`Result`].

pub mod audit;
pub mod chaincode;
pub mod committer;
pub mod endorser;
pub mod error;
pub mod gateway;
pub mod lanes;
pub mod ledger;
pub mod lifecycle;
pub mod node;
pub mod orderers;
pub mod rwset;
pub mod service;
pub mod validator;

pub use error::{Error, Result};
