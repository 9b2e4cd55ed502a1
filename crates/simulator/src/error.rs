//! The crate's error type.

/// Why a simulation could not start (failures during a run are counted in
/// the report instead).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The options do not describe a run.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The broker's host name did not resolve.
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    /// A call to the HTTP API failed (network, status or answer).
    #[error("{method} {url}: {reason}")]
    Api {
        method: &'static str,
        url: String,
        reason: String,
    },
    /// The credentials file could not be read or parsed.
    #[error("credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
    /// A background task failed.
    #[error("task failed: {0}")]
    Task(String),
}
