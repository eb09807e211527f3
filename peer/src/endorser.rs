//! The endorser: checks a signed proposal, simulates it against this peer's world state without
//! writing it, and returns the proposal response signed by the peer (Fabric's
//! `protos.Endorser/ProcessProposal`, without the transport). Every failure is a response with a
//! status and a message, never a panic.

use std::sync::Arc;

use mercato_ca::{Identity, MspManager, Role};
use mercato_chaincode::abi::{Creator, Invocation};
use mercato_proto::Limits;
use mercato_proto::pb::protos::{
    ChaincodeAction, ChaincodeEvent, ChaincodeId, ProposalResponse, Response, SignedProposal,
};
use mercato_proto::proposal::{ParsedProposal, parse_signed_proposal};
use mercato_proto::response::{endorsement_message, error_response, new_proposal_response};
use prost::Message;

use crate::chaincode::{ExecError, Executor};
use crate::ledger::LedgerStore;
use crate::validator::EndorsementMemo;

/// What a proposal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To be endorsed and submitted: the creator must be allowed to write (an admin or a client;
    /// never an auditor).
    Endorse,
    /// To be evaluated only (a query): any member of the channel may read.
    Evaluate,
}

/// One channel's endorser on one peer.
pub struct Endorser {
    channel_id: String,
    msps: Arc<MspManager>,
    store: Arc<dyn LedgerStore>,
    executor: Arc<Executor>,
    signer: Arc<dyn mercato_proto::Signer>,
    memo: Option<Arc<EndorsementMemo>>,
    limits: Limits,
    /// Counters for the operations port.
    pub metrics: EndorserMetrics,
}

/// What the endorser counts.
#[derive(Debug, Default)]
pub struct EndorserMetrics {
    /// Proposals simulated and signed.
    pub endorsed: std::sync::atomic::AtomicU64,
    /// Proposals refused (by the checks or the chaincode).
    pub refused: std::sync::atomic::AtomicU64,
    /// Proposals refused while this peer was behind the height their gateway had seen, and
    /// simulated again once it caught up (each counted by the outcome of both simulations too).
    pub caught_up: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Endorser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endorser")
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

/// A successful simulation: the signed response and what the gateway needs of it.
#[derive(Debug, Clone)]
pub struct Endorsed {
    /// The proposal response.
    pub response: ProposalResponse,
    /// The parsed proposal.
    pub proposal: ParsedProposal,
}

impl Endorser {
    /// An endorser for `channel_id`, signing as `signer`. When `memo` is given, every endorsement
    /// is recorded in it so that this peer's committer need not verify its own signatures again.
    pub fn new(
        channel_id: &str,
        msps: Arc<MspManager>,
        store: Arc<dyn LedgerStore>,
        executor: Arc<Executor>,
        signer: Arc<dyn mercato_proto::Signer>,
        memo: Option<Arc<EndorsementMemo>>,
        limits: Limits,
    ) -> Self {
        Endorser {
            channel_id: channel_id.to_owned(),
            msps,
            store,
            executor,
            signer,
            memo,
            limits,
            metrics: EndorserMetrics::default(),
        }
    }

    /// Processes a proposal; a failure is a response with status 400 or more.
    pub fn process_proposal(&self, signed: &SignedProposal, purpose: Purpose) -> ProposalResponse {
        match self.endorse(signed, purpose) {
            Ok(e) => e.response,
            Err(r) => *r,
        }
    }

    /// Processes a proposal, returning the parsed proposal with the response on success.
    #[tracing::instrument(skip_all, fields(channel = %self.channel_id))]
    pub fn endorse(
        &self,
        signed: &SignedProposal,
        purpose: Purpose,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        self.endorse_admitted(signed, purpose, &|_| Ok(()))
    }

    /// Like [`Endorser::endorse`], with a further rule the caller's service applies to the
    /// verified creator before anything runs (the gateway's Readers policy for Evaluate); its
    /// refusal is answered with 403.
    pub fn endorse_admitted(
        &self,
        signed: &SignedProposal,
        purpose: Purpose,
        admit: &dyn Fn(&Identity) -> Result<(), String>,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        self.counted(self.run(signed, purpose, admit))
    }

    /// Like [`Endorser::endorse`], for a proposal the caller has already parsed (the gateway,
    /// which parses it to plan the endorsements).
    pub fn endorse_parsed(
        &self,
        proposal: ParsedProposal,
        purpose: Purpose,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        self.counted(self.run_parsed(proposal, purpose, &|_| Ok(())))
    }

    /// Counts an outcome in the metrics.
    fn counted(
        &self,
        outcome: Result<Endorsed, Box<ProposalResponse>>,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        use std::sync::atomic::Ordering::Relaxed;
        match &outcome {
            Ok(_) => self.metrics.endorsed.fetch_add(1, Relaxed),
            Err(_) => self.metrics.refused.fetch_add(1, Relaxed),
        };
        outcome
    }

