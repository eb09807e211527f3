//! How the ledger lays out one sled tree. Every record kind has a one-byte prefix, so that one
//! atomic batch can hold a whole block's changes.
//!
//! - `b` ‖ number (8 bytes BE) → the block's location in the block files (see `mercato-blockfile`)
//! - `x` ‖ header hash → number (8 bytes BE)
//! - `u` ‖ txid (32 bytes) → number (8) ‖ index (8) ‖ code (1): a txid's entry, keyed by the
//!   bytes its 64 hex digits spell. (`t` ‖ txid text: the same entry as ledgers written before
//!   keyed it, and as any txid that is not 64 lowercase hex digits would be; validation indexes
//!   none such.)
//! - `s` ‖ namespace ‖ 0x00 ‖ key → block (8) ‖ tx (8) ‖ value
//! - `h` ‖ namespace ‖ 0x00 ‖ key length (4 BE) ‖ key ‖ block (8) ‖ tx (8) → empty: a version
//!   of the key that a later one superseded, or a deletion. The live version is the one in the
//!   key's `s` record, so a key's history is its `h` records followed by that.
//! - `p` → the savepoint: number (8) ‖ hash (32)
//!
//! Namespaces never contain 0x00 (chaincode names are checked), so the first 0x00 after the
//! namespace ends it even though keys may contain 0x00 (composite keys do). The history key
//! carries the key's length so that the entries of key `a` are not mixed with those of `ab`.

use super::{TxLocation, Version, VersionedValue};
use crate::error::{Error, Result};

pub const BLOCK: u8 = b'b';
pub const BLOCK_HASH: u8 = b'x';
pub const TXID: u8 = b'u';
pub const TXID_TEXT: u8 = b't';
pub const STATE: u8 = b's';
pub const HISTORY: u8 = b'h';
pub const SAVEPOINT: &[u8] = b"p";

pub fn block(number: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(BLOCK);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

pub fn block_hash(hash: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + hash.len());
    k.push(BLOCK_HASH);
    k.extend_from_slice(hash);
    k
}

/// The key of a txid's entry: by its bytes when it is 64 lowercase hex digits (as every txid
/// validation indexes is), else by its text.
#[cfg(test)]
pub fn txid(txid: &str) -> Vec<u8> {
    match txid_bytes(txid) {
        Some(bytes) => txid_key(&bytes),
        None => txid_text(txid),
    }
}

/// The key of the entry of the txid whose hex spells `bytes`.
pub fn txid_key(bytes: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(TXID);
    k.extend_from_slice(bytes);
    k
}

/// The key a txid's entry has by its text (ledgers written before entries were keyed by bytes).
pub fn txid_text(txid: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + txid.len());
    k.push(TXID_TEXT);
    k.extend_from_slice(txid.as_bytes());
    k
}

/// The 32 bytes that 64 lowercase hex digits spell; `None` for anything else (an uppercase txid
/// is another txid, as it always was).
pub fn txid_bytes(txid: &str) -> Option<[u8; 32]> {
    if txid.len() != 64 || txid.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(txid, &mut out).ok()?;
    Some(out)
}

/// The prefix of every state key of a namespace.
pub fn state_prefix(namespace: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + namespace.len());
    k.push(STATE);
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k
}

pub fn state(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = state_prefix(namespace);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Splits a state record key into namespace and key.
pub fn parse_state(k: &[u8]) -> Result<(String, String)> {
    let rest = k
        .strip_prefix(&[STATE])
        .ok_or_else(|| Error::Corrupt("state key without prefix".into()))?;
    let sep = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::Corrupt("state key without namespace end".into()))?;
    let ns = std::str::from_utf8(&rest[..sep])
        .map_err(|_| Error::Corrupt("namespace not UTF-8".into()))?;
    let key = std::str::from_utf8(&rest[sep + 1..])
        .map_err(|_| Error::Corrupt("key not UTF-8".into()))?;
    Ok((ns.to_owned(), key.to_owned()))
}

pub fn history_prefix(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + namespace.len() + key.len());
    k.push(HISTORY);
    k.extend_from_slice(namespace.as_bytes());
    k.push(0);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn history(namespace: &str, key: &str, version: Version) -> Vec<u8> {
    let mut k = history_prefix(namespace, key);
    k.extend_from_slice(&version.block.to_be_bytes());
    k.extend_from_slice(&version.tx.to_be_bytes());
    k
}

pub fn parse_history_version(k: &[u8]) -> Result<Version> {
    let n = k.len();
    if n < 16 {
        return Err(Error::Corrupt("history key too short".into()));
    }
    Ok(Version {
        block: u64_at(k, n - 16)?,
        tx: u64_at(k, n - 8)?,
    })
}

pub fn versioned_value(value: &[u8], version: Version) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + value.len());
    v.extend_from_slice(&version.block.to_be_bytes());
    v.extend_from_slice(&version.tx.to_be_bytes());
    v.extend_from_slice(value);
    v
}

pub fn parse_versioned_value(v: &[u8]) -> Result<VersionedValue> {
    Ok(VersionedValue {
        version: parse_version(v)?,
        value: v[16..].to_vec(),
    })
}

/// The version at the head of a stored state value, without copying the value.
pub fn parse_version(v: &[u8]) -> Result<Version> {
    if v.len() < 16 {
        return Err(Error::Corrupt("state value too short".into()));
    }
    Ok(Version {
        block: u64_at(v, 0)?,
        tx: u64_at(v, 8)?,
    })
}

pub fn tx_location(loc: &TxLocation) -> [u8; 17] {
    let mut v = [0u8; 17];
    v[..8].copy_from_slice(&loc.block.to_be_bytes());
    v[8..16].copy_from_slice(&loc.tx.to_be_bytes());
    v[16] = loc.code;
    v
}

pub fn parse_tx_location(v: &[u8]) -> Result<TxLocation> {
    match v {
        [.., code] if v.len() == 17 => Ok(TxLocation {
            block: u64_at(v, 0)?,
            tx: u64_at(v, 8)?,
            code: *code,
        }),
        _ => Err(Error::Corrupt(format!("tx location of {} bytes", v.len()))),
    }
}

pub fn savepoint(number: u64, hash: &[u8; 32]) -> [u8; 40] {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&number.to_be_bytes());
    v[8..].copy_from_slice(hash);
    v
}

pub fn parse_savepoint(v: &[u8]) -> Result<super::Savepoint> {
    if v.len() != 40 {
        return Err(Error::Corrupt(format!("savepoint of {} bytes", v.len())));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[8..]);
    Ok(super::Savepoint {
        number: u64_at(v, 0)?,
        hash,
    })
}

pub fn u64_at(bytes: &[u8], at: usize) -> Result<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt("truncated number".into()))
}
