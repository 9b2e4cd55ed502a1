//! The crate's single error type.

use std::io;

use crate::batch::WriteError;

/// Everything that can go wrong in the engine and in its parsers.
///
/// Callers usually react to three classes: bad input (`InvalidSeries`,
/// `Refused`, `LineProtocol`, `Json`, `InvalidQuery`), storage trouble
/// (`Io`, `DiskFull`, `Corrupt`, `UnsupportedVersion`, `Poisoned`) and
/// lifecycle (`Closed`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error other than a full disk, with what the engine was doing.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The disk (or quota) is full. Nothing acknowledged before is lost;
    /// the failed batch was not acknowledged and may be retried.
    #[error("disk full while {context}")]
    DiskFull {
        /// What the engine was doing.
        context: String,
    },
    /// Stored bytes failed a checksum or a structural check.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// Which file or structure.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A file carries a format version this build cannot read.
    #[error("{what} has format version {found}, this build reads up to {supported}")]
    UnsupportedVersion {
        /// Which file.
        what: String,
        /// The version found.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A write was refused on its own: a value type other than its series'
    /// ([`WriteError::TypeConflict`]) or a new series past the device's cap
    /// ([`WriteError::TooManySeries`]); an invalid point is
    /// [`Error::InvalidSeries`] instead. The message is the [`WriteError`]'s.
    #[error(transparent)]
    Refused(WriteError),
    /// A series key or point is not acceptable (empty name, too long, NaN timestamp...).
    #[error("invalid series or point: {0}")]
    InvalidSeries(String),
    /// A query's parameters are not acceptable.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The options are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// InfluxDB line protocol input was rejected; `line` is 1-based.
    #[error("line {line}: {reason}")]
    LineProtocol {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A device telemetry JSON payload was rejected as a whole.
    #[error("invalid telemetry JSON: {0}")]
    Json(String),
    /// The database was closed.
    #[error("database is closed")]
    Closed,
    /// A WAL commit panicked; writes are refused until the database is
    /// reopened. (A failed WAL write or fdatasync is not this: it returns
    /// `Io` or `DiskFull`, and the writer recovers by itself, in a new
    /// segment if needed.)
    #[error("write-ahead log unusable until reopen: {0}")]
    Poisoned(String),
}

impl Error {
    /// Wraps an I/O error, classifying "no space left" as [`Error::DiskFull`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        if is_disk_full(&source) {
            Error::DiskFull {
                context: context.into(),
            }
        } else {
            Error::Io {
                context: context.into(),
                source,
            }
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A copy of this error for the other writers of a failed commit group.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::DiskFull { context } => Error::DiskFull {
                context: context.clone(),
            },
            Error::Poisoned(m) => Error::Poisoned(m.clone()),
            other => Error::Io {
                context: "committing a write group".into(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(e.raw_os_error(), Some(ENOSPC) | Some(EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_disk_full() {
        let e = Error::io("writing", io::Error::from_raw_os_error(28));
        assert!(matches!(e, Error::DiskFull { .. }));
        let e = Error::io("writing", io::Error::from_raw_os_error(5));
        assert!(matches!(e, Error::Io { .. }));
    }
}
