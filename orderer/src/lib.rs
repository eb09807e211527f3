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
//! Raft replication, Deliver and the `mercato-orderer` node are not built yet.
//!
//! # Layout
//! - [`blockcutter`]: [`BatchConfig`], [`blockcutter::BlockCutter`], [`blockcutter::Batcher`].
//! - [`broadcast`]: [`broadcast::BroadcastChecker`] and [`broadcast::Refusal`].
//! - [`error`]: [`Error`] and [`Result`].

pub mod blockcutter;
pub mod broadcast;
pub mod error;

pub use blockcutter::BatchConfig;
pub use error::{Error, Result};
