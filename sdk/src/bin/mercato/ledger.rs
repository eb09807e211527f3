//! `mercato ledger ...`: the ledger query service from the command line, and the JSON forms of
//! its answers (shared with `mercato audit export`).

use clap::Subcommand;
use mercato_sdk::Network;
use mercato_sdk::ledger::{HistoryEntry, StateEntry, TransactionInfo, Version};
use serde_json::{Value, json};

use crate::{Failure, json_value, show};

#[derive(Subcommand)]
pub enum LedgerCmd {
    /// Height, the last block's hash and the commit hash.
    Info,
    /// A block, by number, --hash or --txid: its hashes and its transactions' codes.
    Block {
        number: Option<u64>,
        /// The block header's hash, hex.
        #[arg(long)]
        hash: Option<String>,
        /// A transaction in the block.
        #[arg(long)]
        txid: Option<String>,
    },
    /// One transaction, decoded.
    Tx { txid: String },
    /// The writes to a key, oldest first.
    History {
        namespace: String,
        key: String,
        /// Stop after this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// A key's current value.
    State { namespace: String, key: String },
    /// Keys of a namespace in [--start, --end), in key order.
    Range {
        namespace: String,
        #[arg(long, default_value = "")]
        start: String,
        /// Exclusive; empty: to the end of the namespace.
        #[arg(long, default_value = "")]
        end: String,
        /// Stop after this many keys.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

fn version(v: Option<Version>) -> Value {
    v.map_or(Value::Null, |v| json!({"block": v.block, "tx": v.tx}))
}

fn timestamp(t: Option<mercato_proto::pb::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000))
    })
}

/// A decoded transaction as JSON: values as JSON when they are, else text or hex.
pub fn tx_json(t: &TransactionInfo) -> Value {
    let member = |m: &mercato_sdk::ledger::Member| json!({"msp_id": m.msp_id, "name": m.name});
    json!({
        "txid": t.txid,
        "block": t.block_number,
        "tx": t.tx_index,
        "code": t.validation_code_name,
        "timestamp_ms": timestamp(t.timestamp),
        "creator": t.creator.as_ref().map(member),
        "endorsers": t.endorsers.iter().map(member).collect::<Vec<_>>(),
        "chaincode": t.chaincode,
        "function": t.args.first().map(|a| show(a)),
        "args": t.args.iter().skip(1).map(|a| show(a)).collect::<Vec<_>>(),
        "response": {"status": t.response_status, "message": t.response_message, "payload": json_value(&t.response_payload)},
        "reads": t.reads.iter().map(|r| json!({"namespace": r.namespace, "key": r.key, "version": version(r.version)})).collect::<Vec<_>>(),
        "range_reads": t.range_reads.iter().map(|r| json!({"namespace": r.namespace, "start": r.start_key, "end": r.end_key, "exhausted": r.exhausted, "keys": r.keys_read})).collect::<Vec<_>>(),
        "writes": t.writes.iter().map(|w| json!({"namespace": w.namespace, "key": w.key, "delete": w.is_delete, "value": json_value(&w.value)})).collect::<Vec<_>>(),
        "deltas": t.deltas.iter().map(|d| json!({"namespace": d.namespace, "key": d.key, "amount": d.amount, "lower_bound": d.lower_bound})).collect::<Vec<_>>(),
        "event": if t.event_name.is_empty() { Value::Null } else { json!({"name": t.event_name, "payload": json_value(&t.event_payload)}) },
    })
}

fn history_json(h: &HistoryEntry) -> Value {
    json!({
        "version": version(h.version),
        "txid": h.txid,
        "timestamp_ms": timestamp(h.timestamp),
        "delete": h.is_delete,
        "delta": h.delta,
        "value": if h.is_delete || h.delta.is_some() { Value::Null } else { json_value(&h.value) },
    })
}

fn state_json(s: &StateEntry) -> Value {
    json!({"namespace": s.namespace, "key": s.key, "version": version(s.version), "value": json_value(&s.value)})
}

