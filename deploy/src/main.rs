//! `mercato-deploy`: brings a Mercato network up on this machine and manages it.
//!
//! ```sh
//! cargo run --release -p mercato-deploy -- up            # everything, then the demo; Ctrl-C stops it
//! cargo run --release -p mercato-deploy -- up --demo     # the same, then exits; the nodes keep running
//! cargo run --release -p mercato-deploy -- status
//! cargo run --release -p mercato-deploy -- restart peer0.Brand1MSP
//! cargo run --release -p mercato-deploy -- down [--purge]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mercato_deploy::demo;
use mercato_deploy::network::{self, Kind, State, step};
use mercato_deploy::spec::{DEFAULT, Spec};

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
    }
}

async fn up(spec: Spec, demo_only: bool, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let workspace = workspace();
    let bins = network::binaries(&workspace)?;
    let data = spec.data_dir.clone();
    let mut state = match State::load(&data)? {
        Some(state) => {
            if state.spec.channel != spec.channel || state.spec.orgs != spec.orgs {
                bail!(
                    "{} holds a network of another spec; use another --data-dir or `down --purge`",
                    data.display()
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
    demo::define_chaincodes(&mut state, &workspace).await?;
    let outcome = demo::run(&mut state).await?;
    state.save(&data)?;
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
    if demo_only {
        eprintln!("The nodes keep running; stop them with `mercato-deploy down`.");
        return Ok(());
    }
    eprintln!("The network runs until Ctrl-C.");
    let _ = tokio::signal::ctrl_c().await;
    step("stopping the network (its data is kept; `up` resumes it)");
    down(&data, false)
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