    fn run(
        &self,
        signed: &SignedProposal,
        purpose: Purpose,
        admit: &dyn Fn(&Identity) -> Result<(), String>,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        let proposal = parse_signed_proposal(signed, &self.limits).map_err(|e| {
            tracing::debug!(error = %e, "malformed proposal refused");
            Box::new(error_response(400, format!("malformed proposal: {e}")))
        })?;
        self.run_parsed(proposal, purpose, admit)
    }

    fn run_parsed(
        &self,
        proposal: ParsedProposal,
        purpose: Purpose,
        admit: &dyn Fn(&Identity) -> Result<(), String>,
    ) -> Result<Endorsed, Box<ProposalResponse>> {
        let refuse = |status: i32, message: String| {
            tracing::debug!(status, %message, "proposal refused");
            Box::new(error_response(status, message))
        };
        let header = &proposal.header;
        if header.channel_header.channel_id != self.channel_id {
            return Err(refuse(
                404,
                format!(
                    "channel {:?} is not served by this endorser (it serves {:?})",
                    header.channel_header.channel_id, self.channel_id
                ),
            ));
        }
        header
            .check_txid()
            .map_err(|e| refuse(400, format!("{e}")))?;
        let creator = self.msps.identity_now(&header.creator).map_err(|e| {
            refuse(
                403,
                format!("the creator is not a valid member of the channel: {e}"),
            )
        })?;
        creator
            .verify(&proposal.proposal_bytes, &proposal.signature)
            .map_err(|e| {
                refuse(
                    403,
                    format!("the proposal's signature does not verify: {e}"),
                )
            })?;
        admit(&creator).map_err(|why| refuse(403, why))?;
        // A txid already committed would only be marked DUPLICATE_TXID at commit: refuse it
        // before simulating and signing (Fabric's endorser does the same).
        match self.store.tx_location(&header.channel_header.tx_id) {
            Ok(None) => {}
            Ok(Some(loc)) => {
                return Err(refuse(
                    409,
                    format!(
                        "duplicate transaction: txid {} is already in block {}",
                        header.channel_header.tx_id, loc.block
                    ),
                ));
            }
            Err(e) => return Err(refuse(500, format!("the ledger could not be read: {e}"))),
        }
        if purpose == Purpose::Endorse && !matches!(creator.role(), Role::Admin | Role::Client) {
            return Err(refuse(
                403,
                format!(
                    "a {} of {} may not submit transactions (only admins and clients write{})",
                    creator.role(),
                    creator.msp_id(),
                    if creator.role() == Role::Auditor {
                        "; auditors are read-only"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let invocation = invocation(&proposal, &creator);
        let simulated = self
            .executor
            .simulate(Arc::clone(&self.store), &proposal.chaincode, &invocation)
            .map_err(|e| match e {
                ExecError::NotDefined(_) | ExecError::NotInstalled { .. } => {
                    refuse(404, e.to_string())
                }
                ExecError::Runtime(_) => {
                    refuse(500, format!("chaincode {}: {e}", proposal.chaincode))
                }
                ExecError::Ledger(_) => refuse(500, e.to_string()),
            })?;
        let result = simulated.response;
        if result.status >= mercato_proto::response::STATUS_ERROR_THRESHOLD {
            // The chaincode refused: its status and message go back, with nothing to endorse.
            return Err(Box::new(error_response(result.status, result.message)));
        }
        let response = Response {
            status: result.status,
            message: result.message,
            payload: result.payload,
        };
        let events = simulated
            .event
            .map(|(chaincode_id, event_name, payload)| {
                ChaincodeEvent {
                    chaincode_id,
                    tx_id: header.channel_header.tx_id.clone(),
                    event_name,
                    payload,
                }
                .encode_to_vec()
            })
            .unwrap_or_default();
        let action = ChaincodeAction {
            results: simulated.rwset.encode(),
            events,
            response: Some(response),
            chaincode_id: Some(ChaincodeId {
                name: proposal.chaincode.clone(),
                ..Default::default()
            }),
        };
        let response =
            new_proposal_response(&proposal.proposal_hash, &action, self.signer.as_ref())
                .map_err(|e| refuse(500, format!("signing the endorsement: {e}")))?;
        if let (Some(memo), Some(e)) = (&self.memo, &response.endorsement) {
            memo.record(
                &endorsement_message(&response.payload, &e.endorser),
                &e.signature,
            );
        }
        Ok(Endorsed { response, proposal })
    }
}

/// What the chaincode is told of its call.
fn invocation(proposal: &ParsedProposal, creator: &Identity) -> Invocation {
    let ts = proposal.header.channel_header.timestamp.unwrap_or_default();
    Invocation {
        channel: proposal.header.channel_header.channel_id.clone(),
        txid: proposal.header.channel_header.tx_id.clone(),
        timestamp: (ts.seconds, ts.nanos),
        creator: Creator {
            msp_id: creator.msp_id().to_owned(),
            id: creator.common_name().to_owned(),
            role: creator.role().as_str().to_owned(),
            attributes: creator
                .attributes()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        args: proposal.args.clone(),
        transient: proposal
            .transient
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}
