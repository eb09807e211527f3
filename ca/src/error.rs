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
    /// A channel configuration (from a genesis block) is malformed or inconsistent.
    #[error("invalid channel configuration: {0}")]
    ChannelConfig(String),
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

/// Why the CA's registry (its store of registrations, certificates and revocations) refused or
/// failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An identity with this enrollment id is already registered.
    #[error("identity {0:?} is already registered")]
    Duplicate(String),
    /// No identity with this enrollment id is registered.
    #[error("identity {0:?} is not registered")]
    UnknownIdentity(String),
    /// No certificate with this serial number was issued.
    #[error("no certificate with serial {0} was issued by this CA")]
    UnknownCertificate(String),
    /// The identity's secret has been used for as many enrollments as it allows.
    #[error("identity {id:?} has used all of its {max} enrollments")]
    EnrollmentLimit { id: String, max: u32 },
    /// The identity is revoked: it can no longer enroll or re-enroll.
    #[error("identity {0:?} is revoked")]
    IdentityRevoked(String),
    /// The certificate is already revoked.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    /// A serial number was issued twice (a random collision; the caller retries).
    #[error("serial {0} is already in use")]
    SerialInUse(String),
    /// A stored record does not decode: the store is damaged or from another version.
    #[error("corrupt registry record {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The storage engine failed.
    #[error("registry storage failed: {0}")]
    Backend(String),
}

/// Why a CA request was refused or failed, or why the CA could not start. The variants up to
/// [`CaError::Internal`] answer one request; [`CaError::Home`], [`CaError::Config`] and
/// [`CaError::Transport`] are fatal: the server does not start, or stops.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A field of the request is missing or malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A CSR is malformed, mis-signed or carries a key Mercato does not issue for.
    #[error("bad CSR: {0}")]
    BadCsr(String),
    /// Enrollment with an unknown id or a wrong secret. Both get this one answer, so that a
    /// caller cannot learn which ids exist.
    #[error("authentication failed: unknown enrollment id or wrong secret")]
    BadCredentials,
    /// A signed request whose certificate, signature, timestamp or nonce is not acceptable.
    #[error("request not authenticated: {0}")]
    Unauthenticated(String),
    /// The caller is authenticated but lacks the right for this request.
    #[error("not authorised: {0}")]
    Forbidden(String),
    /// The registry refused the operation (duplicate id, enrollment limit, revoked, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The server has too much state to accept this request now.
    #[error("the CA is busy: {0}")]
    Busy(String),
    /// Issuing or signing failed inside the CA; the details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// The CA home is missing, incomplete or not usable (fatal at start-up).
    #[error("CA home {path}: {reason}")]
    Home { path: String, reason: String },
    /// The CA configuration is not valid (fatal at start-up).
    #[error("CA configuration: {0}")]
    Config(String),
    /// The listener or the TLS set-up failed (fatal).
    #[error("CA server: {0}")]
    Transport(String),
}

impl CaError {
    /// Whether the error is the CA's own fault (storage, signing) rather than the caller's.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            CaError::Internal(_)
                | CaError::Home { .. }
                | CaError::Config(_)
                | CaError::Transport(_)
                | CaError::Registry(RegistryError::Corrupt { .. } | RegistryError::Backend(_))
        )
    }

    pub(crate) fn home(path: &std::path::Path, reason: impl Into<String>) -> Self {
        CaError::Home {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

/// Why a client operation against a CA failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA's address or TLS root is not usable, or the connection failed.
    #[error("cannot connect to the CA at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The CA refused the request.
    #[error("the CA refused the request ({code:?}): {message}")]
    Refused { code: tonic::Code, message: String },
    /// The CA's answer is not usable (missing or malformed certificates).
    #[error("bad answer from the CA: {0}")]
    BadResponse(String),
    /// A key, certificate or MSP folder could not be made, read or written.
    #[error(transparent)]
    Msp(#[from] Error),
    /// The request could not be built.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Refused {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}
