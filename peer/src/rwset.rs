//! Read/write sets as the peer works with them, converted from and to Fabric's wire format
//! (`rwset.TxReadWriteSet` of `kvrwset.KVRWSet`s, plus Mercato's deltas) in one place.

use std::collections::BTreeSet;

use mercato_proto::pb::kvrwset::{self, KvrwSet, range_query_info};
use mercato_proto::pb::rwset::{NsReadWriteSet, TxReadWriteSet, tx_read_write_set};
use prost::Message;

use crate::ledger::Version;

/// The most reads, writes, range reads and deltas one transaction may carry.
pub const MAX_ENTRIES: usize = 65_536;
/// The longest key.
pub const MAX_KEY_LEN: usize = 8 * 1024;
/// The most namespaces one transaction may touch.
pub const MAX_NAMESPACES: usize = 64;

/// A transaction's reads and writes, per namespace in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxRwSet {
    /// One entry per chaincode namespace touched.
    pub namespaces: Vec<NsRwSet>,
}

/// What a transaction read and wrote in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsRwSet {
    /// The chaincode namespace.
    pub namespace: String,
    /// Keys read, with the version seen (`None`: the key did not exist).
    pub reads: Vec<KeyRead>,
    /// Range queries, with what they returned.
    pub range_reads: Vec<RangeRead>,
    /// Keys written or deleted.
    pub writes: Vec<KeyWrite>,
    /// Commutative additions (Mercato).
    pub deltas: Vec<KeyDelta>,
}

/// A key read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRead {
    /// The key.
    pub key: String,
    /// The version seen; `None` when the key did not exist.
    pub version: Option<Version>,
}

/// A range query `[start, end)` and the keys it returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    /// The first key.
    pub start: String,
    /// The end (exclusive); empty means no end.
    pub end: String,
    /// Whether the chaincode read the range to its end; if not, only the keys up to the last one
    /// returned must be unchanged.
    pub exhausted: bool,
    /// The keys and versions returned, in order.
    pub reads: Vec<KeyRead>,
}

/// A key written (`Some`) or deleted (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWrite {
    /// The key.
    pub key: String,
    /// The new value, or `None` to delete.
    pub value: Option<Vec<u8>>,
}

/// Adds `amount` to the number at `key`, refusing a result below `lower_bound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDelta {
    /// The key.
    pub key: String,
    /// The amount added (negative subtracts).
    pub amount: i64,
    /// The lowest allowed result.
    pub lower_bound: Option<i64>,
}

/// Why a read/write set is malformed; the transaction is marked BAD_RWSET.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad read/write set: {0}")]
pub struct RwSetError(pub String);

/// Whether a name can be a chaincode namespace: 1 to 128 characters of letters, digits, `_`,
/// `-` and `.` (so it never contains the 0x00 the ledger uses as separator).
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 128
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl TxRwSet {
    /// Decodes the `results` bytes of a chaincode action, checking names, sizes and that no key is
    /// written twice or both written and added to.
    pub fn decode(bytes: &[u8]) -> Result<TxRwSet, RwSetError> {
        let tx = TxReadWriteSet::decode(bytes)
            .map_err(|e| RwSetError(format!("TxReadWriteSet: {e}")))?;
        if tx.ns_rwset.len() > MAX_NAMESPACES {
            return Err(RwSetError(format!(
                "{} namespaces, over the limit of {MAX_NAMESPACES}",
                tx.ns_rwset.len()
            )));
        }
        let mut seen_ns = BTreeSet::new();
        let mut entries = 0usize;
        let mut namespaces = Vec::with_capacity(tx.ns_rwset.len());
        for ns in tx.ns_rwset {
            if !valid_namespace(&ns.namespace) {
                return Err(RwSetError(format!("invalid namespace {:?}", ns.namespace)));
            }
            if !seen_ns.insert(ns.namespace.clone()) {
                return Err(RwSetError(format!(
                    "namespace {:?} appears twice",
                    ns.namespace
                )));
            }
            if !ns.collection_hashed_rwset.is_empty() {
                return Err(RwSetError(
                    "private data collections are not supported".into(),
                ));
            }
            let kv = KvrwSet::decode(ns.rwset.as_slice())
                .map_err(|e| RwSetError(format!("KVRWSet of {:?}: {e}", ns.namespace)))?;
            entries +=
                kv.reads.len() + kv.writes.len() + kv.deltas.len() + kv.range_queries_info.len();
            if entries > MAX_ENTRIES {
                return Err(RwSetError(format!("more than {MAX_ENTRIES} entries")));
            }
            namespaces.push(convert_ns(ns.namespace, kv)?);
        }
        Ok(TxRwSet { namespaces })
    }

    /// Encodes as the `results` bytes of a chaincode action.
    pub fn encode(&self) -> Vec<u8> {
        let ns_rwset = self
            .namespaces
            .iter()
            .map(|ns| NsReadWriteSet {
                namespace: ns.namespace.clone(),
                rwset: KvrwSet {
                    reads: ns.reads.iter().map(read_to_pb).collect(),
                    range_queries_info: ns
                        .range_reads
                        .iter()
                        .map(|r| kvrwset::RangeQueryInfo {
                            start_key: r.start.clone(),
                            end_key: r.end.clone(),
                            itr_exhausted: r.exhausted,
                            reads_info: Some(range_query_info::ReadsInfo::RawReads(
                                kvrwset::QueryReads {
                                    kv_reads: r.reads.iter().map(read_to_pb).collect(),
                                },
                            )),
                        })
                        .collect(),
                    writes: ns
                        .writes
                        .iter()
                        .map(|w| kvrwset::KvWrite {
                            key: w.key.clone(),
                            is_delete: w.value.is_none(),
                            value: w.value.clone().unwrap_or_default(),
                        })
                        .collect(),
                    metadata_writes: Vec::new(),
                    deltas: ns
                        .deltas
                        .iter()
                        .map(|d| kvrwset::KvDelta {
                            key: d.key.clone(),
                            amount: d.amount,
                            lower_bound: d.lower_bound,
                        })
                        .collect(),
                }
                .encode_to_vec(),
                collection_hashed_rwset: Vec::new(),
            })
            .collect();
        TxReadWriteSet {
            data_model: tx_read_write_set::DataModel::Kv as i32,
            ns_rwset,
        }
        .encode_to_vec()
    }

    /// Whether the transaction changes any state.
    pub fn has_writes(&self) -> bool {
        self.namespaces
            .iter()
            .any(|ns| !ns.writes.is_empty() || !ns.deltas.is_empty())
    }
}

