//! `mercato-deploy`: brings a Mercato network up on this machine and manages it.
//!
//! ```sh
//! cargo run --release -p mercato-deploy -- up            # everything, then the demo; Ctrl-C stops it
//! cargo run --release -p mercato-deploy -- up --demo     # the same, then exits; the nodes keep running
//! cargo run --release -p mercato-deploy -- status
//! cargo run --release -p mercato-deploy -- restart peer0.Brand1MSP
//! cargo run --release -p mercato-deploy -- down [--purge]
//! ```

/// jemalloc: sled's frees on its own threads contend on glibc's arena locks (see the
/// workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mercato_deploy::demo;
use mercato_deploy::network::{self, Kind, State, step};
use mercato_deploy::spec::{BENCH, DEFAULT, Scheme, Spec};

#[derive(Parser)]
#[command(
    name = "mercato-deploy",
    about = "Runs a Mercato network on this machine",
    version
)]
struct Cli {
    /// The network spec (default: deploy/network.toml, built in).
    #[arg(long, global = true)]
    spec: Option<PathBuf>,
    /// Overrides the spec's data directory.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Brings the network up (or resumes it) and runs the demo.
    Up {
        /// Exit after the demo, leaving the nodes running (stop them with `down`).
        #[arg(long)]
        demo: bool,
        /// Overrides the spec's first port.
        #[arg(long)]
        base_port: Option<u16>,
        /// Print the demo's outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stops every node, keeping the data (`--purge` deletes it).
    Down {
        #[arg(long)]
        purge: bool,
    },
    /// Each node's health, height and, for orderers, the Raft leader.
    Status,
    /// Restarts one node by name (as `status` lists them).
    Restart { name: String },
    /// Brings up the benchmark network (deploy/bench.toml unless --spec: two brand orgs, 2-of-2
    /// endorsement, 3 Raft orderers) and drives load at both brands' gateways.
    Bench {
        /// kv: blind writes of 100 bytes to unique keys; rmw: read-modify-write of 1000 keys;
        /// orders: whole commerce orders (place, ship, confirm: escrow settled to hot accounts).
        #[arg(long, default_value = "kv")]
        workload: String,
        /// Concurrent clients (closed loop), or the in-flight bound (open loop).
        #[arg(long, default_value_t = 128)]
        clients: usize,
        /// Open loop: transactions per second offered.
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 5)]
        warmup_secs: u64,
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        /// Overrides the spec's signature scheme: p256 or ed25519.
        #[arg(long)]
        scheme: Option<String>,
        /// Leave the network running afterwards.
        #[arg(long)]
        keep: bool,
        /// Run on the benchmark network already in the data directory, ledger and all, instead
        /// of a new one (its ledger then grows with every run).
        #[arg(long)]
        reuse: bool,
    },
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn load_spec(cli: &Cli) -> Result<Spec> {
    let text = match &cli.spec {
        Some(p) => std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
        None if matches!(cli.command, Command::Bench { .. }) => BENCH.to_owned(),
        None => DEFAULT.to_owned(),
    };
    let mut spec = Spec::parse(&text).map_err(|e| anyhow::anyhow!("the network spec: {e}"))?;
    if let Some(d) = &cli.data_dir {
        spec.data_dir = d.clone();
    }
    Ok(spec)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mercato-deploy: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut spec = load_spec(&cli)?;
    match cli.command {
        Command::Up {
            demo,
            base_port,
            json,
        } => {
            if let Some(p) = base_port {
                spec.base_port = p;
                spec.validate()
                    .map_err(|e| anyhow::anyhow!("the network spec: {e}"))?;
            }
            up(spec, demo, json).await
        }
        Command::Down { purge } => down(&spec.data_dir, purge),
        Command::Status => status(&spec.data_dir).await,
        Command::Restart { name } => restart(&spec.data_dir, &name).await,
        Command::Bench {
            workload,
            clients,
            rate,
            warmup_secs,
            duration_secs,
            scheme,
            keep,
            reuse,
        } => {
            match scheme.as_deref() {
                None => {}
                Some("p256") => spec.scheme = Scheme::P256,
                Some("ed25519") => spec.scheme = Scheme::Ed25519,
                Some(other) => bail!("--scheme {other:?}: p256 or ed25519"),
            }
            let workload = match workload.as_str() {
                "kv" => mercato_sdk::bench::Workload::Kv { value_bytes: 100 },
                "rmw" => mercato_sdk::bench::Workload::Rmw {
                    keys: 1000,
                    value_bytes: 100,
                },
                // The routes are made once the network is up (bench prepares the marketplace).
                "orders" => mercato_sdk::bench::Workload::Orders { routes: Vec::new() },
                other => bail!("--workload {other:?}: kv, rmw or orders"),
            };
            let options = mercato_sdk::bench::Options {
                workload,
                clients: clients.max(1),
                rate,
                warmup: Duration::from_secs(warmup_secs),
                duration: Duration::from_secs(duration_secs.max(1)),
                progress: true,
            };
            if !reuse {
                fresh(&spec)?;
            }
            bench(spec, options, keep).await
        }
    }
}

