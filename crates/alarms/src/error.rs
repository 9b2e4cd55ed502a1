//! The errors of the two stores. [`AlarmError`] is what every call fails
//! with; [`OutboxError`] is what [`crate::Outbox::push`] fails with, since
//! its caller must tell "the queue is full" (record the action as failed)
//! from "the disk failed".

kv::store_error! {
    /// Why an [`crate::AlarmStore`] or [`crate::Outbox`] call failed
    /// (`NotFound` names an `"alarm"` or an `"outbox entry"`).
    pub enum AlarmError("alarm storage") {}
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
