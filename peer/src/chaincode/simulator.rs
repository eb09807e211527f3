//! Simulation: a chaincode runs against the current world state without writing it; what it read
//! (with versions), wrote, scanned and added becomes the transaction's read/write set.
//!
//! A transaction reads its own writes. Everything is kept in `BTreeMap`s and emitted sorted by
//! namespace and key (ranges in call order), so two peers given the same state and proposal
//! produce byte-identical read/write sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_chaincode::abi::HostResponse;

use crate::ledger::{LedgerStore, Version, VersionedValue};
use crate::rwset::{
    KeyDelta, KeyRead, KeyWrite, MAX_ENTRIES, MAX_KEY_LEN, NsRwSet, RangeRead, TxRwSet,
};

/// The most keys one range page may return.
pub const MAX_PAGE: u32 = 1_000;
/// About how many bytes of committed values one range page holds: a page ends early, after the
/// value that crosses it, so that large values cost memory in proportion to this, not to
/// [`MAX_PAGE`]. It is also the sandbox's default result limit.
pub const PAGE_BYTES: usize = 4 << 20;
/// How many state entries a range page reads from the store at a time.
const RANGE_CHUNK: usize = 32;

#[derive(Debug, Default)]
struct NsState {
    /// The version seen by the first read of each key (`None`: absent).
    reads: BTreeMap<String, Option<Version>>,
    /// Own writes (`None`: deleted).
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Own additions, per key in call order.
    deltas: BTreeMap<String, Vec<(i64, Option<i64>)>>,
    ranges: Vec<RangeRead>,
}

/// One transaction's simulation, shared by the chaincodes it calls.
pub struct Simulation {
    store: Arc<dyn LedgerStore>,
    namespaces: BTreeMap<String, NsState>,
    event: Option<(String, String, Vec<u8>)>,
    entries: usize,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// A failure the chaincode sees as an error response from the host.
type HostResult<T> = Result<T, String>;

impl Simulation {
    /// A simulation over the committed state of `store`.
    pub fn new(store: Arc<dyn LedgerStore>) -> Self {
        Simulation {
            store,
            namespaces: BTreeMap::new(),
            event: None,
            entries: 0,
        }
    }

    fn ns(&mut self, ns: &str) -> &mut NsState {
        self.namespaces.entry(ns.to_owned()).or_default()
    }

