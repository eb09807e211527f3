//! `mercato`: the command line for sellers, brands, operators and auditors.
//!
//! ```sh
//! mercato --profile seller1.toml tx submit commerce OpenShop shop-1 "Ana's picks"
//! mercato --profile seller1.toml tx evaluate commerce GetShop shop-1 --json
//! mercato --profile seller1.toml events commerce --from-block 0
//! mercato --profile auditor.toml ledger info                # height, hashes, commit hash
//! mercato --profile auditor.toml ledger tx TXID --json      # a transaction, decoded
//! mercato --profile auditor.toml audit verify               # replay and check the whole chain
//! mercato --channel commerce audit verify --data COPY_OF_PEER_DATA
//! mercato --profile auditor.toml audit export --what sales --format csv --out sales.csv
//! ```
//!
//! The identity, the peer and the channel come from flags or a profile file (TOML with the same
//! names: `peer`, `tls_root`, `server_name`, `msp_id`, `msp_dir`, `channel`); flags win. Paths
//! in a profile are relative to its folder.

mod audit;
mod ledger;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mercato_sdk::{ConnectOptions, Error, EventsFrom, Gateway, load_identity};
use serde::Deserialize;

#[derive(Parser)]
#[command(
    name = "mercato",
    about = "Mercato client: transactions, events, ledger queries and audits",
    version
)]
struct Cli {
    /// A profile file with the connection settings.
    #[arg(long, global = true, env = "MERCATO_PROFILE")]
    profile: Option<PathBuf>,
    /// The peer's Gateway, host:port.
    #[arg(long, global = true)]
    peer: Option<String>,
    /// The PEM TLS root(s) the peer's certificate chains to.
    #[arg(long, global = true)]
    tls_root: Option<PathBuf>,
    /// The name on the peer's TLS certificate, if not the host connected to.
    #[arg(long, global = true)]
    server_name: Option<String>,
    #[arg(long, global = true)]
    msp_id: Option<String>,
    /// The identity's MSP folder (signcerts/, keystore/).
    #[arg(long, global = true)]
    msp_dir: Option<PathBuf>,
    #[arg(long, global = true)]
    channel: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transactions.
    Tx {
        #[command(subcommand)]
        tx: Tx,
    },
    /// Streams a chaincode's events until interrupted.
    Events {
        chaincode: String,
        /// The first block (default: the next block to commit).
        #[arg(long)]
        from_block: Option<u64>,
        /// Resume after this transaction's event.
        #[arg(long)]
        after_tx: Option<String>,
        /// Stop after this many blocks with events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Ledger queries: chain info, blocks, transactions, key history and state.
    Ledger {
        #[command(subcommand)]
        query: ledger::LedgerCmd,
    },
    /// The auditor's commands: verify the whole chain, export it.
    Audit {
        #[command(subcommand)]
        audit: audit::AuditCmd,
    },
    /// Drives load at the peer's Gateway and reports committed TPS and latency.
    Bench {
        /// The chaincode, with the functions of chaincode/kv (`put`, `rmw`).
        #[arg(long, default_value = "kv")]
        chaincode: String,
        /// kv: blind writes to unique keys; rmw: read-modify-write of --keys keys; orders: whole
        /// commerce orders (place, ship, confirm) through --shop for --brand's --sku.
        #[arg(long, default_value = "kv")]
        workload: String,
        /// Concurrent clients (closed loop), or the bound on transactions in flight (open loop).
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Open loop: transactions per second to offer.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 5)]
        warmup_secs: u64,
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        /// Gateway connections (default: one per 64 clients).
        #[arg(long)]
        connections: Option<usize>,
        /// Also write the report as an SVG plot.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// orders: the shop to buy in (the identity must not own it).
        #[arg(long)]
        shop: Option<String>,
        /// orders: the brand whose product is bought (the identity must operate it, to ship).
        #[arg(long)]
        brand: Option<String>,
        #[arg(long)]
        sku: Option<String>,
    },
}

#[derive(Subcommand)]
enum Tx {
    /// Endorses, orders and commits a transaction; prints its result and block.
    Submit {
        chaincode: String,
        function: String,
        args: Vec<String>,
        /// Return once ordered, without waiting for the commit.
        #[arg(long = "async")]
        no_wait: bool,
    },
    /// Runs a query on the peer; prints its result.
    Evaluate {
        chaincode: String,
        function: String,
        args: Vec<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    peer: Option<String>,
    tls_root: Option<PathBuf>,
    server_name: Option<String>,
    msp_id: Option<String>,
    msp_dir: Option<PathBuf>,
    channel: Option<String>,
}

fn load_profile(path: &Path) -> Result<Profile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p: Profile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for f in [&mut p.tls_root, &mut p.msp_dir].into_iter().flatten() {
        if f.is_relative() {
            *f = base.join(&*f);
        }
    }
    Ok(p)
}

