//! Endorsed transactions: the envelope a client signs and the orderer puts into blocks, and what a
//! committer reads out of it.

use crate::hash::proposal_hash;
use crate::pb::common::{Envelope, Header, HeaderType, Payload};
use crate::pb::protos::{
    ChaincodeAction, ChaincodeActionPayload, ChaincodeEndorsedAction, Endorsement,
    ProposalResponse, ProposalResponsePayload, Transaction, TransactionAction,
};
use crate::proposal::{ParsedHeader, ParsedProposal, parse_header};
use crate::response::parse_proposal_response;
use crate::{BuildError, Limits, ParseError, Signer, decode, encode};

/// Assembles the unsigned transaction envelope from a proposal and its endorsements, as the
/// Gateway's Endorse does. Every response must be a success over the same proposal response
/// payload (the endorsers agree on the read/write set and the result).
pub fn new_transaction(
    proposal: &ParsedProposal,
    responses: &[ProposalResponse],
    limits: &Limits,
) -> Result<Envelope, BuildError> {
    let first = responses.first().ok_or_else(|| {
        BuildError::Invalid("a transaction needs at least one endorsement".into())
    })?;
    if responses.len() > limits.max_endorsements {
        return Err(BuildError::Invalid(format!(
            "{} endorsements, over the limit of {}",
            responses.len(),
            limits.max_endorsements
        )));
    }
    let first = parse_proposal_response(first, limits)?;
    if first.proposal_hash != proposal.proposal_hash {
        return Err(BuildError::Invalid(
            "the endorsement is for a different proposal (proposal hash differs)".into(),
        ));
    }
    let mut endorsements = Vec::with_capacity(responses.len());
    endorsements.push(first.endorsement.clone());
    for (i, r) in responses.iter().enumerate().skip(1) {
        let parsed = parse_proposal_response(r, limits)?;
        if parsed.payload != first.payload {
            return Err(BuildError::Invalid(format!(
                "endorsement {i} disagrees with endorsement 0 (different read/write set or result)"
            )));
        }
        endorsements.push(parsed.endorsement);
    }
    let action_payload = ChaincodeActionPayload {
        chaincode_proposal_payload: proposal.payload_without_transient.clone(),
        action: Some(ChaincodeEndorsedAction {
            proposal_response_payload: first.payload,
            endorsements,
        }),
    };
    let transaction = Transaction {
        actions: vec![TransactionAction {
            header: proposal.header.signature_header_bytes.clone(),
            payload: encode(&action_payload),
        }],
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: proposal.header.channel_header_bytes.clone(),
            signature_header: proposal.header.signature_header_bytes.clone(),
        }),
        data: encode(&transaction),
    };
    Ok(Envelope {
        payload: encode(&payload),
        signature: Vec::new(),
    })
}

/// Signs an envelope's payload as its creator (Submit rejects an unsigned envelope).
pub fn sign_envelope(envelope: &mut Envelope, signer: &dyn Signer) -> Result<(), BuildError> {
    envelope.signature = signer.sign(&envelope.payload)?;
    Ok(())
}

/// Builds a signed envelope of any header type around `data` (deliver seek requests, config).
pub fn new_signed_envelope(
    header: Header,
    data: Vec<u8>,
    signer: &dyn Signer,
) -> Result<Envelope, BuildError> {
    let mut envelope = Envelope {
        payload: encode(&Payload {
            header: Some(header),
            data,
        }),
        signature: Vec::new(),
    };
    sign_envelope(&mut envelope, signer)?;
    Ok(envelope)
}

/// A decoded envelope of any type: its headers and its data, with the bytes that were signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEnvelope {
    /// The headers.
    pub header: ParsedHeader,
    /// The payload's data (a `Transaction`, a `SeekInfo`, a config).
    pub data: Vec<u8>,
    /// The signed bytes (the encoded `Payload`).
    pub payload_bytes: Vec<u8>,
    /// The creator's signature over `payload_bytes`.
    pub signature: Vec<u8>,
}

/// Parses an envelope of any type down to its headers.
pub fn parse_envelope(bytes: &[u8], limits: &Limits) -> Result<ParsedEnvelope, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Missing { layer: "Envelope" });
    }
    let envelope: Envelope = decode("Envelope", bytes, limits)?;
    parse_envelope_message(envelope, limits)
}