    fn count(&mut self) -> HostResult<()> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(format!(
                "more than {MAX_ENTRIES} reads and writes in one transaction"
            ));
        }
        Ok(())
    }

    fn check_key(key: &str) -> HostResult<()> {
        if key.is_empty() {
            return Err("empty key".into());
        }
        if key.len() > MAX_KEY_LEN {
            return Err(format!(
                "key of {} bytes, over the limit of {MAX_KEY_LEN}",
                key.len()
            ));
        }
        Ok(())
    }

    fn committed(&self, ns: &str, key: &str) -> HostResult<Option<crate::ledger::VersionedValue>> {
        self.store.state(ns, key).map_err(|e| e.to_string())
    }

    /// A key's value as this transaction sees it: its own write, else the committed value plus
    /// its own additions. A read of the committed value is recorded with its version.
    pub fn get(&mut self, ns: &str, key: &str) -> HostResult<Option<Vec<u8>>> {
        Self::check_key(key)?;
        if let Some(w) = self.ns(ns).writes.get(key) {
            return Ok(w.clone());
        }
        let committed = self.committed(ns, key)?;
        if !self.ns(ns).reads.contains_key(key) {
            self.count()?;
            self.ns(ns)
                .reads
                .insert(key.to_owned(), committed.as_ref().map(|v| v.version));
        }
        let value = committed.map(|v| v.value);
        match self.ns(ns).deltas.get(key) {
            None => Ok(value),
            Some(deltas) => {
                let mut n = match &value {
                    None => 0,
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(|| format!("{key} does not hold a number"))?,
                };
                for (amount, _) in deltas {
                    n = n
                        .checked_add(*amount)
                        .ok_or_else(|| format!("{key} would overflow"))?;
                }
                Ok(Some(n.to_string().into_bytes()))
            }
        }
    }

    /// Writes a key (`None` deletes it).
    pub fn put(&mut self, ns: &str, key: &str, value: Option<Vec<u8>>) -> HostResult<()> {
        Self::check_key(key)?;
        if self.ns(ns).deltas.contains_key(key) {
            return Err(format!(
                "{key} was added to in this transaction and cannot also be written"
            ));
        }
        self.count()?;
        self.ns(ns).writes.insert(key.to_owned(), value);
        Ok(())
    }

    /// Adds to a numeric key at commit.
    pub fn add(
        &mut self,
        ns: &str,
        key: &str,
        amount: i64,
        lower_bound: Option<i64>,
    ) -> HostResult<()> {
        Self::check_key(key)?;
        if self.ns(ns).writes.contains_key(key) {
            return Err(format!(
                "{key} was written in this transaction and cannot also be added to"
            ));
        }
        self.count()?;
        self.ns(ns)
            .deltas
            .entry(key.to_owned())
            .or_default()
            .push((amount, lower_bound));
        Ok(())
    }

    /// One page of `[start, end)` from `bookmark` (or `start`), merged with the transaction's own
    /// writes. What the committed state returned is recorded for the phantom-read check.
    pub fn range(
        &mut self,
        ns: &str,
        start: &str,
        end: &str,
        limit: u32,
        bookmark: &str,
    ) -> HostResult<HostResponse> {
        let from = if bookmark.is_empty() { start } else { bookmark };
        if from < start || (!end.is_empty() && from > end) {
            return Err(format!("bookmark {bookmark:?} is outside the range"));
        }
        let (committed, limit) =
            committed_page(self.store.as_ref(), ns, from, end, limit.clamp(1, MAX_PAGE))
                .map_err(|e| e.to_string())?;
        self.count()?;
        let exhausted = committed.len() <= limit;
        // The committed keys bound what this page may cover: up to the last one fetched, or to
        // the end of the range when the committed state has no more.
        let upper: Option<String> = if exhausted {
            None
        } else {
            committed.last().map(|(k, _)| k.clone())
        };
        let mut merged: BTreeMap<String, Vec<u8>> = committed
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        let state = self.ns(ns);
        for (k, w) in state.writes.range(from.to_owned()..) {
            if (!end.is_empty() && k.as_str() >= end) || upper.as_ref().is_some_and(|u| k > u) {
                break;
            }
            match w {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        state.ranges.push(RangeRead {
            start: from.to_owned(),
            end: end.to_owned(),
            exhausted,
            reads: committed
                .iter()
                .map(|(k, v)| KeyRead {
                    key: k.clone(),
                    version: Some(v.version),
                })
                .collect(),
        });
        let mut entries: Vec<(String, Vec<u8>)> = merged.into_iter().collect();
        let bookmark = if entries.len() > limit {
            entries.truncate(limit + 1);
            entries.pop().map(|(k, _)| k).unwrap_or_default()
        } else if let Some(u) = upper {
            // More committed keys follow; the next page starts after the last one fetched here.
            let next = format!("{u}\u{0}");
            if entries.last().is_some_and(|(k, _)| *k == u) {
                entries.pop();
                u
            } else {
                next
            }
        } else {
            String::new()
        };
        Ok(HostResponse::Page { entries, bookmark })
    }

    /// Sets the transaction's event (the last one set wins).
    pub fn set_event(&mut self, ns: &str, name: &str, payload: Vec<u8>) -> HostResult<()> {
        if name.is_empty() {
            return Err("an event needs a name".into());
        }
        self.event = Some((ns.to_owned(), name.to_owned(), payload));
        Ok(())
    }

    /// The event set, as (chaincode, name, payload).
    pub fn event(&self) -> Option<&(String, String, Vec<u8>)> {
        self.event.as_ref()
    }

    /// The read/write set, sorted by namespace and key.
    pub fn rwset(&self) -> TxRwSet {
        TxRwSet {
            namespaces: self
                .namespaces
                .iter()
                .filter(|(_, s)| {
                    !(s.reads.is_empty()
                        && s.writes.is_empty()
                        && s.deltas.is_empty()
                        && s.ranges.is_empty())
                })
                .map(|(ns, s)| NsRwSet {
                    namespace: ns.clone(),
                    reads: s
                        .reads
                        .iter()
                        .map(|(k, v)| KeyRead {
                            key: k.clone(),
                            version: *v,
                        })
                        .collect(),
                    range_reads: s.ranges.clone(),
                    writes: s
                        .writes
                        .iter()
                        .map(|(k, v)| KeyWrite {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    deltas: s
                        .deltas
                        .iter()
                        .flat_map(|(k, ds)| {
                            ds.iter().map(move |(amount, lower_bound)| KeyDelta {
                                key: k.clone(),
                                amount: *amount,
                                lower_bound: *lower_bound,
                            })
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The committed entries a range page is built from, and the page's size: up to `limit`
/// entries, fewer once their values pass [`PAGE_BYTES`] (never fewer than one), followed by the
/// next entry when the range has more (which tells the page where it ends).
fn committed_page(
    store: &dyn LedgerStore,
    ns: &str,
    from: &str,
    end: &str,
    limit: u32,
) -> crate::error::Result<(Vec<(String, VersionedValue)>, usize)> {
    let mut page = limit as usize;
    let mut out: Vec<(String, VersionedValue)> = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = from.to_owned();
    loop {
        let want = (page + 1 - out.len()).min(RANGE_CHUNK);
        let rows = store.state_range(ns, &cursor, end, want)?;
        let got = rows.len();
        for row in rows {
            if out.len() > page {
                break;
            }
            if out.len() < page {
                bytes += row.0.len() + row.1.value.len();
                if bytes > PAGE_BYTES {
                    // This entry ends the page; the one after it, if any, is the look-ahead.
                    page = out.len() + 1;
                }
            }
            out.push(row);
        }
        if out.len() > page || got < want {
            return Ok((out, page));
        }
        // The smallest key after the last one read.
        cursor = format!(
            "{}\u{0}",
            out.last().map(|(k, _)| k.as_str()).unwrap_or_default()
        );
    }
}
