//! The one error type of the store. Refusals that belong to a device's
//! request rather than to the store ([`crate::UpdateError`],
//! [`crate::TransitionError`]) are returned inside `Ok` so that callers
//! can answer the device without treating them as failures.

/// Why a [`crate::DeviceStateStore`] call failed. Each variant is something
/// a caller reacts to differently (the API maps them to 404, 409, 422 and
/// 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwinError {
    /// The named object does not exist (`kind` is e.g. `"command"`).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request is well formed but the current state refuses it (too
    /// many open commands for one device, for example).
    #[error("{0}")]
    Conflict(String),
    /// An input is malformed; `field` names it (e.g. `method`).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The store failed, or holds something this binary cannot read.
    #[error("device state storage: {0}")]
    Storage(String),
}

impl TwinError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        TwinError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        TwinError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// The store layer's failures are storage failures; its message names
/// the file, schema or record.
impl From<kv::Error> for TwinError {
    fn from(e: kv::Error) -> Self {
        TwinError::Storage(e.to_string())
    }
}