/// The most benchmark clients sharing one gateway connection: the peers serve up to 256
/// requests at once per connection (`concurrency_limit_per_connection`).
const CLIENTS_PER_CONNECTION: usize = 256;

/// Whether a recorded network is one of `spec` (its channel and organisations), so that `spec`
/// may resume or replace it.
fn same_network(recorded: &Spec, spec: &Spec) -> bool {
    recorded.channel == spec.channel && recorded.orgs == spec.orgs
}

/// Deletes the benchmark network of an earlier run, so that every run starts from the same
/// empty ledger with the identities of the scheme asked for. Only a network of this same spec
/// (the one `bench` would otherwise resume) is deleted; any other is left for `bring_up` to
/// refuse.
fn fresh(spec: &Spec) -> Result<()> {
    let data = &spec.data_dir;
    if let Some(state) = State::load(data)?
        && same_network(&state.spec, spec)
    {
        step(&format!(
            "deleting the previous benchmark network in {} (--reuse keeps it)",
            data.display()
        ));
        down(data, true)?;
    }
    Ok(())
}

async fn up(spec: Spec, demo_only: bool, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let workspace = workspace();
    let mut state = bring_up(spec, &workspace).await?;
    let data = state.spec.data_dir.clone();
    let outcome = demo::run(&mut state).await?;
    state.save(&data)?;
    report_demo(&outcome, &data, started, json)?;
    if demo_only {
        eprintln!("The nodes keep running; stop them with `mercato-deploy down`.");
        return Ok(());
    }
    eprintln!("The network runs until Ctrl-C.");
    let _ = tokio::signal::ctrl_c().await;
    step("stopping the network (its data is kept; `up` resumes it)");
    down(&data, false)
}

/// Creates or resumes the network of `spec`, starts what is not running, waits until all is
/// healthy and defines the chaincodes.
async fn bring_up(spec: Spec, workspace: &Path) -> Result<State> {
    let bins = network::binaries(workspace)?;
    let data = spec.data_dir.clone();
    let mut state = match State::load(&data)? {
        Some(state) => {
            if !same_network(&state.spec, &spec) {
                bail!(
                    "{} holds a network of another spec; use another --data-dir or `down --purge`",
                    data.display()
                );
            }
            if state.spec.scheme != spec.scheme {
                bail!(
                    "{} holds a network of {:?} identities, not {:?}; use another --data-dir or `down --purge`",
                    data.display(),
                    state.spec.scheme,
                    spec.scheme
                );
            }
            step(&format!("resuming the network in {}", data.display()));
            state
        }
        None => {
            if data.exists() && std::fs::read_dir(&data)?.next().is_some() {
                bail!(
                    "{} exists and is not a Mercato network (no network.json); choose another --data-dir",
                    data.display()
                );
            }
            step(&format!("creating a network in {}", data.display()));
            let state = match network::create(&spec, &bins).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "creating the network failed; its CAs are stopped and {} can be deleted",
                        data.display()
                    );
                    stop_cas_of_failed_create(&data);
                    return Err(e);
                }
            };
            state.save(&data)?;
            state
        }
    };
    // Start whatever is not running: CAs, then orderers, then peers.
    for kind in [Kind::Ca, Kind::Orderer, Kind::Peer] {
        for i in 0..state.nodes.len() {
            if state.nodes[i].kind != kind {
                continue;
            }
            if state.nodes[i].pid.is_some_and(network::alive) {
                continue;
            }
            step(&format!(
                "starting {} ({})",
                state.nodes[i].name, state.nodes[i].listen
            ));
            network::spawn(&bins, &mut state.nodes[i])?;
        }
        state.save(&data)?;
        for n in state.nodes.iter().filter(|n| n.kind == kind) {
            network::wait_ready(n, Duration::from_secs(60)).await?;
        }
    }
    step("all nodes are healthy");
    demo::define_chaincodes(&mut state, workspace).await?;
    Ok(state)
}

