//! `mercato.Ledger`: the ledger query service for auditors and channel members (see
//! `mercato/ledger.proto`). Every request is signed by a reader of the channel; reads go to the
//! store on the blocking pool, in bounded pages.

use std::sync::Arc;

use mercato_proto::block::{commit_hash, parse_block};
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use mercato_proto::pb::mercato::block_query::By;
use mercato_proto::pb::mercato::ledger_request::Query;
use mercato_proto::pb::mercato::ledger_server::Ledger as LedgerApi;
use mercato_proto::pb::mercato::{
    BlockInfo, ChainInfo, HistoryEntry, HistoryPage, SignedLedgerRequest, StateEntry, StatePage,
    StateResult, TransactionInfo,
};
use mercato_proto::query::{ledger_request_message, open_ledger_request};
use mercato_proto::transaction::parse_transaction;
use mercato_proto::{Limits, ValidationCode};
use tonic::{Request, Response, Status};

use super::{PeerChannel, blocking, check_timestamp};
use crate::audit::{describe_transaction, pb_version};
use crate::ledger::{LedgerStore, Version, VersionedValue};
use crate::rwset::{TxRwSet, valid_namespace};

/// A page's size when the request names none, and the most it may ask for.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// About how many bytes of values a page holds before it stops early.
const PAGE_BYTES: usize = 8 << 20;
/// How many state entries a range page reads from the store at a time.
const RANGE_CHUNK: usize = 32;
/// The longest key a query may name.
const MAX_KEY_BYTES: usize = 64 * 1024;

pub(super) struct LedgerService {
    channel: Arc<PeerChannel>,
}

impl LedgerService {
    pub(super) fn new(channel: Arc<PeerChannel>) -> Self {
        LedgerService { channel }
    }

    /// Checks a request (structure, channel, timestamp, a reader's identity and signature) and
    /// returns its query.
    async fn open(&self, request: Request<SignedLedgerRequest>) -> Result<Query, Status> {
        let signed = request.into_inner();
        let channel = Arc::clone(&self.channel);
        blocking(move || {
            let request = open_ledger_request(&signed, &channel.limits)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            channel.check_channel(&request.channel_id)?;
            check_timestamp("the request", request.timestamp.as_ref())
                .map_err(Status::invalid_argument)?;
            let id = channel.reader(&request.creator)?;
            id.verify(&ledger_request_message(&signed.request), &signed.signature)
                .map_err(|e| {
                    Status::permission_denied(format!("the request's signature is invalid: {e}"))
                })?;
            request
                .query
                .ok_or_else(|| Status::invalid_argument("LedgerRequest.query is missing"))
        })
        .await?
    }

    /// Runs `f` on the store off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PeerChannel) -> Result<T, Status> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let channel = Arc::clone(&self.channel);
        blocking(move || f(&channel)).await?.map(Response::new)
    }
}

fn wrong(call: &str, want: &str) -> Status {
    Status::invalid_argument(format!("{call} needs a `{want}` query"))
}

fn storage(e: crate::error::Error) -> Status {
    Status::internal(format!("the ledger could not be read: {e}"))
}

fn page_size(limit: u32) -> Result<usize, Status> {
    match limit as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        n => Err(Status::invalid_argument(format!(
            "a page of {n} entries is over the limit of {MAX_PAGE}"
        ))),
    }
}

