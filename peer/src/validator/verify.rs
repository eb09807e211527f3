//! Stage 1 of validation: everything that needs no state, run in parallel across cores. The
//! endorsement policies are evaluated in stage 2 ([`super::endorsement`]) over the identities this
//! stage verified, because which policy applies depends on the chaincode definitions live at that
//! point of the block.

use std::sync::Arc;

use mercato_ca::Identity;
use mercato_ca::crypto::{SignedItem, verify_many};
use mercato_proto::block::{block_signature_message, block_signatures, check_block};
use mercato_proto::pb::common::{Block, SignatureHeader};
use mercato_proto::pb::protos::ChaincodeEvent;
use mercato_proto::response::endorsement_message;
use mercato_proto::transaction::{ParsedTransaction, parse_transaction};
use mercato_proto::{TxValidationCode, ValidationCode};
use prost::Message;

use super::ValidationContext;
use crate::error::{Error, Result};
use crate::rwset::TxRwSet;

/// A transaction after stage 1.
#[derive(Debug, Clone)]
pub struct CheckedTx {
    /// The txid, present only when the txid matched its nonce and creator and the creator's
    /// signature verified: only such txids may be indexed, so that nobody can claim another
    /// client's txid with a transaction that client never signed.
    pub txid: Option<String>,
    /// VALID when stage 1 passed, else why not.
    pub code: ValidationCode,
    /// The read/write set, when it decoded.
    pub rwset: Option<TxRwSet>,
    /// The chaincode event the transaction set, if any.
    pub event: Option<ChaincodeEvent>,
    /// The creator, whose signature verified (VALID transactions only).
    pub creator: Option<Arc<Identity>>,
    /// The endorsers, every one's signature verified (VALID transactions only).
    pub endorsers: Vec<Arc<Identity>>,
    /// The namespaces whose endorsement policy must hold: the invoked chaincode first, then every
    /// other namespace the transaction writes or adds to.
    pub namespaces: Vec<String>,
}

impl CheckedTx {
    fn invalid(code: impl Into<ValidationCode>) -> Self {
        CheckedTx {
            txid: None,
            code: code.into(),
            rwset: None,
            event: None,
            creator: None,
            endorsers: Vec::new(),
            namespaces: Vec::new(),
        }
    }

    /// A transaction judged by its recorded code, for replaying a stored block.
    pub fn recorded(code: ValidationCode, rwset: Option<TxRwSet>) -> Self {
        CheckedTx {
            code,
            rwset,
            ..CheckedTx::invalid(code)
        }
    }
}

/// Checks a block's structure (header, data hash) and that its orderer signatures verify and
/// satisfy the channel's block validation policy. A block that fails is refused whole.
pub fn verify_block(block: &Block, ctx: &ValidationContext) -> Result<()> {
    let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
    check_block(block, &ctx.limits).map_err(|e| Error::invalid_block(number, e.to_string()))?;
    let header = block
        .header
        .as_ref()
        .ok_or_else(|| Error::invalid_block(number, "no header"))?;
    let sigs = block_signatures(block, &ctx.limits)
        .map_err(|e| Error::invalid_block(number, e.to_string()))?;
    let mut signers = Vec::with_capacity(sigs.signatures.len());
    for (i, s) in sigs.signatures.iter().enumerate() {
        let sh = SignatureHeader::decode(s.signature_header.as_slice()).map_err(|e| {
            Error::invalid_block(number, format!("signature {i}: bad signature header: {e}"))
        })?;
        let id = ctx
            .msps
            .identity(&sh.creator)
            .map_err(|e| Error::invalid_block(number, format!("signature {i}: {e}")))?;
        let msg = block_signature_message(&sigs.value, &s.signature_header, header);
        id.verify(&msg, &s.signature).map_err(|e| {
            Error::invalid_block(
                number,
                format!("signature {i} by {}: {e}", id.common_name()),
            )
        })?;
        signers.push(id);
    }
    if !ctx.block_validation.evaluate(&signers, &ctx.org_policies) {
        return Err(Error::invalid_block(
            number,
            format!(
                "its signatures do not satisfy the block validation policy {}",
                ctx.block_validation
            ),
        ));
    }
    Ok(())
}

