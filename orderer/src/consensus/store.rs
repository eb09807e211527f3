//! openraft's storage for the ordering service: the Raft log ([`LogStore`]) and the state machine
//! ([`StateMachine`]), whose state is the chain of blocks. Both index in sled and keep blocks in
//! append-only block files ([`mercato_blockfile`]): sled rewrites whole tree nodes, and nodes
//! holding blocks were copied over and over.
//!
//! A log entry's payload is a whole block cut and signed by the leader. Applying it appends it to
//! the chain if it continues it (its number is the height, its previous hash the last block's
//! hash, its data hash right); a block that does not is skipped, the same way on every node, and
//! its proposer is told so. The last applied log id and the membership are written in the same
//! batch as the blocks.
//!
//! A snapshot holds only a summary of the chain (its height, its last block's hash and the node
//! that built it), so building one costs nothing however long the chain is. A node that installs
//! a snapshot beyond its own chain first records the install as pending, then fetches the blocks
//! it lacks from the other consenters ([`ChainSource`]), each checked to continue the chain,
//! into its block files without indexing them; only when the last one has the snapshot's hash
//! are they indexed, with the applied log id and the membership, in one batch. A crash on the
//! way leaves unindexed bytes (cut off on open) and the pending record, and the install is
//! finished before the state machine answers what it applied.

// openraft's `StorageError` is large; it is the trait's error type, not ours to shrink.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::ops::RangeBounds;

use mercato_proto::Limits;
use mercato_proto::block::check_block;
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use mercato_blockfile::{BlockFiles, BlockLocation};

use crate::ledger::Ledger;

openraft::declare_raft_types!(
    /// The ordering service's Raft types: entries carry whole blocks.
    pub TypeConfig:
        D = BlockProposal,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// What the leader proposes: one encoded, signed block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockProposal {
    pub block: Vec<u8>,
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Not a block (a blank or membership entry).
    Nothing,
    /// The block was appended as this number.
    Appended { number: u64 },
    /// The block did not continue the chain and was skipped.
    Skipped { reason: String },
}

type NodeId = u64;
type StorageResult<T> = Result<T, StorageError<NodeId>>;
/// The last applied log id and the membership, as openraft asks for them.
type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>);

fn io_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::error(e)).into()
}

fn io_read(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::error(e)).into()
}

// ---------------------------------------------------------------------------------------------
// The log.

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"last_purged";

/// The head of an entry. On the wire the block's bytes follow it raw; in the log store, the
/// block's location in the log's block files.
#[derive(Serialize, Deserialize)]
struct EntryHead {
    log_id: LogId<NodeId>,
    /// 0 blank, 1 block, 2 membership.
    kind: u8,
    membership: Option<openraft::Membership<NodeId, BasicNode>>,
}

/// An entry's head (length-prefixed) and its block's bytes (empty unless it carries a block).
fn split_entry(e: &Entry<TypeConfig>) -> StorageResult<(Vec<u8>, &[u8])> {
    let (kind, membership, block): (u8, _, &[u8]) = match &e.payload {
        EntryPayload::Blank => (0, None, &[]),
        EntryPayload::Normal(p) => (1, None, &p.block),
        EntryPayload::Membership(m) => (2, Some(m.clone()), &[]),
    };
    let head = serde_json::to_vec(&EntryHead {
        log_id: e.log_id,
        kind,
        membership,
    })
    .map_err(io_write)?;
    let mut out = Vec::with_capacity(4 + head.len() + 16);
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    Ok((out, block))
}

/// An entry as it travels between the nodes: its head, then its block's bytes.
pub(crate) fn encode_entry(e: &Entry<TypeConfig>) -> StorageResult<Vec<u8>> {
    let (mut out, block) = split_entry(e)?;
    out.extend_from_slice(block);
    Ok(out)
}

