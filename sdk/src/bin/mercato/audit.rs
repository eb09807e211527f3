//! `mercato audit verify` and `mercato audit export`: the auditor's commands. Both read a chain
//! from a peer (through the ledger query service) or from a copy of a peer's data directory.
//!
//! `verify` replays the chain through the peer's own validator (see `mercato_peer::audit`),
//! compares the recorded codes, commit hashes and world state with the replay's, and compares
//! the commit hash of every peer the channel lists; it exits 1 on any finding, naming the block
//! and transaction. `export` streams the transactions, or the commerce sales events, as JSON
//! Lines or CSV.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use mercato_peer::audit::{Audit, Finding, describe_transaction};
use mercato_peer::ledger::{LedgerStore, SledLedgerStore, Version, VersionedValue};
use mercato_proto::block::{commit_hash, metadata_entry, parse_block};
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::BlockMetadataIndex;
use mercato_proto::{Limits, ValidationCode};
use mercato_sdk::ledger::Ledger;
use mercato_sdk::{ConnectOptions, Gateway, Identity};
use serde_json::{Value, json};

use crate::Failure;
use crate::ledger::tx_json;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Replays the whole chain and checks it: hash chain, orderer, creator and endorsement
    /// signatures, endorsement policies, validation codes, commit hashes and world state; then
    /// compares the commit hash of every peer of the channel. Exits 1 on any finding.
    Verify {
        /// A copy of a peer's data directory (or its `ledger` folder) instead of a peer.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The channel's genesis block file: the chain must start with it.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Skip comparing the other peers' commit hashes.
        #[arg(long)]
        no_compare: bool,
    },
    /// Writes the transactions (or the commerce sales events) as JSON Lines or CSV.
    Export {
        /// A copy of a peer's data directory (or its `ledger` folder) instead of a peer.
        #[arg(long)]
        data: Option<PathBuf>,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// transactions, or sales (the commerce `order.*` events of valid transactions).
        #[arg(long, default_value = "transactions")]
        what: String,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        from_block: u64,
        /// The last block (default: the last committed).
        #[arg(long)]
        to_block: Option<u64>,
    },
}

impl AuditCmd {
    /// The data directory the command reads, if it works offline.
    pub fn data(&self) -> Option<&Path> {
        match self {
            AuditCmd::Verify { data, .. } | AuditCmd::Export { data, .. } => data.as_deref(),
        }
    }
}

/// Where the blocks come from.
pub enum Source {
    Dir(SledLedgerStore),
    Peer(Box<Ledger>),
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Sdk(mercato_sdk::Error::Malformed(e.to_string()))
}

impl Source {
    /// Opens a copy of a peer's ledger. A running peer holds its ledger's lock: copy the
    /// directory first.
    pub fn open_dir(data: &Path, channel: &str) -> Result<Self, Failure> {
        let ledger = if data.join("ledger").join("index").exists() {
            data.join("ledger")
        } else {
            data.to_path_buf()
        };
        if !ledger.join("index").exists() {
            return Err(usage(format!(
                "{}: not a peer's data directory (no ledger/index in it)",
                data.display()
            )));
        }
        SledLedgerStore::open(&ledger, channel)
            .map(Source::Dir)
            .map_err(|e| {
                usage(format!(
                    "{}: {e} (a running peer locks its ledger: audit a copy of the directory)",
                    ledger.display()
                ))
            })
    }

    async fn height(&self) -> Result<u64, Failure> {
        match self {
            Source::Dir(s) => Ok(s.savepoint().map_err(failed)?.map_or(0, |sp| sp.height())),
            Source::Peer(l) => Ok(l.chain_info().await?.height),
        }
    }

    async fn block(&self, number: u64) -> Result<Vec<u8>, Failure> {
        match self {
            Source::Dir(s) => s
                .block(number)
                .map_err(failed)?
                .ok_or_else(|| failed(format!("block {number} is missing"))),
            Source::Peer(l) => Ok(l.block(number).await?.block),
        }
    }

