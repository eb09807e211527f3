//! One ordering node of one channel: Broadcast's checks, the leader's batching and block cutting,
//! and replication through Raft. An envelope is acknowledged only once the block holding it is
//! committed by a majority and applied, so an acknowledged envelope is never lost while a
//! majority of the cluster survives.
//!
//! Only the leader cuts blocks. A block is numbered and chained from the applied chain when it is
//! cut, signed with the node's orderer identity, proposed, and awaited before the next is cut
//! (one block in flight). A node that is not the leader refuses with SERVICE_UNAVAILABLE and
//! names the leader (forwarding to it comes with the network layer).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mercato_proto::Signer;
use mercato_proto::block::{new_block, sign_block};
use mercato_proto::pb::common::Status;
use openraft::Raft;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::blockcutter::{Action, BatchConfig, Batcher};
use crate::broadcast::{BroadcastChecker, Refusal};
use crate::checks::CheckPool;
use crate::consensus::{Applied, BlockProposal, TypeConfig};
use crate::ledger::Ledger;

/// How many checked envelopes may wait for the batching task before Broadcast waits too.
const QUEUE: usize = 4096;

/// What the batching task is sent: an envelope and where to acknowledge it.
type Pending = (Vec<u8>, oneshot::Sender<Result<u64, Refusal>>);

/// What the node has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Envelopes acknowledged with SUCCESS.
    pub envelopes_ordered: AtomicU64,
    /// Envelopes refused (checks, not the leader, not committed).
    pub envelopes_refused: AtomicU64,
    /// Blocks this node cut and had committed as the leader.
    pub blocks_cut: AtomicU64,
    /// Sum of broadcast-to-acknowledgement times, µs, of the ordered envelopes.
    pub broadcast_micros: AtomicU64,
}

/// An ordering node of one channel.
pub struct OrdererNode {
    id: u64,
    metrics: Arc<NodeMetrics>,
    raft: Raft<TypeConfig>,
    ledger: Ledger,
    checks: CheckPool,
    queue: mpsc::Sender<Pending>,
    stop: tokio::sync::watch::Sender<bool>,
    batching: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for OrdererNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdererNode")
            .field("id", &self.id)
            .field("height", &self.ledger.height())
            .finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> Refusal {
    Refusal::new(Status::ServiceUnavailable, message)
}

impl OrdererNode {
    /// A node over a started Raft instance whose state machine holds `ledger`. Blocks are cut by
    /// `batch` and signed by `signer`. Must be called inside a tokio runtime: it starts the
    /// batching task, and a checking thread per core (an error when they cannot start).
    pub fn new(
        id: u64,
        raft: Raft<TypeConfig>,
        ledger: Ledger,
        checker: BroadcastChecker,
        batch: BatchConfig,
        signer: Arc<dyn Signer>,
    ) -> std::io::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let checks = CheckPool::start(Arc::new(checker), cores)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let metrics = Arc::new(NodeMetrics::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(batching(
            raft.clone(),
            ledger.clone(),
            batch,
            signer,
            rx,
            Arc::clone(&metrics),
            stopped,
        ));
        Ok(OrdererNode {
            id,
            metrics,
            stop,
            batching: std::sync::Mutex::new(Some(task)),
            raft,
            ledger,
            checks,
            queue,
        })
    }

    /// Stops cutting blocks (envelopes still waiting are refused) and shuts Raft down.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self
            .batching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let _ = self.raft.shutdown().await;
    }

