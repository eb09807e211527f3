//! A channel's configuration as the nodes use it, read from its genesis block and validated once:
//! its organisations and their MSPs, its policies, its ordering service and its batch settings.
//! The wire form is `mercato.ChannelConfig` (see `mercato_proto::config`).

use std::collections::BTreeSet;
use std::fmt;

use mercato_proto::Limits;
use mercato_proto::config::parse_genesis_block;
use mercato_proto::pb::common::Block;
use mercato_proto::pb::mercato as pb;

use crate::error::{Error, Result};
use crate::manager::MspManager;
use crate::msp::{Msp, MspConfig, MspMaterial, NodeOus};
use crate::policy::{MspRole, OrgPolicies, Policy, Principal, SignaturePolicy};

/// The most organisations a channel has.
pub const MAX_ORGS: usize = 64;
/// The most certificates or CRLs of one kind an organisation lists.
pub const MAX_CERTS: usize = 32;
/// The most endpoints an organisation lists.
pub const MAX_ENDPOINTS: usize = 32;
/// The most Raft consenters.
pub const MAX_CONSENTERS: usize = 9;
/// The largest envelope a channel may allow: what every node's parser accepts
/// (`mercato_proto::Limits::max_message_bytes`).
pub const MAX_BLOCK_BYTES: u32 = 16 << 20;
/// The most envelopes in a block: what every node's parser accepts
/// (`mercato_proto::Limits::max_block_transactions`).
pub const MAX_BLOCK_MESSAGES: u32 = 10_000;

/// An MSP id: letters, digits, `.` and `-`, not one that contracts reserve for accounts
/// (`brand`, `platform`) — member names are `MSPID:NAME`, so a `:` would make them ambiguous.
fn check_msp_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && !matches!(id, "brand" | "platform");
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "MSP id {id:?}: 1 to 128 letters, digits, '.' or '-', and not \"brand\" or \"platform\""
        )))
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::ChannelConfig(reason.into())
}

/// A host and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    fn from_proto(what: &str, e: &pb::Endpoint) -> Result<Self> {
        let host_ok = !e.host.is_empty()
            && e.host.len() <= 253
            && e.host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !host_ok {
            return Err(bad(format!(
                "{what}: host {:?} is not a host name or address",
                e.host
            )));
        }
        let port = u16::try_from(e.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{what}: port {} is not 1 to 65535", e.port)))?;
        Ok(Endpoint {
            host: e.host.clone(),
            port,
        })
    }
}

/// One organisation of the channel.
#[derive(Debug, Clone)]
pub struct OrgConfig {
    pub msp_id: String,
    /// What its MSP is built from.
    pub material: MspMaterial,
    /// Where its peers serve.
    pub peers: Vec<Endpoint>,
    /// Where its orderers serve Broadcast and Deliver.
    pub orderers: Vec<Endpoint>,
}

/// One node of the Raft cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consenter {
    /// The Raft node id (1 and up).
    pub id: u64,
    pub endpoint: Endpoint,
    pub msp_id: String,
    /// DER.
    pub server_tls_cert: Vec<u8>,
    /// DER.
    pub client_tls_cert: Vec<u8>,
}

/// Fabric's batch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_message_count: u32,
    pub absolute_max_bytes: u32,
    pub preferred_max_bytes: u32,
    pub batch_timeout_ms: u64,
}

/// The channel's policies.
#[derive(Debug, Clone)]
pub struct ChannelPolicies {
    /// Who reads (Deliver, queries): default `ANY Readers`.
    pub readers: Policy,
    /// Who submits (Broadcast): default `ANY Writers`.
    pub writers: Policy,
    /// Who administers: default `MAJORITY Admins`.
    pub admins: Policy,
    /// Who endorses a chaincode definition's commit: default `MAJORITY Endorsement`.
    pub lifecycle_endorsement: Policy,
    /// A chaincode's default endorsement policy: default `MAJORITY Endorsement`.
    pub endorsement: Policy,
    /// Who signs blocks: default any orderer of an orderer organisation.
    pub block_validation: Policy,
}

/// A channel's configuration, validated.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub channel_id: String,
    pub application_orgs: Vec<OrgConfig>,
    pub orderer_orgs: Vec<OrgConfig>,
    pub consenters: Vec<Consenter>,
    pub batch: BatchSettings,
    pub policies: ChannelPolicies,
}

fn certs(what: &str, list: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    if list.len() > MAX_CERTS {
        return Err(bad(format!(
            "{what}: {} entries, at most {MAX_CERTS}",
            list.len()
        )));
    }
    Ok(list.to_vec())
}

