//! The committer: takes ordered blocks, validates them (see [`crate::validator`]) and commits
//! each as one atomic batch, then tells subscribers what happened to every transaction.
//!
//! [`Committer::start_pipeline`] overlaps the stages: while block N is checked against the state
//! and written, the signatures of the blocks after it are already being verified on the other
//! cores, chunk by chunk, so that no core waits for the last chunk of a block.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mercato_proto::block::{commit_hash, parse_block, set_commit_hash, set_transactions_filter};
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::{Block, BlockMetadataIndex};
use mercato_proto::pb::protos::ChaincodeEvent;
use mercato_proto::transaction::parse_transaction;
use mercato_proto::{TxValidationCode, ValidationCode};
use prost::Message;
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::ledger::{self, BlockCommit, LedgerStore};
use crate::rwset::TxRwSet;
use crate::validator::ValidationContext;
use crate::validator::mvcc::{Mode, apply_block};
use crate::validator::verify::{
    CheckedTx, chunks, verify_block, verify_chunk, verify_transactions,
};

/// What happened to one transaction of a committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    /// The txid, when it was genuine (see [`CheckedTx::txid`]).
    pub txid: Option<String>,
    /// The validation code.
    pub code: ValidationCode,
    /// The chaincode event of a valid transaction.
    pub event: Option<ChaincodeEvent>,
}

/// A committed block, as subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// The block number.
    pub number: u64,
    /// Each transaction's outcome, in block order.
    pub txs: Vec<TxOutcome>,
}

/// How many block events a slow subscriber may fall behind before it misses some (it can then
/// look up the txid index). Bounds the memory events take.
const EVENT_BUFFER: usize = 256;

/// Validates and commits the blocks of one channel.
pub struct Committer {
    store: Arc<dyn LedgerStore>,
    ctx: Arc<ValidationContext>,
    /// The next block number to commit.
    height: AtomicU64,
    /// At least the height whose state a reader of the store may already see: a block's writes
    /// and txids are visible from the moment its batch is applied, while its commit is still
    /// flushing, before `height` moves. See [`Committer::visible_height`].
    visible: AtomicU64,
    /// The header hash and the commit hash of the last committed block.
    last: Mutex<Last>,
    events: broadcast::Sender<Arc<BlockEvent>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("height", &self.height())
            .finish_non_exhaustive()
    }
}

/// The hashes of the last committed block (zeros before block 0).
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    hash: [u8; 32],
    commit_hash: [u8; 32],
}

/// A block after stage 1, waiting for stage 2.
struct Verified {
    block: Block,
    checked: Vec<CheckedTx>,
}

impl Committer {
    /// A committer over `store`, resuming at its savepoint.
    pub fn new(store: Arc<dyn LedgerStore>, ctx: Arc<ValidationContext>) -> Result<Self> {
        let (height, last) = match store.savepoint()? {
            Some(sp) => (
                sp.height(),
                Last {
                    hash: sp.hash,
                    commit_hash: stored_commit_hash(store.as_ref(), sp.number)?.ok_or_else(
                        || {
                            Error::Corrupt(format!(
                                "block {} has no commit hash: the ledger predates commit hashes \
                                 (rebuild it with `mercato-peer rebuild --write-to`)",
                                sp.number
                            ))
                        },
                    )?,
                },
            ),
            None => (0, Last::default()),
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Committer {
            store,
            ctx,
            height: AtomicU64::new(height),
            visible: AtomicU64::new(height),
            last: Mutex::new(last),
            events,
        })
    }

    /// The number of the next block to commit (the number of committed blocks).
    pub fn height(&self) -> u64 {
        self.height.load(Ordering::Acquire)
    }

    /// A height at least that of any state or txid a reader of the store may have seen: the
    /// height, or one more while a block is being written (its batch becomes visible before the
    /// commit has flushed and returned). What a gateway tells the other endorsers it has seen:
    /// a client told by the txid index that its transaction committed, who at once submits the
    /// next one, must find it on every endorser, and a lagging endorser waits for this height.
    pub fn visible_height(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// The commit hash of the last committed block (zeros for an empty ledger); see
    /// [`ledger::commit_hash`].
    pub fn commit_hash(&self) -> [u8; 32] {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .commit_hash
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }

    /// Subscribes to committed blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<BlockEvent>> {
        self.events.subscribe()
    }

