//! The orderer's chain of blocks: the blocks themselves in append-only block files
//! ([`mercato_blockfile`]), and in one sled tree where each block is, the height, the last hash,
//! and what Raft's state machine records beside them (the last applied log id and the cluster
//! membership). One atomic batch of that tree holds a whole apply (or a whole snapshot install),
//! and a block reaches its file before the batch that indexes it: after a crash the chain is
//! never ahead of or behind what Raft believes it applied.

use std::path::Path;
use std::sync::Arc;

use mercato_blockfile::{BlockFiles, BlockLocation};

use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use prost::Message;
use tokio::sync::watch;

use crate::error::{Error, Result};

pub(crate) const HEIGHT: &[u8] = b"m/height";
pub(crate) const LAST_HASH: &[u8] = b"m/last_hash";
/// How the chain is stored; absent in a ledger that kept its blocks inside sled.
const FORMAT: &[u8] = b"m/format";
const FORMAT_BLOCK_FILES: &[u8] = b"block-files-v1";
/// Key prefix of blocks: `b` ‖ number (big-endian) → where the block is in the block files.
const BLOCK: u8 = b'b';

pub(crate) fn block_key(number: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = BLOCK;
    k[1..].copy_from_slice(&number.to_be_bytes());
    k
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

fn files(e: mercato_blockfile::Error) -> Error {
    Error::Storage(e.to_string())
}

/// The chain: blocks by number, the height and the last block's header hash.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) tree: sled::Tree,
    pub(crate) db: sled::Db,
    blocks: Arc<BlockFiles>,
    height: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("height", &self.height())
            .finish()
    }
}

impl Ledger {
    /// Opens the chain indexed in `db` with its blocks in files under `blocks_dir`, starting it
    /// with `genesis` if it is empty; an existing chain must start with that same block.
    pub fn open(db: &sled::Db, blocks_dir: &Path, genesis: &Block) -> Result<Self> {
        let tree = db.open_tree("chain").map_err(storage)?;
        let header = genesis
            .header
            .as_ref()
            .ok_or_else(|| Error::Config("the genesis block has no header".into()))?;
        if header.number != 0 {
            return Err(Error::Config(format!(
                "the genesis block is block 0, not {}",
                header.number
            )));
        }
        let hash = block_header_hash(header);
        let height = read_u64(&tree, HEIGHT)?;
        if height.is_some()
            && tree.get(FORMAT).map_err(storage)?.as_deref() != Some(FORMAT_BLOCK_FILES)
        {
            return Err(Error::Storage(
                "this ledger keeps its blocks inside sled (written by an older Mercato orderer): \
                 this version cannot join its cluster (its snapshots and block fetching differ); \
                 start the ordering service anew, every node with this version"
                    .into(),
            ));
        }
        let last =
            match height.map(|h| h.saturating_sub(1)) {
                Some(n) => Some(location(&tree, n)?.ok_or_else(|| {
                    Error::Storage(format!("the last block, {n}, is not indexed"))
                })?),
                None => None,
            };
        let blocks = Arc::new(BlockFiles::open(blocks_dir, last).map_err(files)?);
        let ledger = Ledger {
            tree,
            db: db.clone(),
            blocks,
            height: Arc::new(watch::channel(height.unwrap_or(0)).0),
        };
        match ledger.block(0)? {
            Some(stored) => {
                let stored = Block::decode(stored.as_slice())
                    .map_err(|e| Error::Storage(format!("block 0 does not decode: {e}")))?;
                if stored.header.as_ref().map(block_header_hash) != Some(hash) {
                    return Err(Error::Config(
                        "this ledger was started from another genesis block".into(),
                    ));
                }
            }
            None => {
                let mut batch = sled::Batch::default();
                batch.insert(FORMAT, FORMAT_BLOCK_FILES);
                ledger.stage(&mut batch, 0, &[(genesis.encode_to_vec(), hash)])?;
                ledger.commit(batch, 1)?;
            }
        }
        Ok(ledger)
    }

    /// The number of blocks.
    pub fn height(&self) -> u64 {
        *self.height.borrow()
    }

