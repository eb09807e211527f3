//! The ledger: blocks, world state, history and txid indexes, and the savepoint, behind the
//! [`LedgerStore`] trait so that validation code never sees the storage engine.
//!
//! Everything one block changes is one [`BlockCommit`], applied atomically: after a crash the
//! state is exactly that of the last committed block, never ahead of or behind it.

mod keys;
mod mem;
mod sled_store;
mod txid_filter;

pub use mem::MemLedgerStore;
pub use sled_store::SledLedgerStore;

use crate::error::Result;
use mercato_proto::ValidationCode;
use sha2::{Digest, Sha256};

/// The block and transaction that last wrote a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// The block number.
    pub block: u64,
    /// The transaction's index in the block.
    pub tx: u64,
}

/// A state value with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    /// The value.
    pub value: Vec<u8>,
    /// Who wrote it.
    pub version: Version,
}

/// One key's new value (or deletion) in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateUpdate {
    /// The chaincode namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The new value; `None` deletes the key.
    pub value: Option<Vec<u8>>,
    /// The writing transaction.
    pub version: Version,
}

/// Where a transaction is and how it was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// The block number.
    pub block: u64,
    /// The index in the block.
    pub tx: u64,
    /// The validation code.
    pub code: u8,
}

/// The last committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Savepoint {
    /// The number of the last committed block.
    pub number: u64,
    /// Its header hash (the next block's `previous_hash`).
    pub hash: [u8; 32],
}

impl Savepoint {
    /// The number of the next block to commit.
    pub fn height(&self) -> u64 {
        self.number + 1
    }
}

/// Everything one block writes, applied as one atomic batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCommit {
    /// The block number.
    pub number: u64,
    /// The block's header hash.
    pub hash: [u8; 32],
    /// The encoded block, with its TRANSACTIONS_FILTER filled in.
    pub block_bytes: Vec<u8>,
    /// State changes of the valid transactions, in block order; the last one of a key wins.
    pub updates: Vec<StateUpdate>,
    /// Every transaction's txid, index and code (duplicates of an earlier txid are not indexed).
    pub txids: Vec<(String, TxLocation)>,
}

/// Storage of one channel's ledger. Implementations: [`SledLedgerStore`] (on disk) and
/// [`MemLedgerStore`] (tests and rebuild checks); one conformance suite runs against both.
pub trait LedgerStore: Send + Sync {
    /// The last committed block, or `None` for an empty ledger.
    fn savepoint(&self) -> Result<Option<Savepoint>>;
    /// Applies a block's changes atomically and durably, and moves the savepoint to it.
    fn commit(&self, commit: &BlockCommit) -> Result<()>;
    /// The current value of a key.
    fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>>;
    /// Keys in `[start, end)` of a namespace in key order (an empty `end` means no upper bound),
    /// at most `limit` of them.
    fn state_range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>>;
    /// The keys and versions of [`LedgerStore::state_range`], without their values: what the
    /// phantom-read check compares, in memory bounded by the keys whatever the values' sizes.
    fn state_range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version)>>;
    /// The encoded block with this number.
    fn block(&self, number: u64) -> Result<Option<Vec<u8>>>;
    /// The number of the block with this header hash.
    fn block_number_by_hash(&self, hash: &[u8]) -> Result<Option<u64>>;
    /// Where a transaction was committed.
    fn tx_location(&self, txid: &str) -> Result<Option<TxLocation>>;
    /// The versions that wrote a key, oldest first, after `after` when given, at most `limit`.
    fn history(
        &self,
        namespace: &str,
        key: &str,
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<Version>>;
    /// Every state entry in namespace and key order (for rebuild checks and audits).
    fn state_snapshot(&self) -> Result<Vec<(String, String, VersionedValue)>>;
}

/// The commit hash of a block (Fabric's COMMIT_HASH idea): SHA-256 over the previous block's
/// commit hash, the block number, every transaction's validation code and the block's state
/// updates in order. Two peers with the same commit hash at a block committed the same codes
/// and the same state changes in every block up to it.
///
/// The bytes hashed, all lengths and numbers big-endian:
/// `"mercato-commit-hash-v1" ‖ previous (32 bytes; zeros before block 0) ‖ number (u64) ‖
/// count of codes (u32) ‖ codes (a byte each) ‖` then per update `namespace length (u32) ‖
/// namespace ‖ key length (u32) ‖ key ‖` and `0x00` for a deletion or `0x01 ‖ value length
/// (u32) ‖ value`.
pub fn commit_hash(
    previous: &[u8; 32],
    number: u64,
    codes: &[ValidationCode],
    updates: &[StateUpdate],
) -> [u8; 32] {
    // Streamed into the hasher: the block's values are not copied once more.
    fn put(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(b"mercato-commit-hash-v1");
    h.update(previous);
    h.update(number.to_be_bytes());
    h.update((codes.len() as u32).to_be_bytes());
    let codes: Vec<u8> = codes.iter().map(|c| c.0).collect();
    h.update(&codes);
    for u in updates {
        put(&mut h, u.namespace.as_bytes());
        put(&mut h, u.key.as_bytes());
        match &u.value {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                put(&mut h, v);
            }
        }
    }
    h.finalize().into()
}