/// Parses an entry's head; returns it with the bytes after it.
fn parse_head(bytes: &[u8]) -> StorageResult<(EntryHead, &[u8])> {
    let corrupt = |why: &str| io_read(format!("a log entry is corrupt: {why}"));
    let len = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| corrupt("too short"))? as usize;
    let head = bytes.get(4..4 + len).ok_or_else(|| corrupt("short head"))?;
    let rest = bytes.get(4 + len..).unwrap_or_default();
    let head: EntryHead = serde_json::from_slice(head).map_err(|e| corrupt(&e.to_string()))?;
    Ok((head, rest))
}

fn entry_from(head: EntryHead, block: Vec<u8>) -> StorageResult<Entry<TypeConfig>> {
    let payload = match (head.kind, head.membership) {
        (0, _) => EntryPayload::Blank,
        (1, _) => EntryPayload::Normal(BlockProposal { block }),
        (2, Some(m)) => EntryPayload::Membership(m),
        _ => return Err(io_read("a log entry is corrupt: unknown kind")),
    };
    Ok(Entry {
        log_id: head.log_id,
        payload,
    })
}

/// Decodes what [`encode_entry`] wrote.
pub(crate) fn decode_entry(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
    let (head, rest) = parse_head(bytes)?;
    entry_from(head, rest.to_vec())
}

/// A stored entry's head and where its block is, if it carries one.
fn parse_stored(value: &[u8]) -> StorageResult<(EntryHead, Option<BlockLocation>)> {
    let (head, rest) = parse_head(value)?;
    let at = match head.kind {
        1 => Some(BlockLocation::decode(rest).map_err(io_read)?),
        _ => None,
    };
    Ok((head, at))
}

fn json<T: Serialize>(v: &T) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(io_write)
}

fn from_json<T: for<'a> Deserialize<'a>>(bytes: &[u8]) -> StorageResult<T> {
    serde_json::from_slice(bytes).map_err(io_read)
}

/// The Raft log and hard state: entries by index in sled (each entry's head, and where its
/// block is in the block files under the log's directory), the vote, the committed and the last
/// purged log ids. Every change is flushed before it is acknowledged; an entry's block reaches
/// its file before the batch that indexes it.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    blocks: std::sync::Arc<BlockFiles>,
}

impl LogStore {
    /// Opens the log indexed in `db`, with its entries' blocks in files under `blocks_dir`.
    pub fn open(db: &sled::Db, blocks_dir: &std::path::Path) -> crate::Result<Self> {
        let storage = |e: String| crate::Error::Storage(format!("the Raft log: {e}"));
        let open = |name: &str| db.open_tree(name).map_err(|e| storage(e.to_string()));
        let log = open("raft_log")?;
        // The files end with the furthest block an entry points to; what follows it was never
        // indexed. Every entry is looked at (the log is purged, so they are few): that holds
        // whatever order the entries were written and truncated in.
        let mut last: Option<BlockLocation> = None;
        for item in log.iter() {
            let (_, v) = item.map_err(|e| storage(e.to_string()))?;
            let (_, at) = parse_stored(&v).map_err(|e| storage(e.to_string()))?;
            last = last.max(at);
        }
        let blocks = BlockFiles::open(blocks_dir, last).map_err(|e| storage(e.to_string()))?;
        Ok(LogStore {
            db: db.clone(),
            log,
            state: open("raft_state")?,
            blocks: std::sync::Arc::new(blocks),
        })
    }

    /// Reads a stored entry back, with its block.
    fn load(&self, value: &[u8]) -> StorageResult<Entry<TypeConfig>> {
        let (head, at) = parse_stored(value)?;
        let block = match at {
            Some(at) => self.blocks.read(at).map_err(io_read)?,
            None => Vec::new(),
        };
        entry_from(head, block)
    }

    fn get_json<T: for<'a> Deserialize<'a>>(&self, key: &[u8]) -> StorageResult<Option<T>> {
        match self.state.get(key).map_err(io_read)? {
            None => Ok(None),
            Some(v) => from_json(&v).map(Some),
        }
    }

