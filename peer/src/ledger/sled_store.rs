//! The ledger on sled: one tree, one atomic batch per block, flushed before the commit returns.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::keys;
use super::txid_filter::{self, Saved, TxidFilter};
use super::{BlockCommit, LedgerStore, Savepoint, TxLocation, Version, VersionedValue};
use crate::error::{Error, Result};
use mercato_blockfile::{BlockFiles, BlockLocation};

/// The txid filter is saved after this many txids were added since it last was...
const FILTER_SAVE_TXIDS: u64 = 65_536;
/// ...or after this many blocks: what a reopen reads back from the block files is bounded.
const FILTER_SAVE_BLOCKS: u64 = 4_096;

/// A height to save the txid filter at and the header hash of the block below it.
type SaveAt = (u64, [u8; 32]);

/// A channel's ledger: blocks in append-only files, everything else (block index, state,
/// history, txid index, savepoint) in one sled tree.
pub struct SledLedgerStore {
    db: sled::Db,
    tree: sled::Tree,
    blocks: Arc<BlockFiles>,
    /// Whether each commit waits for the data to reach the disk (the default). Off only for
    /// benchmarks that measure the CPU cost of a batch.
    durable: bool,
    /// Whether the ledger holds txid entries keyed by their text (written before entries were
    /// keyed by their bytes): a lookup that misses by bytes then tries the text too.
    text_txids: bool,
    /// The txids indexed, as a Bloom filter: a txid it has not seen is not looked up.
    filter: Arc<TxidFilter>,
    /// Blocks and txids committed since the filter was last handed to `saver`.
    unsaved_blocks: AtomicU64,
    unsaved_txids: AtomicU64,
    /// After how many txids or blocks a snapshot of the filter is saved.
    save_every: (u64, u64),
    /// Takes a snapshot of the filter for each height and hash it is sent and writes it to the
    /// filter's file, off the committing thread (a snapshot taken later than the height holds
    /// more than it needs, never less).
    saver: Option<(SyncSender<SaveAt>, JoinHandle<()>)>,
    /// The thread adding the blocks' txids to the filter at open, and its stop flag.
    builder: Mutex<Option<JoinHandle<()>>>,
    stop_builder: Arc<AtomicBool>,
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
        let blocks = Arc::new(BlockFiles::open(&dir.join("blocks").join(channel), last)?);
        let text_txids = tree
            .scan_prefix([keys::TXID_TEXT])
            .next()
            .transpose()?
            .is_some();
        let (height, last_hash) = match tree.get(keys::SAVEPOINT)? {
            Some(sp) => {
                let sp = keys::parse_savepoint(&sp)?;
                (sp.height(), sp.hash)
            }
            None => (0, [0; 32]),
        };
        let filter_path = dir.join(format!("txid-filter.{channel}"));
        let (filter, from) = load_filter(&tree, &blocks, &filter_path, height)?;
        let filter = Arc::new(filter);
        let (saver, saves) = sync_channel::<SaveAt>(1);
        let saving = {
            let filter = Arc::clone(&filter);
            std::thread::Builder::new()
                .name("txid-filter-save".into())
                .spawn(move || {
                    // Heights arrive in order but for the builder's, which may come after a
                    // commit's: an older one is not written over a newer one.
                    let mut written = 0;
                    for (height, last_hash) in saves {
                        if height < written {
                            continue;
                        }
                        let saved = Saved {
                            height,
                            last_hash,
                            words: filter.snapshot(),
                        };
                        match saved.write(&filter_path, filter.log2_bits()) {
                            Ok(()) => written = height,
                            Err(e) => tracing::warn!(
                                "saving the txid filter to {}: {e}",
                                filter_path.display()
                            ),
                        }
                    }
                })
        }
        .map_err(|e| Error::Storage(format!("starting the txid filter's saver: {e}")))?;
        let stop_builder = Arc::new(AtomicBool::new(false));
        let builder = if from == height {
            filter.set_complete();
            None
        } else {
            let (tree, blocks, filter, stop, saver) = (
                tree.clone(),
                Arc::clone(&blocks),
                Arc::clone(&filter),
                Arc::clone(&stop_builder),
                saver.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("txid-filter".into())
                .spawn(move || {
                    match add_block_txids(&tree, &blocks, &filter, from..height, &stop) {
                        Ok(true) => {
                            filter.set_complete();
                            tracing::info!(from, height, "txid filter caught up");
                            // Saved at once, so that the next open does not read the blocks
                            // again. Bits that commits added since are more than it needs.
                            let _ = saver.send((height, last_hash));
                        }
                        Ok(false) => {}
                        Err(e) => tracing::warn!(
                            "txid filter not built ({e}): txid lookups keep using the index"
                        ),
                    }
                })
                .map_err(|e| Error::Storage(format!("starting the txid filter's thread: {e}")))?;
            Some(spawned)
        };
        Ok(SledLedgerStore {
            db,
            tree,
            blocks,
            durable: true,
            text_txids,
            filter,
            unsaved_blocks: AtomicU64::new(0),
            unsaved_txids: AtomicU64::new(0),
            save_every: (FILTER_SAVE_TXIDS, FILTER_SAVE_BLOCKS),
            saver: Some((saver, saving)),
            builder: Mutex::new(builder),
            stop_builder,
        })
    }