fn check_key(namespace: &str, key: &str) -> Result<(), Status> {
    if !valid_namespace(namespace) {
        return Err(Status::invalid_argument(format!(
            "invalid namespace {namespace:?}"
        )));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Status::invalid_argument(format!(
            "a key of {} bytes is over the limit of {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// A stored block, decoded.
fn load_block(store: &dyn LedgerStore, number: u64) -> Result<(Vec<u8>, Block), Status> {
    let bytes = store
        .block(number)
        .map_err(storage)?
        .ok_or_else(|| Status::not_found(format!("block {number} is not committed")))?;
    let block = parse_block(&bytes, &Limits::DEFAULT)
        .map_err(|e| Status::data_loss(format!("stored block {number} does not parse: {e}")))?;
    Ok((bytes, block))
}

fn stored_commit_hash(number: u64, block: &Block) -> Result<Vec<u8>, Status> {
    commit_hash(block)
        .map_err(|e| Status::data_loss(format!("block {number}: {e}")))
        .map(|h| h.map(|h| h.to_vec()).unwrap_or_default())
}

fn envelope_at(block: &Block, number: u64, index: u64) -> Result<&[u8], Status> {
    block
        .data
        .as_ref()
        .and_then(|d| d.data.get(index as usize))
        .map(Vec::as_slice)
        .ok_or_else(|| Status::data_loss(format!("block {number} has no transaction {index}")))
}

fn state_entry(namespace: &str, key: String, v: VersionedValue) -> StateEntry {
    StateEntry {
        namespace: namespace.to_owned(),
        key,
        value: v.value,
        version: Some(pb_version(v.version)),
    }
}

/// What transaction `version` did to `key` of `namespace`.
fn history_entry(
    block: &Block,
    version: Version,
    namespace: &str,
    key: &str,
) -> Result<HistoryEntry, Status> {
    let envelope = envelope_at(block, version.block, version.tx)?;
    let tx = parse_transaction(envelope, &Limits::DEFAULT).map_err(|e| {
        Status::data_loss(format!(
            "block {} transaction {} wrote {key:?} but does not parse: {e}",
            version.block, version.tx
        ))
    })?;
    let mut entry = HistoryEntry {
        version: Some(pb_version(version)),
        txid: tx.header.channel_header.tx_id.clone(),
        timestamp: tx.header.channel_header.timestamp,
        ..HistoryEntry::default()
    };
    let rw = TxRwSet::decode(&tx.action.results)
        .map_err(|e| Status::data_loss(format!("block {}: {e}", version.block)))?;
    if let Some(ns) = rw.namespaces.into_iter().find(|n| n.namespace == namespace) {
        if let Some(w) = ns.writes.into_iter().find(|w| w.key == key) {
            entry.is_delete = w.value.is_none();
            entry.value = w.value.unwrap_or_default();
        } else if let Some(d) = ns.deltas.into_iter().find(|d| d.key == key) {
            entry.delta = Some(d.amount);
        }
    }
    Ok(entry)
}

#[tonic::async_trait]
impl LedgerApi for LedgerService {
    async fn get_chain_info(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<ChainInfo>, Status> {
        let Query::ChainInfo(_) = self.open(request).await? else {
            return Err(wrong("GetChainInfo", "chain_info"));
        };
        self.read(|c| {
            let sp = c
                .store
                .savepoint()
                .map_err(storage)?
                .ok_or_else(|| Status::unavailable("the ledger has no blocks yet"))?;
            // Everything from the one block, so the answer is consistent while blocks commit.
            let (_, block) = load_block(c.store.as_ref(), sp.number)?;
            let header = block.header.clone().unwrap_or_default();
            Ok(ChainInfo {
                height: sp.height(),
                current_block_hash: block_header_hash(&header).to_vec(),
                previous_block_hash: header.previous_hash,
                commit_hash: stored_commit_hash(sp.number, &block)?,
            })
        })
        .await
    }

    async fn get_block(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<BlockInfo>, Status> {
        let Query::Block(q) = self.open(request).await? else {
            return Err(wrong("GetBlock", "block"));
        };
        self.read(move |c| {
            let store = c.store.as_ref();
            let number = match q.by {
                Some(By::Number(n)) => n,
                Some(By::Hash(h)) => store
                    .block_number_by_hash(&h)
                    .map_err(storage)?
                    .ok_or_else(|| {
                        Status::not_found(format!("no block has hash {}", hex::encode(&h)))
                    })?,
                Some(By::Txid(t)) => {
                    store
                        .tx_location(&t)
                        .map_err(storage)?
                        .ok_or_else(|| Status::not_found(format!("no transaction {t:?}")))?
                        .block
                }
                None => return Err(Status::invalid_argument("BlockQuery.by is missing")),
            };
            let (bytes, block) = load_block(store, number)?;
            let header = block.header.clone().unwrap_or_default();
            Ok(BlockInfo {
                number,
                hash: block_header_hash(&header).to_vec(),
                commit_hash: stored_commit_hash(number, &block)?,
                block: bytes,
            })
        })
        .await
    }

    async fn get_transaction(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<TransactionInfo>, Status> {
        let Query::Transaction(q) = self.open(request).await? else {
            return Err(wrong("GetTransaction", "transaction"));
        };
        self.read(move |c| {
            let loc = c
                .store
                .tx_location(&q.txid)
                .map_err(storage)?
                .ok_or_else(|| Status::not_found(format!("no transaction {:?}", q.txid)))?;
            let (_, block) = load_block(c.store.as_ref(), loc.block)?;
            let envelope = envelope_at(&block, loc.block, loc.tx)?;
            Ok(describe_transaction(
                &c.msps,
                envelope,
                loc.block,
                loc.tx,
                ValidationCode(loc.code),
            ))
        })
        .await
    }

    async fn get_history(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<HistoryPage>, Status> {
        let Query::History(q) = self.open(request).await? else {
            return Err(wrong("GetHistory", "history"));
        };
        check_key(&q.namespace, &q.key)?;
        let limit = page_size(q.limit)?;
        self.read(move |c| {
            let after = q.after.map(|v| Version {
                block: v.block,
                tx: v.tx,
            });
            let versions = c
                .store
                .history(&q.namespace, &q.key, after, limit + 1)
                .map_err(storage)?;
            let mut page = HistoryPage {
                more: versions.len() > limit,
                ..HistoryPage::default()
            };
            let mut bytes = 0;
            // Versions come in block order: each block is read once.
            let mut cached: Option<(u64, Block)> = None;
            let total = versions.len().min(limit);
            for (i, v) in versions.into_iter().take(limit).enumerate() {
                if cached.as_ref().is_none_or(|(n, _)| *n != v.block) {
                    cached = Some((v.block, load_block(c.store.as_ref(), v.block)?.1));
                }
                let Some((_, block)) = &cached else { break };
                let entry = history_entry(block, v, &q.namespace, &q.key)?;
                bytes += entry.value.len();
                page.entries.push(entry);
                // Full: stop early; the next page starts after this entry.
                if bytes > PAGE_BYTES && i + 1 < total {
                    page.more = true;
                    break;
                }
            }
            Ok(page)
        })
        .await
    }

    async fn get_state(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<StateResult>, Status> {
        let Query::State(q) = self.open(request).await? else {
            return Err(wrong("GetState", "state"));
        };
        check_key(&q.namespace, &q.key)?;
        self.read(move |c| {
            let value = c.store.state(&q.namespace, &q.key).map_err(storage)?;
            Ok(StateResult {
                found: value.is_some(),
                entry: value.map(|v| state_entry(&q.namespace, q.key, v)),
            })
        })
        .await
    }

    async fn get_state_range(
        &self,
        request: Request<SignedLedgerRequest>,
    ) -> Result<Response<StatePage>, Status> {
        let Query::StateRange(q) = self.open(request).await? else {
            return Err(wrong("GetStateRange", "state_range"));
        };
        check_key(&q.namespace, &q.start_key)?;
        check_key(&q.namespace, &q.end_key)?;
        if !q.end_key.is_empty() && q.start_key > q.end_key {
            return Err(Status::invalid_argument(format!(
                "the range starts at {:?}, after its end {:?}",
                q.start_key, q.end_key
            )));
        }
        let limit = page_size(q.limit)?;
        self.read(move |c| {
            state_page(
                c.store.as_ref(),
                &q.namespace,
                &q.start_key,
                &q.end_key,
                limit,
                PAGE_BYTES,
            )
            .map_err(storage)
        })
        .await
    }
}

/// One page of `[start, end)` of a namespace: at most `limit` entries, and no more once the
/// values reach `page_bytes`; `more` and `next_start_key` say where the next page starts. The
/// store is read in chunks of [`RANGE_CHUNK`], so that a page of large values holds about
/// `page_bytes` in memory rather than `limit` values.
fn state_page(
    store: &dyn LedgerStore,
    namespace: &str,
    start: &str,
    end: &str,
    limit: usize,
    page_bytes: usize,
) -> crate::error::Result<StatePage> {
    let mut page = StatePage::default();
    let mut bytes = 0;
    let mut from = start.to_owned();
    loop {
        let want = (limit + 1 - page.entries.len()).min(RANGE_CHUNK);
        let rows = store.state_range(namespace, &from, end, want)?;
        let got = rows.len();
        for (key, value) in rows {
            if page.entries.len() == limit || bytes > page_bytes {
                // The next page starts at the first key not sent.
                page.more = true;
                page.next_start_key = key;
                return Ok(page);
            }
            // The smallest key after this one.
            from = format!("{key}\u{0}");
            bytes += value.value.len();
            page.entries.push(state_entry(namespace, key, value));
        }
        if got < want {
            return Ok(page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{BlockCommit, MemLedgerStore, StateUpdate};

    /// A store holding `n` keys `k000`, `k001`, … of `size`-byte values in namespace `cc`.
    fn store(n: usize, size: usize) -> MemLedgerStore {
        let store = MemLedgerStore::new();
        let updates = (0..n)
            .map(|i| StateUpdate {
                namespace: "cc".into(),
                key: format!("k{i:03}"),
                value: Some(vec![b'v'; size]),
                version: Version { block: 0, tx: 0 },
            })
            .collect();
        store
            .commit(&BlockCommit {
                number: 0,
                hash: [0; 32],
                block_bytes: Vec::new(),
                updates,
                txids: Vec::new(),
            })
            .unwrap();
        store
    }

    fn keys(page: &StatePage) -> Vec<&str> {
        page.entries.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn pages_cover_every_key_once_across_chunks() {
        let store = store(150, 10);
        let mut seen = Vec::new();
        let mut from = String::new();
        loop {
            let page = state_page(&store, "cc", &from, "", 70, usize::MAX).unwrap();
            assert!(page.entries.len() <= 70);
            seen.extend(keys(&page).iter().map(|k| k.to_string()));
            if !page.more {
                break;
            }
            from = page.next_start_key;
        }
        let all: Vec<String> = (0..150).map(|i| format!("k{i:03}")).collect();
        assert_eq!(seen, all);
        // An exact fit: no `more`.
        let page = state_page(&store, "cc", "", "", 150, usize::MAX).unwrap();
        assert_eq!((page.entries.len(), page.more), (150, false));
        // An end bound inside a chunk.
        let page = state_page(&store, "cc", "k040", "k075", 1000, usize::MAX).unwrap();
        assert_eq!(page.entries.len(), 35);
        assert_eq!(keys(&page).last(), Some(&"k074"));
        assert!(!page.more);
    }

    #[test]
    fn a_page_stops_once_its_values_pass_the_byte_budget() {
        let store = store(100, 1000);
        let page = state_page(&store, "cc", "", "", 1000, 4500).unwrap();
        // The fifth value takes the page past 4,500 bytes; the sixth key starts the next page.
        assert_eq!(page.entries.len(), 5);
        assert!(page.more);
        assert_eq!(page.next_start_key, "k005");
    }
}