    /// Waits up to `wait` for the height to reach `height`; whether it did (false also once the
    /// committer has stopped).
    pub async fn reached(&self, height: u64, wait: std::time::Duration) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        // Subscribed before looking, so that a commit between the two is not missed.
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        while self.height() < height {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => return false,
            }
        }
        true
    }

    /// Commits the genesis block: the channel's trust anchor, taken as it is (its configuration
    /// is what the channel's MSPs and policies were built from).
    pub fn commit_genesis(&self, mut block: Block) -> Result<Arc<BlockEvent>> {
        let number = block.header.as_ref().map(|h| h.number).unwrap_or(u64::MAX);
        if self.height() != 0 || number != 0 {
            return Err(Error::invalid_block(
                number,
                "only block 0 of an empty ledger is a genesis block",
            ));
        }
        let n = tx_count(&block);
        let codes = vec![ValidationCode::VALID; n];
        set_transactions_filter(&mut block, &codes);
        let checked = vec![CheckedTx::recorded(ValidationCode::VALID, Some(TxRwSet::default())); n];
        self.commit_verified(Verified { block, checked })
    }

    /// Validates and commits one block now (no pipelining).
    pub fn commit_block(&self, block: Block) -> Result<Arc<BlockEvent>> {
        let verified = self.verify(block)?;
        self.commit_verified(verified)
    }

    /// Stage 1 of a block: structure, orderer signatures and every transaction's signatures.
    fn verify(&self, block: Block) -> Result<Verified> {
        verify_block(&block, &self.ctx)?;
        let envelopes = block
            .data
            .as_ref()
            .map(|d| d.data.as_slice())
            .unwrap_or_default();
        let checked = verify_transactions(envelopes, &self.ctx);
        if checked.len() != envelopes.len() {
            let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
            return Err(Error::invalid_block(
                number,
                format!(
                    "only {} of its {} transactions were judged (a verifier failed)",
                    checked.len(),
                    envelopes.len()
                ),
            ));
        }
        Ok(Verified { block, checked })
    }

    /// Stage 2 of a block: continuity, MVCC and deltas, then the atomic commit.
    fn commit_verified(&self, v: Verified) -> Result<Arc<BlockEvent>> {
        let Verified { mut block, checked } = v;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| Error::invalid_block(0, "no header"))?;
        let number = header.number;
        let expected = self.height();
        if number != expected {
            return Err(Error::invalid_block(
                number,
                format!("the next block to commit is {expected}"),
            ));
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if number > 0 && header.previous_hash != last.hash.as_slice() {
            return Err(Error::invalid_block(
                number,
                "its previous hash is not the hash of the last committed block",
            ));
        }
        let hash = block_header_hash(header);
        let applied = apply_block(
            self.store.as_ref(),
            number,
            &checked,
            Mode::Validate(&self.ctx),
        )?;
        set_transactions_filter(&mut block, &applied.codes);
        let commit_hash =
            ledger::commit_hash(&last.commit_hash, number, &applied.codes, &applied.updates);
        set_commit_hash(&mut block, &commit_hash);
        let commit = BlockCommit {
            number,
            hash,
            block_bytes: block.encode_to_vec(),
            updates: applied.updates,
            txids: applied.txids,
        };
        self.visible.store(number + 1, Ordering::Release);
        if let Err(e) = self.store.commit(&commit) {
            self.visible.store(number, Ordering::Release);
            return Err(e);
        }
        *last = Last { hash, commit_hash };
        self.height.store(number + 1, Ordering::Release);
        drop(last);
        let event = Arc::new(BlockEvent {
            number,
            txs: checked
                .into_iter()
                .zip(&applied.codes)
                .map(|(tx, &code)| TxOutcome {
                    txid: tx.txid,
                    code,
                    event: if code.is_valid() { tx.event } else { None },
                })
                .collect(),
        });
        // No subscriber is fine: the outcome is in the txid index.
        let _ = self.events.send(Arc::clone(&event));
        Ok(event)
    }

    /// Starts the pipeline: a dispatching thread that checks each block's structure and orderer
    /// signatures and splits its transactions into chunks, `ctx.threads` workers that verify the
    /// chunks (of whichever block is next, so none idles while a block's last chunk finishes),
    /// and a committing thread that takes the blocks in order. At most `depth` blocks wait
    /// between the stages: [`Pipeline::submit`] blocks when the pipeline is full (back-pressure).
    pub fn start_pipeline(self: &Arc<Self>, depth: usize) -> Pipeline {
        let depth = depth.max(1);
        let workers = self.ctx.threads.clamp(1, 64);
        let (in_tx, in_rx) = sync_channel::<Block>(depth);
        let (mid_tx, mid_rx) = sync_channel::<InFlight>(depth);
        let (job_tx, job_rx) = sync_channel::<Job>(4 * workers);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name).spawn(f)
        };
        let mut threads = Vec::with_capacity(workers + 2);
        threads.push({
            let me = Arc::clone(self);
            let failure = Arc::clone(&failure);
            spawn(
                "verify".into(),
                Box::new(move || dispatch_loop(&me, in_rx, &job_tx, &mid_tx, &failure)),
            )
        });
        for i in 0..workers {
            let me = Arc::clone(self);
            let jobs = Arc::clone(&job_rx);
            threads.push(spawn(
                format!("verify-{i}"),
                Box::new(move || worker_loop(&me.ctx, &jobs)),
            ));
        }
        threads.push({
            let me = Arc::clone(self);
            let failure = Arc::clone(&failure);
            spawn(
                "commit".into(),
                Box::new(move || commit_loop(&me, mid_rx, &failure)),
            )
        });
        let spawned = threads.len();
        let threads: Vec<JoinHandle<()>> = threads.into_iter().flatten().collect();
        if threads.len() < spawned {
            record_failure(
                &failure,
                &Error::Stopped("a pipeline thread could not be started".into()),
            );
        }
        Pipeline {
            // Without all its threads the pipeline takes nothing (the started ones then end).
            input: (threads.len() == spawned).then_some(in_tx),
            threads,
            spawned,
            failure,
        }
    }
}

