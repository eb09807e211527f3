//! The Mercato ordering service: Broadcast, block cutting, Raft replication (openraft) and
//! Deliver.
//!
//! Built so far are the two logic cores the ordering node drives, both free of I/O, clocks and
//! threads, so they are tested without sockets or sleeps:
//! - [`broadcast`]: the checks every envelope passes before it is ordered (size, structure,
//!   channel, creator, signature, the channel's Writers policy), each refusal with Fabric's
//!   `common.Status`;
//! - [`blockcutter`]: Fabric's block cutter (max message count, preferred and absolute max
//!   bytes) and the [`blockcutter::Batcher`] that adds the batch timeout as an event-driven
//!   timer.
//!
//! The Raft storage ([`consensus::store`]: the log, and a state machine whose state is the chain
//! in [`ledger`]) passes openraft's own storage suite, and [`node`] drives cutting and
//! replication (tested as an in-process cluster). Raft travels over gRPC with mutual TLS
//! ([`consensus::transport`]), and [`service`] serves Broadcast (forwarding to the leader) and
//! Deliver. [`run`] starts a node from its configuration and the channel's genesis block, and
//! the `mercato-orderer` binary runs it.
//!
//! # Layout
//! - [`blockcutter`]: [`BatchConfig`], [`blockcutter::BlockCutter`], [`blockcutter::Batcher`].
//! - [`broadcast`]: [`broadcast::BroadcastChecker`] and [`broadcast::Refusal`].
//! - [`ledger`]: the chain in sled, with Raft's applied state in the same batches.
//! - [`consensus`]: openraft's log storage and state machine over the chain.
//! - [`node`]: [`node::OrdererNode`]: checks, the leader's batching and cutting, replication,
//!   acknowledgement after commit.
//! - [`service`]: `orderer.AtomicBroadcast` (Broadcast with forwarding to the leader, Deliver).
//! - [`config`]: the node's [`config::Config`] (TOML, `MERCATO_ORDERER_*` overrides).
//! - [`run`]: starts a node from its configuration and the genesis block; `/healthz`, `/metrics`.
//! - [`error`]: [`Error`] and [`Result`].
//! - `bin/mercato-orderer.rs`: `mercato-orderer start --config FILE`.

pub mod blockcutter;
pub mod broadcast;
pub mod checks;
pub mod config;
pub mod consensus;
pub mod error;
pub mod ledger;
pub mod node;
pub mod run;
pub mod service;

pub use blockcutter::BatchConfig;
pub use error::{Error, Result};