/// A result as text when it is printable UTF-8, else as hex.
pub(crate) fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_owned(),
        _ => format!("0x{}", hex::encode(bytes)),
    }
}

pub(crate) fn json_value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| serde_json::Value::String(show(bytes)))
}

fn error_json(e: &Error) -> serde_json::Value {
    let mut v = serde_json::json!({ "error": e.to_string(), "retryable": e.is_retryable() });
    if let Error::Commit { code, block, txid } = e {
        v["code"] = code.name().into();
        v["block"] = (*block).into();
        v["txid"] = txid.clone().into();
    }
    if !e.failures().is_empty() {
        v["failures"] = e
            .failures()
            .iter()
            .map(|f| serde_json::json!({"address": f.address, "msp_id": f.msp_id, "message": f.message}))
            .collect();
    }
    v
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Findings) => ExitCode::from(1),
        Err(Failure::Usage(m)) => {
            eprintln!("mercato: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Sdk(e)) => {
            if json {
                println!("{}", error_json(&e));
            } else {
                eprintln!("mercato: {e}");
            }
            ExitCode::from(1)
        }
    }
}

pub(crate) enum Failure {
    Usage(String),
    Sdk(Error),
    /// An audit found something wrong (and printed it).
    Findings,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Sdk(e)
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let profile = match &cli.profile {
        Some(p) => load_profile(p).map_err(Failure::Usage)?,
        None => Profile::default(),
    };
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| {
            Failure::Usage(format!(
                "--{what} is needed (or `{}` in a profile)",
                what.replace('-', "_")
            ))
        })
    };
    // Auditing a copy of a data directory needs no peer and no identity.
    if let Command::Audit { audit } = &cli.command
        && let Some(data) = audit.data()
    {
        let channel = need(cli.channel.clone().or(profile.channel), "channel")?;
        let source = audit::Source::open_dir(data, &channel)?;
        return run_audit(source, cli.command, None, cli.json).await;
    }
    let peer = need(cli.peer.or(profile.peer), "peer")?;
    let msp_id = need(cli.msp_id.or(profile.msp_id), "msp-id")?;
    let channel = need(cli.channel.or(profile.channel), "channel")?;
    let tls_root = cli.tls_root.or(profile.tls_root).ok_or_else(|| {
        Failure::Usage("--tls-root is needed (or `tls_root` in a profile)".into())
    })?;
    let msp_dir = cli
        .msp_dir
        .or(profile.msp_dir)
        .ok_or_else(|| Failure::Usage("--msp-dir is needed (or `msp_dir` in a profile)".into()))?;
    let roots = std::fs::read(&tls_root)
        .map_err(|e| Failure::Usage(format!("{}: {e}", tls_root.display())))?;
    let identity = load_identity(&msp_id, &msp_dir)?;
    let options = ConnectOptions {
        server_name: cli.server_name.or(profile.server_name),
        ..Default::default()
    };
    let identity = std::sync::Arc::new(identity);
    let gateway = Gateway::connect_with(
        &peer,
        &roots,
        std::sync::Arc::clone(&identity),
        options.clone(),
    )
    .await?;
    let network = gateway.network(&channel);
    let json = cli.json;
    match cli.command {
        Command::Ledger { query } => ledger::run(&network, query, json).await?,
        command @ Command::Audit { .. } => {
            let source = audit::Source::Peer(Box::new(network.ledger()));
            let peers = audit::Peers { identity, options };
            return run_audit(source, command, Some((&peers, &network)), json).await;
        }
        Command::Tx { tx } => match tx {
            Tx::Submit {
                chaincode,
                function,
                args,
                no_wait,
            } => {
                let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                let pending = network
                    .contract(&chaincode)
                    .submit_async(&function, &args)
                    .await?;
                if no_wait {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"txid": pending.txid, "status": "SUBMITTED", "result": json_value(&pending.result)})
                        );
                    } else {
                        println!("submitted {}\n{}", pending.txid, show(&pending.result));
                    }
                    return Ok(());
                }
                let done = pending.status().await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"txid": done.txid, "status": "VALID", "block": done.block, "result": json_value(&done.result)})
                    );
                } else {
                    println!(
                        "committed {} in block {}\n{}",
                        done.txid,
                        done.block,
                        show(&done.result)
                    );
                }
            }
            Tx::Evaluate {
                chaincode,
                function,
                args,
            } => {
                let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                let result = network
                    .contract(&chaincode)
                    .evaluate(&function, &args)
                    .await?;
                if json {
                    println!("{}", serde_json::json!({"result": json_value(&result)}));
                } else {
                    println!("{}", show(&result));
                }
            }
        },
        Command::Bench {
            chaincode,
            workload,
            clients,
            rate,
            warmup_secs,
            duration_secs,
            value_bytes,
            keys,
            connections,
            svg,
            shop,
            brand,
            sku,
        } => {
            use mercato_sdk::bench;
            let workload = match workload.as_str() {
                "kv" => bench::Workload::Kv { value_bytes },
                "rmw" => bench::Workload::Rmw { keys, value_bytes },
                "orders" => match (shop, brand, sku) {
                    (Some(shop), Some(brand), Some(sku)) => bench::Workload::Orders {
                        routes: vec![bench::OrderRoute { shop, brand, sku }],
                    },
                    _ => {
                        return Err(Failure::Usage(
                            "--workload orders needs --shop, --brand and --sku".into(),
                        ));
                    }
                },
                other => {
                    return Err(Failure::Usage(format!(
                        "--workload {other:?}: kv, rmw or orders"
                    )));
                }
            };
            if clients == 0 {
                return Err(Failure::Usage("--clients must be at least 1".into()));
            }
            let mut contracts = vec![network.contract(&chaincode)];
            for _ in 1..connections.unwrap_or(clients.div_ceil(64)).max(1) {
                let g = Gateway::connect_with(
                    &peer,
                    &roots,
                    std::sync::Arc::clone(&identity),
                    options.clone(),
                )
                .await?;
                contracts.push(g.network(&channel).contract(&chaincode));
            }
            let report = bench::run(
                contracts,
                bench::Options {
                    workload,
                    clients,
                    rate,
                    warmup: std::time::Duration::from_secs(warmup_secs),
                    duration: std::time::Duration::from_secs(duration_secs),
                    progress: true,
                },
            )
            .await;
            if let Some(path) = svg {
                std::fs::write(&path, bench::svg(&report))
                    .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
            }
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "{} ({}): {} committed in {:.0} s = {:.1} TPS; latency p50 {:.1} ms, p95 {:.1}, p99 {:.1}, max {:.1}; failures {:?}",
                    report.workload,
                    report.mode,
                    report.committed,
                    report.seconds,
                    report.tps,
                    report.latency_ms.p50,
                    report.latency_ms.p95,
                    report.latency_ms.p99,
                    report.latency_ms.max,
                    report.failures
                );
                if let Some(per_s) = report.orders_per_s {
                    println!(
                        "orders: {} settled = {per_s:.1} orders/s",
                        report.orders_settled.unwrap_or(0)
                    );
                }
            }
        }
        Command::Events {
            chaincode,
            from_block,
            after_tx,
            count,
        } => {
            let mut events = network
                .chaincode_events(
                    &chaincode,
                    EventsFrom {
                        block: from_block,
                        after_txid: after_tx,
                    },
                )
                .await?;
            let mut seen = 0u64;
            while let Some((block, list)) = events.next().await? {
                for e in list {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"block": block, "txid": e.tx_id, "name": e.event_name, "payload": json_value(&e.payload)})
                        );
                    } else {
                        println!(
                            "block {block} tx {} {}: {}",
                            e.tx_id,
                            e.event_name,
                            show(&e.payload)
                        );
                    }
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn run_audit(
    source: audit::Source,
    command: Command,
    peers: Option<(&audit::Peers, &mercato_sdk::Network)>,
    json: bool,
) -> Result<(), Failure> {
    let Command::Audit { audit } = command else {
        return Ok(());
    };
    match audit {
        audit::AuditCmd::Verify {
            genesis,
            no_compare,
            ..
        } => {
            let own = peers.map(|(_, n)| n.ledger());
            let compare = peers
                .filter(|_| !no_compare)
                .map(|(p, _)| (p, own.as_ref()));
            if audit::verify(source, genesis.as_deref(), compare, json).await? {
                Ok(())
            } else {
                Err(Failure::Findings)
            }
        }
        audit::AuditCmd::Export {
            format,
            what,
            out,
            from_block,
            to_block,
            ..
        } => {
            let csv = match format.as_str() {
                "jsonl" => false,
                "csv" => true,
                other => return Err(Failure::Usage(format!("--format {other:?}: jsonl or csv"))),
            };
            let sales = match what.as_str() {
                "transactions" => false,
                "sales" => true,
                other => {
                    return Err(Failure::Usage(format!(
                        "--what {other:?}: transactions or sales"
                    )));
                }
            };
            let options = audit::ExportOptions {
                csv,
                sales,
                from_block,
                to_block,
            };
            let rows = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?;
                    let mut w = std::io::BufWriter::new(file);
                    audit::export(source, options, &mut w).await?
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    audit::export(source, options, &mut w).await?
                }
            };
            if let Some(path) = &out {
                eprintln!("wrote {rows} rows to {}", path.display());
            }
            Ok(())
        }
    }
}
