//! A chaincode error: becomes a response with a status of 400 or more and its message.

use alloc::string::String;
use core::fmt;

/// A failed call. The status follows HTTP as Fabric does: 400 bad input, 403 not allowed,
/// 404 not found, 409 conflict, 500 anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: i32,
    message: String,
}

impl Error {
    /// An error with an explicit status (raised to 400 when lower).
    pub fn with_status(status: i32, message: impl Into<String>) -> Self {
        Error {
            status: status.max(400),
            message: message.into(),
        }
    }
    /// A generic failure (500).
    pub fn msg(message: impl Into<String>) -> Self {
        Self::with_status(500, message)
    }
    /// Bad input (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::with_status(400, message)
    }
    /// The caller may not do this (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::with_status(403, message)
    }
    /// Something does not exist (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::with_status(404, message)
    }
    /// The state does not allow it (409).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::with_status(409, message)
    }
    /// No such function.
    pub fn unknown_function(name: &str) -> Self {
        Self::bad_request(alloc::format!("unknown function {name:?}"))
    }
    /// The status.
    pub fn status(&self) -> i32 {
        self.status
    }
    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for Error {}