    fn put_json<T: Serialize>(&self, key: &[u8], v: &T) -> StorageResult<()> {
        self.state.insert(key, json(v)?).map_err(io_write)?;
        self.db.flush().map_err(io_write)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in self.log.range(start.to_be_bytes()..) {
            let (k, v) = item.map_err(io_read)?;
            let index = k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| io_read("a log key is not an index"))?;
            if !range.contains(&index) {
                break;
            }
            out.push(self.load(&v)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_json(PURGED)?;
        let last = match self.log.last().map_err(io_read)? {
            Some((_, v)) => Some(parse_head(&v)?.0.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put_json(VOTE, vote)
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get_json(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.put_json(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get_json::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut staged = Ok(());
        for e in entries {
            let (mut value, block) = split_entry(&e)?;
            if matches!(e.payload, EntryPayload::Normal(_)) {
                match self.blocks.append(block) {
                    Ok(at) => value.extend_from_slice(&at.encode()),
                    Err(err) => {
                        staged = Err(std::io::Error::other(err));
                        break;
                    }
                }
            }
            batch.insert(&e.log_id.index.to_be_bytes(), value);
        }
        let result = staged.and_then(|()| {
            self.log
                .apply_batch(batch)
                .and_then(|_| self.db.flush().map(|_| ()))
                .map_err(std::io::Error::other)
        });
        let failed = result.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(io_write(e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(log_id.index.to_be_bytes()..) {
            let (k, _) = item.map_err(io_read)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        self.db.flush().map_err(io_write)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.put_json(PURGED, &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=log_id.index.to_be_bytes()) {
            let (k, _) = item.map_err(io_read)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io_write)?;
        self.db.flush().map_err(io_write)?;
        // The block files before the first remaining block are no longer pointed into.
        let mut first = None;
        for item in self.log.iter() {
            let (_, v) = item.map_err(io_read)?;
            if let (_, Some(at)) = parse_stored(&v)? {
                first = Some(at.file);
                break;
            }
        }
        self.blocks
            .remove_before(first.unwrap_or(u32::MAX))
            .map_err(io_write)
    }
}

// ---------------------------------------------------------------------------------------------
// The state machine.

const APPLIED: &[u8] = b"m/last_applied";
const MEMBERSHIP: &[u8] = b"m/membership";
/// A snapshot install begun and not yet finished.
const PENDING: &[u8] = b"m/pending_install";

/// How long an install keeps trying the consenters for blocks before it gives up, by default.
const FETCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// What a pending install must still do.
#[derive(Serialize, Deserialize)]
struct PendingInstall {
    meta: SnapshotMeta<NodeId, BasicNode>,
    chain: ChainSummary,
}

/// Where a node installing a snapshot gets the blocks it lacks: the other consenters.
#[tonic::async_trait]
pub trait ChainSource: Send + Sync + 'static {
    /// Blocks `from..to` of consenter `node` (reached at `addr`), in order from `from`: possibly
    /// fewer than asked (a bounded chunk), none when it has none of them.
    async fn blocks(
        &self,
        node: NodeId,
        addr: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>, String>;
}

/// The state machine: the chain of blocks, with the last applied log id and the membership.
#[derive(Clone)]
pub struct StateMachine {
    ledger: Ledger,
    /// This node's id and where it fetches blocks when a snapshot is ahead of its chain.
    source: Option<(NodeId, std::sync::Arc<dyn ChainSource>)>,
    /// How long an install keeps asking the consenters for blocks.
    patience: std::time::Duration,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

/// A snapshot's data: the chain at the snapshot, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ChainSummary {
    height: u64,
    last_hash: [u8; 32],
    /// The node that built the snapshot (it holds every block of it).
    builder: NodeId,
}

const SUMMARY_MAGIC: &[u8] = b"mercato-chain-summary-v1";

impl ChainSummary {
    fn encode(&self) -> Vec<u8> {
        let mut v = SUMMARY_MAGIC.to_vec();
        v.extend_from_slice(&self.height.to_be_bytes());
        v.extend_from_slice(&self.last_hash);
        v.extend_from_slice(&self.builder.to_be_bytes());
        v
    }

    fn decode(data: &[u8]) -> StorageResult<Self> {
        let bad = || io_read("a snapshot is not a chain summary of this version");
        let rest = data.strip_prefix(SUMMARY_MAGIC).ok_or_else(bad)?;
        if rest.len() != 48 {
            return Err(bad());
        }
        let u64_at = |at: usize| {
            rest[at..at + 8]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| bad())
        };
        let mut last_hash = [0u8; 32];
        last_hash.copy_from_slice(&rest[8..40]);
        Ok(ChainSummary {
            height: u64_at(0)?,
            last_hash,
            builder: u64_at(40)?,
        })
    }
}

impl StateMachine {
    /// The state machine over `ledger`, with no way to fetch blocks: it can install only a
    /// snapshot its chain already reaches.
    pub fn new(ledger: Ledger) -> Self {
        StateMachine {
            ledger,
            source: None,
            patience: FETCH_PATIENCE,
        }
    }

    /// The state machine of node `id`, fetching the blocks a snapshot is ahead by from `source`.
    pub fn with_source(
        ledger: Ledger,
        id: NodeId,
        source: std::sync::Arc<dyn ChainSource>,
    ) -> Self {
        StateMachine {
            ledger,
            source: Some((id, source)),
            patience: FETCH_PATIENCE,
        }
    }

    /// How long an install keeps asking the consenters for blocks before it fails (10 minutes
    /// unless set).
    pub fn with_fetch_patience(mut self, patience: std::time::Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The chain.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn applied(&self) -> StorageResult<AppliedState> {
        let tree = &self.ledger.tree;
        applied_from(
            tree.get(APPLIED).map_err(io_read)?,
            tree.get(MEMBERSHIP).map_err(io_read)?,
        )
    }
}

/// The applied state from its stored values (none yet: nothing applied, no membership).
fn applied_from(
    applied: Option<sled::IVec>,
    membership: Option<sled::IVec>,
) -> StorageResult<AppliedState> {
    let applied = match applied {
        Some(v) => from_json(&v)?,
        None => None,
    };
    let membership = match membership {
        Some(v) => from_json(&v)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// Checks that `bytes` is a block that continues a chain at `height` after `last_hash`.
fn continues(bytes: &[u8], height: u64, last_hash: &[u8; 32]) -> Result<[u8; 32], String> {
    let block = Block::decode(bytes).map_err(|e| format!("the block does not decode: {e}"))?;
    check_block(&block, &Limits::default()).map_err(|e| e.to_string())?;
    let header = block.header.as_ref().ok_or("the block has no header")?;
    if header.number != height {
        return Err(format!(
            "block {} does not continue the chain at height {height}",
            header.number
        ));
    }
    if header.previous_hash != last_hash.as_slice() {
        return Err(format!(
            "block {}'s previous hash is not the hash of block {}",
            header.number,
            height - 1
        ));
    }
    Ok(block_header_hash(header))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> StorageResult<AppliedState> {
        // An install interrupted by a crash is finished first: openraft may already have purged
        // the log up to it.
        if let Some(v) = self.ledger.tree.get(PENDING).map_err(io_read)? {
            let pending: PendingInstall = from_json(&v)?;
            tracing::info!(
                height = pending.chain.height,
                "finishing an interrupted snapshot install"
            );
            self.finish_install(&pending).await?;
        }
        self.applied()
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut height = self.ledger.height();
        let mut last_hash = self.ledger.last_hash().map_err(io_read)?;
        let first = height;
        let mut blocks = Vec::new();
        let mut results = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        for e in entries {
            last_applied = Some(e.log_id);
            results.push(match e.payload {
                EntryPayload::Blank => Applied::Nothing,
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(e.log_id), m));
                    Applied::Nothing
                }
                EntryPayload::Normal(p) => match continues(&p.block, height, &last_hash) {
                    Ok(hash) => {
                        blocks.push((p.block, hash));
                        last_hash = hash;
                        height += 1;
                        Applied::Appended { number: height - 1 }
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "a committed entry is not the next block; skipped");
                        Applied::Skipped { reason }
                    }
                },
            });
        }
        let mut batch = sled::Batch::default();
        self.ledger
            .stage(&mut batch, first, &blocks)
            .map_err(io_write)?;
        if let Some(applied) = last_applied {
            batch.insert(APPLIED, json(&Some(applied))?);
        }
        if let Some(m) = &membership {
            batch.insert(MEMBERSHIP, json(m)?);
        }
        self.ledger.commit(batch, height).map_err(io_write)?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let summary = ChainSummary::decode(snapshot.get_ref())?;
        if summary.height == 0 {
            return Err(io_read("a snapshot of an empty chain"));
        }
        let pending = PendingInstall {
            meta: meta.clone(),
            chain: summary,
        };
        self.ledger
            .tree
            .insert(PENDING, json(&pending)?)
            .map_err(io_write)?;
        self.ledger.db.flush().map_err(io_write)?;
        self.finish_install(&pending).await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let (applied, _) = self.applied()?;
        if applied.is_none() {
            return Ok(None);
        }
        self.build_snapshot().await.map(Some)
    }
}

impl StateMachine {
    /// Brings the chain to the pending install's, then records what was applied, in one batch
    /// that also clears the pending record.
    async fn finish_install(&mut self, p: &PendingInstall) -> StorageResult<()> {
        let height = self.ledger.height();
        let (first, appended) = if height < p.chain.height {
            (height, self.fetch_up_to(p).await?)
        } else {
            // The chain reaches the snapshot: it must be the snapshot's chain.
            let at = p.chain.height - 1;
            let ours = match self.ledger.block(at).map_err(io_read)? {
                Some(b) => Block::decode(b.as_slice())
                    .map_err(|e| io_read(format!("stored block {at} does not decode: {e}")))?
                    .header
                    .as_ref()
                    .map(block_header_hash),
                None => None,
            };
            if ours != Some(p.chain.last_hash) {
                return Err(io_write(format!(
                    "the snapshot's chain is not this node's: its block {at} is not ours"
                )));
            }
            (p.chain.height, Vec::new())
        };
        let mut batch = sled::Batch::default();
        batch.insert(APPLIED, json(&p.meta.last_log_id)?);
        batch.insert(MEMBERSHIP, json(&p.meta.last_membership)?);
        batch.remove(PENDING);
        // Blocks beyond the snapshot (none in a healthy cluster) are applied again from the log.
        self.ledger
            .settle(batch, first, &appended, p.chain.height, &p.chain.last_hash)
            .map_err(io_write)
    }

    /// Fetches the blocks from this node's height up to the snapshot's, from the snapshot's
    /// builder first and then the other members, into the block files without indexing them.
    /// Each block must continue the chain; an answer that does not is dropped from its first
    /// bad block and the next member asked; when none answers, the fetch waits and goes round
    /// again, for up to its patience ([`StateMachine::with_fetch_patience`]). The last block must have the snapshot's hash.
    async fn fetch_up_to(
        &self,
        p: &PendingInstall,
    ) -> StorageResult<Vec<(BlockLocation, [u8; 32])>> {
        let Some((me, source)) = self.source.clone() else {
            return Err(io_read(format!(
                "the snapshot's chain is {} blocks long, this node's {}, and it has no way to \
                 fetch the rest",
                p.chain.height,
                self.ledger.height()
            )));
        };
        let members: Vec<(NodeId, String)> = p
            .meta
            .last_membership
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        let mut sources: Vec<&(NodeId, String)> = members
            .iter()
            .filter(|(id, _)| *id == p.chain.builder)
            .collect();
        sources.extend(members.iter().filter(|(id, _)| *id != p.chain.builder));
        let deadline = tokio::time::Instant::now() + self.patience;
        let mut pause = std::time::Duration::from_millis(100);
        let mut got = Fetched {
            height: self.ledger.height(),
            last_hash: self.ledger.last_hash().map_err(io_read)?,
            appended: Vec::new(),
        };
        while got.height < p.chain.height {
            let (from, to) = (got.height, p.chain.height);
            let mut failures = Vec::new();
            for (id, addr) in &sources {
                match source.blocks(*id, addr, from, to).await {
                    Err(e) => failures.push(format!("node {id}: {e}")),
                    Ok(blocks) if blocks.len() as u64 > to - from => {
                        failures.push(format!("node {id} answered more blocks than asked"));
                    }
                    Ok(blocks) => {
                        if let Err(why) = got.take(&self.ledger, blocks)? {
                            failures.push(format!("node {id}{why}"));
                        }
                    }
                }
                if got.height > from {
                    break;
                }
            }
            if got.height == from {
                let why = failures.join("; ");
                if tokio::time::Instant::now() + pause > deadline {
                    return Err(io_read(format!(
                        "fetching blocks {from}..{to} for a snapshot: {why}"
                    )));
                }
                tracing::warn!(%why, from, to, "no consenter gave the blocks a snapshot needs; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
        }
        if got.last_hash != p.chain.last_hash {
            return Err(io_read(format!(
                "the fetched blocks end at block {} with another hash than the snapshot's: the \
                 consenters' chains differ",
                p.chain.height - 1
            )));
        }
        Ok(got.appended)
    }
}

/// The blocks fetched so far for an install, in the files and not yet indexed.
struct Fetched {
    /// The chain's height with them.
    height: u64,
    last_hash: [u8; 32],
    appended: Vec<(BlockLocation, [u8; 32])>,
}

impl Fetched {
    /// Appends the blocks of one answer that continue the chain, up to the first that does
    /// not; the inner error says why an answer gave nothing more (a storage fault is the outer).
    fn take(
        &mut self,
        ledger: &Ledger,
        blocks: Vec<Vec<u8>>,
    ) -> StorageResult<std::result::Result<(), String>> {
        if blocks.is_empty() {
            return Ok(Err(" has none of them".into()));
        }
        for bytes in blocks {
            let hash = match continues(&bytes, self.height, &self.last_hash) {
                Ok(hash) => hash,
                Err(e) => return Ok(Err(format!(", block {}: {e}", self.height))),
            };
            let at = ledger.append_unindexed(&bytes).map_err(io_write)?;
            self.appended.push((at, hash));
            self.last_hash = hash;
            self.height += 1;
        }
        Ok(Ok(()))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // One consistent view of what was applied and the chain it made.
        let read = self.ledger.tree.transaction(|t| {
            Ok((
                t.get(APPLIED)?,
                t.get(MEMBERSHIP)?,
                t.get(crate::ledger::HEIGHT)?,
                t.get(crate::ledger::LAST_HASH)?,
            ))
        });
        let (applied, membership, height, last_hash) =
            read.map_err(|e: sled::transaction::TransactionError<()>| io_read(format!("{e:?}")))?;
        let (last_log_id, last_membership) = applied_from(applied, membership)?;
        let height = height
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .ok_or_else(|| io_read("the chain has no height"))?;
        let last_hash: [u8; 32] = last_hash
            .and_then(|v| v.as_ref().try_into().ok())
            .ok_or_else(|| io_read("the chain has no last hash"))?;
        let builder = self.source.as_ref().map(|(id, _)| *id).unwrap_or_default();
        let data = ChainSummary {
            height,
            last_hash,
            builder,
        }
        .encode();
        let snapshot_id = format!(
            "{}-{height}",
            last_log_id.map(|l| l.index).unwrap_or_default()
        );
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
