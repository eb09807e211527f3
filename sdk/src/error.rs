//! The SDK's errors, typed by what the caller can do about them.

use mercato_proto::pb::gateway::ErrorDetail;
use mercato_proto::status::decode_error_details;
use mercato_proto::{TxValidationCode, ValidationCode};

/// What went wrong at one organisation's peer or one orderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node's address.
    pub address: String,
    /// Its organisation (empty for an orderer).
    pub msp_id: String,
    pub message: String,
}

impl From<ErrorDetail> for NodeFailure {
    fn from(d: ErrorDetail) -> Self {
        NodeFailure {
            address: d.address,
            msp_id: d.msp_id,
            message: d.message,
        }
    }
}

/// An SDK error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Loading an identity, a certificate or a profile failed.
    #[error("configuration: {0}")]
    Config(String),
    /// The peer could not be reached.
    #[error("connecting to {address}: {message}")]
    Connect { address: String, message: String },
    /// Evaluation failed: the peer's checks or the chaincode refused.
    #[error("evaluate failed ({code:?}): {message}")]
    Evaluate { code: tonic::Code, message: String },
    /// Endorsement failed; `failures` says which organisations' peers failed and why.
    #[error("endorse failed ({code:?}): {message}{}", fmt_failures(.failures))]
    Endorse {
        code: tonic::Code,
        message: String,
        failures: Vec<NodeFailure>,
    },
    /// The gateway could not hand the transaction to the ordering service.
    #[error("submit failed ({code:?}): {message}{}", fmt_failures(.failures))]
    Submit {
        code: tonic::Code,
        message: String,
        failures: Vec<NodeFailure>,
    },
    /// Asking for the commit status, for events or a ledger query failed.
    #[error("{call} failed ({code:?}): {message}")]
    Status {
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    /// The transaction was ordered but the committing peers invalidated it.
    #[error("transaction {txid} was committed in block {block} as invalid: {}", .code.name())]
    Commit {
        txid: String,
        code: ValidationCode,
        block: u64,
    },
    /// A response that does not parse.
    #[error("malformed response: {0}")]
    Malformed(String),
}

fn fmt_failures(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(|f| {
            format!(
                "\n  - {} ({}): {}",
                if f.address.is_empty() {
                    "?"
                } else {
                    &f.address
                },
                if f.msp_id.is_empty() {
                    "orderer"
                } else {
                    &f.msp_id
                },
                f.message
            )
        })
        .collect()
}

impl Error {
    /// Whether submitting the same call again (as a new transaction) may succeed: an MVCC or
    /// phantom-read conflict at commit, or an ordering service or peer that was unavailable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Commit { code, .. } => {
                *code == ValidationCode::from(TxValidationCode::MvccReadConflict)
                    || *code == ValidationCode::from(TxValidationCode::PhantomReadConflict)
            }
            Error::Submit { code, .. } | Error::Endorse { code, .. } => {
                *code == tonic::Code::Unavailable
            }
            Error::Connect { .. } => true,
            _ => false,
        }
    }

    /// The organisations' or orderers' failures attached to an Endorse or Submit error.
    pub fn failures(&self) -> &[NodeFailure] {
        match self {
            Error::Endorse { failures, .. } | Error::Submit { failures, .. } => failures,
            _ => &[],
        }
    }
}

/// The `gateway.ErrorDetail`s a gRPC status carries.
pub(crate) fn failures_of(status: &tonic::Status) -> Vec<NodeFailure> {
    decode_error_details(status.details())
        .into_iter()
        .map(NodeFailure::from)
        .collect()
}

/// The SDK's result.
pub type Result<T> = std::result::Result<T, Error>;
