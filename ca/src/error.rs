//! The MSP library's errors.

use crate::policy::PolicyError;

/// Why an identity, a signature, a key or an MSP was refused. Messages name the offending value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A wire message (serialized identity) did not parse.
    #[error(transparent)]
    Parse(#[from] mercato_proto::ParseError),
    /// Certificate bytes are not a usable X.509 certificate.
    #[error("bad certificate: {0}")]
    Certificate(String),
    /// The identity names an MSP this channel does not know.
    #[error("unknown MSP {0:?}")]
    UnknownMsp(String),
    /// The certificate does not chain to the MSP's roots.
    #[error("certificate for {subject:?} is not issued by a CA of MSP {msp}: {reason}")]
    Untrusted {
        msp: String,
        subject: String,
        reason: String,
    },
    /// The certificate is outside its validity period at the time checked.
    #[error(
        "certificate for {subject:?} is not valid at {at} (valid from {not_before} to {not_after}, unix seconds)"
    )]
    Expired {
        subject: String,
        at: i64,
        not_before: i64,
        not_after: i64,
    },
    /// The certificate, or a CA above it, is revoked by a CRL of the MSP.
    #[error("certificate serial {serial} for {subject:?} is revoked in MSP {msp}")]
    Revoked {
        msp: String,
        subject: String,
        serial: String,
    },
    /// The certificate's role OUs do not give exactly one known role.
    #[error("certificate for {subject:?} has no usable role: {reason}")]
    Role { subject: String, reason: String },
    /// A key type or curve Mercato does not accept.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A signature that is malformed or does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A private key that could not be loaded or used.
    #[error("key error: {0}")]
    Key(String),
    /// An MSP folder or its configuration is not usable.
    #[error("MSP configuration {path}: {reason}")]
    Config { path: String, reason: String },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A policy did not parse.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A certificate or CRL could not be issued.
    #[error("issuing failed: {0}")]
    Issue(String),
}

/// The MSP library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn config(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Error::Config {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
