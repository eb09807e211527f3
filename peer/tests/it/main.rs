//! Integration tests of the ledger and the committer, with real identities, signatures and
//! blocks.

mod chaincode;
mod channel;
mod commerce;
mod crash;
mod fixture;
mod lanes;
mod lifecycle;
mod mvcc;
mod node;
mod pipeline;
mod service;
mod store;
mod validation;
mod wasm;