fn report_demo(
    outcome: &demo::DemoOutcome,
    data: &Path,
    started: std::time::Instant,
    json: bool,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
    }
    eprintln!();
    eprintln!(
        "Demo run {} done in {:.1} s:",
        outcome.run,
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "  order {} is {}; bob's review opened {}",
        outcome.order, outcome.order_status, outcome.personal_shop
    );
    eprintln!(
        "  balances: bob {}, sam's commissions {}, platform fees {}, brand revenue {}",
        outcome.buyer_balance,
        outcome.seller_commission,
        outcome.platform_fees,
        outcome.brand_revenue
    );
    eprintln!(
        "  the auditor verified {} blocks ({} transactions): hash chain and data hashes",
        outcome.blocks_verified, outcome.transactions_verified
    );
    eprintln!();
    eprintln!("Where to look:");
    eprintln!("  {}/logs/            one log per node", data.display());
    eprintln!("  {}/profiles/        CLI profiles, e.g.", data.display());
    eprintln!(
        "    cargo run -p mercato-sdk --bin mercato -- --profile {}/profiles/eve.toml tx evaluate commerce balance platform:fees",
        data.display()
    );
    eprintln!("  mercato-deploy status | restart NAME | down [--purge]");
    Ok(())
}

/// After a failed create, stops the CAs it started (found by their pid in the logs' record).
fn stop_cas_of_failed_create(data: &Path) {
    // Nothing is recorded before create succeeds; CAs are found by their command line.
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let home = std::path::absolute(data).unwrap_or_else(|_| data.to_path_buf());
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("mercato-ca") && cmdline.contains(&*home.to_string_lossy()) {
            let mut node = network::Node {
                name: format!("pid {pid}"),
                kind: Kind::Ca,
                msp_id: String::new(),
                listen: String::new(),
                operations: None,
                home: PathBuf::new(),
                log: PathBuf::new(),
                pid: Some(pid),
            };
            network::stop(&mut node);
        }
    }
}

fn down(data: &Path, purge: bool) -> Result<()> {
    let Some(mut state) = State::load(data)? else {
        if purge && data.exists() {
            bail!(
                "{} is not a Mercato network (no network.json); not deleting it",
                data.display()
            );
        }
        eprintln!("no network in {}", data.display());
        return Ok(());
    };
    // Peers first, then orderers, then CAs.
    for kind in [Kind::Peer, Kind::Orderer, Kind::Ca] {
        for n in state.nodes.iter_mut().filter(|n| n.kind == kind) {
            if n.pid.is_some() {
                eprintln!("stopping {}", n.name);
            }
            network::stop(n);
        }
    }
    state.save(data)?;
    if purge {
        std::fs::remove_dir_all(data).with_context(|| format!("deleting {}", data.display()))?;
        eprintln!("deleted {}", data.display());
    }
    Ok(())
}

async fn status(data: &Path) -> Result<()> {
    let Some(state) = State::load(data)? else {
        bail!("no network in {}", data.display());
    };
    println!(
        "{:<22} {:<8} {:<18} {:<9} {:>7}  leader",
        "node", "kind", "address", "health", "height"
    );
    for n in &state.nodes {
        let running = n.pid.is_some_and(network::alive);
        let (health, height, leader) = match (&n.operations, running) {
            (_, false) => ("stopped".to_string(), String::new(), String::new()),
            (None, true) => ("running".to_string(), String::new(), String::new()),
            (Some(ops), true) => match (
                network::http_get(ops, "/healthz").await,
                network::http_get(ops, "/metrics").await,
            ) {
                (Ok((h, _)), Ok((_, m))) => {
                    let prefix = if n.kind == Kind::Peer {
                        "mercato_peer"
                    } else {
                        "mercato_orderer"
                    };
                    (
                        if h.contains(" 200 ") {
                            "healthy"
                        } else {
                            "unhealthy"
                        }
                        .to_string(),
                        network::metric(&m, &format!("{prefix}_height"))
                            .map(|h| h.to_string())
                            .unwrap_or_default(),
                        network::metric(&m, "mercato_orderer_raft_leader")
                            .map(|l| format!("orderer{l}"))
                            .unwrap_or_default(),
                    )
                }
                _ => ("no answer".to_string(), String::new(), String::new()),
            },
        };
        let kind = match n.kind {
            Kind::Ca => "ca",
            Kind::Orderer => "orderer",
            Kind::Peer => "peer",
        };
        println!(
            "{:<22} {:<8} {:<18} {:<9} {:>7}  {}",
            n.name, kind, n.listen, health, height, leader
        );
    }
    Ok(())
}

