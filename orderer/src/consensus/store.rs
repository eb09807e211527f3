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
//! A snapshot holds the whole chain, so a node that fell behind the purged log is brought back
//! with every block (a block puller that fetches only the missing blocks would be lighter).

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

use crate::ledger::{Ledger, read_u64};

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

/// The head of a stored entry; a block's bytes follow it raw.
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

/// Where a stored entry's block is, if it carries one: a stored entry is its head followed by
/// the block's location in the log's block files.
fn stored_location(value: &[u8]) -> StorageResult<Option<BlockLocation>> {
    let (head, rest) = parse_head(value)?;
    match head.kind {
        1 => BlockLocation::decode(rest).map(Some).map_err(io_read),
        _ => Ok(None),
    }
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
        // Entries' blocks lie in index order (a truncated suffix is appended again after what it
        // replaced), so the last entry with a block ends the files; what follows is uncommitted.
        let mut last = None;
        for item in log.iter().rev() {
            let (_, v) = item.map_err(|e| storage(e.to_string()))?;
            if let Some(at) = stored_location(&v).map_err(|e| storage(e.to_string()))? {
                last = Some(at);
                break;
            }
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
        let (head, rest) = parse_head(value)?;
        let block = match head.kind {
            1 => {
                let at = BlockLocation::decode(rest).map_err(io_read)?;
                self.blocks.read(at).map_err(io_read)?
            }
            _ => Vec::new(),
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
            if let Some(at) = stored_location(&v)? {
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

/// The state machine: the chain of blocks, with the last applied log id and the membership.
#[derive(Debug, Clone)]
pub struct StateMachine {
    ledger: Ledger,
}

impl StateMachine {
    /// The state machine over `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        StateMachine { ledger }
    }

    /// The chain.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn applied(&self) -> StorageResult<AppliedState> {
        let tree = &self.ledger.tree;
        let applied = match tree.get(APPLIED).map_err(io_read)? {
            Some(v) => from_json(&v)?,
            None => None,
        };
        let membership = match tree.get(MEMBERSHIP).map_err(io_read)? {
            Some(v) => from_json(&v)?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }
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
        self.ledger.commit(batch).map_err(io_write)?;
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
        let blocks = decode_chain(snapshot.get_ref())?;
        let mut batch = sled::Batch::default();
        batch.insert(APPLIED, json(&meta.last_log_id)?);
        batch.insert(MEMBERSHIP, json(&meta.last_membership)?);
        self.ledger.replace(&blocks, batch).map_err(io_write)
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let (applied, _) = self.applied()?;
        if applied.is_none() {
            return Ok(None);
        }
        self.build_snapshot().await.map(Some)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // One consistent view: sled snapshots are not exposed, so read the meta, then the blocks
        // up to the height read with it (applies only append).
        let (last_log_id, last_membership) = self.applied()?;
        let height = read_u64(&self.ledger.tree, b"m/height")
            .map_err(io_read)?
            .unwrap_or(1);
        let mut data = Vec::new();
        data.extend_from_slice(&height.to_be_bytes());
        for n in 0..height {
            let block = self
                .ledger
                .block(n)
                .map_err(io_read)?
                .ok_or_else(|| io_read(format!("block {n} is missing")))?;
            data.extend_from_slice(&(block.len() as u32).to_be_bytes());
            data.extend_from_slice(&block);
        }
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

/// The blocks of a snapshot, checked to form a chain.
fn decode_chain(data: &[u8]) -> StorageResult<Vec<(Vec<u8>, [u8; 32])>> {
    let bad = |why: String| io_read(format!("snapshot: {why}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> StorageResult<&[u8]> {
        let s = data
            .get(at..at + n)
            .ok_or_else(|| bad("truncated".into()))?;
        at += n;
        Ok(s)
    };
    let count = u64::from_be_bytes(take(8)?.try_into().map_err(|_| bad("count".into()))?);
    let mut blocks = Vec::new();
    let mut last_hash = [0u8; 32];
    for n in 0..count {
        let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("length".into()))?);
        let bytes = take(len as usize)?.to_vec();
        let hash = if n == 0 {
            let block = Block::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
            block
                .header
                .as_ref()
                .map(block_header_hash)
                .ok_or_else(|| bad("block 0 has no header".into()))?
        } else {
            continues(&bytes, n, &last_hash).map_err(bad)?
        };
        last_hash = hash;
        blocks.push((bytes, hash));
    }
    Ok(blocks)
}