/// A chunk of a block's transactions for a verifying worker.
struct Job {
    block: Arc<Block>,
    range: Range<usize>,
    /// Where the chunk's results go (room for one: a worker never waits on it).
    reply: SyncSender<Vec<CheckedTx>>,
}

/// A block whose chunks are being verified, in the order the committing thread takes it.
struct InFlight {
    block: Arc<Block>,
    /// One receiver per chunk, in transaction order.
    chunks: Vec<Receiver<Vec<CheckedTx>>>,
}

fn dispatch_loop(
    me: &Committer,
    input: Receiver<Block>,
    jobs: &SyncSender<Job>,
    output: &SyncSender<InFlight>,
    failure: &Mutex<Option<String>>,
) {
    for block in input {
        if let Err(e) = verify_block(&block, &me.ctx) {
            // A refused block is logged and skipped; the blocks after it will fail continuity
            // until the deliver client fetches it again.
            tracing::warn!(error = %e, "block refused");
            record_failure(failure, &e);
            continue;
        }
        let block = Arc::new(block);
        let n = tx_count(&block);
        let mut receivers = Vec::new();
        for range in chunks(n, me.ctx.threads) {
            let (reply, rx) = sync_channel(1);
            receivers.push(rx);
            let job = Job {
                block: Arc::clone(&block),
                range,
                reply,
            };
            if jobs.send(job).is_err() {
                return;
            }
        }
        let in_flight = InFlight {
            block,
            chunks: receivers,
        };
        if output.send(in_flight).is_err() {
            // The committing thread stopped (a ledger failure).
            return;
        }
    }
}

/// How much lower than the other threads' the verifying workers' priority is (a nice value).
///
/// Committing is the one stage that takes a block at a time: when the committing thread shares a
/// core with workers, every block waits for it, and at a burst's end the workers have finished
/// and one core idles while the blocks they verified are committed. At nice 10 a worker gets
/// about a tenth of a core that the committing thread wants (the kernel weighs nice 0 against
/// nice 10 as 1024 to 110); no CPU is left idle, since the workers still take every core the
/// committing thread does not.
const WORKER_NICE: i32 = 10;

/// Lowers this thread's priority by [`WORKER_NICE`] (Linux; elsewhere nothing). A failure is
/// harmless: the worker then runs at the common priority.
fn yield_to_committer() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers and touch no memory of
        // ours. On Linux the nice value is per thread, and PRIO_PROCESS with a thread id sets that
        // thread's alone (setpriority(2), NOTES).
        let failed = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, WORKER_NICE) != 0
        };
        if failed {
            tracing::debug!("the verifying worker keeps the common priority");
        }
    }
}

