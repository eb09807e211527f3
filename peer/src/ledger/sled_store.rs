//! The ledger on sled: one tree, one atomic batch per block, flushed before the commit returns.

use std::collections::BTreeMap;
use std::path::Path;

use super::keys;
use super::{BlockCommit, LedgerStore, Savepoint, TxLocation, Version, VersionedValue};
use crate::error::{Error, Result};
use mercato_blockfile::{BlockFiles, BlockLocation};

/// A channel's ledger: blocks in append-only files, everything else (block index, state,
/// history, txid index, savepoint) in one sled tree.
pub struct SledLedgerStore {
    db: sled::Db,
    tree: sled::Tree,
    blocks: BlockFiles,
    /// Whether each commit waits for the data to reach the disk (the default). Off only for
    /// benchmarks that measure the CPU cost of a batch.
    durable: bool,
    /// Whether the ledger holds txid entries keyed by their text (written before entries were
    /// keyed by their bytes): a lookup that misses by bytes then tries the text too.
    text_txids: bool,
}

impl std::fmt::Debug for SledLedgerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLedgerStore").finish_non_exhaustive()
    }
}

impl SledLedgerStore {
    /// Opens (or creates) the ledger of `channel` under `dir`: the index in `dir/index`, the
    /// blocks in `dir/blocks/<channel>`.
    pub fn open(dir: &Path, channel: &str) -> Result<Self> {
        if !crate::rwset::valid_namespace(channel) {
            return Err(Error::Storage(format!("invalid channel name {channel:?}")));
        }
        let db = sled::Config::new()
            .path(dir.join("index"))
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let tree = db.open_tree(format!("ledger/{channel}"))?;
        let last = match tree.get(keys::SAVEPOINT)? {
            Some(sp) => {
                let sp = keys::parse_savepoint(&sp)?;
                let loc = tree.get(keys::block(sp.number))?.ok_or_else(|| {
                    Error::Corrupt(format!("savepoint block {} is not indexed", sp.number))
                })?;
                Some(BlockLocation::decode(&loc)?)
            }
            None => None,
        };
        let blocks = BlockFiles::open(&dir.join("blocks").join(channel), last)?;
        let text_txids = tree
            .scan_prefix([keys::TXID_TEXT])
            .next()
            .transpose()?
            .is_some();
        Ok(SledLedgerStore {
            db,
            tree,
            blocks,
            durable: true,
            text_txids,
        })
    }

    /// Whether commits are flushed to disk before they return.
    pub fn set_durable(&mut self, durable: bool) {
        self.durable = durable;
    }

    /// Up to `limit` stored state entries of `[start, end)` of a namespace (an empty `end`: to
    /// its last), each value read by `parse`.
    fn scan<T>(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
        parse: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<Vec<(String, T)>> {
        let from = keys::state(namespace, start);
        let iter = if end.is_empty() {
            let mut upper = keys::state_prefix(namespace);
            // The namespace's 0x00 terminator becomes 0x01: just past every key of it.
            if let Some(last) = upper.last_mut() {
                *last = 1;
            }
            self.tree.range(from..upper)
        } else {
            self.tree.range(from..keys::state(namespace, end))
        };
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item?;
            let (_, key) = keys::parse_state(&k)?;
            out.push((key, parse(&v)?));
        }
        Ok(out)
    }
}

impl LedgerStore for SledLedgerStore {
    fn savepoint(&self) -> Result<Option<Savepoint>> {
        self.tree
            .get(keys::SAVEPOINT)?
            .map(|v| keys::parse_savepoint(&v))
            .transpose()
    }

