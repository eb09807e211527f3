//! The network spec: a TOML file (the commented default is `deploy/network.toml`), validated
//! before anything is made, with errors that name the setting.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default spec, as shipped in `deploy/network.toml`.
pub const DEFAULT: &str = include_str!("../network.toml");
/// The benchmark's spec, `deploy/bench.toml`.
pub const BENCH: &str = include_str!("../bench.toml");

/// A whole network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub data_dir: PathBuf,
    pub channel: String,
    pub scheme: Scheme,
    pub base_port: u16,
    pub orgs: Vec<OrgSpec>,
    pub orderer: OrdererSpec,
    #[serde(default)]
    pub chaincodes: Vec<ChaincodeSpec>,
}

/// Members' signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    P256,
    Ed25519,
}

/// What an application organisation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgKind {
    Platform,
    Brand,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub msp_id: String,
    pub kind: OrgKind,
    /// A brand organisation's brand name in the commerce chaincode.
    #[serde(default)]
    pub brand: Option<String>,
    pub peers: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererSpec {
    pub msp_id: String,
    pub nodes: u16,
    pub max_message_count: u32,
    pub batch_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaincodeSpec {
    pub name: String,
    /// The workspace crate that builds the module.
    pub package: String,
    pub version: String,
    pub policy: String,
}

fn msp_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Spec {
    /// Parses and validates spec text.
    pub fn parse(text: &str) -> Result<Spec, String> {
        let spec: Spec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.validate()?;
        Ok(spec)
    }

    /// How many ports the network takes from `base_port`.
    pub fn port_count(&self) -> u32 {
        let cas = self.orgs.len() as u32 + 1;
        let peers: u32 = self.orgs.iter().map(|o| u32::from(o.peers)).sum();
        cas + 2 * u32::from(self.orderer.nodes) + 2 * peers
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.channel.is_empty()
            || self.channel.len() > 64
            || !self
                .channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "channel {:?}: 1 to 64 lowercase letters, digits or '-'",
                self.channel
            ));
        }
        if self.orgs.is_empty() {
            return Err("orgs: at least one application organisation".into());
        }
        let mut ids = BTreeSet::new();
        for o in &self.orgs {
            if !msp_id_ok(&o.msp_id) {
                return Err(format!(
                    "orgs: msp_id {:?}: letters, digits, '-', '_', '.'",
                    o.msp_id
                ));
            }
            if !ids.insert(o.msp_id.clone()) {
                return Err(format!("orgs: msp_id {} appears twice", o.msp_id));
            }
            if !(1..=4).contains(&o.peers) {
                return Err(format!("orgs: {} has {} peers: 1 to 4", o.msp_id, o.peers));
            }
            match (o.kind, &o.brand) {
                (OrgKind::Brand, None) => {
                    return Err(format!(
                        "orgs: brand organisation {} needs `brand`",
                        o.msp_id
                    ));
                }
                (OrgKind::Platform, Some(_)) => {
                    return Err(format!(
                        "orgs: {} is the platform; `brand` is for brand organisations",
                        o.msp_id
                    ));
                }
                _ => {}
            }
        }
        if self
            .orgs
            .iter()
            .filter(|o| o.kind == OrgKind::Platform)
            .count()
            > 1
        {
            return Err("orgs: at most one organisation of kind \"platform\"".into());
        }
        if !msp_id_ok(&self.orderer.msp_id) || ids.contains(&self.orderer.msp_id) {
            return Err(format!(
                "orderer.msp_id {:?}: a valid MSP id different from the application organisations'",
                self.orderer.msp_id
            ));
        }
        if !(1..=7).contains(&self.orderer.nodes) || self.orderer.nodes.is_multiple_of(2) {
            return Err(format!(
                "orderer.nodes {}: 1, 3, 5 or 7 (Raft needs a majority)",
                self.orderer.nodes
            ));
        }
        if !(1..=10_000).contains(&self.orderer.max_message_count) {
            return Err("orderer.max_message_count: 1 to 10000".into());
        }
        if !(1..=60_000).contains(&self.orderer.batch_timeout_ms) {
            return Err("orderer.batch_timeout_ms: 1 to 60000".into());
        }
        let mut names = BTreeSet::new();
        for c in &self.chaincodes {
            if c.name.is_empty() || c.name.starts_with('_') || !names.insert(c.name.clone()) {
                return Err(format!(
                    "chaincodes: name {:?} is empty, reserved or repeated",
                    c.name
                ));
            }
            c.policy
                .parse::<mercato_ca::policy::Policy>()
                .map_err(|e| format!("chaincodes: {}: policy {:?}: {e}", c.name, c.policy))?;
        }
        if self.base_port < 1024 || u32::from(self.base_port) + self.port_count() > 65_535 {
            return Err(format!(
                "base_port {}: the network takes {} ports from it, between 1024 and 65535",
                self.base_port,
                self.port_count()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_valid() {
        let s = Spec::parse(DEFAULT).unwrap();
        assert_eq!(s.orgs.len(), 3);
        assert_eq!(s.orderer.nodes, 3);
        assert_eq!(s.port_count(), 4 + 6 + 6);
    }

    #[test]
    fn the_bench_spec_is_valid() {
        let s = Spec::parse(BENCH).unwrap();
        assert!(s.orgs.iter().all(|o| o.kind == OrgKind::Brand));
        assert_eq!(s.chaincodes[0].name, "kv");
    }

    #[test]
    fn bad_specs_name_the_setting() {
        let cases = [
            ("nodes = 3", "nodes = 2", "orderer.nodes 2"),
            (
                "channel = \"commerce\"",
                "channel = \"Com merce\"",
                "channel",
            ),
            ("brand = \"zeta\"\n", "", "needs `brand`"),
            (
                "msp_id = \"Brand2MSP\"",
                "msp_id = \"Brand1MSP\"",
                "appears twice",
            ),
            (
                "policy = \"MAJORITY Endorsement\"",
                "policy = \"AND(\"",
                "policy",
            ),
            ("base_port = 7100", "base_port = 80", "base_port 80"),
            ("scheme = \"p256\"", "scheme = \"rsa\"", "scheme"),
            (
                "peers = 1\n\n# Brand",
                "peers = 9\n\n# Brand",
                "peers: 1 to 4",
            ),
        ];
        for (from, to, says) in cases {
            assert!(DEFAULT.contains(from), "{from}");
            let e = Spec::parse(&DEFAULT.replacen(from, to, 1)).unwrap_err();
            assert!(e.contains(says), "{to}: {e}");
        }
    }
}