fn print(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

pub async fn run(network: &Network, cmd: LedgerCmd, json: bool) -> Result<(), Failure> {
    let ledger = network.ledger();
    match cmd {
        LedgerCmd::Info => {
            let i = ledger.chain_info().await?;
            print(
                json,
                json!({"height": i.height, "block_hash": hex::encode(&i.current_block_hash), "previous_hash": hex::encode(&i.previous_block_hash), "commit_hash": hex::encode(&i.commit_hash)}),
                || {
                    format!(
                        "height {}\nblock hash {}\nprevious hash {}\ncommit hash {}",
                        i.height,
                        hex::encode(&i.current_block_hash),
                        hex::encode(&i.previous_block_hash),
                        hex::encode(&i.commit_hash)
                    )
                },
            );
        }
        LedgerCmd::Block { number, hash, txid } => {
            let b = match (number, hash, txid) {
                (Some(n), None, None) => ledger.block(n).await?,
                (None, Some(h), None) => {
                    let h = hex::decode(&h)
                        .map_err(|e| Failure::Usage(format!("--hash {h:?}: {e}")))?;
                    ledger.block_by_hash(&h).await?
                }
                (None, None, Some(t)) => ledger.block_by_txid(&t).await?,
                _ => {
                    return Err(Failure::Usage(
                        "name the block by one of NUMBER, --hash or --txid".into(),
                    ));
                }
            };
            let block =
                <mercato_proto::pb::common::Block as prost::Message>::decode(b.block.as_slice())
                    .map_err(|e| {
                        mercato_sdk::Error::Malformed(format!("block {}: {e}", b.number))
                    })?;
            let codes = mercato_proto::block::metadata_entry(
                &block,
                mercato_proto::pb::common::BlockMetadataIndex::TransactionsFilter,
            )
            .unwrap_or_default()
            .to_vec();
            let header = block.header.clone().unwrap_or_default();
            let txids: Vec<String> = block
                .data
                .as_ref()
                .map(|d| d.data.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    mercato_proto::transaction::parse_envelope(e, &mercato_proto::Limits::DEFAULT)
                        .map(|p| p.header.channel_header.tx_id)
                        .unwrap_or_default()
                })
                .collect();
            let txs: Vec<Value> = txids
                .iter()
                .zip(&codes)
                .map(|(t, c)| json!({"txid": t, "code": mercato_proto::ValidationCode(*c).name()}))
                .collect();
            print(
                json,
                json!({"number": b.number, "hash": hex::encode(&b.hash), "previous_hash": hex::encode(&header.previous_hash), "data_hash": hex::encode(&header.data_hash), "commit_hash": hex::encode(&b.commit_hash), "bytes": b.block.len(), "transactions": txs}),
                || {
                    let mut out = format!(
                        "block {} ({} bytes)\nhash {}\nprevious hash {}\ncommit hash {}",
                        b.number,
                        b.block.len(),
                        hex::encode(&b.hash),
                        hex::encode(&header.previous_hash),
                        hex::encode(&b.commit_hash)
                    );
                    for (i, (t, c)) in txids.iter().zip(&codes).enumerate() {
                        out.push_str(&format!(
                            "\n  {i:>4} {t} {}",
                            mercato_proto::ValidationCode(*c).name()
                        ));
                    }
                    out
                },
            );
        }
        LedgerCmd::Tx { txid } => {
            let t = ledger.transaction(&txid).await?;
            let v = tx_json(&t);
            print(json, v.clone(), || {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            });
        }
        LedgerCmd::History {
            namespace,
            key,
            limit,
        } => {
            let mut after = None;
            let mut n = 0;
            'pages: loop {
                let page = ledger.history_page(&namespace, &key, after, 0).await?;
                after = page.entries.last().and_then(|e| e.version);
                for e in &page.entries {
                    if n == limit {
                        break 'pages;
                    }
                    n += 1;
                    let v = history_json(e);
                    print(json, v.clone(), || {
                        let what = if e.is_delete {
                            "deleted".to_owned()
                        } else if let Some(d) = e.delta {
                            format!("added {d}")
                        } else {
                            show(&e.value)
                        };
                        let at = e.version.unwrap_or_default();
                        format!("{}.{} {} {what}", at.block, at.tx, e.txid)
                    });
                }
                if !page.more || after.is_none() {
                    break;
                }
            }
        }
        LedgerCmd::State { namespace, key } => match ledger.state(&namespace, &key).await? {
            Some(s) => print(json, state_json(&s), || show(&s.value)),
            None => {
                return Err(Failure::Sdk(mercato_sdk::Error::Status {
                    call: "GetState",
                    code: tonic::Code::NotFound,
                    message: format!("{namespace}/{key:?} has no value"),
                }));
            }
        },
        LedgerCmd::Range {
            namespace,
            start,
            end,
            limit,
        } => {
            let mut from = start;
            let mut n = 0;
            'pages: loop {
                let page = ledger.state_range(&namespace, &from, &end, 0).await?;
                for s in &page.entries {
                    if n == limit {
                        break 'pages;
                    }
                    n += 1;
                    print(json, state_json(s), || {
                        format!("{} {}", s.key, show(&s.value))
                    });
                }
                if !page.more {
                    break;
                }
                from = page.next_start_key;
            }
        }
    }
    Ok(())
}