    fn commit(&self, c: &BlockCommit) -> Result<()> {
        // The block reaches its file first; the batch that indexes it is what commits it.
        let location = self.blocks.append(&c.block_bytes)?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::block(c.number), &location.encode()[..]);
        batch.insert(keys::block_hash(&c.hash), &c.number.to_be_bytes()[..]);
        for (txid, loc) in &c.txids {
            batch.insert(keys::txid(txid), &keys::tx_location(loc)[..]);
        }
        // A key's live version is kept in its state entry; the history index gets an entry when
        // a version is superseded or deleted. A key written once (most keys) costs one entry.
        // The versions live after the block's earlier updates, by namespace and key (`None`:
        // deleted).
        let mut live: BTreeMap<(&str, &str), Option<Version>> = BTreeMap::new();
        for u in &c.updates {
            let key = keys::state(&u.namespace, &u.key);
            let name = (u.namespace.as_str(), u.key.as_str());
            let superseded = match live.get(&name) {
                Some(v) => *v,
                None => self
                    .tree
                    .get(&key)?
                    .map(|v| keys::parse_version(&v))
                    .transpose()?,
            };
            if let Some(old) = superseded {
                batch.insert(keys::history(&u.namespace, &u.key, old), &[][..]);
            }
            match &u.value {
                Some(v) => batch.insert(key, keys::versioned_value(v, u.version)),
                None => {
                    batch.remove(key);
                    batch.insert(keys::history(&u.namespace, &u.key, u.version), &[][..]);
                }
            }
            live.insert(name, u.value.as_ref().map(|_| u.version));
        }
        batch.insert(keys::SAVEPOINT, &keys::savepoint(c.number, &c.hash)[..]);
        self.tree.apply_batch(batch)?;
        if self.durable {
            self.db.flush()?;
        }
        Ok(())
    }

    fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>> {
        self.tree
            .get(keys::state(namespace, key))?
            .map(|v| keys::parse_versioned_value(&v))
            .transpose()
    }

    fn state_range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>> {
        self.scan(namespace, start, end, limit, keys::parse_versioned_value)
    }

    fn state_range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version)>> {
        self.scan(namespace, start, end, limit, keys::parse_version)
    }

    fn block(&self, number: u64) -> Result<Option<Vec<u8>>> {
        match self.tree.get(keys::block(number))? {
            Some(loc) => Ok(Some(self.blocks.read(BlockLocation::decode(&loc)?)?)),
            None => Ok(None),
        }
    }

    fn block_number_by_hash(&self, hash: &[u8]) -> Result<Option<u64>> {
        self.tree
            .get(keys::block_hash(hash))?
            .map(|v| keys::u64_at(&v, 0))
            .transpose()
    }

    fn tx_location(&self, txid: &str) -> Result<Option<TxLocation>> {
        let found = match keys::txid_bytes(txid) {
            Some(bytes) => match self.tree.get(keys::txid_key(&bytes))? {
                None if self.text_txids => self.tree.get(keys::txid_text(txid))?,
                hit => hit,
            },
            None => self.tree.get(keys::txid_text(txid))?,
        };
        found.map(|v| keys::parse_tx_location(&v)).transpose()
    }

    fn history(
        &self,
        namespace: &str,
        key: &str,
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<Version>> {
        let prefix = keys::history_prefix(namespace, key);
        let iter = match after {
            // Just past `after`: its key with one more byte sorts right after it.
            Some(a) => {
                let mut from = keys::history(namespace, key, a);
                from.push(0);
                self.tree.range(from..)
            }
            None => self.tree.scan_prefix(&prefix),
        };
        // An error is kept, to be returned below.
        let mut versions = iter
            .take_while(|item| !matches!(item, Ok((k, _)) if !k.starts_with(&prefix)))
            .take(limit)
            .map(|item| {
                let (k, _) = item?;
                keys::parse_history_version(&k)
            })
            .collect::<Result<Vec<Version>>>()?;
        // The live version, newer than every indexed one, comes last. Ledgers written before
        // versions were indexed only once superseded also index the live one: it is not repeated.
        if versions.len() < limit
            && let Some(v) = self.tree.get(keys::state(namespace, key))?
        {
            let live = keys::parse_version(&v)?;
            if after.is_none_or(|a| live > a) && versions.last() != Some(&live) {
                versions.push(live);
            }
        }
        Ok(versions)
    }

    fn state_snapshot(&self) -> Result<Vec<(String, String, VersionedValue)>> {
        self.tree
            .scan_prefix([keys::STATE])
            .map(|item| {
                let (k, v) = item.map_err(|e| Error::Storage(e.to_string()))?;
                let (ns, key) = keys::parse_state(&k)?;
                Ok((ns, key, keys::parse_versioned_value(&v)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::StateUpdate;

    /// A txid committed before a restart is found after it (and would be refused as a
    /// duplicate).
    #[test]
    fn txids_indexed_before_a_reopen_are_found_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let txid = |i: u64| format!("{i:064x}");
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            for number in 0..3u64 {
                store
                    .commit(&BlockCommit {
                        number,
                        hash: [number as u8; 32],
                        block_bytes: vec![number as u8],
                        updates: vec![],
                        txids: (0..50)
                            .map(|tx| {
                                let loc = TxLocation {
                                    block: number,
                                    tx,
                                    code: 0,
                                };
                                (txid(number * 50 + tx), loc)
                            })
                            .collect(),
                    })
                    .unwrap();
            }
        }
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        for i in 0..150 {
            let loc = store.tx_location(&txid(i)).unwrap();
            assert_eq!(loc.map(|l| (l.block, l.tx)), Some((i / 50, i % 50)));
        }
        assert_eq!(store.tx_location(&txid(150)).unwrap(), None);
    }

    /// Ledgers written before txid entries were keyed by their bytes keep finding the entries
    /// keyed by text, next to the new ones; a txid that is not hex is indexed and found too.
    #[test]
    fn txid_entries_keyed_by_text_are_found_beside_those_keyed_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let old = format!("{:064x}", 7);
        let loc = |block, tx| TxLocation { block, tx, code: 0 };
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(!store.text_txids);
            store
                .tree
                .insert(keys::txid_text(&old), &keys::tx_location(&loc(0, 3))[..])
                .unwrap();
        }
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        assert!(store.text_txids);
        let new = format!("{:064x}", 0xabcd);
        store
            .commit(&BlockCommit {
                number: 0,
                hash: [0; 32],
                block_bytes: vec![0],
                updates: vec![],
                txids: vec![(new.clone(), loc(0, 1)), ("not hex".into(), loc(0, 2))],
            })
            .unwrap();
        assert_eq!(store.tx_location(&old).unwrap(), Some(loc(0, 3)));
        assert_eq!(store.tx_location(&new).unwrap(), Some(loc(0, 1)));
        assert_eq!(store.tx_location("not hex").unwrap(), Some(loc(0, 2)));
        assert_eq!(store.tx_location(&new.to_uppercase()).unwrap(), None);
        assert!(store.tree.get(keys::txid_text(&new)).unwrap().is_none());
        assert_eq!(keys::txid(&new).len(), 33, "keyed by its 32 bytes");
    }

    #[test]
    fn a_txid_key_holds_the_bytes_its_hex_spells() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = hex::encode(bytes);
        assert_eq!(keys::txid_bytes(&text), Some(bytes));
        assert_eq!(keys::txid(&text)[1..], bytes);
        for odd in [
            &text[1..],
            &text.to_uppercase(),
            &format!("{}g", &text[1..]),
            "",
        ] {
            assert_eq!(keys::txid_bytes(odd), None, "{odd:?}");
            assert_eq!(keys::txid(odd), keys::txid_text(odd));
        }
    }

    /// Ledgers written before a version was indexed only once superseded also hold a history
    /// record of each live version; their histories do not repeat it.
    #[test]
    fn an_indexed_live_version_is_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        let v = |block, tx| Version { block, tx };
        for (number, version) in [(0, v(0, 0)), (1, v(1, 0))] {
            store
                .commit(&BlockCommit {
                    number,
                    hash: [number as u8; 32],
                    block_bytes: vec![number as u8],
                    updates: vec![StateUpdate {
                        namespace: "cc".into(),
                        key: "k".into(),
                        value: Some(b"x".to_vec()),
                        version,
                    }],
                    txids: vec![],
                })
                .unwrap();
        }
        store
            .tree
            .insert(keys::history("cc", "k", v(1, 0)), &[][..])
            .unwrap();
        assert_eq!(
            store.history("cc", "k", None, 10).unwrap(),
            vec![v(0, 0), v(1, 0)]
        );
        assert_eq!(store.history("cc", "k", None, 1).unwrap(), vec![v(0, 0)]);
        assert_eq!(
            store.history("cc", "k", Some(v(0, 0)), 10).unwrap(),
            vec![v(1, 0)]
        );
        assert!(
            store
                .history("cc", "k", Some(v(1, 0)), 10)
                .unwrap()
                .is_empty()
        );
    }
}
