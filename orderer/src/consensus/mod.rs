//! Raft replication of the chain, by openraft: entries are whole blocks cut and signed by the
//! leader. [`store`] holds the log and the state machine in sled; [`transport`] carries Raft's
//! messages between consenters over gRPC with mutual TLS.

pub mod store;
pub mod transport;

pub use store::{Applied, BlockProposal, ChainSource, LogStore, StateMachine, TypeConfig};
pub use transport::{GrpcNetwork, RaftTransportService};

/// Purges, on a node that has just started, the log entries its snapshot covers (but the last
/// `max_in_snapshot_log_to_keep`). The snapshot policy purges behind each snapshot it takes, and
/// counts the entries applied since the last one; but a node's current snapshot is built afresh
/// when it starts, so the count starts again at every restart: an orderer restarted more often
/// than every `snapshot_every` blocks never reached it, and its Raft log (a second copy of every
/// block) grew without end. openraft purges once no replication needs the entries. A node with
/// no snapshot yet has nothing to purge.
pub async fn purge_on_start(
    raft: &openraft::Raft<TypeConfig>,
) -> Result<(), openraft::error::Fatal<u64>> {
    // From the core's state: the metrics may not show the snapshot loaded at start yet.
    let snapshot = raft
        .with_raft_state(|st| st.snapshot_meta.last_log_id)
        .await?;
    let keep = raft.config().max_in_snapshot_log_to_keep;
    if let Some(upto) = snapshot.and_then(|s| s.index.checked_sub(keep)) {
        raft.trigger().purge_log(upto).await?;
    }
    Ok(())
}
