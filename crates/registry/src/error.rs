//! The one error type of the registry.

kv::store_error! {
    /// Why a registry call failed (`NotFound` names e.g. a `"device"`).
    pub enum RegistryError("registry storage") {
        /// An object with that key exists already (409).
        #[error("{kind} {id:?} already exists")]
        AlreadyExists { kind: &'static str, id: String },
    }
}

impl RegistryError {
    pub(crate) fn exists(kind: &'static str, id: impl Into<String>) -> Self {
        RegistryError::AlreadyExists {
            kind,
            id: id.into(),
        }
    }
}
