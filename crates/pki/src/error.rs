//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading or using the CA and
/// the TLS configuration. Messages name the file or input and what was wrong
/// with it, so that an operator can act on them without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file or directory could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// One CA file exists without the other.
    #[error(
        "{} is missing but {} exists; restore the missing file, or remove both to create a new CA",
        missing.display(),
        present.display()
    )]
    CaFileMissing { missing: PathBuf, present: PathBuf },

    /// A certificate (CA, chain, root or peer) could not be used; `what`
    /// names it, e.g. "CA certificate /var/lib/millwright/pki/ca.pem".
    #[error("invalid {what}: {reason}")]
    InvalidCertificate { what: String, reason: String },

    /// A private key could not be used; `what` names it.
    #[error("invalid {what}: {reason}")]
    InvalidKey { what: String, reason: String },

    /// The CA private key does not belong to the CA certificate.
    #[error("{key} does not belong to {cert}: their public keys differ")]
    KeyMismatch { cert: String, key: String },

    /// A certificate signing request was unreadable, badly signed or uses an
    /// unsupported key type.
    #[error("invalid certificate signing request: {0}")]
    InvalidCsr(String),

    /// A device id cannot be put into a certificate.
    #[error("invalid device id {id:?}: {reason}")]
    InvalidDeviceId { id: String, reason: &'static str },

    /// A server certificate name is neither an IP address nor a usable DNS name.
    #[error("invalid server certificate name {name:?}: {reason}")]
    InvalidServerName { name: String, reason: String },

    /// The requested validity period cannot be expressed in a certificate.
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),

    /// Generating a key or signing a certificate failed.
    #[error("cannot create {what}: {reason}")]
    Signing { what: &'static str, reason: String },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// The client CA roots of a [`crate::ClientAuth`] are unusable.
    #[error("invalid client CA roots: {0}")]
    InvalidRoots(String),

    /// rustls refused the server configuration (for example a key that does
    /// not match the certificate).
    #[error("invalid TLS server configuration: {0}")]
    Tls(String),
}