fn worker_loop(ctx: &ValidationContext, jobs: &Mutex<Receiver<Job>>) {
    yield_to_committer();
    loop {
        // The lock is held while waiting, so that exactly one idle worker takes the next job.
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let Job {
            block,
            range,
            reply,
        } = job;
        let envelopes = block
            .data
            .as_ref()
            .and_then(|d| d.data.get(range))
            .unwrap_or_default();
        // A panic in a verifier is a bug; the chunk then goes unjudged (its reply is dropped),
        // the committing thread refuses the block rather than judge it wrongly, and this worker
        // goes on with the next chunk.
        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| verify_chunk(envelopes, ctx)));
        // The block is released before the reply, so that once a block's replies are all in,
        // the committing thread holds the only reference and takes it without a copy.
        drop(block);
        if let Ok(checked) = checked {
            let _ = reply.send(checked);
        }
    }
}

fn commit_loop(me: &Committer, input: Receiver<InFlight>, failure: &Mutex<Option<String>>) {
    for in_flight in input {
        let result = assemble(in_flight).and_then(|v| me.commit_verified(v));
        if let Err(e) = result {
            tracing::warn!(error = %e, "block not committed");
            record_failure(failure, &e);
            if matches!(e, Error::Storage(_) | Error::Corrupt(_)) {
                // The ledger itself failed: stop rather than skip blocks.
                return;
            }
        }
    }
}

/// Waits for every chunk of a block and puts the results in transaction order.
fn assemble(in_flight: InFlight) -> Result<Verified> {
    let InFlight { block, chunks } = in_flight;
    let n = tx_count(&block);
    let mut checked = Vec::with_capacity(n);
    for rx in chunks {
        match rx.recv() {
            Ok(part) => checked.extend(part),
            Err(_) => break,
        }
    }
    if checked.len() != n {
        let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
        return Err(Error::invalid_block(
            number,
            format!(
                "only {} of its {n} transactions were judged (a verifier failed)",
                checked.len()
            ),
        ));
    }
    Ok(Verified {
        block: Arc::unwrap_or_clone(block),
        checked,
    })
}

/// How many transactions a block holds.
fn tx_count(block: &Block) -> usize {
    block.data.as_ref().map_or(0, |d| d.data.len())
}

fn record_failure(failure: &Mutex<Option<String>>, e: &Error) {
    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
}

/// A running verify → commit pipeline. Dropping it (or [`Pipeline::finish`]) drains the queued
/// blocks and stops the threads.
pub struct Pipeline {
    input: Option<SyncSender<Block>>,
    threads: Vec<JoinHandle<()>>,
    /// How many threads were to run: fewer in `threads` means one could not be started.
    spawned: usize,
    failure: Arc<Mutex<Option<String>>>,
}

impl Pipeline {
    /// Queues a block, waiting while the pipeline is full.
    pub fn submit(&self, block: Block) -> Result<()> {
        let input = self.input.as_ref().ok_or_else(|| {
            Error::Stopped(
                self.last_failure()
                    .unwrap_or_else(|| "the pipeline is finished".into()),
            )
        })?;
        input.send(block).map_err(|_| {
            Error::Stopped(
                self.last_failure()
                    .unwrap_or_else(|| "the pipeline stopped".into()),
            )
        })
    }

    /// The last block refused or failed, if any.
    pub fn last_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why the pipeline stopped, once a thread of it has ended (a ledger failure); `None` while
    /// it runs.
    pub fn stopped(&self) -> Option<String> {
        let ended =
            self.threads.len() < self.spawned || self.threads.iter().any(|t| t.is_finished());
        ended.then(|| {
            self.last_failure()
                .unwrap_or_else(|| "the pipeline's threads ended".into())
        })
    }

    /// Commits everything queued and stops the threads.
    pub fn finish(mut self) -> Option<String> {
        self.stop();
        self.last_failure()
    }