fn node_ous(n: Option<&pb::NodeOus>) -> NodeOus {
    let d = NodeOus::default();
    let pick = |v: Option<&String>, default: String| match v {
        Some(v) if !v.is_empty() => v.clone(),
        _ => default,
    };
    NodeOus {
        client: pick(n.map(|n| &n.client), d.client),
        peer: pick(n.map(|n| &n.peer), d.peer),
        orderer: pick(n.map(|n| &n.orderer), d.orderer),
        admin: pick(n.map(|n| &n.admin), d.admin),
        auditor: pick(n.map(|n| &n.auditor), d.auditor),
    }
}

fn org(o: &pb::Organization) -> Result<OrgConfig> {
    let id = &o.msp_id;
    let what = |k: &str| format!("organisation {id}: {k}");
    if o.root_certs.is_empty() {
        return Err(bad(what("no root certificate")));
    }
    if o.peers.len() > MAX_ENDPOINTS || o.orderers.len() > MAX_ENDPOINTS {
        return Err(bad(what("too many endpoints")));
    }
    let material = MspMaterial {
        root_certs: certs(&what("root certificates"), &o.root_certs)?,
        intermediate_certs: certs(&what("intermediate certificates"), &o.intermediate_certs)?,
        admin_certs: certs(&what("admin certificates"), &o.admin_certs)?,
        crls: certs(&what("CRLs"), &o.crls)?,
        tls_root_certs: certs(&what("TLS root certificates"), &o.tls_root_certs)?,
        tls_intermediate_certs: certs(
            &what("TLS intermediate certificates"),
            &o.tls_intermediate_certs,
        )?,
        config: MspConfig {
            node_ous: node_ous(o.node_ous.as_ref()),
        },
    };
    // Build the MSP once now, so that a bad certificate is refused with its organisation's name.
    Msp::new(id, material.clone()).map_err(|e| bad(what(&e.to_string())))?;
    let endpoints = |list: &[pb::Endpoint], kind: &str| -> Result<Vec<Endpoint>> {
        list.iter()
            .map(|e| Endpoint::from_proto(&what(kind), e))
            .collect()
    };
    Ok(OrgConfig {
        msp_id: id.clone(),
        material,
        peers: endpoints(&o.peers, "peer endpoint")?,
        orderers: endpoints(&o.orderers, "orderer endpoint")?,
    })
}

fn policy(what: &str, text: &str, default: &str) -> Result<Policy> {
    let text = if text.trim().is_empty() {
        default
    } else {
        text
    };
    text.parse()
        .map_err(|e| bad(format!("policy {what} {text:?}: {e}")))
}

impl ChannelConfig {
    /// Reads and validates the configuration of a genesis block.
    pub fn from_genesis(block: &Block) -> Result<Self> {
        let config = parse_genesis_block(block, &Limits::default())
            .map_err(|e| bad(format!("genesis block: {e}")))?;
        Self::from_proto(&config)
    }