fn read_to_pb(r: &KeyRead) -> kvrwset::KvRead {
    kvrwset::KvRead {
        key: r.key.clone(),
        version: r.version.map(|v| kvrwset::Version {
            block_num: v.block,
            tx_num: v.tx,
        }),
    }
}

fn check_key(ns: &str, key: &str) -> Result<(), RwSetError> {
    if key.is_empty() {
        return Err(RwSetError(format!("empty key in namespace {ns:?}")));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(RwSetError(format!(
            "key of {} bytes in namespace {ns:?}, over the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

fn convert_read(ns: &str, r: kvrwset::KvRead) -> Result<KeyRead, RwSetError> {
    check_key(ns, &r.key)?;
    Ok(KeyRead {
        key: r.key,
        version: r.version.map(|v| Version {
            block: v.block_num,
            tx: v.tx_num,
        }),
    })
}

fn convert_ns(namespace: String, kv: KvrwSet) -> Result<NsRwSet, RwSetError> {
    if !kv.metadata_writes.is_empty() {
        return Err(RwSetError("key metadata writes are not supported".into()));
    }
    let ns = namespace.as_str();
    let reads = kv
        .reads
        .into_iter()
        .map(|r| convert_read(ns, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut range_reads = Vec::with_capacity(kv.range_queries_info.len());
    for q in kv.range_queries_info {
        let reads = match q.reads_info {
            Some(range_query_info::ReadsInfo::RawReads(r)) => r
                .kv_reads
                .into_iter()
                .map(|r| convert_read(ns, r))
                .collect::<Result<Vec<_>, _>>()?,
            Some(range_query_info::ReadsInfo::ReadsMerkleHashes(_)) => {
                return Err(RwSetError(
                    "range reads as Merkle summaries are not supported".into(),
                ));
            }
            None => Vec::new(),
        };
        range_reads.push(RangeRead {
            start: q.start_key,
            end: q.end_key,
            exhausted: q.itr_exhausted,
            reads,
        });
    }
    let mut written = BTreeSet::new();
    let mut writes = Vec::with_capacity(kv.writes.len());
    for w in kv.writes {
        check_key(ns, &w.key)?;
        if !written.insert(w.key.clone()) {
            return Err(RwSetError(format!(
                "key {:?} written twice in {ns:?}",
                w.key
            )));
        }
        writes.push(KeyWrite {
            key: w.key,
            value: (!w.is_delete).then_some(w.value),
        });
    }
    let mut deltas = Vec::with_capacity(kv.deltas.len());
    for d in kv.deltas {
        check_key(ns, &d.key)?;
        if written.contains(&d.key) {
            return Err(RwSetError(format!(
                "key {:?} both written and added to in {ns:?}",
                d.key
            )));
        }
        deltas.push(KeyDelta {
            key: d.key,
            amount: d.amount,
            lower_bound: d.lower_bound,
        });
    }
    Ok(NsRwSet {
        namespace,
        reads,
        range_reads,
        writes,
        deltas,
    })
}
