//! Errors of parsing and building wire messages.

use crate::TxValidationCode;

/// A message from the network or disk that could not be parsed. Each variant names the layer
/// (e.g. `"Envelope.payload"`) so that a client or operator can tell exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A layer that must be present is absent or empty.
    #[error("{layer} is missing")]
    Missing { layer: &'static str },
    /// A layer's bytes do not decode.
    #[error("{layer} is malformed: {reason}")]
    Malformed { layer: &'static str, reason: String },
    /// A layer, or a collection in it, is over its limit.
    #[error("{layer} has size {size}, over the limit of {limit}")]
    TooLarge {
        layer: &'static str,
        size: usize,
        limit: usize,
    },
    /// A field holds a value that is not allowed there.
    #[error("{layer} has an invalid value: {reason}")]
    Invalid { layer: &'static str, reason: String },
    /// The header's txid is not hex(SHA-256(nonce ‖ creator)).
    #[error("txid {got} does not match the nonce and creator (expected {expected})")]
    TxidMismatch { got: String, expected: String },
}

impl ParseError {
    /// The Fabric validation code a committer records for a transaction that fails this way.
    pub fn validation_code(&self) -> TxValidationCode {
        let layer = match self {
            ParseError::TxidMismatch { .. } => return TxValidationCode::BadProposalTxid,
            ParseError::Missing { layer }
            | ParseError::Malformed { layer, .. }
            | ParseError::TooLarge { layer, .. }
            | ParseError::Invalid { layer, .. } => *layer,
        };
        code_for_layer(layer)
    }
}

/// Maps the layer names used by the parsers to Fabric's codes, as Fabric's validator assigns them.
fn code_for_layer(layer: &str) -> TxValidationCode {
    match layer {
        "Envelope" => TxValidationCode::NilEnvelope,
        "Envelope.payload" | "Payload" => TxValidationCode::BadPayload,
        "Envelope.signature" => TxValidationCode::BadCreatorSignature,
        "Payload.header"
        | "Header"
        | "SignatureHeader"
        | "SignatureHeader.creator"
        | "SignatureHeader.nonce" => TxValidationCode::BadCommonHeader,
        "ChannelHeader"
        | "ChannelHeader.channel_id"
        | "ChannelHeader.tx_id"
        | "ChannelHeader.timestamp" => TxValidationCode::BadChannelHeader,
        "ChannelHeader.type" => TxValidationCode::UnknownTxType,
        "ChannelHeader.extension" | "ChaincodeHeaderExtension" => {
            TxValidationCode::BadHeaderExtension
        }
        "Transaction" => TxValidationCode::BadPayload,
        "Transaction.actions" => TxValidationCode::NilTxaction,
        "TransactionAction.header" | "ProposalResponsePayload.proposal_hash" => {
            TxValidationCode::InvalidEndorserTransaction
        }
        "ChaincodeActionPayload" | "ChaincodeActionPayload.action" | "ChaincodeProposalPayload" => {
            TxValidationCode::BadPayload
        }
        "ProposalResponsePayload" | "ChaincodeAction" | "ChaincodeAction.response" => {
            TxValidationCode::BadResponsePayload
        }
        "TxReadWriteSet" | "NsReadWriteSet" | "KVRWSet" => TxValidationCode::BadRwset,
        "ChaincodeEndorsedAction.endorsements" | "Endorsement" => {
            TxValidationCode::EndorsementPolicyFailure
        }
        _ => TxValidationCode::InvalidOtherReason,
    }
}

/// A message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The signer failed.
    #[error(transparent)]
    Sign(#[from] crate::SignError),
    /// The inputs cannot form a valid message.
    #[error("{0}")]
    Invalid(String),
    /// An input message did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
}
