//! The crate's single error type.

/// Everything that can go wrong parsing or evaluating a query.
///
/// [`Error::error_type`] gives the `errorType` of the Prometheus HTTP API's
/// error body for each variant.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query text is malformed.
    #[error("parse error at char {pos}: {msg}")]
    Parse {
        /// Byte offset in the query where the problem was found (1-based,
        /// as Prometheus counts).
        pos: usize,
        /// What was wrong.
        msg: String,
    },
    /// The query uses a PromQL construct this subset does not evaluate;
    /// `construct` names it (e.g. `function "histogram_quantile"`).
    #[error("{construct} is not supported")]
    Unsupported {
        /// The construct, as the message shows it.
        construct: String,
    },
    /// The query is well-formed but its types or parameters are wrong
    /// (a range vector where an instant vector is expected, a bad step...).
    #[error("{0}")]
    Invalid(String),
    /// Evaluation failed on the data (e.g. two output series with the same
    /// labels, too many points).
    #[error("{0}")]
    Execution(String),
    /// The storage failed to answer.
    #[error("storage error: {0}")]
    Storage(String),
}

impl Error {
    /// The Prometheus HTTP API `errorType` for this error: `bad_data` for
    /// anything wrong with the query, `execution` for evaluation failures,
    /// `internal` for storage failures (Prometheus answers them with the
    /// statuses 400, 422 and 500).
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse { .. } | Error::Unsupported { .. } | Error::Invalid(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Storage(_) => "internal",
        }
    }

    pub(crate) fn unsupported(construct: impl Into<String>) -> Error {
        Error::Unsupported {
            construct: construct.into(),
        }
    }
}

impl From<tsdb::Error> for Error {
    fn from(e: tsdb::Error) -> Error {
        Error::Storage(e.to_string())
    }
}
