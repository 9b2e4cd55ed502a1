//! The one error type of the crate.

/// Why a query or one of its statements failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text is not valid in the supported InfluxQL subset.
    #[error("error parsing query: {0}")]
    Parse(String),
    /// A construct InfluxQL has but this subset does not.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The statement is well formed but cannot be answered as asked.
    #[error("{0}")]
    Invalid(String),
    /// The store failed to read.
    #[error("storage: {0}")]
    Storage(#[from] tsdb::Error),
}
