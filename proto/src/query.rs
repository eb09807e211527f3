//! Requests to Mercato's ledger query service (`mercato.Ledger`, see `mercato/ledger.proto`):
//! what a caller signs, and how a request is built and opened.

use crate::pb::Timestamp;
use crate::pb::mercato::{LedgerRequest, SignedLedgerRequest, ledger_request::Query};
use crate::{Limits, ParseError, SignError, Signer, decode, encode};

/// The context a ledger request's signature covers, so that it can be mistaken for no other
/// signed message.
pub const LEDGER_REQUEST_CONTEXT: &[u8] = b"mercato-ledger-request-v1";

/// The bytes a caller signs for an encoded `LedgerRequest`.
pub fn ledger_request_message(request: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(LEDGER_REQUEST_CONTEXT.len() + 1 + request.len());
    m.extend_from_slice(LEDGER_REQUEST_CONTEXT);
    m.push(0);
    m.extend_from_slice(request);
    m
}

/// Builds and signs a ledger request for `channel_id` made at `timestamp`.
pub fn sign_ledger_request(
    signer: &dyn Signer,
    channel_id: &str,
    timestamp: Timestamp,
    query: Query,
) -> Result<SignedLedgerRequest, SignError> {
    let request = encode(&LedgerRequest {
        creator: signer.creator().to_vec(),
        channel_id: channel_id.to_owned(),
        timestamp: Some(timestamp),
        query: Some(query),
    });
    let signature = signer.sign(&ledger_request_message(&request))?;
    Ok(SignedLedgerRequest { request, signature })
}

/// Decodes a signed ledger request (its signature is the server's to verify, against the
/// creator inside).
pub fn open_ledger_request(
    signed: &SignedLedgerRequest,
    limits: &Limits,
) -> Result<LedgerRequest, ParseError> {
    if signed.signature.is_empty() {
        return Err(ParseError::Missing {
            layer: "SignedLedgerRequest.signature",
        });
    }
    let request: LedgerRequest = decode("LedgerRequest", &signed.request, limits)?;
    if request.creator.is_empty() {
        return Err(ParseError::Missing {
            layer: "LedgerRequest.creator",
        });
    }
    if request.query.is_none() {
        return Err(ParseError::Missing {
            layer: "LedgerRequest.query",
        });
    }
    Ok(request)
}
