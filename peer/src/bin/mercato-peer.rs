//! `mercato-peer`: the peer node's command line. Today it offers the ledger maintenance command;
//! serving (endorser, gateway, deliver) comes with the peer node.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mercato_peer::committer::rebuild;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore, SledLedgerStore};

#[derive(Parser)]
#[command(name = "mercato-peer", about = "Mercato peer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
