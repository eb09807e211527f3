//! The peer's errors. A transaction that fails validation is not an error: it is recorded in its
//! block with a validation code. These are the faults of a block or of the node itself.

/// Why a block was refused or the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The block cannot be committed: it does not continue the chain, does not parse, or is not
    /// signed as the channel's block validation policy requires. Nothing was written; the block
    /// should be fetched again, from another orderer.
    #[error("block {number} refused: {reason}")]
    InvalidBlock { number: u64, reason: String },
    /// The ledger's storage failed (a node fault: the committer stops).
    #[error("ledger storage: {0}")]
    Storage(String),
    /// Stored data does not decode: the ledger is corrupt.
    #[error("ledger data corrupt: {0}")]
    Corrupt(String),
    /// The committer has stopped (after a fatal error or on shutdown).
    #[error("the committer has stopped: {0}")]
    Stopped(String),
}

/// The peer library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<mercato_blockfile::Error> for Error {
    fn from(e: mercato_blockfile::Error) -> Self {
        match e {
            mercato_blockfile::Error::Storage(m) => Error::Storage(m),
            mercato_blockfile::Error::Corrupt(m) => Error::Corrupt(m),
        }
    }
}

impl Error {
    pub(crate) fn invalid_block(number: u64, reason: impl Into<String>) -> Self {
        Error::InvalidBlock {
            number,
            reason: reason.into(),
        }
    }
}
