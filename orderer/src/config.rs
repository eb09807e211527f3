//! The ordering node's configuration: a TOML file (a commented sample is in
//! `deploy/orderer.toml`), overridable by `MERCATO_ORDERER_*` environment variables, checked by
//! [`Config::validate`] before the node starts. Paths are relative to the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything the node reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub tls: TlsConfig,
    pub identity: IdentityConfig,
    pub raft: RaftConfig,
}

/// Who this node is and where it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Its Raft id: the `id` of its consenter in the channel configuration.
    pub id: u64,
    /// The channel's genesis block.
    pub genesis: PathBuf,
    /// Where the log and the chain are kept.
    pub data_dir: PathBuf,
    /// Raft and AtomicBroadcast, over TLS.
    pub listen: String,
    /// `/healthz` and `/metrics`, over plain HTTP (bind it to a private address).
    pub operations: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            genesis: "genesis.block".into(),
            data_dir: "data".into(),
            listen: "0.0.0.0:7050".into(),
            operations: "127.0.0.1:9443".into(),
        }
    }
}

/// The node's TLS certificate (it must be its consenter's) and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "tls/server.crt".into(),
            key: "tls/server.key".into(),
        }
    }
}

/// The identity that signs blocks: an MSP folder (`signcerts/`, `keystore/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    pub msp_id: String,
    pub msp_dir: PathBuf,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            msp_id: "OrdererMSP".into(),
            msp_dir: "msp".into(),
        }
    }
}

/// Raft's timing and compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// The leader's heartbeat to idle followers. openraft also gives each AppendEntries this
    /// long to be answered before sending it again, and an entry is a whole block: the default
    /// is Fabric's tick (500 ms), since at 100 ms a loaded follower answering a few blocks late
    /// had them sent again, over and over.
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot every this many log entries; the log before it is purged.
    pub snapshot_every: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_ms: 500,
            election_timeout_min_ms: 2_500,
            election_timeout_max_ms: 5_000,
            snapshot_every: 1_000,
        }
    }
}

impl Config {
    /// Reads a configuration file; relative paths in it are made relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.node.genesis,
            &mut self.node.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.identity.msp_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Applies `MERCATO_ORDERER_*` overrides: `ID`, `GENESIS`, `DATA_DIR`, `LISTEN`,
    /// `OPERATIONS`, `TLS_CERT`, `TLS_KEY`, `MSP_ID`, `MSP_DIR`.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (key, v) in vars {
            match key.as_str() {
                "MERCATO_ORDERER_ID" => {
                    self.node.id = v
                        .trim()
                        .parse()
                        .map_err(|_| Error::Config(format!("{key}={v:?} is not a number")))?;
                }
                "MERCATO_ORDERER_GENESIS" => self.node.genesis = v.into(),
                "MERCATO_ORDERER_DATA_DIR" => self.node.data_dir = v.into(),
                "MERCATO_ORDERER_LISTEN" => self.node.listen = v,
                "MERCATO_ORDERER_OPERATIONS" => self.node.operations = v,
                "MERCATO_ORDERER_TLS_CERT" => self.tls.cert = v.into(),
                "MERCATO_ORDERER_TLS_KEY" => self.tls.key = v.into(),
                "MERCATO_ORDERER_MSP_ID" => self.identity.msp_id = v,
                "MERCATO_ORDERER_MSP_DIR" => self.identity.msp_dir = v.into(),
                k if k.starts_with("MERCATO_ORDERER_") && k != "MERCATO_ORDERER_LOG" => {
                    return Err(Error::Config(format!("unknown variable {k}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.node.id == 0 {
            return bad("node.id must be the consenter's id, 1 and up".into());
        }
        for (what, addr) in [
            ("node.listen", &self.node.listen),
            ("node.operations", &self.node.operations),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                return bad(format!("{what} {addr:?} is not an address:port"));
            }
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0
            || r.election_timeout_min_ms <= r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            return bad(format!(
                "raft timing {r:?}: 0 < heartbeat < election_timeout_min < election_timeout_max"
            ));
        }
        if r.snapshot_every == 0 {
            return bad("raft.snapshot_every must be at least 1".into());
        }
        if self.identity.msp_id.is_empty() {
            return bad("identity.msp_id is empty".into());
        }
        Ok(())
    }
}