    /// Waits until the txid filter has caught up with the blocks committed before the open (or
    /// given up): whether its "absent" is now trusted.
    pub fn wait_for_txid_filter(&self) -> bool {
        self.join_builder();
        self.filter.is_complete()
    }

    /// Waits for the thread adding the blocks' txids to the filter, if it still runs.
    fn join_builder(&self) {
        let handle = self
            .builder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
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

impl SledLedgerStore {
    /// Asks the saver for a snapshot of the txid filter when enough was committed since the
    /// last one (and the saver is free: otherwise the next block asks again).
    fn maybe_save_filter(&self, c: &BlockCommit) {
        let blocks = self.unsaved_blocks.fetch_add(1, Ordering::Relaxed) + 1;
        let txids = self
            .unsaved_txids
            .fetch_add(c.txids.len() as u64, Ordering::Relaxed)
            + c.txids.len() as u64;
        let Some((saver, _)) = &self.saver else {
            return;
        };
        if !self.filter.is_complete() || (txids < self.save_every.0 && blocks < self.save_every.1) {
            return;
        }
        if saver.try_send((c.number + 1, c.hash)).is_ok() {
            self.unsaved_blocks.store(0, Ordering::Relaxed);
            self.unsaved_txids.store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for SledLedgerStore {
    fn drop(&mut self) {
        self.stop_builder.store(true, Ordering::Relaxed);
        self.join_builder();
        // What was committed since the last snapshot is saved, so that the next open does not
        // read it back from the blocks; a snapshot being written is finished first.
        if let Some((saver, saving)) = self.saver.take() {
            let savepoint = self.tree.get(keys::SAVEPOINT).ok().flatten();
            if self.filter.is_complete()
                && self.unsaved_blocks.load(Ordering::Relaxed) > 0
                && let Some(sp) = savepoint.and_then(|v| keys::parse_savepoint(&v).ok())
            {
                let _ = saver.send((sp.height(), sp.hash));
            }
            drop(saver);
            let _ = saving.join();
        }
    }
}

/// The saved txid filter at `path` and the height from which blocks are still to be added to it,
/// or an empty filter and 0 when there is none that fits this ledger (none saved, damaged, of
/// another size, ahead of the ledger, of another chain, or lacking a txid of the blocks it is
/// checked against: its last and its middle one). Past those checks the file is trusted as the
/// index is. A block-hash entry of the index that does not decode fails the open.
fn load_filter(
    tree: &sled::Tree,
    blocks: &BlockFiles,
    path: &Path,
    height: u64,
) -> Result<(TxidFilter, u64)> {
    let log2_bits = txid_filter::LOG2_BITS;
    let expected = Saved::file_len(log2_bits) as u64;
    // The length is checked before the file is read: whatever lies there is not trusted.
    let why = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((TxidFilter::new(log2_bits), 0));
        }
        Err(e) => format!("reading it: {e}"),
        Ok(m) if m.len() != expected => format!("{} bytes, expected {expected}", m.len()),
        Ok(_) => match std::fs::read(path).map(|b| Saved::decode(&b, log2_bits)) {
            Err(e) => format!("reading it: {e}"),
            Ok(Err(e)) => e,
            Ok(Ok(s)) if s.height > height => {
                format!("it covers {} blocks, the ledger holds {height}", s.height)
            }
            Ok(Ok(s)) => {
                let of_this_chain = s.height == 0
                    || block_number_by_hash(tree, &s.last_hash)? == Some(s.height - 1);
                if !of_this_chain {
                    format!("its block {} is not this ledger's", s.height - 1)
                } else {
                    let from = s.height;
                    let filter = s.into_filter();
                    match lacks_a_txid(tree, blocks, &filter, from) {
                        Ok(None) => return Ok((filter, from)),
                        Ok(Some(n)) => format!("it lacks a txid of block {n}"),
                        Err(e) => format!("checking it against the blocks: {e}"),
                    }
                }
            }
        },
    };
    tracing::warn!(
        "the txid filter {} does not fit the ledger ({why}): rebuilding it from the blocks",
        path.display()
    );
    Ok((TxidFilter::new(log2_bits), 0))
}

/// A block below `height` (the last and the middle one are checked) one of whose txids the
/// filter lacks: a saved filter that was stale or zeroed, however well formed.
fn lacks_a_txid(
    tree: &sled::Tree,
    blocks: &BlockFiles,
    filter: &TxidFilter,
    height: u64,
) -> Result<Option<u64>> {
    let Some(last) = height.checked_sub(1) else {
        return Ok(None);
    };
    for n in [last, last / 2] {
        if stored_txids(tree, blocks, n)?
            .iter()
            .any(|t| !filter.may_contain(t))
        {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The encoded block with this number, if it is indexed.
fn stored_block(tree: &sled::Tree, blocks: &BlockFiles, number: u64) -> Result<Option<Vec<u8>>> {
    match tree.get(keys::block(number))? {
        Some(loc) => Ok(Some(blocks.read(BlockLocation::decode(&loc)?)?)),
        None => Ok(None),
    }
}

/// The number of the block with this header hash.
fn block_number_by_hash(tree: &sled::Tree, hash: &[u8]) -> Result<Option<u64>> {
    tree.get(keys::block_hash(hash))?
        .map(|v| keys::u64_at(&v, 0))
        .transpose()
}

/// The txids (as the bytes their hex spells) a committed block's envelopes name.
fn stored_txids(tree: &sled::Tree, blocks: &BlockFiles, n: u64) -> Result<Vec<[u8; 32]>> {
    let bytes = stored_block(tree, blocks, n)?
        .ok_or_else(|| Error::Corrupt(format!("block {n} is not indexed")))?;
    let txids = mercato_proto::block::block_txids(bytes)
        .map_err(|e| Error::Corrupt(format!("block {n}: {e}")))?;
    Ok(txids.iter().filter_map(|t| keys::txid_bytes(t)).collect())
}

/// Adds the txids of the blocks of `numbers` to the filter; `Ok(false)` when stopped first.
fn add_block_txids(
    tree: &sled::Tree,
    blocks: &BlockFiles,
    filter: &TxidFilter,
    numbers: std::ops::Range<u64>,
    stop: &AtomicBool,
) -> Result<bool> {
    for n in numbers {
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        for txid in stored_txids(tree, blocks, n)? {
            filter.insert(&txid);
        }
    }
    Ok(true)
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
            // Into the filter before the index: whoever finds the entry finds the txid there.
            let key = match keys::txid_bytes(txid) {
                Some(bytes) => {
                    self.filter.insert(&bytes);
                    keys::txid_key(&bytes)
                }
                None => keys::txid_text(txid),
            };
            batch.insert(key, &keys::tx_location(loc)[..]);
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
        self.maybe_save_filter(c);
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
        stored_block(&self.tree, &self.blocks, number)
    }

    fn block_number_by_hash(&self, hash: &[u8]) -> Result<Option<u64>> {
        block_number_by_hash(&self.tree, hash)
    }

    fn tx_location(&self, txid: &str) -> Result<Option<TxLocation>> {
        let found = match keys::txid_bytes(txid) {
            Some(bytes) if self.filter.is_complete() && !self.filter.may_contain(&bytes) => None,
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
    use sha2::Digest;

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
            // A ledger of that time: block 0 holds `old`, its entry keyed by text.
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(!store.text_txids);
            store
                .commit(&block_of(0, std::slice::from_ref(&old)))
                .unwrap();
            store.tree.remove(keys::txid(&old)).unwrap();
            store
                .tree
                .insert(keys::txid_text(&old), &keys::tx_location(&loc(0, 0))[..])
                .unwrap();
        }
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        assert!(store.text_txids);
        assert!(store.wait_for_txid_filter());
        let new = format!("{:064x}", 0xabcd);
        let mut block = block_of(1, &[new.clone(), "not hex".into()]);
        block.txids[0].1 = loc(1, 0);
        block.txids[1].1 = loc(1, 1);
        store.commit(&block).unwrap();
        assert_eq!(store.tx_location(&old).unwrap(), Some(loc(0, 0)));
        assert_eq!(store.tx_location(&new).unwrap(), Some(loc(1, 0)));
        assert_eq!(store.tx_location("not hex").unwrap(), Some(loc(1, 1)));
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

    /// A block whose envelopes name these txids, as the filter's catch-up reads blocks.
    fn block_of(number: u64, txids: &[String]) -> BlockCommit {
        use mercato_proto::pb::common::SignatureHeader;
        use mercato_proto::pb::common::{ChannelHeader, Envelope, Header, HeaderType, Payload};
        use prost::Message;
        let envelopes = txids
            .iter()
            .map(|txid| {
                let header = Header {
                    channel_header: ChannelHeader {
                        r#type: HeaderType::EndorserTransaction as i32,
                        channel_id: "ch".into(),
                        tx_id: txid.clone(),
                        timestamp: Some(Default::default()),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    signature_header: SignatureHeader {
                        creator: b"creator".to_vec(),
                        nonce: b"nonce".to_vec(),
                    }
                    .encode_to_vec(),
                };
                Envelope {
                    payload: Payload {
                        header: Some(header),
                        data: vec![],
                    }
                    .encode_to_vec(),
                    signature: vec![1],
                }
                .encode_to_vec()
            })
            .collect();
        let block = mercato_proto::block::new_block(number, vec![0; 32], envelopes);
        BlockCommit {
            number,
            hash: [number as u8 + 1; 32],
            block_bytes: block.encode_to_vec(),
            updates: vec![],
            txids: txids
                .iter()
                .enumerate()
                .map(|(tx, t)| {
                    let loc = TxLocation {
                        block: number,
                        tx: tx as u64,
                        code: 0,
                    };
                    (t.clone(), loc)
                })
                .collect(),
        }
    }

    fn txids_of(block: u64) -> Vec<String> {
        (0..20)
            .map(|tx| {
                hex::encode(<[u8; 32]>::from(sha2::Sha256::digest(
                    (block * 100 + tx).to_le_bytes(),
                )))
            })
            .collect()
    }

    /// On a new ledger the filter is complete from the start and answers for every txid it has
    /// not seen: an index entry it never saw is not looked for.
    #[test]
    fn the_txid_filter_answers_for_txids_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        assert!(store.wait_for_txid_filter());
        for n in 0..3 {
            store.commit(&block_of(n, &txids_of(n))).unwrap();
        }
        for n in 0..3 {
            for (i, t) in txids_of(n).iter().enumerate() {
                let loc = store.tx_location(t).unwrap().unwrap();
                assert_eq!((loc.block, loc.tx), (n, i as u64));
            }
        }
        let unseen = txids_of(9)[0].clone();
        assert_eq!(store.tx_location(&unseen).unwrap(), None);
        // An entry written behind the filter's back is not found: the filter answered.
        store
            .tree
            .insert(
                keys::txid(&unseen),
                &keys::tx_location(&TxLocation {
                    block: 0,
                    tx: 0,
                    code: 0,
                })[..],
            )
            .unwrap();
        assert_eq!(store.tx_location(&unseen).unwrap(), None);
    }

    /// Reopened, a ledger adds the txids of the blocks its saved filter lacks (all of them when
    /// none was saved) before the filter answers; a saved filter that does not fit the ledger
    /// (damaged, or of another chain) is rebuilt from the blocks.
    #[test]
    fn the_txid_filter_catches_up_from_the_blocks_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txid-filter.ch");
        let all = |store: &SledLedgerStore, blocks: u64| {
            for n in 0..blocks {
                for t in txids_of(n) {
                    assert!(store.tx_location(&t).unwrap().is_some(), "block {n}");
                }
            }
            assert_eq!(store.tx_location(&txids_of(99)[0]).unwrap(), None);
        };
        let saved_height = || {
            let bytes = std::fs::read(&path).unwrap();
            Saved::decode(&bytes, txid_filter::LOG2_BITS)
                .unwrap()
                .height
        };
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            for n in 0..3 {
                store.commit(&block_of(n, &txids_of(n))).unwrap();
            }
        }
        assert_eq!(saved_height(), 3, "saved when the ledger closed");
        std::fs::remove_file(&path).unwrap();
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(store.wait_for_txid_filter(), "rebuilt from every block");
            all(&store, 3);
        }
        assert_eq!(saved_height(), 3, "saved once rebuilt");
        {
            let mut store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(store.wait_for_txid_filter());
            all(&store, 3);
            store.save_every = (1, 1);
            for n in 3..6 {
                store.commit(&block_of(n, &txids_of(n))).unwrap();
            }
        }
        assert_eq!(saved_height(), 6, "saved while committing and when closed");
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(store.wait_for_txid_filter());
            all(&store, 6);
        }
        // The saved bits are what the reopened filter starts from once they hold the txids of
        // the blocks they are checked against (the last one below their height and the middle
        // one): one at height 4 holding blocks 1 and 3 only hides block 0, and block 5 is
        // caught up. A zeroed one is caught by the check and rebuilt.
        let partial = TxidFilter::new(txid_filter::LOG2_BITS);
        for n in [1, 3] {
            for t in txids_of(n) {
                partial.insert(&keys::txid_bytes(&t).unwrap());
            }
        }
        Saved {
            height: 4,
            last_hash: [4; 32],
            words: partial.snapshot(),
        }
        .write(&path, txid_filter::LOG2_BITS)
        .unwrap();
        {
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(store.wait_for_txid_filter());
            assert_eq!(store.tx_location(&txids_of(0)[0]).unwrap(), None);
            assert!(store.tx_location(&txids_of(2)[0]).unwrap().is_none());
            assert!(store.tx_location(&txids_of(5)[0]).unwrap().is_some());
        }
        let lie = |height: u64, last_hash: [u8; 32]| Saved {
            height,
            last_hash,
            words: vec![0; 1 << (txid_filter::LOG2_BITS - 6)],
        };
        // Zeroed, of another chain (block 3's hash is not [9; 32]), ahead of the ledger, or
        // damaged: rebuilt.
        for bytes in [
            lie(4, [4; 32]).encode(txid_filter::LOG2_BITS),
            lie(4, [9; 32]).encode(txid_filter::LOG2_BITS),
            lie(7, [7; 32]).encode(txid_filter::LOG2_BITS),
            b"torn".to_vec(),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
            assert!(store.wait_for_txid_filter());
            all(&store, 6);
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