    /// The Raft instance.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The chain.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The current leader and the address its Raft node is known by (where its orderer serves),
    /// if one is elected and it is not this node.
    pub fn other_leader(&self) -> Option<(u64, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader.filter(|l| *l != self.id)?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())?;
        Some((leader, addr))
    }

    /// The node's Raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// What the node has done.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// Checks and orders one envelope; answers the number of the committed block that holds it.
    pub async fn broadcast(&self, envelope: Vec<u8>) -> Result<u64, Refusal> {
        let started = std::time::Instant::now();
        let outcome = self.order(envelope).await;
        let m = &self.metrics;
        match &outcome {
            Ok(_) => {
                m.envelopes_ordered.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                m.broadcast_micros.fetch_add(us, Ordering::Relaxed);
            }
            Err(_) => {
                m.envelopes_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }

    async fn order(&self, envelope: Vec<u8>) -> Result<u64, Refusal> {
        let envelope = self.checks.check(envelope).await?;
        let leader = self.raft.metrics().borrow().current_leader;
        if leader != Some(self.id) {
            return Err(match leader {
                Some(l) => Refusal {
                    at_leader: true,
                    ..unavailable(format!("node {} is not the leader; node {l} is", self.id))
                },
                None => unavailable("no leader is elected yet; retry shortly"),
            });
        }
        let (ack, acked) = oneshot::channel();
        self.queue
            .send((envelope, ack))
            .await
            .map_err(|_| unavailable("the orderer is stopping"))?;
        acked
            .await
            .map_err(|_| unavailable("the orderer stopped before the envelope was ordered"))?
    }
}

/// The leader's batching: envelopes in, blocks out through Raft, acknowledgements back.
async fn batching(
    raft: Raft<TypeConfig>,
    ledger: Ledger,
    config: BatchConfig,
    signer: Arc<dyn Signer>,
    mut rx: mpsc::Receiver<Pending>,
    metrics: Arc<NodeMetrics>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut batcher = Batcher::new(config);
    let mut waiting: Vec<oneshot::Sender<Result<u64, Refusal>>> = Vec::new();
    let mut timer: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let deadline = timer.map(|(_, at)| at);
        let actions = tokio::select! {
            next = rx.recv() => match next {
                Some((env, ack)) => { waiting.push(ack); batcher.envelope(env) }
                None => return,
            },
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                match timer.take() {
                    Some((generation, _)) => batcher.timer_fired(generation),
                    None => Vec::new(),
                }
            },
            _ = stopped.wait_for(|s| *s) => return,
        };
        for action in actions {
            match action {
                Action::ArmTimer { generation, after } => {
                    timer = Some((generation, tokio::time::Instant::now() + after));
                }
                Action::Cut(envelopes) => {
                    // The acknowledgements of this batch are the oldest `len` waiting.
                    let acks: Vec<_> = waiting
                        .drain(..envelopes.len().min(waiting.len()))
                        .collect();
                    let outcome = order_block(&raft, &ledger, signer.as_ref(), envelopes).await;
                    if outcome.is_ok() {
                        metrics.blocks_cut.fetch_add(1, Ordering::Relaxed);
                    }
                    for ack in acks {
                        let _ = ack.send(outcome.clone());
                    }
                }
            }
        }
    }
}

/// Cuts one block of `envelopes` after the applied chain, signs it, replicates it and waits for
/// it to be applied. The leader first makes sure it has applied everything committed before its
/// term, so it numbers the block after the real chain; should the block still be skipped (its
/// envelopes then did not enter the chain), it is cut again.
async fn order_block(
    raft: &Raft<TypeConfig>,
    ledger: &Ledger,
    signer: &dyn Signer,
    envelopes: Vec<Vec<u8>>,
) -> Result<u64, Refusal> {
    // Applied an entry of the current term (the leader's first, blank one, at least): then every
    // entry before it, of earlier leaders, is applied too.
    raft.wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| {
                m.last_applied
                    .is_some_and(|l| l.leader_id.term == m.current_term)
            },
            "the leader has applied its term's first entry",
        )
        .await
        .map_err(|e| unavailable(format!("the chain is not caught up: {e}")))?;
    let mut last = String::new();
    let mut envelopes = envelopes;
    for _ in 0..3 {
        let number = ledger.height();
        let previous = ledger
            .last_hash()
            .map_err(|e| unavailable(format!("reading the chain: {e}")))?;
        // The envelopes travel in the block, and come back out of it if it has to be cut again.
        let mut block = new_block(number, previous.to_vec(), std::mem::take(&mut envelopes));
        // The nonce only has to be unique per signer and block.
        let nonce = [number.to_be_bytes(), [0u8; 8], [1u8; 8]].concat();
        sign_block(&mut block, Vec::new(), signer, nonce)
            .map_err(|e| unavailable(format!("signing block {number}: {e}")))?;
        let proposal = BlockProposal {
            block: block.encode_to_vec(),
        };
        match tokio::time::timeout(Duration::from_secs(30), raft.client_write(proposal)).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "block {number} was not committed within 30 s"
                )));
            }
            Ok(Err(e)) => {
                return Err(unavailable(format!(
                    "block {number} was not committed: {e}"
                )));
            }
            Ok(Ok(r)) => match r.data {
                Applied::Appended { number } => return Ok(number),
                Applied::Skipped { reason } => {
                    // Its envelopes did not enter the chain: cut them again.
                    last = reason;
                    envelopes = block.data.take().map(|d| d.data).unwrap_or_default();
                }
                Applied::Nothing => return Err(unavailable("the entry was not a block")),
            },
        }
    }
    Err(unavailable(format!(
        "the block was superseded ({last}); retry"
    )))
}
