//! The ledger in memory: for tests, and for checking a rebuild against the stored state.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{BlockCommit, LedgerStore, Savepoint, TxLocation, Version, VersionedValue};
use crate::error::Result;

#[derive(Debug, Default)]
struct Inner {
    savepoint: Option<Savepoint>,
    blocks: BTreeMap<u64, Vec<u8>>,
    hashes: BTreeMap<[u8; 32], u64>,
    txids: BTreeMap<String, TxLocation>,
    state: BTreeMap<(String, String), VersionedValue>,
    history: BTreeMap<(String, String), Vec<Version>>,
}

/// A ledger held in memory; lost when dropped.
#[derive(Debug, Default)]
pub struct MemLedgerStore {
    inner: RwLock<Inner>,
}

impl MemLedgerStore {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` entries of `[start, end)` of a namespace (an empty `end`: to its last),
    /// each as `take` makes it.
    fn scan<T>(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
        take: impl Fn(&VersionedValue) -> T,
    ) -> Vec<(String, T)> {
        let inner = self.read();
        let from = (namespace.to_owned(), start.to_owned());
        inner
            .state
            .range(from..)
            .take_while(|((ns, k), _)| ns == namespace && (end.is_empty() || k.as_str() < end))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), take(v)))
            .collect()
    }
}

impl LedgerStore for MemLedgerStore {
    fn savepoint(&self) -> Result<Option<Savepoint>> {
        Ok(self.read().savepoint.clone())
    }

    fn commit(&self, c: &BlockCommit) -> Result<()> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.blocks.insert(c.number, c.block_bytes.clone());
        inner.hashes.insert(c.hash, c.number);
        for (txid, loc) in &c.txids {
            inner.txids.insert(txid.clone(), *loc);
        }
        for u in &c.updates {
            let k = (u.namespace.clone(), u.key.clone());
            match &u.value {
                Some(v) => {
                    inner.state.insert(
                        k.clone(),
                        VersionedValue {
                            value: v.clone(),
                            version: u.version,
                        },
                    );
                }
                None => {
                    inner.state.remove(&k);
                }
            }
            inner.history.entry(k).or_default().push(u.version);
        }
        inner.savepoint = Some(Savepoint {
            number: c.number,
            hash: c.hash,
        });
        Ok(())
    }

    fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>> {
        Ok(self
            .read()
            .state
            .get(&(namespace.to_owned(), key.to_owned()))
            .cloned())
    }

    fn state_range(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>> {
        Ok(self.scan(namespace, start, end, limit, VersionedValue::clone))
    }

    fn state_range_versions(
        &self,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, Version)>> {
        Ok(self.scan(namespace, start, end, limit, |v| v.version))
    }

    fn block(&self, number: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.read().blocks.get(&number).cloned())
    }

    fn block_number_by_hash(&self, hash: &[u8]) -> Result<Option<u64>> {
        let Ok(hash) = <[u8; 32]>::try_from(hash) else {
            return Ok(None);
        };
        Ok(self.read().hashes.get(&hash).copied())
    }

    fn tx_location(&self, txid: &str) -> Result<Option<TxLocation>> {
        Ok(self.read().txids.get(txid).copied())
    }

    fn history(
        &self,
        namespace: &str,
        key: &str,
        after: Option<Version>,
        limit: usize,
    ) -> Result<Vec<Version>> {
        Ok(self
            .read()
            .history
            .get(&(namespace.to_owned(), key.to_owned()))
            .map(|h| {
                h.iter()
                    .filter(|v| after.is_none_or(|a| **v > a))
                    .take(limit)
                    .copied()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn state_snapshot(&self) -> Result<Vec<(String, String, VersionedValue)>> {
        Ok(self
            .read()
            .state
            .iter()
            .map(|((ns, k), v)| (ns.clone(), k.clone(), v.clone()))
            .collect())
    }
}
