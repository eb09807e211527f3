//! The gateway's work behind `gateway.Gateway/Endorse` and `Submit`: planning which
//! organisations must endorse a proposal (from the chaincode's endorsement policy and the peers
//! the channel configuration lists), gathering their endorsements — this peer's own, and other
//! organisations' peers over mutual TLS, in parallel, failing over between an organisation's
//! peers and re-planning around an organisation that cannot be reached — and handing signed
//! transactions to the ordering service.
//!
//! A plan is minimal: starting from every organisation that can endorse (this peer's first), it
//! drops organisations, others before its own, while the policy stays satisfied by one peer of
//! each remaining one. A chaincode's refusal is final (every peer would refuse it the same way);
//! only an organisation that could not be reached is planned around.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mercato_ca::channel::ChannelConfig;
use mercato_ca::crypto::to_pem;
use mercato_ca::policy::{MspRole, OrgPolicies, Policy, PolicySigner};
use mercato_ca::{Identity, MspManager};
use mercato_proto::Limits;
use mercato_proto::pb::common::Envelope;
use mercato_proto::pb::gateway::ErrorDetail;
use mercato_proto::pb::protos::endorser_client::EndorserClient;
use mercato_proto::pb::protos::{ProposalResponse, SignedProposal};
use mercato_proto::proposal::{ParsedProposal, parse_signed_proposal};
use mercato_proto::response::STATUS_ERROR_THRESHOLD;
use mercato_proto::transaction::new_transaction;
use tokio::task::JoinSet;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

use crate::committer::Committer;
use crate::endorser::{Endorser, Purpose};
use crate::error::Result;
use crate::ledger::{LedgerStore, VersionedValue};
use crate::lifecycle::{APPROVE, LIFECYCLE};
use crate::orderers::Orderers;
use crate::validator::{ChaincodeDefinitions, StateReader};

/// How long one remote endorsement may take.
const ENDORSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest proposal response accepted from another peer.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The request metadata in which a gateway tells the peers it asks to endorse the height its own
/// ledger may have shown a client ([`Committer::visible_height`]): a Mercato peer that refuses
/// the proposal while behind that height waits (boundedly) to reach it and simulates once more,
/// so that a client's transaction that builds on its last one, committed on the gateway's peer,
/// is not refused by a peer that has not yet committed it. Other peers (Fabric's) ignore it.
pub const SEEN_HEIGHT_METADATA: &str = "mercato-seen-height";

/// Why an Endorse failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndorseError {
    /// The proposal itself is malformed (400 from this peer's checks).
    BadProposal(String),
    /// The chaincode is not defined, or no set of reachable organisations satisfies its policy.
    Unsatisfiable {
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// An endorser refused the proposal (its checks or the chaincode): final.
    Refused {
        status: i32,
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// The endorsements disagree, or the envelope could not be assembled.
    Mismatch {
        message: String,
        details: Vec<ErrorDetail>,
    },
    /// A storage fault on this peer.
    Internal(String),
}

/// An organisation's peer this gateway may ask to endorse.
#[derive(Clone)]
struct RemotePeer {
    address: String,
    client: EndorserClient<Channel>,
}

/// The gateway of one channel on one peer.
pub struct Gateway {
    msp_id: String,
    address: String,
    endorser: Arc<Endorser>,
    store: Arc<dyn LedgerStore>,
    committer: Arc<Committer>,
    definitions: Arc<dyn ChaincodeDefinitions>,
    msps: Arc<MspManager>,
    org_policies: OrgPolicies,
    lifecycle_policy: Policy,
    /// The application organisations in the channel's order.
    orgs: Vec<String>,
    /// Other organisations' peers (this organisation's own other peers are not asked: this peer
    /// endorses for it).
    remote: BTreeMap<String, Vec<RemotePeer>>,
    orderers: Orderers,
    limits: Limits,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("msp_id", &self.msp_id)
            .field("address", &self.address)
            .field("remote", &self.remote.keys().collect::<Vec<_>>())
            .field("orderers", &self.orderers)
            .finish_non_exhaustive()
    }
}

