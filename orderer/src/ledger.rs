//! The orderer's chain of blocks in sled, with what Raft's state machine records beside it (the
//! last applied log id and the cluster membership), all in one tree so that one atomic batch
//! holds a whole apply: after a crash the chain is never ahead of or behind what Raft believes
//! it applied.

use std::sync::Arc;

use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use prost::Message;
use tokio::sync::watch;

use crate::error::{Error, Result};

const HEIGHT: &[u8] = b"m/height";
const LAST_HASH: &[u8] = b"m/last_hash";
/// Key prefix of blocks: `b` ‖ number (big-endian).
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

/// The chain: blocks by number, the height and the last block's header hash.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) tree: sled::Tree,
    pub(crate) db: sled::Db,
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
    /// Opens the chain in `db`, starting it with `genesis` if it is empty; an existing chain
    /// must start with that same block.
    pub fn open(db: &sled::Db, genesis: &Block) -> Result<Self> {
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
        match tree.get(block_key(0)).map_err(storage)? {
            Some(stored) => {
                let stored = Block::decode(stored.as_ref())
                    .map_err(|e| Error::Storage(format!("block 0 does not decode: {e}")))?;
                if stored.header.as_ref().map(block_header_hash) != Some(hash) {
                    return Err(Error::Config(
                        "this ledger was started from another genesis block".into(),
                    ));
                }
            }
            None => {
                let mut batch = sled::Batch::default();
                batch.insert(&block_key(0), genesis.encode_to_vec());
                batch.insert(HEIGHT, &1u64.to_be_bytes());
                batch.insert(LAST_HASH, &hash);
                tree.apply_batch(batch).map_err(storage)?;
                db.flush().map_err(storage)?;
            }
        }
        let height = read_u64(&tree, HEIGHT)?.unwrap_or(1);
        Ok(Ledger {
            tree,
            db: db.clone(),
            height: Arc::new(watch::channel(height).0),
        })
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
        Ok(self
            .tree
            .get(block_key(number))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    /// Stages appending blocks (already checked to continue the chain) into `batch`.
    pub(crate) fn stage(batch: &mut sled::Batch, first: u64, blocks: &[(Vec<u8>, [u8; 32])]) {
        for (i, (bytes, _)) in blocks.iter().enumerate() {
            batch.insert(&block_key(first + i as u64), bytes.as_slice());
        }
        if let Some((_, hash)) = blocks.last() {
            batch.insert(HEIGHT, &(first + blocks.len() as u64).to_be_bytes());
            batch.insert(LAST_HASH, hash);
        }
    }

    /// Applies a staged batch durably and publishes the new height.
    pub(crate) fn commit(&self, batch: sled::Batch) -> Result<()> {
        self.tree.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        let height = read_u64(&self.tree, HEIGHT)?.unwrap_or(1);
        self.height.send_replace(height);
        Ok(())
    }

    /// Replaces the whole chain (installing a snapshot), in one batch with `extra` entries.
    pub(crate) fn replace(&self, blocks: &[(Vec<u8>, [u8; 32])], extra: sled::Batch) -> Result<()> {
        // Blocks beyond the new chain must go too.
        let mut batch = extra;
        let new_height = blocks.len() as u64;
        for item in self.tree.scan_prefix([BLOCK]) {
            let (k, _) = item.map_err(storage)?;
            let n = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if n.is_some_and(|n| n >= new_height) {
                batch.remove(k);
            }
        }
        Self::stage(&mut batch, 0, blocks);
        self.commit(batch)
    }
}

pub(crate) fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>> {
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
