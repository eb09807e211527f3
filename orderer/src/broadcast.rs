//! The checks of Broadcast (`orderer.AtomicBroadcast/Broadcast`): every envelope is checked before
//! it is ordered, and a refused one is answered with Fabric's `common.Status` and a message
//! saying what was wrong.
//!
//! In order: the size against the channel's `absolute_max_bytes` (413), the structure down to
//! the headers (400), the channel (404), the header type (400: only endorser transactions are
//! ordered; configuration updates are not supported yet), the creator against the channel's
//! MSPs (403), the creator's signature (403), and the channel's Writers policy (403: an auditor
//! or a peer does not write). The checks read no clock and keep no state: the same envelope gets
//! the same answer on every orderer.

use std::sync::Arc;

use mercato_ca::channel::ChannelConfig;
use mercato_ca::crypto::{SignedItem, verify_many};
use mercato_ca::policy::{OrgPolicies, Policy};
use mercato_ca::{Identity, MspManager};
use mercato_proto::Limits;
use mercato_proto::pb::common::{HeaderType, Status};
use mercato_proto::transaction::{ParsedEnvelope, parse_envelope};

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status Broadcast answers.
    pub status: Status,
    /// What was wrong.
    pub message: String,
    /// Refused only because this node is not the leader, before anything was queued: the
    /// envelope may be forwarded to the leader without risk of ordering it twice.
    pub at_leader: bool,
}

impl Refusal {
    /// A refusal with a status and a message.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            at_leader: false,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_str_name(), self.message)
    }
}

/// One channel's Broadcast checks.
pub struct BroadcastChecker {
    channel_id: String,
    msps: Arc<MspManager>,
    org_policies: OrgPolicies,
    writers: Policy,
    absolute_max_bytes: usize,
    limits: Limits,
}

impl std::fmt::Debug for BroadcastChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastChecker")
            .field("channel_id", &self.channel_id)
            .field("writers", &self.writers.to_string())
            .field("absolute_max_bytes", &self.absolute_max_bytes)
            .finish_non_exhaustive()
    }
}

impl BroadcastChecker {
    /// The checks of `channel_id`, whose members are in `msps`, whose orgs' named policies are
    /// `org_policies`, and whose Writers policy is `writers` (Fabric's is `ANY Writers`).
    pub fn new(
        channel_id: &str,
        msps: Arc<MspManager>,
        org_policies: OrgPolicies,
        writers: Policy,
        absolute_max_bytes: u32,
    ) -> Self {
        BroadcastChecker {
            channel_id: channel_id.to_owned(),
            msps,
            org_policies,
            writers,
            absolute_max_bytes: absolute_max_bytes as usize,
            limits: Limits::default(),
        }
    }

    /// The checks of a channel from its configuration: its MSPs, its Writers policy over the
    /// application organisations, and its batch's `absolute_max_bytes`.
    pub fn from_channel(config: &ChannelConfig) -> mercato_ca::Result<Self> {
        Ok(Self::new(
            &config.channel_id,
            Arc::new(config.msp_manager()?),
            config.org_policies(),
            config.policies.writers.clone(),
            config.batch.absolute_max_bytes,
        ))
    }

    /// Checks an encoded envelope; returns it parsed when it may be ordered.
    pub fn check(&self, envelope: &[u8]) -> Result<ParsedEnvelope, Refusal> {
        let (parsed, creator) = self.admit(envelope)?;
        let signature = creator.verify(&parsed.payload_bytes, &parsed.signature);
        self.authorise(parsed, &creator, signature)
    }

    /// Checks many envelopes at once, each getting the answer [`BroadcastChecker::check`] gives
    /// it alone: their Ed25519 signatures are verified in one batch (see [`verify_many`]: no
    /// verdict depends on the other envelopes), the others one by one.
    pub fn check_batch(&self, envelopes: &[Vec<u8>]) -> Vec<Result<ParsedEnvelope, Refusal>> {
        if let [one] = envelopes {
            return vec![self.check(one)];
        }
        let admitted: Vec<_> = envelopes.iter().map(|e| self.admit(e)).collect();
        let items: Vec<SignedItem<'_>> = admitted
            .iter()
            .flatten()
            .map(|(parsed, creator)| SignedItem {
                key: creator.public_key(),
                message: &parsed.payload_bytes,
                signature: &parsed.signature,
            })
            .collect();
        let mut signatures = verify_many(&items).into_iter();
        drop(items);
        admitted
            .into_iter()
            .map(|admitted| {
                let (parsed, creator) = admitted?;
                // One verdict per admitted envelope, in order; fail closed all the same.
                let signature = signatures
                    .next()
                    .unwrap_or_else(|| Err(mercato_ca::Error::BadSignature("not verified".into())));
                self.authorise(parsed, &creator, signature)
            })
            .collect()
    }

    /// Every check before the creator's signature: the envelope parsed, and its creator.
    fn admit(&self, envelope: &[u8]) -> Result<(ParsedEnvelope, Arc<Identity>), Refusal> {
        if envelope.len() > self.absolute_max_bytes {
            return Err(Refusal::new(
                Status::RequestEntityTooLarge,
                format!(
                    "envelope of {} bytes, over the channel's limit of {}",
                    envelope.len(),
                    self.absolute_max_bytes
                ),
            ));
        }
        let parsed = parse_envelope(envelope, &self.limits)
            .map_err(|e| Refusal::new(Status::BadRequest, format!("malformed envelope: {e}")))?;
        let header = &parsed.header;
        if header.channel_header.channel_id != self.channel_id {
            return Err(Refusal::new(
                Status::NotFound,
                format!(
                    "channel {:?} is not served here (this is {:?})",
                    header.channel_header.channel_id, self.channel_id
                ),
            ));
        }
        match header.header_type() {
            Ok(HeaderType::EndorserTransaction) => {}
            Ok(other) => {
                return Err(Refusal::new(
                    Status::BadRequest,
                    format!(
                        "envelopes of type {} are not ordered here; only endorser transactions are",
                        other.as_str_name()
                    ),
                ));
            }
            Err(e) => return Err(Refusal::new(Status::BadRequest, e.to_string())),
        }
        let creator = self.msps.identity_now(&header.creator).map_err(|e| {
            Refusal::new(
                Status::Forbidden,
                format!("the creator is not a valid member of the channel: {e}"),
            )
        })?;
        Ok((parsed, creator))
    }

    /// The checks from the creator's signature on, given its verdict.
    fn authorise(
        &self,
        parsed: ParsedEnvelope,
        creator: &Arc<Identity>,
        signature: mercato_ca::Result<()>,
    ) -> Result<ParsedEnvelope, Refusal> {
        signature.map_err(|e| {
            Refusal::new(
                Status::Forbidden,
                format!("the envelope's signature does not verify: {e}"),
            )
        })?;
        if !self
            .writers
            .evaluate(&[Arc::clone(creator)], &self.org_policies)
        {
            return Err(Refusal::new(
                Status::Forbidden,
                format!(
                    "{} ({} of {}) is not allowed to write on the channel (policy {})",
                    creator.common_name(),
                    creator.role(),
                    creator.msp_id(),
                    self.writers
                ),
            ));
        }
        Ok(parsed)
    }
}