/// The TLS this peer presents and trusts as a client of other nodes.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// This peer's TLS certificate and key, PEM (presented to other peers: mutual TLS).
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The PEM TLS roots of a list of organisations.
pub fn tls_roots<'a>(orgs: impl IntoIterator<Item = &'a mercato_ca::channel::OrgConfig>) -> String {
    orgs.into_iter()
        .flat_map(|o| {
            o.material
                .tls_root_certs
                .iter()
                .chain(&o.material.tls_intermediate_certs)
        })
        .map(|der| to_pem("CERTIFICATE", der))
        .collect()
}

/// The orderer endpoints of a channel: those its orderer organisations list, or else its
/// consenters'.
pub fn orderer_addresses(config: &ChannelConfig) -> Vec<String> {
    let listed: Vec<String> = config
        .orderer_orgs
        .iter()
        .flat_map(|o| o.orderers.iter().map(|e| e.to_string()))
        .collect();
    if listed.is_empty() {
        config
            .consenters
            .iter()
            .map(|c| c.endpoint.to_string())
            .collect()
    } else {
        listed
    }
}

/// The world state as committed, for reading definitions outside a block.
struct Committed<'a>(&'a dyn LedgerStore);

impl StateReader for Committed<'_> {
    fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>> {
        self.0.state(namespace, key)
    }
}

/// One endorsing organisation, as a policy sees it while planning: a peer of that organisation.
struct PlannedOrg<'a>(&'a str);