    /// Validates a configuration: a channel name, at least one application and one orderer
    /// organisation with distinct MSP ids and valid MSPs, 1 to 9 consenters of orderer
    /// organisations with distinct ids and endpoints, sane batch settings, and policies that
    /// parse.
    pub fn from_proto(c: &pb::ChannelConfig) -> Result<Self> {
        let name_ok = !c.channel_id.is_empty()
            && c.channel_id.len() <= 249
            && c.channel_id.starts_with(|ch: char| ch.is_ascii_lowercase())
            && c.channel_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
        if !name_ok {
            return Err(bad(format!(
                "channel id {:?}: a lower-case letter, then lower-case letters, digits, '.' or '-'",
                c.channel_id
            )));
        }
        if c.application_orgs.is_empty() || c.orderer_orgs.is_empty() {
            return Err(bad(
                "a channel needs at least one application and one orderer organisation",
            ));
        }
        if c.application_orgs.len() + c.orderer_orgs.len() > MAX_ORGS {
            return Err(bad(format!("more than {MAX_ORGS} organisations")));
        }
        let mut ids = BTreeSet::new();
        for o in c.application_orgs.iter().chain(&c.orderer_orgs) {
            check_msp_id(&o.msp_id)?;
            if !ids.insert(o.msp_id.as_str()) {
                return Err(bad(format!("MSP id {:?} appears twice", o.msp_id)));
            }
        }
        let application_orgs = c
            .application_orgs
            .iter()
            .map(org)
            .collect::<Result<Vec<_>>>()?;
        let orderer_orgs = c.orderer_orgs.iter().map(org).collect::<Result<Vec<_>>>()?;

        if c.consenters.is_empty() || c.consenters.len() > MAX_CONSENTERS {
            return Err(bad(format!(
                "{} consenters; a Raft cluster has 1 to {MAX_CONSENTERS} (3 or 5 tolerate failures)",
                c.consenters.len()
            )));
        }
        let mut consenters = Vec::with_capacity(c.consenters.len());
        let (mut node_ids, mut endpoints) = (BTreeSet::new(), BTreeSet::new());
        for k in &c.consenters {
            let what = format!("consenter {}", k.id);
            let endpoint = Endpoint::from_proto(
                &what,
                &pb::Endpoint {
                    host: k.host.clone(),
                    port: k.port,
                },
            )?;
            if k.id == 0 || !node_ids.insert(k.id) {
                return Err(bad(format!("{what}: ids are 1 and up and distinct")));
            }
            if !endpoints.insert(endpoint.clone()) {
                return Err(bad(format!("{what}: endpoint {endpoint} is used twice")));
            }
            if !orderer_orgs.iter().any(|o| o.msp_id == k.msp_id) {
                return Err(bad(format!(
                    "{what}: {:?} is not an orderer organisation",
                    k.msp_id
                )));
            }
            for (kind, der) in [
                ("server", &k.server_tls_cert),
                ("client", &k.client_tls_cert),
            ] {
                x509_parser::parse_x509_certificate(der).map_err(|e| {
                    bad(format!(
                        "{what}: the {kind} TLS certificate does not parse: {e}"
                    ))
                })?;
            }
            consenters.push(Consenter {
                id: k.id,
                endpoint,
                msp_id: k.msp_id.clone(),
                server_tls_cert: k.server_tls_cert.clone(),
                client_tls_cert: k.client_tls_cert.clone(),
            });
        }

        let b = c.batch.unwrap_or_default();
        let batch = BatchSettings {
            max_message_count: b.max_message_count,
            absolute_max_bytes: b.absolute_max_bytes,
            preferred_max_bytes: b.preferred_max_bytes,
            batch_timeout_ms: b.batch_timeout_ms,
        };
        if batch.max_message_count == 0
            || batch.max_message_count > MAX_BLOCK_MESSAGES
            || batch.preferred_max_bytes == 0
            || batch.preferred_max_bytes > batch.absolute_max_bytes
            || batch.absolute_max_bytes > MAX_BLOCK_BYTES
            || !(1..=60_000).contains(&batch.batch_timeout_ms)
        {
            return Err(bad(format!(
                "batch settings {batch:?}: 1 to {MAX_BLOCK_MESSAGES} messages, 1 <= preferred <= absolute <= {MAX_BLOCK_BYTES} bytes, a timeout of 1 to 60000 ms"
            )));
        }

        let p = c.policies.clone().unwrap_or_default();
        let orderers = SignaturePolicy::or(
            orderer_orgs
                .iter()
                .map(|o| SignaturePolicy::signed_by(Principal::new(&o.msp_id, MspRole::Orderer)))
                .collect(),
        );
        let default_block_validation = orderers.to_string();
        // The lifecycle and the validator count a majority of the application organisations'
        // peers; a channel may not claim another rule that nobody would enforce.
        let lifecycle = p.lifecycle_endorsement.trim();
        if !lifecycle.is_empty() && lifecycle != "MAJORITY Endorsement" {
            return Err(bad(format!(
                "policy lifecycle_endorsement {lifecycle:?}: only MAJORITY Endorsement is supported"
            )));
        }
        let policies = ChannelPolicies {
            readers: policy("readers", &p.readers, "ANY Readers")?,
            writers: policy("writers", &p.writers, "ANY Writers")?,
            admins: policy("admins", &p.admins, "MAJORITY Admins")?,
            lifecycle_endorsement: policy(
                "lifecycle_endorsement",
                &p.lifecycle_endorsement,
                "MAJORITY Endorsement",
            )?,
            endorsement: policy("endorsement", &p.endorsement, "MAJORITY Endorsement")?,
            block_validation: policy(
                "block_validation",
                &p.block_validation,
                &default_block_validation,
            )?,
        };
        Ok(ChannelConfig {
            channel_id: c.channel_id.clone(),
            application_orgs,
            orderer_orgs,
            consenters,
            batch,
            policies,
        })
    }

    /// The MSPs of every organisation of the channel, with an identity cache.
    pub fn msp_manager(&self) -> Result<MspManager> {
        let msps = self
            .application_orgs
            .iter()
            .chain(&self.orderer_orgs)
            .map(|o| Msp::new(&o.msp_id, o.material.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(MspManager::new(msps))
    }

    /// The application organisations' named policies (Fabric's defaults), which implicit-meta
    /// policies such as `ANY Writers` and `MAJORITY Endorsement` count over.
    pub fn org_policies(&self) -> OrgPolicies {
        let ids = self.application_org_ids();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        OrgPolicies::defaults(&ids)
    }

    /// The application organisations' MSP ids, in configuration order.
    pub fn application_org_ids(&self) -> Vec<String> {
        self.application_orgs
            .iter()
            .map(|o| o.msp_id.clone())
            .collect()
    }
}