/// Parses an already decoded envelope down to its headers.
pub fn parse_envelope_message(
    envelope: Envelope,
    limits: &Limits,
) -> Result<ParsedEnvelope, ParseError> {
    if envelope.payload.is_empty() {
        return Err(ParseError::Missing {
            layer: "Envelope.payload",
        });
    }
    if envelope.signature.is_empty() {
        return Err(ParseError::Missing {
            layer: "Envelope.signature",
        });
    }
    let payload: Payload = decode("Payload", &envelope.payload, limits)?;
    let header = payload.header.ok_or(ParseError::Missing {
        layer: "Payload.header",
    })?;
    let header = parse_header(&header, limits)?;
    Ok(ParsedEnvelope {
        header,
        data: payload.data,
        payload_bytes: envelope.payload,
        signature: envelope.signature,
    })
}

/// An endorser transaction, decoded down to its chaincode action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTransaction {
    /// The headers.
    pub header: ParsedHeader,
    /// The signed payload bytes.
    pub payload_bytes: Vec<u8>,
    /// The creator's signature over `payload_bytes`.
    pub signature: Vec<u8>,
    /// The chaincode proposal payload (without transient data).
    pub chaincode_proposal_payload: Vec<u8>,
    /// The proposal response payload every endorser signed.
    pub proposal_response_payload: Vec<u8>,
    /// The chaincode action: read/write set, events, response.
    pub action: ChaincodeAction,
    /// The endorsements.
    pub endorsements: Vec<Endorsement>,
}

/// Parses an endorser transaction envelope and checks its structure: exactly one action whose
/// header is the payload's signature header, a proposal response payload bound to this
/// transaction's proposal, and a chaincode action with a response. Signatures, identities and
/// policies are the validator's to check.
pub fn parse_transaction(bytes: &[u8], limits: &Limits) -> Result<ParsedTransaction, ParseError> {
    let envelope = parse_envelope(bytes, limits)?;
    if envelope.header.channel_header.r#type != HeaderType::EndorserTransaction as i32 {
        return Err(ParseError::Invalid {
            layer: "ChannelHeader.type",
            reason: format!(
                "expected an endorser transaction (type 3), found type {}",
                envelope.header.channel_header.r#type
            ),
        });
    }
    let transaction: Transaction = decode("Transaction", &envelope.data, limits)?;
    let [action] = <[TransactionAction; 1]>::try_from(transaction.actions).map_err(|actions| {
        ParseError::Invalid {
            layer: "Transaction.actions",
            reason: format!("{} actions, exactly one is allowed", actions.len()),
        }
    })?;
    if action.header != envelope.header.signature_header_bytes {
        return Err(ParseError::Invalid {
            layer: "TransactionAction.header",
            reason: "differs from the payload's signature header".into(),
        });
    }
    let action_payload: ChaincodeActionPayload =
        decode("ChaincodeActionPayload", &action.payload, limits)?;
    let endorsed = action_payload.action.ok_or(ParseError::Missing {
        layer: "ChaincodeActionPayload.action",
    })?;
    if endorsed.endorsements.is_empty() {
        return Err(ParseError::Missing {
            layer: "ChaincodeEndorsedAction.endorsements",
        });
    }
    if endorsed.endorsements.len() > limits.max_endorsements {
        return Err(ParseError::TooLarge {
            layer: "ChaincodeEndorsedAction.endorsements",
            size: endorsed.endorsements.len(),
            limit: limits.max_endorsements,
        });
    }
    let prp: ProposalResponsePayload = decode(
        "ProposalResponsePayload",
        &endorsed.proposal_response_payload,
        limits,
    )?;
    let expected_hash = proposal_hash(
        &envelope.header.channel_header_bytes,
        &envelope.header.signature_header_bytes,
        &action_payload.chaincode_proposal_payload,
    );
    if prp.proposal_hash != expected_hash {
        return Err(ParseError::Invalid {
            layer: "ProposalResponsePayload.proposal_hash",
            reason: "does not match this transaction's proposal".into(),
        });
    }
    let chaincode_action: ChaincodeAction = decode("ChaincodeAction", &prp.extension, limits)?;
    if chaincode_action.response.is_none() {
        return Err(ParseError::Missing {
            layer: "ChaincodeAction.response",
        });
    }
    Ok(ParsedTransaction {
        header: envelope.header,
        payload_bytes: envelope.payload_bytes,
        signature: envelope.signature,
        chaincode_proposal_payload: action_payload.chaincode_proposal_payload,
        proposal_response_payload: endorsed.proposal_response_payload,
        action: chaincode_action,
        endorsements: endorsed.endorsements,
    })
}
