//! The orderer's errors.

/// Why the orderer could not start or go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The orderer's storage failed or holds what it never wrote.
    #[error("orderer storage: {0}")]
    Storage(String),
    /// The system refused what the node needs to run (a thread, a socket).
    #[error("could not start: {0}")]
    Start(String),
}

/// The orderer library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
