//! `mercato-orderer`: an ordering node of one channel.
//!
//! ```sh
//! mercato-orderer start --config orderer.toml
//! ```
//!
//! Settings come from the TOML file (see `deploy/orderer.toml`) and `MERCATO_ORDERER_*`
//! environment variables; `MERCATO_ORDERER_LOG` sets the log filter (default `info`).

/// jemalloc: sled's frees on its own threads contend on glibc's arena locks (see the
/// workspace's Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mercato_orderer::config::Config;

#[derive(Parser)]
#[command(
    name = "mercato-orderer",
    about = "A Mercato ordering node (Raft)",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the node until Ctrl-C or SIGTERM.
    Start {
        /// The configuration file.
        #[arg(long, default_value = "orderer.toml")]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let filter = std::env::var("MERCATO_ORDERER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
    match Cli::parse().command {
        Command::Start { config } => {
            let mut c = Config::load(&config)?;
            // vars() panics on a value that is not UTF-8; such variables are not ours anyway.
            c.apply_env(
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            )?;
            mercato_orderer::run::run(&c, shutdown())
                .await
                .with_context(|| format!("running the orderer of {}", config.display()))?;
        }
    }
    Ok(())
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
