//! `mercato-peer`: the peer node's command line.
//!
//! ```sh
//! mercato-peer start --config peer.toml                 # serve until Ctrl-C or SIGTERM
//! mercato-peer package --wasm commerce.wasm --name commerce --version 1.0 --out commerce.pkg
//! mercato-peer install --config peer.toml commerce.pkg  # prints the package id
//! mercato-peer rebuild --data DIR/ledger --channel CH   # check state against the blocks
//! ```
//!
//! Settings come from the TOML file (see `deploy/peer.toml`) and `MERCATO_PEER_*` environment
//! variables; `MERCATO_PEER_LOG` sets the log filter (default `info`).

/// jemalloc: sled's frees on its own threads contend on glibc's arena locks (see the
/// workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mercato_peer::committer::rebuild;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore, SledLedgerStore};
use mercato_peer::lifecycle::new_package;
use mercato_peer::node::Config;

#[derive(Parser)]
#[command(name = "mercato-peer", about = "Mercato peer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the peer until Ctrl-C or SIGTERM.
    Start {
        /// The configuration file.
        #[arg(long, default_value = "peer.toml")]
        config: PathBuf,
    },
    /// Makes a chaincode package from a compiled wasm module.
    Package {
        #[arg(long)]
        wasm: PathBuf,
        /// The chaincode's name.
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// The package's label (default NAME_VERSION).
        #[arg(long)]
        label: Option<String>,
        /// Where to write the package.
        #[arg(long)]
        out: PathBuf,
    },
    /// Installs a chaincode package on this peer (compiling it first); prints its package id.
    Install {
        /// The peer's configuration file (for its data directory).
        #[arg(long, default_value = "peer.toml")]
        config: PathBuf,
        /// The package file.
        package: PathBuf,
    },
    /// Rebuild a channel's state and indexes from its blocks alone and compare them with the stored
    /// ones. With --write-to, also write the rebuilt ledger there.
    Rebuild {
        /// The ledger directory.
        #[arg(long)]
        data: PathBuf,
        /// The channel.
        #[arg(long)]
        channel: String,
        /// Write the rebuilt ledger to this (new) directory.
        #[arg(long)]
        write_to: Option<PathBuf>,
    },
}

fn config(path: &std::path::Path) -> anyhow::Result<Config> {
    let mut c = Config::load(path)?;
    // vars() panics on a value that is not UTF-8; such variables are not ours anyway.
    c.apply_env(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )?;
    Ok(c)
}

fn main() -> anyhow::Result<()> {
    let filter = std::env::var("MERCATO_PEER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Start { config: path } => {
            let c = config(&path)?;
            // Requests' CPU-bound work runs on the blocking pool, which this bounds.
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(c.node.request_threads)
                .build()?
                .block_on(mercato_peer::node::run(&c, shutdown()))
                .with_context(|| format!("running the peer of {}", path.display()))?;
            Ok(())
        }
        Command::Package {
            wasm,
            name,
            version,
            label,
            out,
        } => {
            let module =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            let label = label.unwrap_or_else(|| format!("{name}_{version}"));
            let package = new_package(&label, &name, &version, &module);
            std::fs::write(&out, package).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
            Ok(())
        }
        Command::Install {
            config: path,
            package,
        } => {
            let c = config(&path)?;
            let bytes = std::fs::read(&package)
                .with_context(|| format!("reading {}", package.display()))?;
            let installed = mercato_peer::node::install(&c, &bytes)
                .with_context(|| format!("installing {}", package.display()))?;
            println!("{}", installed.package_id);
            Ok(())
        }
        Command::Rebuild {
            data,
            channel,
            write_to,
        } => {
            let source = SledLedgerStore::open(&data, &channel)
                .with_context(|| format!("opening the ledger in {}", data.display()))?;
            let target: Arc<dyn LedgerStore> = match &write_to {
                Some(dir) => Arc::new(SledLedgerStore::open(dir, &channel)?),
                None => Arc::new(MemLedgerStore::new()),
            };
            let blocks = rebuild(&source, target.as_ref())?;
            let stored = source.state_snapshot()?;
            let rebuilt = target.state_snapshot()?;
            if stored != rebuilt {
                anyhow::bail!(
                    "the stored state differs from the state rebuilt from {blocks} blocks ({} vs {} keys)",
                    stored.len(),
                    rebuilt.len()
                );
            }
            println!(
                "rebuilt {blocks} blocks: {} keys, identical to the stored state",
                rebuilt.len()
            );
            Ok(())
        }
    }
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
