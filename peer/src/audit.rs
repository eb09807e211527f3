//! Auditing a ledger: replay every block from the genesis block through this peer's own
//! validator, as a fresh peer would, and compare what the ledger recorded with what the replay
//! decides. Nothing here trusts the audited peer beyond the genesis block (which the auditor can
//! pin by hash).
//!
//! For each block, [`Audit::check_block`] checks the hash chain, the data hash and the orderer
//! signatures (a block that fails these stops the audit: nothing after it can be trusted), then
//! every transaction's creator and endorsement signatures against the channel's MSPs, the
//! endorsement policies of the chaincode definitions live at that point, MVCC and phantom reads;
//! it compares the recorded validation codes and commit hash with the replayed ones.
//! [`Audit::compare_state`] compares a stored world state with the replayed one.
//!
//! The MSPs of the time are the genesis block's: Mercato channels take no configuration updates
//! yet, so the genesis configuration holds for every block.

use std::sync::Arc;

use mercato_ca::MspManager;
use mercato_ca::channel::ChannelConfig;
use mercato_proto::block::{commit_hash, metadata_entry, parse_block};
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::{Block, BlockMetadataIndex};
use mercato_proto::pb::mercato::{
    KeyDelta as PbDelta, KeyRead as PbRead, KeyWrite as PbWrite, Member, RangeRead as PbRange,
    TransactionInfo, Version as PbVersion,
};
use mercato_proto::pb::msp::SerializedIdentity;
use mercato_proto::pb::protos::{
    ChaincodeEvent, ChaincodeInvocationSpec, ChaincodeProposalPayload,
};
use mercato_proto::transaction::{parse_envelope, parse_transaction};
use mercato_proto::{Limits, ValidationCode};
use prost::Message;

use crate::committer::{BlockEvent, Committer};
use crate::error::{Error, Result};
#[cfg(doc)]
use crate::ledger::MemLedgerStore;
use crate::ledger::{LedgerStore, Version, VersionedValue};
use crate::lifecycle::LifecycleDefinitions;
use crate::rwset::TxRwSet;
use crate::validator::ValidationContext;

/// One thing the audit found wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The block it is in.
    pub block: u64,
    /// The transaction's index in the block, when it concerns one.
    pub tx: Option<u64>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.tx {
            Some(tx) => write!(f, "block {} transaction {tx}: {}", self.block, self.problem),
            None => write!(f, "block {}: {}", self.block, self.problem),
        }
    }
}

/// A replay of one channel's chain.
pub struct Audit {
    channel: ChannelConfig,
    genesis_hash: [u8; 32],
    replay: Arc<Committer>,
    /// The replayed commit hash of every block so far.
    commit_hashes: Vec<[u8; 32]>,
    findings: Vec<Finding>,
    /// Set when a block could not be replayed: the chain cannot be followed past it.
    broken: bool,
    transactions: u64,
    valid: u64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("blocks", &self.blocks())
            .field("findings", &self.findings.len())
            .finish_non_exhaustive()
    }
}

/// The findings about stored block `number` against the replay's codes and commit hash.
fn compare_recorded(stored: &Block, event: &BlockEvent, replayed_hash: &[u8; 32]) -> Vec<Finding> {
    let number = event.number;
    let mut out = Vec::new();
    let recorded =
        metadata_entry(stored, BlockMetadataIndex::TransactionsFilter).unwrap_or_default();
    if recorded.len() != event.txs.len() {
        out.push(Finding {
            block: number,
            tx: None,
            problem: format!(
                "it records {} validation codes for {} transactions",
                recorded.len(),
                event.txs.len()
            ),
        });
    } else {
        for (i, (r, d)) in recorded.iter().zip(&event.txs).enumerate() {
            if *r != d.code.0 {
                out.push(Finding {
                    block: number,
                    tx: Some(i as u64),
                    problem: format!(
                        "recorded as {}, but validation gives {}",
                        ValidationCode(*r).name(),
                        d.code.name()
                    ),
                });
            }
        }
    }
    let problem = match commit_hash(stored) {
        Ok(Some(s)) if s != *replayed_hash => Some(format!(
            "its recorded commit hash {} is not the replay's {}",
            hex::encode(s),
            hex::encode(replayed_hash)
        )),
        Ok(Some(_)) => None,
        Ok(None) => Some("it records no commit hash".into()),
        Err(e) => Some(e.to_string()),
    };
    out.extend(problem.map(|problem| Finding {
        block: number,
        tx: None,
        problem,
    }));
    out
}