    /// Every state entry of the namespaces given (a peer is read page by page; a directory
    /// whole).
    async fn state(
        &self,
        namespaces: &[String],
    ) -> Result<Vec<(String, String, VersionedValue)>, Failure> {
        match self {
            Source::Dir(s) => s.state_snapshot().map_err(failed),
            Source::Peer(l) => {
                let mut out = Vec::new();
                for ns in namespaces {
                    let mut from = String::new();
                    loop {
                        let page = l.state_range(ns, &from, "", 1000).await?;
                        for e in page.entries {
                            let v = e.version.unwrap_or_default();
                            out.push((
                                e.namespace,
                                e.key,
                                VersionedValue {
                                    value: e.value,
                                    version: Version {
                                        block: v.block,
                                        tx: v.tx,
                                    },
                                },
                            ));
                        }
                        if !page.more {
                            break;
                        }
                        from = page.next_start_key;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Shows progress on a terminal: `what` n of total.
fn progress(what: &str, n: u64, total: u64, done: bool) {
    let tty = std::io::stderr().is_terminal();
    if tty && (done || n.is_multiple_of(50)) {
        eprint!("\r{what} block {n}/{total}");
        if done {
            eprintln!();
        }
    }
}

/// Reads a genesis block file's header hash.
fn genesis_hash(path: &Path) -> Result<[u8; 32], Failure> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let block = parse_block(&bytes, &Limits::DEFAULT)
        .map_err(|e| usage(format!("{}: not a block: {e}", path.display())))?;
    Ok(block_header_hash(&block.header.unwrap_or_default()))
}

/// Who to compare commit hashes with: the identity and connection options.
pub struct Peers {
    pub identity: Arc<Identity>,
    pub options: ConnectOptions,
}

/// The first block at which `ledger`'s commit hash differs from the replay's, knowing that it
/// differs at `last` (commit hashes chain, so the blocks before the first difference agree).
async fn first_divergence(ledger: &Ledger, audit: &Audit, last: u64) -> Result<u64, Failure> {
    let (mut lo, mut hi) = (0u64, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let theirs = ledger.block(mid).await?.commit_hash;
        if audit
            .commit_hash(mid)
            .is_some_and(|h| h.as_slice() == theirs)
        {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Compares one peer's commit hash with the replay's at the last block both have.
async fn compare_peer(name: &str, ledger: &Ledger, audit: &mut Audit) -> Result<String, Failure> {
    let info = ledger.chain_info().await?;
    let last = info.height.min(audit.blocks()).saturating_sub(1);
    let theirs = if info.height == last + 1 {
        info.commit_hash
    } else {
        ledger.block(last).await?.commit_hash
    };
    let ours = audit.commit_hash(last).unwrap_or_default();
    if theirs == ours {
        return Ok(format!(
            "{name}: height {}, commit hash at block {last} agrees",
            info.height
        ));
    }
    let first = first_divergence(ledger, audit, last).await?;
    audit.add_finding(Finding {
        block: first,
        tx: None,
        problem: format!(
            "peer {name}'s commit hash differs from the replay's from this block on (at block \
             {last}: {} against {})",
            hex::encode(&theirs),
            hex::encode(ours)
        ),
    });
    Ok(format!(
        "{name}: height {}, DIVERGES at block {first}",
        info.height
    ))
}

pub async fn verify(
    source: Source,
    genesis: Option<&Path>,
    compare: Option<(&Peers, Option<&Ledger>)>,
    json: bool,
) -> Result<bool, Failure> {
    let expected = genesis.map(genesis_hash).transpose()?;
    let mut height = source.height().await?;
    if height == 0 {
        return Err(failed("the ledger has no blocks"));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // The replay goes to a scratch ledger on disk, so that memory stays bounded however long
    // the chain; it is deleted when the audit ends.
    let scratch = tempfile::Builder::new()
        .prefix("mercato-audit-")
        .tempdir()
        .map_err(|e| failed(format!("a scratch directory for the replay: {e}")))?;
    let mut replay = SledLedgerStore::open(scratch.path(), "audit")
        .map_err(|e| failed(format!("{}: {e}", scratch.path().display())))?;
    replay.set_durable(false);
    let mut audit =
        Audit::new(&source.block(0).await?, expected, threads, Arc::new(replay)).map_err(failed)?;
    let mut notes = Vec::new();
    let mut peers = Vec::new();
    let mut next = 1;
    // A live peer commits while it is audited: replay up to its height, read its state, and go
    // round again if it moved on meanwhile (a copy of a data directory never does).
    for round in 1.. {
        for n in next..height {
            let bytes = source.block(n).await?;
            let go_on = audit.check_block(&bytes).map_err(failed)?;
            progress("verified", n + 1, height, n + 1 == height);
            if !go_on {
                break;
            }
        }
        next = height;
        // Past a broken block nothing can be compared: the state and the other peers' hashes
        // would only repeat the break.
        if audit.broken() {
            notes.push("state and other peers not compared: the chain breaks".to_owned());
            break;
        }
        let mut namespaces: Vec<String> = audit
            .replayed()
            .state_snapshot()
            .map_err(failed)?
            .into_iter()
            .map(|(ns, _, _)| ns)
            .collect();
        namespaces.dedup();
        let stored = source.state(&namespaces).await?;
        let now = source.height().await?;
        if now == height {
            audit.compare_state(stored).map_err(failed)?;
            break;
        }
        if round == 3 {
            notes.push(format!(
                "state not compared: the peer kept committing (height {now}); audit a copy of \
                 its data directory to compare it"
            ));
            break;
        }
        height = now;
    }
    if !audit.broken()
        && let Some((with, own)) = compare
    {
        if let Some(own) = own {
            peers.push(compare_peer("(the audited peer)", own, &mut audit).await?);
        }
        let config = audit.channel().clone();
        let roots = mercato_peer::gateway::tls_roots(
            config.application_orgs.iter().chain(&config.orderer_orgs),
        );
        for org in &config.application_orgs {
            for endpoint in &org.peers {
                let address = endpoint.to_string();
                let line = match Gateway::connect_with(
                    &address,
                    roots.as_bytes(),
                    Arc::clone(&with.identity),
                    ConnectOptions {
                        server_name: None,
                        ..with.options.clone()
                    },
                )
                .await
                {
                    Ok(g) => {
                        let l = g.network(&config.channel_id).ledger();
                        match compare_peer(&address, &l, &mut audit).await {
                            Ok(line) => line,
                            Err(Failure::Sdk(e)) => format!("{address}: not compared: {e}"),
                            Err(f) => return Err(f),
                        }
                    }
                    Err(e) => format!("{address}: not compared: {e}"),
                };
                peers.push(line);
            }
        }
    }
    let (txs, valid) = audit.transactions();
    let genesis = audit.genesis_hash();
    let last = audit.blocks().saturating_sub(1);
    let commit = audit.commit_hash(last).unwrap_or_default();
    let findings = audit.findings();
    if json {
        println!(
            "{}",
            json!({
                "channel": audit.channel().channel_id,
                "blocks": audit.blocks(),
                "height": height,
                "transactions": txs,
                "valid": valid,
                "genesis_hash": hex::encode(genesis),
                "commit_hash": hex::encode(commit),
                "peers": peers,
                "notes": notes,
                "findings": findings,
                "ok": findings.is_empty(),
            })
        );
    } else {
        println!(
            "channel {}: {} of {height} blocks replayed, {txs} transactions ({valid} valid)",
            audit.channel().channel_id,
            audit.blocks()
        );
        println!("genesis block {}", hex::encode(genesis));
        println!("commit hash at block {last}: {}", hex::encode(commit));
        for p in &peers {
            println!("peer {p}");
        }
        for n in &notes {
            println!("{n}");
        }
        if findings.is_empty() {
            println!("OK: no findings");
        } else {
            println!("{} findings:", findings.len());
            for f in findings {
                println!("  {f}");
            }
        }
    }
    Ok(findings.is_empty())
}

/// One CSV field, quoted when it must be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => csv_field(s),
        other => csv_field(&other.to_string()),
    }
}

const TX_COLUMNS: &[&str] = &[
    "block",
    "tx",
    "txid",
    "timestamp_ms",
    "code",
    "creator_msp",
    "creator",
    "chaincode",
    "function",
    "args",
    "writes",
    "event",
];
const SALE_COLUMNS: &[&str] = &[
    "block",
    "tx",
    "txid",
    "timestamp_ms",
    "event",
    "order",
    "status",
    "shop",
    "brand",
    "total",
];

/// A transaction's CSV columns, from its JSON form.
fn tx_row(t: &Value) -> Vec<Value> {
    vec![
        t["block"].clone(),
        t["tx"].clone(),
        t["txid"].clone(),
        t["timestamp_ms"].clone(),
        t["code"].clone(),
        t["creator"]["msp_id"].clone(),
        t["creator"]["name"].clone(),
        t["chaincode"].clone(),
        t["function"].clone(),
        json!(t["args"].to_string()),
        json!(t["writes"].as_array().map_or(0, Vec::len)),
        t["event"]["name"].clone(),
    ]
}

/// A sale event: the order's fields from a commerce `order.*` event of a valid transaction.
fn sale(t: &Value) -> Option<Value> {
    let event = &t["event"];
    let name = event["name"].as_str()?;
    if t["code"] != "VALID" || !name.starts_with("order.") {
        return None;
    }
    let p = &event["payload"];
    Some(json!({
        "block": t["block"], "tx": t["tx"], "txid": t["txid"], "timestamp_ms": t["timestamp_ms"],
        "event": name, "order": p["order"], "status": p["status"], "shop": p["shop"],
        "brand": p["brand"], "total": p["total"],
    }))
}

pub struct ExportOptions {
    pub csv: bool,
    pub sales: bool,
    pub from_block: u64,
    pub to_block: Option<u64>,
}

/// Streams the export to `out`; returns the rows written.
pub async fn export(source: Source, o: ExportOptions, out: &mut dyn Write) -> Result<u64, Failure> {
    let height = source.height().await?;
    if height == 0 {
        return Err(failed("the ledger has no blocks"));
    }
    let last = o.to_block.unwrap_or(height - 1);
    if last >= height || o.from_block > last {
        return Err(usage(format!(
            "blocks {}..={last} are not all committed (height {height})",
            o.from_block
        )));
    }
    let genesis = parse_block(&source.block(0).await?, &Limits::DEFAULT).map_err(failed)?;
    let msps = mercato_ca::channel::ChannelConfig::from_genesis(&genesis)
        .and_then(|c| c.msp_manager())
        .map_err(failed)?;
    let io = |e: std::io::Error| failed(format!("writing the export: {e}"));
    let columns = if o.sales { SALE_COLUMNS } else { TX_COLUMNS };
    if o.csv {
        writeln!(out, "{}", columns.join(",")).map_err(io)?;
    }
    let mut rows = 0u64;
    for n in o.from_block..=last {
        let bytes = source.block(n).await?;
        let block =
            parse_block(&bytes, &Limits::DEFAULT).map_err(|e| failed(format!("block {n}: {e}")))?;
        if let Err(e) = commit_hash(&block) {
            return Err(failed(format!("block {n}: {e}")));
        }
        let codes = metadata_entry(&block, BlockMetadataIndex::TransactionsFilter)
            .unwrap_or_default()
            .to_vec();
        let envelopes = block.data.map(|d| d.data).unwrap_or_default();
        for (i, env) in envelopes.iter().enumerate() {
            let code = ValidationCode(codes.get(i).copied().unwrap_or(u8::MAX));
            let info = describe_transaction(&msps, env, n, i as u64, code);
            let t = tx_json(&info);
            let record = if o.sales {
                match sale(&t) {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                t
            };
            if o.csv {
                let fields: Vec<Value> = if o.sales {
                    columns.iter().map(|c| record[*c].clone()).collect()
                } else {
                    tx_row(&record)
                };
                let line: Vec<String> = fields.iter().map(csv_value).collect();
                writeln!(out, "{}", line.join(",")).map_err(io)?;
            } else {
                writeln!(out, "{record}").map_err(io)?;
            }
            rows += 1;
        }
        progress("exported", n + 1, last + 1, n == last);
    }
    out.flush().map_err(io)?;
    Ok(rows)
}
