//! Raft replication of the chain, by openraft: entries are whole blocks cut and signed by the
//! leader. [`store`] holds the log and the state machine in sled; [`transport`] carries Raft's
//! messages between consenters over gRPC with mutual TLS.

pub mod store;
pub mod transport;

pub use store::{Applied, BlockProposal, ChainSource, LogStore, StateMachine, TypeConfig};
pub use transport::{GrpcNetwork, RaftTransportService};