/// The ranges a block's `n` transactions are verified in by `threads` workers: one per worker,
/// but never under [`MIN_CHUNK`] transactions. A chunk is one Ed25519 batch, and the larger the
/// batch, the less each signature's share of the batch equation costs: over the committer
/// bench's real messages, 17.7 µs per signature in batches of 189 (a chunk of 63 transactions),
/// 15.1 in batches of 750 (250 transactions). Whole-pipeline A/Bs of 2 chunks per 500-transaction block against 8 stayed within
/// this machine's noise. A worker that finishes its chunk first goes on to the next block's.
pub fn chunks(n: usize, threads: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = n.div_ceil(threads.clamp(1, 64)).max(MIN_CHUNK);
    (0..n)
        .step_by(size)
        .map(move |start| start..(start + size).min(n))
}

/// The fewest transactions [`chunks`] puts in one chunk.
pub const MIN_CHUNK: usize = 32;

/// Runs stage 1 on every transaction of a block, spread over `ctx.threads` threads.
pub fn verify_transactions(envelopes: &[Vec<u8>], ctx: &ValidationContext) -> Vec<CheckedTx> {
    let threads = ctx.threads.clamp(1, 64);
    if threads == 1 || envelopes.len() < 2 * threads {
        return verify_chunk(envelopes, ctx);
    }
    let chunk = envelopes.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = envelopes
            .chunks(chunk)
            .map(|part| s.spawn(move || verify_chunk(part, ctx)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                // A panic in a verifier is a bug; the block's transactions are then not judged
                // rather than judged wrongly, and the committer stops.
                h.join().unwrap_or_default()
            })
            .collect()
    })
}

/// A transaction that parsed, waiting for its signatures to be checked.
struct Pending {
    tx: ParsedTransaction,
    creator: Option<Arc<Identity>>,
    endorsers: Vec<Option<Arc<Identity>>>,
    endorsement_messages: Vec<Vec<u8>>,
    creator_ok: bool,
    endorsements_ok: Vec<bool>,
}

/// Runs stage 1 on consecutive transactions of a block, on this thread; one result per envelope.
pub fn verify_chunk(envelopes: &[Vec<u8>], ctx: &ValidationContext) -> Vec<CheckedTx> {
    // Phase A: parse, check the channel and resolve identities (cached per certificate).
    let mut slots: Vec<std::result::Result<Pending, Box<CheckedTx>>> = envelopes
        .iter()
        .map(|env| {
            let tx = parse_transaction(env, &ctx.limits)
                .map_err(|e| Box::new(CheckedTx::invalid(e.validation_code())))?;
            if tx.header.channel_header.channel_id != ctx.channel_id {
                return Err(Box::new(CheckedTx::invalid(
                    TxValidationCode::TargetChainNotFound,
                )));
            }
            let creator = ctx.msps.identity(&tx.header.creator).ok();
            let endorsers = tx
                .endorsements
                .iter()
                .map(|e| ctx.msps.identity(&e.endorser).ok())
                .collect();
            let endorsement_messages = tx
                .endorsements
                .iter()
                .map(|e| endorsement_message(&tx.proposal_response_payload, &e.endorser))
                .collect();
            let n = tx.endorsements.len();
            Ok(Pending {
                tx,
                creator,
                endorsers,
                endorsement_messages,
                creator_ok: false,
                endorsements_ok: vec![false; n],
            })
        })
        .collect();

    // Phase B: verify every signature; Ed25519 ones together in one batch.
    verify_signatures(&mut slots, ctx);

    // Phase C: judge each transaction in Fabric's order of checks.
    slots
        .into_iter()
        .map(|slot| match slot {
            Err(done) => *done,
            Ok(p) => judge(p),
        })
        .collect()
}

/// Which signature of a pending transaction a batch item is.
#[derive(Clone, Copy)]
enum Target {
    Creator(usize),
    Endorsement(usize, usize),
}