/// A stored block as the orderer cut it: without the codes and the commit hash a peer added.
fn as_ordered(stored: &Block) -> Block {
    let mut block = stored.clone();
    if let Some(m) = block.metadata.as_mut() {
        for i in [
            BlockMetadataIndex::TransactionsFilter,
            BlockMetadataIndex::CommitHash,
        ] {
            if let Some(slot) = m.metadata.get_mut(i as usize) {
                slot.clear();
            }
        }
    }
    block
}

impl Audit {
    /// Starts an audit from the channel's genesis block as stored (its metadata filled in by the
    /// peer); `expected` pins the genesis block's header hash. The replay is written to
    /// `replay`, an empty store: a [`MemLedgerStore`] for small chains, a non-durable
    /// [`crate::ledger::SledLedgerStore`] in a scratch directory to keep memory bounded.
    pub fn new(
        genesis: &[u8],
        expected: Option<[u8; 32]>,
        threads: usize,
        replay: Arc<dyn LedgerStore>,
    ) -> Result<Self> {
        if replay.savepoint()?.is_some() {
            return Err(Error::Storage(
                "the audit's replay store is not empty".into(),
            ));
        }
        let block = parse_block(genesis, &Limits::DEFAULT)
            .map_err(|e| Error::invalid_block(0, e.to_string()))?;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| Error::invalid_block(0, "no header"))?;
        if header.number != 0 {
            return Err(Error::invalid_block(header.number, "not a genesis block"));
        }
        let hash = block_header_hash(header);
        if let Some(expected) = expected
            && expected != hash
        {
            return Err(Error::invalid_block(
                0,
                format!(
                    "its header hash {} is not the expected genesis block's {}",
                    hex::encode(hash),
                    hex::encode(expected)
                ),
            ));
        }
        // parse_block has checked the data hash against the configuration it holds.
        let channel = ChannelConfig::from_genesis(&block)
            .map_err(|e| Error::invalid_block(0, e.to_string()))?;
        let ctx = ValidationContext::from_channel(
            &channel,
            Arc::new(LifecycleDefinitions::new()),
            None,
            threads.max(1),
        )
        .map_err(|e| Error::invalid_block(0, e.to_string()))?;
        let replay = Arc::new(Committer::new(replay, Arc::new(ctx))?);
        let event = replay.commit_genesis(as_ordered(&block))?;
        let mut audit = Audit {
            channel,
            genesis_hash: hash,
            replay,
            commit_hashes: Vec::new(),
            findings: Vec::new(),
            broken: false,
            transactions: 0,
            valid: 0,
        };
        audit.after_commit(&block, &event);
        Ok(audit)
    }

    /// The channel's configuration (from the genesis block).
    pub fn channel(&self) -> &ChannelConfig {
        &self.channel
    }

    /// The genesis block's header hash.
    pub fn genesis_hash(&self) -> [u8; 32] {
        self.genesis_hash
    }

    /// Records what the replay of a block decided against what `stored` recorded.
    fn after_commit(&mut self, stored: &Block, event: &BlockEvent) {
        let replayed_hash = self.replay.commit_hash();
        self.findings
            .extend(compare_recorded(stored, event, &replayed_hash));
        self.commit_hashes.push(replayed_hash);
        self.transactions += event.txs.len() as u64;
        self.valid += event.txs.iter().filter(|t| t.code.is_valid()).count() as u64;
    }

    /// Replays the next stored block and records what differs. Returns `false` once the chain
    /// is broken (this block or an earlier one could not be replayed): later blocks cannot be
    /// checked.
    pub fn check_block(&mut self, stored: &[u8]) -> Result<bool> {
        if self.broken {
            return Ok(false);
        }
        let number = self.blocks();
        let block = match parse_block(stored, &Limits::DEFAULT) {
            Ok(b) => b,
            Err(e) => return Ok(self.break_at(number, format!("it does not parse: {e}"))),
        };
        match self.replay.commit_block(as_ordered(&block)) {
            Ok(event) => {
                self.after_commit(&block, &event);
                Ok(true)
            }
            Err(Error::InvalidBlock { number: n, reason }) => Ok(self.break_at(n, reason)),
            Err(e) => Err(e),
        }
    }

    fn break_at(&mut self, block: u64, problem: String) -> bool {
        self.findings.push(Finding {
            block,
            tx: None,
            problem: format!("{problem} (the chain cannot be followed past it)"),
        });
        self.broken = true;
        false
    }

    /// Compares a stored world state (every entry, in any order) with the replayed one; each
    /// difference names the block of the version concerned.
    pub fn compare_state(&mut self, stored: Vec<(String, String, VersionedValue)>) -> Result<()> {
        let mut replayed = self.replay.store().state_snapshot()?;
        let mut stored = stored;
        let order = |a: &(String, String, VersionedValue), b: &(String, String, VersionedValue)| {
            (&a.0, &a.1).cmp(&(&b.0, &b.1))
        };
        replayed.sort_by(order);
        stored.sort_by(order);
        let (mut r, mut s) = (
            replayed.into_iter().peekable(),
            stored.into_iter().peekable(),
        );
        loop {
            let which = match (r.peek(), s.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(a), Some(b)) => order(a, b),
            };
            match which {
                std::cmp::Ordering::Less => {
                    let (ns, key, v) = r.next().expect("peeked");
                    self.findings.push(Finding {
                        block: v.version.block,
                        tx: Some(v.version.tx),
                        problem: format!("state {ns}/{key:?} written here is missing"),
                    });
                }
                std::cmp::Ordering::Greater => {
                    let (ns, key, v) = s.next().expect("peeked");
                    self.findings.push(Finding {
                        block: v.version.block,
                        tx: Some(v.version.tx),
                        problem: format!(
                            "state {ns}/{key:?} is stored as written here, but no valid \
                             transaction wrote it"
                        ),
                    });
                }
                std::cmp::Ordering::Equal => {
                    let ((ns, key, want), (_, _, got)) =
                        (r.next().expect("peeked"), s.next().expect("peeked"));
                    if want != got {
                        self.findings.push(Finding {
                            block: want.version.block,
                            tx: Some(want.version.tx),
                            problem: format!(
                                "state {ns}/{key:?} was written here, but the stored value \
                                 ({} bytes, version {}.{}) differs",
                                got.value.len(),
                                got.version.block,
                                got.version.tx
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Records a finding from elsewhere (another peer's commit hash, a source that failed).
    pub fn add_finding(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// How many blocks have been replayed (the next block's number).
    pub fn blocks(&self) -> u64 {
        self.commit_hashes.len() as u64
    }

    /// Transactions replayed, and how many of them are valid.
    pub fn transactions(&self) -> (u64, u64) {
        (self.transactions, self.valid)
    }

    /// The replayed commit hash of block `number`.
    pub fn commit_hash(&self, number: u64) -> Option<[u8; 32]> {
        self.commit_hashes
            .get(usize::try_from(number).ok()?)
            .copied()
    }

    /// Whether the chain broke before its end.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// The replayed ledger (state, history, txid index).
    pub fn replayed(&self) -> &Arc<dyn LedgerStore> {
        self.replay.store()
    }

    /// What the audit found so far, in the order found.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }
}

/// A version as the ledger query service sends it.
pub fn pb_version(v: Version) -> PbVersion {
    PbVersion {
        block: v.block,
        tx: v.tx,
    }
}

fn member(msps: &MspManager, serialized: &[u8]) -> Member {
    let sid = SerializedIdentity::decode(serialized).unwrap_or_default();
    let name = msps
        .identity(serialized)
        .map(|id| id.common_name().to_owned())
        .unwrap_or_default();
    Member {
        msp_id: sid.mspid,
        name,
        certificate: sid.id_bytes,
    }
}

/// A committed transaction decoded as far as it goes (an invalid one may stop at its headers):
/// creator and endorsers (named when `msps` knows them), the call, the read/write set, the
/// response and the event.
pub fn describe_transaction(
    msps: &MspManager,
    envelope: &[u8],
    number: u64,
    index: u64,
    code: ValidationCode,
) -> TransactionInfo {
    let mut info = TransactionInfo {
        block_number: number,
        tx_index: index,
        validation_code: i32::from(code.0),
        validation_code_name: code.name().to_owned(),
        envelope: envelope.to_vec(),
        ..TransactionInfo::default()
    };
    let Ok(tx) = parse_transaction(envelope, &Limits::DEFAULT) else {
        if let Ok(env) = parse_envelope(envelope, &Limits::DEFAULT) {
            info.txid = env.header.channel_header.tx_id.clone();
            info.timestamp = env.header.channel_header.timestamp;
            info.creator = Some(member(msps, &env.header.creator));
        }
        return info;
    };
    info.txid = tx.header.channel_header.tx_id.clone();
    info.timestamp = tx.header.channel_header.timestamp;
    info.creator = Some(member(msps, &tx.header.creator));
    info.chaincode = tx
        .header
        .chaincode_id
        .as_ref()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    info.endorsers = tx
        .endorsements
        .iter()
        .map(|e| member(msps, &e.endorser))
        .collect();
    if let Ok(payload) = ChaincodeProposalPayload::decode(tx.chaincode_proposal_payload.as_slice())
        && let Ok(spec) = ChaincodeInvocationSpec::decode(payload.input.as_slice())
    {
        info.args = spec
            .chaincode_spec
            .and_then(|s| s.input)
            .map(|i| i.args)
            .unwrap_or_default();
    }
    if let Some(r) = &tx.action.response {
        info.response_status = r.status;
        info.response_message = r.message.clone();
        info.response_payload = r.payload.clone();
    }
    if let Ok(rw) = TxRwSet::decode(&tx.action.results) {
        for ns in rw.namespaces {
            let name = &ns.namespace;
            info.reads.extend(ns.reads.into_iter().map(|r| PbRead {
                namespace: name.clone(),
                key: r.key,
                version: r.version.map(pb_version),
            }));
            info.range_reads
                .extend(ns.range_reads.into_iter().map(|r| PbRange {
                    namespace: name.clone(),
                    start_key: r.start,
                    end_key: r.end,
                    exhausted: r.exhausted,
                    keys_read: r.reads.len() as u32,
                }));
            info.writes.extend(ns.writes.into_iter().map(|w| PbWrite {
                namespace: name.clone(),
                key: w.key,
                is_delete: w.value.is_none(),
                value: w.value.unwrap_or_default(),
            }));
            info.deltas.extend(ns.deltas.into_iter().map(|d| PbDelta {
                namespace: name.clone(),
                key: d.key,
                amount: d.amount,
                lower_bound: d.lower_bound,
            }));
        }
    }
    if let Ok(event) = ChaincodeEvent::decode(tx.action.events.as_slice()) {
        info.event_name = event.event_name;
        info.event_payload = event.payload;
    }
    info
}
