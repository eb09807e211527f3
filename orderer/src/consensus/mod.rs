//! Raft replication of the chain, by openraft: entries are whole blocks cut and signed by the
//! leader. [`store`] holds the log and the state machine in sled.

pub mod store;

pub use store::{Applied, BlockProposal, LogStore, StateMachine, TypeConfig};
