//! Block and transaction validation, in two stages.
//!
//! 1. [`verify`]: stateless and parallel across cores — block data hash and orderer signatures;
//!    per transaction, structure, channel, creator signature, txid and endorsement signatures.
//!    Ed25519 signatures are verified in batches, under the same rule as a single check, so a
//!    code never depends on how the block was chunked across threads.
//! 2. [`mvcc`]: sequential in block order against the state — duplicate txids, endorsement
//!    policies ([`endorsement`], read from the chaincode definitions live at that point of the
//!    block), read versions (MVCC), range re-runs (phantom reads) and commutative deltas with
//!    their bounds.
//!
//! Neither stage reads a clock, draws randomness or iterates a `HashMap`: every peer reaches the
//! same codes for the same block.

pub mod endorsement;
pub mod mvcc;
pub mod verify;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mercato_ca::MspManager;
pub use mercato_ca::policy::OrgPolicies;
use mercato_ca::policy::Policy;
use mercato_proto::Limits;
use mercato_proto::hash::sha256;

use crate::error::Result;
use crate::ledger::VersionedValue;

/// The world state as stage 2 sees it at one transaction: the committed state with the writes of
/// the block's earlier valid transactions on top.
pub trait StateReader {
    /// The current value and version of `key` in `namespace`.
    fn state(&self, namespace: &str, key: &str) -> Result<Option<VersionedValue>>;
}

/// Where validation finds the endorsement policy of each chaincode. The lifecycle
/// ([`crate::lifecycle::LifecycleDefinitions`]) reads the definitions committed in the world state,
/// so a definition takes effect at the transaction that commits it; tests and benchmarks use
/// [`StaticChaincodes`].
pub trait ChaincodeDefinitions: Send + Sync {
    /// The endorsement policy of a defined chaincode; `None` when no such chaincode is defined.
    /// Only a storage fault is an error.
    fn endorsement_policy(
        &self,
        state: &dyn StateReader,
        chaincode: &str,
    ) -> Result<Option<Arc<Policy>>>;
}

/// A fixed set of chaincode definitions.
#[derive(Debug, Clone, Default)]
pub struct StaticChaincodes(pub BTreeMap<String, Arc<Policy>>);

impl ChaincodeDefinitions for StaticChaincodes {
    fn endorsement_policy(
        &self,
        _state: &dyn StateReader,
        chaincode: &str,
    ) -> Result<Option<Arc<Policy>>> {
        Ok(self.0.get(chaincode).cloned())
    }
}

/// Signature hash → message hash, and the keys in insertion order (to forget the oldest).
type MemoEntries = (HashMap<[u8; 32], [u8; 32]>, VecDeque<[u8; 32]>);

/// The endorsements this peer signed recently: a committing peer that recognises the exact bytes
/// it signed need not verify its own signature again. Bounded; the oldest entries go first.
#[derive(Debug)]
pub struct EndorsementMemo {
    identity: Vec<u8>,
    capacity: usize,
    // Keyed by SHA-256 of the signature; the value is SHA-256 of the signed message. Lookups only:
    // no iteration, so HashMap order never matters.
    inner: Mutex<MemoEntries>,
}

impl EndorsementMemo {
    /// A memo for the peer whose serialized identity is `identity`.
    pub fn new(identity: Vec<u8>, capacity: usize) -> Self {
        EndorsementMemo {
            identity,
            capacity,
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Records a signature this peer made over `message`.
    pub fn record(&self, message: &[u8], signature: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = sha256(signature);
        if inner.0.insert(key, sha256(message)).is_none() {
            inner.1.push_back(key);
        }
        while inner.1.len() > self.capacity {
            if let Some(old) = inner.1.pop_front() {
                inner.0.remove(&old);
            }
        }
    }

    /// Whether `endorser` is this peer and it signed exactly `message` with `signature`.
    pub fn recognises(&self, endorser: &[u8], message: &[u8], signature: &[u8]) -> bool {
        if endorser != self.identity.as_slice() {
            return false;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .0
            .get(&sha256(signature))
            .is_some_and(|m| *m == sha256(message))
    }
}

/// Everything validation needs to know of the channel.
pub struct ValidationContext {
    /// The channel id every transaction must name.
    pub channel_id: String,
    /// The channel's MSPs, with the identity cache.
    pub msps: Arc<MspManager>,
    /// The orgs' named policies, for implicit-meta policies.
    pub org_policies: OrgPolicies,
    /// Who must sign a block (e.g. `OR('OrdererMSP.orderer')`).
    pub block_validation: Policy,
    /// The chaincodes' endorsement policies.
    pub chaincodes: Arc<dyn ChaincodeDefinitions>,
    /// The channel's application organisations: a majority of them must approve a chaincode
    /// definition, and their peers endorse its commit (Fabric's `MAJORITY Endorsement`
    /// lifecycle policy).
    pub application_orgs: Vec<String>,
    /// This peer's own recent endorsements, when it endorses.
    pub own_endorsements: Option<Arc<EndorsementMemo>>,
    /// Size limits for parsing.
    pub limits: Limits,
    /// How many threads verify one block's transactions.
    pub threads: usize,
}

impl ValidationContext {
    /// The context of a channel from its configuration (see [`mercato_ca::channel`]), with the
    /// chaincode definitions, this peer's endorsement memo and the number of verifying threads.
    pub fn from_channel(
        config: &mercato_ca::channel::ChannelConfig,
        chaincodes: Arc<dyn ChaincodeDefinitions>,
        own_endorsements: Option<Arc<EndorsementMemo>>,
        threads: usize,
    ) -> mercato_ca::Result<Self> {
        Ok(ValidationContext {
            channel_id: config.channel_id.clone(),
            msps: Arc::new(config.msp_manager()?),
            org_policies: config.org_policies(),
            block_validation: config.policies.block_validation.clone(),
            chaincodes,
            application_orgs: config.application_org_ids(),
            own_endorsements,
            limits: Limits::default(),
            threads,
        })
    }
}

impl std::fmt::Debug for ValidationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationContext")
            .field("channel_id", &self.channel_id)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}