async fn restart(data: &Path, name: &str) -> Result<()> {
    let Some(mut state) = State::load(data)? else {
        bail!("no network in {}", data.display());
    };
    let bins = network::binaries(&workspace())?;
    let Some(i) = state.nodes.iter().position(|n| n.name == name) else {
        let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
        bail!("no node {name}; the nodes are {}", names.join(", "));
    };
    step(&format!("stopping {name}"));
    network::stop(&mut state.nodes[i]);
    step(&format!("starting {name}"));
    network::spawn(&bins, &mut state.nodes[i])?;
    state.save(data)?;
    network::wait_ready(&state.nodes[i], Duration::from_secs(60)).await?;
    step(&format!("{name} is healthy"));
    Ok(())
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

/// A process's peak resident memory, MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The signature floor on this machine: per transaction 5 signs and 9 verifies of the scheme
/// (client, endorsers, orderer, committers), spread over the cores.
fn signature_floor(scheme: Scheme) -> Result<(f64, f64, f64)> {
    use mercato_ca::{KeyAlgorithm, SigningKey};
    let alg = match scheme {
        Scheme::P256 => KeyAlgorithm::EcdsaP256,
        Scheme::Ed25519 => KeyAlgorithm::Ed25519,
    };
    let (key, _) = SigningKey::generate(alg)?;
    let public = key.public_key()?;
    let message = [7u8; 256];
    let n = 300;
    let t = std::time::Instant::now();
    let mut sig = Vec::new();
    for _ in 0..n {
        sig = key.sign(&message)?;
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        public.verify(&message, &sig)?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1) as f64;
    let floor = cores * 1e6 / (5.0 * sign_us + 9.0 * verify_us);
    Ok((sign_us, verify_us, floor))
}

async fn bench(spec: Spec, mut options: mercato_sdk::bench::Options, keep: bool) -> Result<()> {
    let workspace = workspace();
    let scheme = spec.scheme;
    let state = bring_up(spec, &workspace).await?;
    let data = state.spec.data_dir.clone();
    // kv and rmw drive the first chaincode of the spec; orders drive commerce.
    let chaincode = match &options.workload {
        mercato_sdk::bench::Workload::Orders { .. } => state
            .spec
            .chaincodes
            .iter()
            .find(|c| c.package == "mercato-commerce")
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("the orders workload needs the commerce chaincode in the spec")
            })?,
        _ => state
            .spec
            .chaincodes
            .first()
            .map(|c| c.name.clone())
            .ok_or_else(|| anyhow::anyhow!("the spec defines no chaincode to drive"))?,
    };
    // Every brand's client drives its own organisation's peer, over several connections.
    let users: Vec<String> = state
        .spec
        .orgs
        .iter()
        .filter_map(|o| o.brand.as_ref().map(|b| format!("{b}-ops")))
        .collect();
    if users.is_empty() {
        bail!("the benchmark needs a brand organisation's client");
    }
    if let mercato_sdk::bench::Workload::Orders { routes } = &mut options.workload {
        step("preparing the marketplace: the platform, both brands, a product and a shop each");
        *routes = demo::prepare_orders(&state, &chaincode, &users).await?;
    }
    // As few connections as the peers' limit of requests in flight per connection allows:
    // each connection's writes then carry more requests per system call.
    let per_user = options
        .clients
        .div_ceil(users.len() * CLIENTS_PER_CONNECTION)
        .max(1);
    let mut contracts = Vec::new();
    for _ in 0..per_user {
        for u in &users {
            let g = demo::gateway(&state, u).await?;
            contracts.push(g.network(&state.spec.channel).contract(&chaincode));
        }
    }
    let ticks = clock_ticks();
    let pids: Vec<(String, u32)> = state
        .nodes
        .iter()
        .filter(|n| n.kind != Kind::Ca)
        .filter_map(|n| n.pid.map(|p| (n.name.clone(), p)))
        .collect();
    let me = std::process::id();
    let cpu_before: Vec<f64> = pids
        .iter()
        .map(|(_, p)| cpu_seconds(*p, ticks).unwrap_or(0.0))
        .collect();
    let me_before = cpu_seconds(me, ticks).unwrap_or(0.0);
    step(&format!(
        "driving {} on {chaincode}: {} for {} s after {} s of warm-up",
        match &options.workload {
            mercato_sdk::bench::Workload::Kv { .. } => "kv (blind writes to unique keys)",
            mercato_sdk::bench::Workload::Rmw { .. } => "rmw (read-modify-write of 1000 keys)",
            mercato_sdk::bench::Workload::Orders { .. } =>
                "orders (place, ship, confirm: each settlement credits the brand, the shop owner and the fee account)",
        },
        match options.rate {
            None => format!("{} closed-loop clients", options.clients),
            Some(r) => format!("{r} tx/s offered"),
        },
        options.duration.as_secs(),
        options.warmup.as_secs()
    ));
    let report = mercato_sdk::bench::run(contracts, options).await;
    let mut processes = serde_json::Map::new();
    for ((name, pid), before) in pids.iter().zip(cpu_before) {
        let cpu = cpu_seconds(*pid, ticks).unwrap_or(0.0) - before;
        processes.insert(
            name.clone(),
            serde_json::json!({"cpu_seconds": (cpu * 100.0).round() / 100.0, "peak_rss_mib": peak_rss_mib(*pid).map(|m| m.round())}),
        );
    }
    processes.insert(
        "client (this process)".into(),
        serde_json::json!({"cpu_seconds": ((cpu_seconds(me, ticks).unwrap_or(0.0) - me_before) * 100.0).round() / 100.0, "peak_rss_mib": peak_rss_mib(me).map(|m| m.round())}),
    );
    let (sign_us, verify_us, floor) = signature_floor(scheme)?;
    let full = serde_json::json!({
        "scheme": format!("{scheme:?}"),
        "report": report,
        "processes": processes,
        "signature_floor": {"sign_us": sign_us, "verify_us": verify_us, "tps": floor, "reached": report.tps / floor},
    });
    let name = format!("bench-{}-{:?}", report.workload, scheme).to_lowercase();
    std::fs::write(
        data.join(format!("{name}.json")),
        serde_json::to_vec_pretty(&full)?,
    )?;
    std::fs::write(
        data.join(format!("{name}.svg")),
        mercato_sdk::bench::svg(&report),
    )?;
    println!("{}", serde_json::to_string(&full)?);
    eprintln!();
    eprintln!(
        "{} ({}, {:?}): {:.0} committed TPS over {:.0} s; submit-to-commit latency p50 {:.1} ms, p95 {:.1}, p99 {:.1}, max {:.1}; failures {:?}",
        report.workload,
        report.mode,
        scheme,
        report.tps,
        report.seconds,
        report.latency_ms.p50,
        report.latency_ms.p95,
        report.latency_ms.p99,
        report.latency_ms.max,
        report.failures
    );
    if let (Some(settled), Some(per_s)) = (report.orders_settled, report.orders_per_s) {
        let attempts = report.committed + report.failures.values().sum::<u64>();
        let mvcc: u64 = report
            .failures
            .iter()
            .filter(|(k, _)| k.contains("MVCC") || k.contains("PHANTOM"))
            .map(|(_, n)| n)
            .sum();
        eprintln!(
            "orders: {settled} settled = {per_s:.1} orders/s; MVCC conflicts {mvcc} of {attempts} transactions ({:.2} %)",
            100.0 * mvcc as f64 / attempts.max(1) as f64
        );
    }
    eprintln!(
        "signature floor here: sign {sign_us:.1} µs, verify {verify_us:.1} µs -> {floor:.0} TPS for 5 signs + 9 verifies per transaction; reached {:.0} %",
        100.0 * report.tps / floor
    );
    for (name, p) in &processes {
        eprintln!(
            "  {name:<24} {} CPU s, peak RSS {} MiB",
            p["cpu_seconds"], p["peak_rss_mib"]
        );
    }
    eprintln!(
        "report: {}/{name}.json, plot: {}/{name}.svg",
        data.display(),
        data.display()
    );
    if !keep {
        step("stopping the benchmark network (its data is kept)");
        down(&data, false)?;
    }
    Ok(())
}
