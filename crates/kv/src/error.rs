//! The one error of the store layer. Domain stores wrap it (usually as
//! their `Storage` variant); its message names the file, schema or record
//! kind involved.

/// Why a [`crate::Db`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process (or another handle in this one) has the file open.
    #[error("{path} is already open (by another process or another store)")]
    AlreadyOpen { path: String },
    /// The file could not be opened or created.
    #[error("{path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Box<redb::Error>,
    },
    /// The file was written by a newer binary.
    #[error(
        "{path} has {schema} schema version {found}, newer than this binary's {supported}; \
         run a newer Millwright"
    )]
    TooNew {
        path: String,
        schema: &'static str,
        found: u64,
        supported: u64,
    },
    /// The file has an older schema version and no migration leads on
    /// from it.
    #[error("{path} has {schema} schema version {found}; this binary has no migration from it")]
    NoMigration {
        path: String,
        schema: &'static str,
        found: u64,
    },
    /// A stored record has a version this binary does not read.
    #[error("{kind} has value version {found}, this binary reads {supported}")]
    RecordVersion {
        kind: &'static str,
        found: u32,
        supported: u32,
    },
    /// A stored record does not decode.
    #[error("corrupt {kind}: {message}")]
    Corrupt { kind: &'static str, message: String },
    /// A record does not encode (it is not a JSON object).
    #[error("encode {kind}: {message}")]
    Encode { kind: &'static str, message: String },
    /// A sequence in the `meta` table reached `u64::MAX`.
    #[error("{0} exhausted")]
    SequenceExhausted(String),
    /// The storage engine failed (I/O, a corrupt file, a table of another
    /// type under the same name).
    #[error("store error: {0}")]
    Redb(Box<redb::Error>),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