fn verify_signatures(
    slots: &mut [std::result::Result<Pending, Box<CheckedTx>>],
    ctx: &ValidationContext,
) {
    let mut outcomes: Vec<(Target, bool)> = Vec::new();
    {
        let mut items: Vec<SignedItem<'_>> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        for (pi, slot) in slots.iter().enumerate() {
            let Ok(p) = slot else { continue };
            if let Some(id) = &p.creator {
                items.push(SignedItem {
                    key: id.public_key(),
                    message: &p.tx.payload_bytes,
                    signature: &p.tx.signature,
                });
                targets.push(Target::Creator(pi));
            }
            for (ei, (endorser, e)) in p.endorsers.iter().zip(&p.tx.endorsements).enumerate() {
                let Some(id) = endorser else { continue };
                let msg = &p.endorsement_messages[ei];
                let target = Target::Endorsement(pi, ei);
                if ctx
                    .own_endorsements
                    .as_ref()
                    .is_some_and(|m| m.recognises(&e.endorser, msg, &e.signature))
                {
                    outcomes.push((target, true));
                    continue;
                }
                items.push(SignedItem {
                    key: id.public_key(),
                    message: msg,
                    signature: &e.signature,
                });
                targets.push(target);
            }
        }
        let verdicts = verify_many(&items);
        outcomes.extend(targets.into_iter().zip(verdicts.iter().map(Result::is_ok)));
    }
    for (target, ok) in outcomes {
        match target {
            Target::Creator(pi) => {
                if let Some(Ok(p)) = slots.get_mut(pi) {
                    p.creator_ok = ok;
                }
            }
            Target::Endorsement(pi, ei) => {
                if let Some(Ok(p)) = slots.get_mut(pi)
                    && let Some(slot) = p.endorsements_ok.get_mut(ei)
                {
                    *slot = ok;
                }
            }
        }
    }
}

fn judge(p: Pending) -> CheckedTx {
    use TxValidationCode as C;
    let Some(creator) = p.creator.as_ref().filter(|_| p.creator_ok) else {
        return CheckedTx::invalid(C::BadCreatorSignature);
    };
    if p.tx.header.check_txid().is_err() {
        return CheckedTx::invalid(C::BadProposalTxid);
    }
    let txid = Some(p.tx.header.channel_header.tx_id.clone());
    let with_code = |code: C| CheckedTx {
        txid: txid.clone(),
        ..CheckedTx::invalid(code)
    };
    let action = &p.tx.action;
    if action.response.as_ref().is_none_or(|r| r.status >= 400) {
        return with_code(C::BadResponsePayload);
    }
    let invoked =
        p.tx.header
            .chaincode_id
            .as_ref()
            .map(|id| id.name.clone())
            .unwrap_or_default();
    if action
        .chaincode_id
        .as_ref()
        .is_some_and(|id| !id.name.is_empty() && id.name != invoked)
    {
        return with_code(C::InvalidEndorserTransaction);
    }
    let Ok(rwset) = TxRwSet::decode(&action.results) else {
        return with_code(C::BadRwset);
    };
    let event = if action.events.is_empty() {
        None
    } else {
        match ChaincodeEvent::decode(action.events.as_slice()) {
            Ok(e) => Some(e),
            Err(_) => return with_code(C::BadResponsePayload),
        }
    };
    if p.endorsers.iter().any(Option::is_none) || p.endorsements_ok.iter().any(|ok| !ok) {
        return with_code(C::EndorsementPolicyFailure);
    }
    // The invoked chaincode and every namespace written must be defined, and each one's
    // endorsement policy satisfied by the endorsers: stage 2 decides, against the definitions
    // live at this transaction.
    let mut namespaces = vec![invoked];
    for ns in &rwset.namespaces {
        if (!ns.writes.is_empty() || !ns.deltas.is_empty()) && !namespaces.contains(&ns.namespace) {
            namespaces.push(ns.namespace.clone());
        }
    }
    CheckedTx {
        txid,
        code: ValidationCode::VALID,
        rwset: Some(rwset),
        event,
        creator: Some(Arc::clone(creator)),
        endorsers: p.endorsers.into_iter().flatten().collect(),
        namespaces,
    }
}
