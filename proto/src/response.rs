//! Proposal responses: an endorser's signed result of simulating a proposal.

use crate::pb::protos::{
    ChaincodeAction, Endorsement, ProposalResponse, ProposalResponsePayload, Response,
};
use crate::{BuildError, Limits, ParseError, Signer, decode, encode};

/// The status of a successful chaincode response; 400 and above are errors.
pub const STATUS_OK: i32 = 200;
/// The lowest status that is an error.
pub const STATUS_ERROR_THRESHOLD: i32 = 400;

/// The bytes an endorser signs: the proposal response payload followed by its own serialized
/// identity. Validators verify endorsements over exactly these bytes.
pub fn endorsement_message(proposal_response_payload: &[u8], endorser: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(proposal_response_payload.len() + endorser.len());
    msg.extend_from_slice(proposal_response_payload);
    msg.extend_from_slice(endorser);
    msg
}

/// Builds the endorser's signed response to a proposal whose hash is `proposal_hash`, carrying
/// `action` (read/write set, events, chaincode response).
pub fn new_proposal_response(
    proposal_hash: &[u8],
    action: &ChaincodeAction,
    endorser: &dyn Signer,
) -> Result<ProposalResponse, BuildError> {
    let response = action
        .response
        .clone()
        .ok_or_else(|| BuildError::Invalid("a chaincode action needs a response".into()))?;
    let payload = encode(&ProposalResponsePayload {
        proposal_hash: proposal_hash.to_vec(),
        extension: encode(action),
    });
    let signature = endorser.sign(&endorsement_message(&payload, endorser.creator()))?;
    Ok(ProposalResponse {
        version: 1,
        timestamp: None,
        response: Some(response),
        payload,
        endorsement: Some(Endorsement {
            endorser: endorser.creator().to_vec(),
            signature,
        }),
    })
}

/// A response for a proposal that failed before or during simulation: no payload and no
/// endorsement, only a status of 400 or more and a message.
pub fn error_response(status: i32, message: impl Into<String>) -> ProposalResponse {
    ProposalResponse {
        version: 1,
        timestamp: None,
        response: Some(Response {
            status: status.max(STATUS_ERROR_THRESHOLD),
            message: message.into(),
            payload: Vec::new(),
        }),
        payload: Vec::new(),
        endorsement: None,
    }
}

/// A successful proposal response, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedProposalResponse {
    /// The chaincode's response.
    pub response: Response,
    /// The encoded `ProposalResponsePayload`, as signed.
    pub payload: Vec<u8>,
    /// The proposal hash the response binds to.
    pub proposal_hash: Vec<u8>,
    /// The chaincode action: read/write set, events, response, chaincode id.
    pub action: ChaincodeAction,
    /// The endorser's identity and signature.
    pub endorsement: Endorsement,
}

/// Parses a proposal response. A response whose status is 400 or more is an error naming the
/// status and message; a success must carry a payload and an endorsement.
pub fn parse_proposal_response(
    response: &ProposalResponse,
    limits: &Limits,
) -> Result<ParsedProposalResponse, ParseError> {
    let status = response.response.as_ref().ok_or(ParseError::Missing {
        layer: "ProposalResponse.response",
    })?;
    if status.status >= STATUS_ERROR_THRESHOLD {
        return Err(ParseError::Invalid {
            layer: "ProposalResponse.response",
            reason: format!("status {}: {}", status.status, status.message),
        });
    }
    if response.payload.is_empty() {
        return Err(ParseError::Missing {
            layer: "ProposalResponse.payload",
        });
    }
    let endorsement = response.endorsement.clone().ok_or(ParseError::Missing {
        layer: "Endorsement",
    })?;
    if endorsement.endorser.is_empty() || endorsement.signature.is_empty() {
        return Err(ParseError::Missing {
            layer: "Endorsement",
        });
    }
    let prp: ProposalResponsePayload =
        decode("ProposalResponsePayload", &response.payload, limits)?;
    let action: ChaincodeAction = decode("ChaincodeAction", &prp.extension, limits)?;
    if action.response.is_none() {
        return Err(ParseError::Missing {
            layer: "ChaincodeAction.response",
        });
    }
    Ok(ParsedProposalResponse {
        response: status.clone(),
        payload: response.payload.clone(),
        proposal_hash: prp.proposal_hash,
        action,
        endorsement,
    })
}
