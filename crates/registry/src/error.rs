//! The one error type of the registry.

/// Why a registry call failed. Each variant is something a caller reacts to
/// differently (the API maps them to 404, 409, 422, 409 and 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The named object does not exist (`kind` is e.g. `"device"`).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// An object with that key exists already.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// An input is malformed; `field` names it (e.g. `labels.zone`).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The request is well formed but the current state refuses it (a
    /// revoked or exhausted claim, for example).
    #[error("{0}")]
    Conflict(String),
    /// The store failed, or holds something this binary cannot read.
    #[error("registry storage: {0}")]
    Storage(String),
}

impl RegistryError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RegistryError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        RegistryError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn exists(kind: &'static str, id: impl Into<String>) -> Self {
        RegistryError::AlreadyExists {
            kind,
            id: id.into(),
        }
    }
}

/// The store layer's failures are storage failures; its message names
/// the file, schema or record.
impl From<kv::Error> for RegistryError {
    fn from(e: kv::Error) -> Self {
        RegistryError::Storage(e.to_string())
    }
}