    /// Tells when the height changes.
    pub fn watch_height(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    /// The header hash of the last block.
    pub fn last_hash(&self) -> Result<[u8; 32]> {
        let v = self
            .tree
            .get(LAST_HASH)
            .map_err(storage)?
            .ok_or_else(|| Error::Storage("the chain has no last hash".into()))?;
        v.as_ref()
            .try_into()
            .map_err(|_| Error::Storage("the last hash is not 32 bytes".into()))
    }

    /// A block's bytes.
    pub fn block(&self, number: u64) -> Result<Option<Vec<u8>>> {
        match location(&self.tree, number)? {
            Some(at) => self.blocks.read(at).map(Some).map_err(files),
            None => Ok(None),
        }
    }

    /// Appends blocks (already checked to continue the chain at `first`) to the block files,
    /// and stages indexing them into `batch`: they are part of the chain once it commits.
    pub(crate) fn stage(
        &self,
        batch: &mut sled::Batch,
        first: u64,
        blocks: &[(Vec<u8>, [u8; 32])],
    ) -> Result<()> {
        let appended = blocks
            .iter()
            .map(|(bytes, hash)| Ok((self.append_unindexed(bytes)?, *hash)))
            .collect::<Result<Vec<_>>>()?;
        if let Some((_, hash)) = appended.last() {
            index(batch, first, &appended, first + appended.len() as u64, hash);
        }
        Ok(())
    }

    /// Applies a staged batch durably and publishes the height it leaves the chain at.
    pub(crate) fn commit(&self, batch: sled::Batch, height: u64) -> Result<()> {
        self.tree.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        self.height.send_replace(height);
        Ok(())
    }

    /// Appends a block to the files without indexing it: it is part of the chain only once
    /// [`Ledger::settle`] indexes it (a crash before leaves bytes the next open cuts off).
    pub(crate) fn append_unindexed(&self, bytes: &[u8]) -> Result<BlockLocation> {
        self.blocks.append(bytes).map_err(files)
    }

    /// Makes the chain `height` blocks long, the last with header hash `last_hash`, in one batch
    /// with `extra` entries: blocks `first..` are the `appended` ones (see
    /// [`Ledger::append_unindexed`]), and any block beyond `height` is dropped from the index
    /// (its bytes stay in the files, dead). The caller has checked that the blocks chain.
    pub(crate) fn settle(
        &self,
        extra: sled::Batch,
        first: u64,
        appended: &[(BlockLocation, [u8; 32])],
        height: u64,
        last_hash: &[u8; 32],
    ) -> Result<()> {
        if height == 0 || first + appended.len() as u64 != height || first > self.height() {
            return Err(Error::Storage(format!(
                "settling a chain of {height} blocks from block {first} with {} appended, over \
                 one of {}",
                appended.len(),
                self.height()
            )));
        }
        let mut batch = extra;
        for n in height..self.height() {
            batch.remove(&block_key(n));
        }
        index(&mut batch, first, appended, height, last_hash);
        self.commit(batch, height)
    }
}

/// Stages indexing `appended` as blocks `first..`, and a chain `height` long ending at
/// `last_hash`.
fn index(
    batch: &mut sled::Batch,
    first: u64,
    appended: &[(BlockLocation, [u8; 32])],
    height: u64,
    last_hash: &[u8; 32],
) {
    for (i, (at, _)) in appended.iter().enumerate() {
        batch.insert(&block_key(first + i as u64), &at.encode()[..]);
    }
    batch.insert(HEIGHT, &height.to_be_bytes());
    batch.insert(LAST_HASH, last_hash);
}

/// Where block `number` is stored.
fn location(tree: &sled::Tree, number: u64) -> Result<Option<BlockLocation>> {
    tree.get(block_key(number))
        .map_err(storage)?
        .map(|v| BlockLocation::decode(&v).map_err(files))
        .transpose()
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>> {
    match tree.get(key).map_err(storage)? {
        None => Ok(None),
        Some(v) => v
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map(Some)
            .map_err(|_| Error::Storage(format!("{} is not a u64", String::from_utf8_lossy(key)))),
    }
}