impl PolicySigner for PlannedOrg<'_> {
    fn msp_id(&self) -> &str {
        self.0
    }
    fn has_role(&self, role: MspRole) -> bool {
        matches!(role, MspRole::Peer | MspRole::Member)
    }
    fn signer_key(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Everything a [`Gateway`] is built from.
pub struct GatewayParts {
    /// This peer's organisation and the address it is known by (in error details).
    pub msp_id: String,
    pub address: String,
    pub endorser: Arc<Endorser>,
    pub store: Arc<dyn LedgerStore>,
    /// This peer's committer, whose height goes with every forwarded proposal.
    pub committer: Arc<Committer>,
    pub definitions: Arc<dyn ChaincodeDefinitions>,
    pub msps: Arc<MspManager>,
    pub tls: ClientTls,
    pub limits: Limits,
}

impl Gateway {
    /// The gateway for `config`'s channel. Connections to other peers and to the orderers are
    /// made on first use; must be called inside a Tokio runtime.
    pub fn new(config: &ChannelConfig, parts: GatewayParts) -> std::result::Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let peer_roots = tls_roots(&config.application_orgs);
        let peer_tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&peer_roots))
            .identity(TlsIdentity::from_pem(
                &parts.tls.cert_pem,
                &parts.tls.key_pem,
            ));
        let mut remote = BTreeMap::new();
        for org in &config.application_orgs {
            if org.msp_id == parts.msp_id {
                continue;
            }
            let mut peers = Vec::new();
            for e in &org.peers {
                let address = e.to_string();
                let channel = Endpoint::from_shared(format!("https://{address}"))
                    .map_err(|err| format!("peer endpoint {address:?}: {err}"))?
                    .tls_config(peer_tls.clone())
                    .map_err(|err| format!("peer endpoint {address:?}: {err}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .connect_lazy();
                peers.push(RemotePeer {
                    address,
                    client: EndorserClient::new(channel)
                        .max_decoding_message_size(MAX_RESPONSE_BYTES)
                        .max_encoding_message_size(MAX_RESPONSE_BYTES),
                });
            }
            remote.insert(org.msp_id.clone(), peers);
        }
        let orderer_tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(tls_roots(&config.orderer_orgs)));
        let orderers = Orderers::new(&orderer_addresses(config), &orderer_tls)?;
        Ok(Gateway {
            msp_id: parts.msp_id,
            address: parts.address,
            endorser: parts.endorser,
            store: parts.store,
            committer: parts.committer,
            definitions: parts.definitions,
            msps: parts.msps,
            org_policies: config.org_policies(),
            lifecycle_policy: config.policies.lifecycle_endorsement.clone(),
            orgs: config.application_org_ids(),
            remote,
            orderers,
            limits: parts.limits,
        })
    }

    /// The orderers Submit uses.
    pub fn orderers(&self) -> &Orderers {
        &self.orderers
    }

    /// The endorsement policy a proposal must satisfy.
    fn policy_for(&self, proposal: &ParsedProposal) -> std::result::Result<Policy, EndorseError> {
        if proposal.chaincode == LIFECYCLE {
            // An approval is for this peer's organisation only; a commit (and anything else
            // that writes) needs the channel's lifecycle endorsement policy.
            return Ok(if proposal.function() == APPROVE {
                format!("OR('{}.peer')", self.msp_id)
                    .parse()
                    .map_err(|e| EndorseError::Internal(format!("{e}")))?
            } else {
                self.lifecycle_policy.clone()
            });
        }
        match self
            .definitions
            .endorsement_policy(&Committed(self.store.as_ref()), &proposal.chaincode)
        {
            Ok(Some(policy)) => Ok((*policy).clone()),
            Ok(None) => Err(EndorseError::Unsatisfiable {
                message: format!(
                    "chaincode {} is not defined on channel {}",
                    proposal.chaincode, proposal.header.channel_header.channel_id
                ),
                details: Vec::new(),
            }),
            Err(e) => Err(EndorseError::Internal(e.to_string())),
        }
    }

    /// Whether one peer of each of `orgs` satisfies `policy`.
    fn satisfies(&self, policy: &Policy, orgs: &[&str]) -> bool {
        let signers: Vec<PlannedOrg<'_>> = orgs.iter().map(|o| PlannedOrg(o)).collect();
        policy.evaluate(&signers, &self.org_policies)
    }

    /// A minimal set of organisations that satisfies `policy`, from those not in `excluded`
    /// (this one's first); `None` when none does.
    fn plan(
        &self,
        policy: &Policy,
        excluded: &BTreeMap<String, ErrorDetail>,
    ) -> Option<Vec<String>> {
        let mut plan: Vec<&str> = std::iter::once(self.msp_id.as_str())
            .filter(|o| self.orgs.iter().any(|x| x == o))
            .chain(self.orgs.iter().map(String::as_str).filter(|o| {
                *o != self.msp_id && self.remote.get(*o).is_some_and(|p| !p.is_empty())
            }))
            .filter(|o| !excluded.contains_key(*o))
            .collect();
        if !self.satisfies(policy, &plan) {
            return None;
        }
        // Drop others from the last, then this organisation, while the policy holds.
        let mut order: Vec<&str> = plan
            .iter()
            .rev()
            .copied()
            .filter(|o| *o != self.msp_id)
            .collect();
        order.push(self.msp_id.as_str());
        for org in order {
            let without: Vec<&str> = plan.iter().copied().filter(|o| *o != org).collect();
            if !without.is_empty() && self.satisfies(policy, &without) {
                plan = without;
            }
        }
        Some(plan.into_iter().map(str::to_owned).collect())
    }

    /// Gathers the endorsements `signed` needs and assembles the unsigned transaction envelope.
    /// `requested`: the organisations the client asked for (`endorsing_organizations`), which
    /// then replace the plan.
    /// `txid`, when not empty, must be the proposal's.
    pub async fn endorse(
        self: &Arc<Self>,
        signed: SignedProposal,
        txid: &str,
        requested: &[String],
    ) -> std::result::Result<Envelope, EndorseError> {
        let proposal = parse_signed_proposal(&signed, &self.limits)
            .map_err(|e| EndorseError::BadProposal(format!("malformed proposal: {e}")))?;
        if !txid.is_empty() && txid != proposal.header.channel_header.tx_id {
            return Err(EndorseError::BadProposal(format!(
                "EndorseRequest.transaction_id {txid:?} is not the proposal's txid {:?}",
                proposal.header.channel_header.tx_id
            )));
        }
        // The client's choice of organisations replaces the plan: each once, and only the
        // channel's (the list comes from the network and bounds the calls made).
        let mut chosen: Vec<String> = Vec::new();
        for org in requested {
            if !self.orgs.contains(org) {
                return Err(EndorseError::BadProposal(format!(
                    "endorsing organisation {org:?} is not an application organisation of the channel"
                )));
            }
            if !chosen.contains(org) {
                chosen.push(org.clone());
            }
        }
        let requested = chosen;
        let policy = self.policy_for(&proposal)?;
        let signed = Arc::new(signed);
        let proposal = Arc::new(proposal);
        let mut endorsed: BTreeMap<String, ProposalResponse> = BTreeMap::new();
        let mut failed: BTreeMap<String, ErrorDetail> = BTreeMap::new();
        loop {
            let plan = if requested.is_empty() {
                self.plan(&policy, &failed)
            } else if failed.is_empty() {
                Some(requested.to_vec())
            } else {
                None
            };
            let Some(plan) = plan else {
                let message = if failed.is_empty() {
                    format!(
                        "no combination of the channel's organisations with peers satisfies the endorsement policy {policy} of chaincode {}",
                        proposal.chaincode
                    )
                } else {
                    format!(
                        "too few organisations could endorse to satisfy the policy {policy} of chaincode {}; see the attached details",
                        proposal.chaincode
                    )
                };
                return Err(EndorseError::Unsatisfiable {
                    message,
                    details: failed.into_values().collect(),
                });
            };
            let mut jobs = JoinSet::new();
            for org in plan.iter().filter(|o| !endorsed.contains_key(*o)) {
                let me = Arc::clone(self);
                let signed = Arc::clone(&signed);
                let parsed = Arc::clone(&proposal);
                let org = org.clone();
                jobs.spawn(async move {
                    let outcome = me.endorse_on(&org, signed, parsed).await;
                    (org, outcome)
                });
            }
            let mut refused = None;
            while let Some(done) = jobs.join_next().await {
                let (org, outcome) = done.map_err(|e| {
                    EndorseError::Internal(format!("an endorsement task failed: {e}"))
                })?;
                match outcome {
                    Outcome::Endorsed(r) => {
                        endorsed.insert(org, r);
                    }
                    Outcome::Unreachable(d) => {
                        failed.insert(org, d);
                    }
                    Outcome::Refused(status, d) => {
                        refused.get_or_insert((status, Vec::new())).1.push(d);
                    }
                }
            }
            if let Some((status, details)) = refused {
                return Err(EndorseError::Refused {
                    status,
                    message: format!(
                        "failed to endorse transaction: {}",
                        details
                            .first()
                            .map(|d| d.message.as_str())
                            .unwrap_or_default()
                    ),
                    details,
                });
            }
            if plan.iter().all(|o| endorsed.contains_key(o)) {
                let responses: Vec<ProposalResponse> = plan
                    .iter()
                    .filter_map(|o| endorsed.get(o).cloned())
                    .collect();
                return self.assemble(&proposal, &policy, &plan, &responses);
            }
        }
    }

    /// Checks the endorsements against the policy and assembles the envelope.
    fn assemble(
        &self,
        proposal: &ParsedProposal,
        policy: &Policy,
        plan: &[String],
        responses: &[ProposalResponse],
    ) -> std::result::Result<Envelope, EndorseError> {
        let envelope = new_transaction(proposal, responses, &self.limits).map_err(|e| {
            EndorseError::Mismatch {
                message: format!(
                    "the endorsements of {} cannot be combined: {e}",
                    plan.join(", ")
                ),
                details: Vec::new(),
            }
        })?;
        let endorsers: Vec<Arc<Identity>> = responses
            .iter()
            .filter_map(|r| r.endorsement.as_ref())
            .filter_map(|e| self.msps.identity(&e.endorser).ok())
            .collect();
        if !policy.evaluate(&endorsers, &self.org_policies) {
            return Err(EndorseError::Mismatch {
                message: format!(
                    "the endorsements of {} do not satisfy the policy {policy}",
                    plan.join(", ")
                ),
                details: Vec::new(),
            });
        }
        Ok(envelope)
    }

    /// Endorses on one organisation: this peer for its own (with the proposal as parsed for
    /// planning), else its peers in turn.
    async fn endorse_on(
        &self,
        org: &str,
        signed: Arc<SignedProposal>,
        parsed: Arc<ParsedProposal>,
    ) -> Outcome {
        if org == self.msp_id {
            let endorser = Arc::clone(&self.endorser);
            let local = tokio::task::spawn_blocking(move || {
                endorser.endorse_parsed(Arc::unwrap_or_clone(parsed), Purpose::Endorse)
            })
            .await;
            return match local {
                Ok(Ok(e)) => Outcome::Endorsed(e.response),
                Ok(Err(r)) => {
                    let (status, message) = r
                        .response
                        .map(|r| (r.status, r.message))
                        .unwrap_or((500, "no response".into()));
                    Outcome::Refused(status, self.detail(&self.address, org, status, &message))
                }
                Err(e) => {
                    Outcome::Unreachable(self.detail(&self.address, org, 500, &e.to_string()))
                }
            };
        }
        let Some(peers) = self.remote.get(org).filter(|p| !p.is_empty()) else {
            return Outcome::Unreachable(ErrorDetail {
                address: String::new(),
                msp_id: org.to_owned(),
                message: format!("the channel configuration lists no peer of {org}"),
            });
        };
        let seen = self.committer.visible_height();
        let mut last = None;
        for peer in peers {
            let mut client = peer.client.clone();
            let call = client.process_proposal(with_seen_height((*signed).clone(), seen));
            match tokio::time::timeout(ENDORSE_TIMEOUT, call).await {
                Err(_) => last = Some(format!("{}: timed out", peer.address)),
                Ok(Err(status)) => {
                    tracing::debug!(peer = %peer.address, error = %status, "endorsement call failed");
                    last = Some(format!("{:?}: {}", status.code(), status.message()));
                }
                Ok(Ok(response)) => {
                    let response = response.into_inner();
                    let (status, message) = response
                        .response
                        .as_ref()
                        .map(|r| (r.status, r.message.clone()))
                        .unwrap_or((500, "no response in the proposal response".into()));
                    if status >= STATUS_ERROR_THRESHOLD || response.endorsement.is_none() {
                        return Outcome::Refused(
                            status,
                            self.detail(&peer.address, org, status, &message),
                        );
                    }
                    return Outcome::Endorsed(response);
                }
            }
            if let Some(why) = &last {
                tracing::warn!(peer = %peer.address, org, error = %why, "peer unreachable; trying the next");
            }
        }
        Outcome::Unreachable(ErrorDetail {
            address: peers.last().map(|p| p.address.clone()).unwrap_or_default(),
            msp_id: org.to_owned(),
            message: last.unwrap_or_default(),
        })
    }

    /// This peer's organisation.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// Evaluates a proposal on a peer of another organisation (Evaluate's
    /// `target_organizations`): its proposal response, or why none of its peers answered.
    pub async fn evaluate_on(
        &self,
        org: &str,
        signed: SignedProposal,
    ) -> std::result::Result<ProposalResponse, ErrorDetail> {
        let unreachable = |address: String, message: String| ErrorDetail {
            address,
            msp_id: org.to_owned(),
            message,
        };
        let Some(peers) = self.remote.get(org).filter(|p| !p.is_empty()) else {
            return Err(unreachable(
                String::new(),
                format!("the channel configuration lists no peer of {org}"),
            ));
        };
        let seen = self.committer.visible_height();
        let mut last = String::new();
        for peer in peers {
            let mut client = peer.client.clone();
            let call = client.process_proposal(with_seen_height(signed.clone(), seen));
            match tokio::time::timeout(ENDORSE_TIMEOUT, call).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(status)) => last = format!("{:?}: {}", status.code(), status.message()),
                Err(_) => last = "timed out".into(),
            }
        }
        Err(unreachable(
            peers.last().map(|p| p.address.clone()).unwrap_or_default(),
            last,
        ))
    }

    fn detail(&self, address: &str, org: &str, status: i32, message: &str) -> ErrorDetail {
        ErrorDetail {
            address: address.to_owned(),
            msp_id: org.to_owned(),
            message: format!("chaincode response {status}, {message}"),
        }
    }
}

/// A request for `signed` that tells the endorser this gateway's height, `seen`.
fn with_seen_height(signed: SignedProposal, seen: u64) -> tonic::Request<SignedProposal> {
    let mut request = tonic::Request::new(signed);
    request
        .metadata_mut()
        .insert(SEEN_HEIGHT_METADATA, seen.into());
    request
}

/// One organisation's answer.
enum Outcome {
    Endorsed(ProposalResponse),
    Refused(i32, ErrorDetail),
    Unreachable(ErrorDetail),
}
