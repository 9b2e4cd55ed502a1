//! The errors of the two stores. [`AlarmError`] is what every call fails
//! with; [`OutboxError`] is what [`crate::Outbox::push`] fails with, since
//! its caller must tell "the queue is full" (record the action as failed)
//! from "the disk failed".

/// Why an [`crate::AlarmStore`] or [`crate::Outbox`] call failed. Each
/// variant is something a caller reacts to differently (the API maps them
/// to 404, 409, 422 and 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    /// The named object does not exist (`kind` is `"alarm"` or
    /// `"outbox entry"`).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request is well formed but the alarm's state refuses it
    /// (acknowledging an acknowledged alarm, clearing a cleared one).
    #[error("{0}")]
    Conflict(String),
    /// An input is malformed; `field` names it (e.g. `alarm_type`).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The store failed, or holds something this binary cannot read.
    #[error("alarm storage: {0}")]
    Storage(String),
}

impl AlarmError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AlarmError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        AlarmError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// Why [`crate::Outbox::push`] refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The queue is at its bound (`max_entries` entries or `max_bytes`
    /// bytes; an entry larger than `max_bytes` on its own never fits).
    /// Nothing was written; the caller records the action as failed.
    #[error("webhook outbox full ({entries} entries, {bytes} bytes queued)")]
    Full { entries: usize, bytes: usize },
    /// The store failed; nothing was queued.
    #[error("webhook outbox storage: {0}")]
    Storage(String),
}

impl From<AlarmError> for OutboxError {
    fn from(e: AlarmError) -> Self {
        match e {
            AlarmError::Storage(m) => OutboxError::Storage(m),
            other => OutboxError::Storage(other.to_string()),
        }
    }
}

/// The store layer's failures are storage failures; its message names
/// the file, schema or record.
impl From<kv::Error> for AlarmError {
    fn from(e: kv::Error) -> Self {
        AlarmError::Storage(e.to_string())
    }
}