    fn stop(&mut self) {
        self.input.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Rebuilds the state, history and txid index from the blocks of `source` alone, into `target`
/// (an empty store), replaying every valid transaction with the codes recorded in each block.
/// Returns the number of blocks replayed.
pub fn rebuild(source: &dyn LedgerStore, target: &dyn LedgerStore) -> Result<u64> {
    let Some(savepoint) = source.savepoint()? else {
        return Ok(0);
    };
    if target.savepoint()?.is_some() {
        return Err(Error::Storage("the rebuild target is not empty".into()));
    }
    let mut previous_commit_hash = [0; 32];
    for number in 0..=savepoint.number {
        let bytes = source
            .block(number)?
            .ok_or_else(|| Error::Corrupt(format!("block {number} is missing")))?;
        let mut block = parse_block(&bytes, &mercato_proto::Limits::DEFAULT)
            .map_err(|e| Error::Corrupt(format!("block {number}: {e}")))?;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| Error::Corrupt(format!("block {number} has no header")))?;
        let filter =
            mercato_proto::block::metadata_entry(&block, BlockMetadataIndex::TransactionsFilter)
                .unwrap_or_default();
        let envelopes = block
            .data
            .as_ref()
            .map(|d| d.data.as_slice())
            .unwrap_or_default();
        if filter.len() != envelopes.len() {
            return Err(Error::Corrupt(format!(
                "block {number} records {} codes for {} transactions",
                filter.len(),
                envelopes.len()
            )));
        }
        let checked = envelopes
            .iter()
            .zip(filter)
            .map(|(env, &code)| replay_checked(number, env, ValidationCode(code)))
            .collect::<Result<Vec<_>>>()?;
        let applied = apply_block(target, number, &checked, Mode::Replay)?;
        let hash = block_header_hash(header);
        let codes: Vec<ValidationCode> = filter.iter().map(|&c| ValidationCode(c)).collect();
        let computed = ledger::commit_hash(&previous_commit_hash, number, &codes, &applied.updates);
        let block_bytes = match commit_hash(&block)
            .map_err(|e| Error::Corrupt(format!("block {number}: {e}")))?
        {
            Some(stored) if stored != computed => {
                return Err(Error::Corrupt(format!(
                    "block {number}: its recorded commit hash {} is not the {} its codes and \
                     writes give",
                    hex::encode(stored),
                    hex::encode(computed)
                )));
            }
            Some(_) => bytes,
            // A ledger from before commit hashes gets them now.
            None => {
                set_commit_hash(&mut block, &computed);
                block.encode_to_vec()
            }
        };
        previous_commit_hash = computed;
        target.commit(&BlockCommit {
            number,
            hash,
            block_bytes,
            updates: applied.updates,
            txids: applied.txids,
        })?;
    }
    Ok(savepoint.number + 1)
}

/// The commit hash recorded in stored block `number`.
pub fn stored_commit_hash(store: &dyn LedgerStore, number: u64) -> Result<Option<[u8; 32]>> {
    let bytes = store
        .block(number)?
        .ok_or_else(|| Error::Corrupt(format!("block {number} is missing")))?;
    let block = parse_block(&bytes, &mercato_proto::Limits::DEFAULT)
        .map_err(|e| Error::Corrupt(format!("block {number}: {e}")))?;
    commit_hash(&block).map_err(|e| Error::Corrupt(format!("block {number}: {e}")))
}

/// The stage-1 result of a stored transaction, rebuilt from its recorded code.
fn replay_checked(number: u64, envelope: &[u8], code: ValidationCode) -> Result<CheckedTx> {
    let Ok(tx) = parse_transaction(envelope, &mercato_proto::Limits::DEFAULT) else {
        // Only the genesis block holds configuration; other unparseable transactions are invalid.
        if code.is_valid() && number > 0 {
            return Err(Error::Corrupt(format!(
                "block {number}: a valid transaction does not parse"
            )));
        }
        return Ok(CheckedTx::recorded(code, Some(TxRwSet::default())));
    };
    // A txid is indexed when it was genuine: the recorded code says how far it got.
    let not_genuine = [
        TxValidationCode::BadCreatorSignature,
        TxValidationCode::BadProposalTxid,
        TxValidationCode::TargetChainNotFound,
        TxValidationCode::DuplicateTxid,
    ]
    .map(ValidationCode::from);
    let genuine = !not_genuine.contains(&code) && tx.header.check_txid().is_ok();
    let rwset = if code.is_valid() {
        Some(
            TxRwSet::decode(&tx.action.results)
                .map_err(|e| Error::Corrupt(format!("block {number}: {e}")))?,
        )
    } else {
        None
    };
    Ok(CheckedTx {
        txid: genuine.then(|| tx.header.channel_header.tx_id.clone()),
        ..CheckedTx::recorded(code, rwset)
    })
}
