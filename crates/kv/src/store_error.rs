//! `store_error!`: the error enum of a domain store, declared once for
//! every store crate.

/// Declares a domain store's error enum (`thiserror`): the variants every
/// store has, each something a caller reacts to differently (the API
/// maps them to 404, 409, 422 and 500), followed by the crate's own
/// variants; the `invalid` and `not_found` constructors; `check_key`
/// (a key of 1 to `max` bytes); and the wrapping of this crate's
/// [`crate::Error`] as `Storage`, whose message is prefixed by the
/// literal given after the name. The calling crate depends on
/// `thiserror` (the derive is its).
///
/// ```ignore
/// kv::store_error! {
///     /// Why an alarm store call failed.
///     pub enum AlarmError("alarm storage") {}
/// }
/// ```
#[macro_export]
macro_rules! store_error {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($storage:literal) {
            $($extra:tt)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, ::thiserror::Error)]
        $vis enum $name {
            /// The named object does not exist (`kind` is e.g. `"alarm"`).
            #[error("{kind} {id:?} not found")]
            NotFound { kind: &'static str, id: String },
            /// The request is well formed but the current state refuses it
            /// (acknowledging an acknowledged alarm, too many open commands,
            /// a revoked claim).
            #[error("{0}")]
            Conflict(String),
            /// An input is malformed; `field` names it (e.g. `alarm_type`).
            #[error("invalid {field}: {message}")]
            Invalid { field: String, message: String },
            /// The store failed, or holds something this binary cannot read.
            #[error("{storage}: {0}", storage = $storage)]
            Storage(String),
            $($extra)*
        }

        #[allow(dead_code, reason = "not every store uses every constructor")]
        impl $name {
            pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
                $name::Invalid {
                    field: field.into(),
                    message: message.into(),
                }
            }

            pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
                $name::NotFound {
                    kind,
                    id: id.into(),
                }
            }

            /// `Invalid` naming `field` unless `value` has 1 to `max` bytes.
            pub(crate) fn check_key(field: &str, value: &str, max: usize) -> Result<(), Self> {
                if value.is_empty() || value.len() > max {
                    return Err($name::invalid(field, format!("must have 1 to {max} bytes")));
                }
                Ok(())
            }
        }

        /// The store layer's failures are storage failures; its message
        /// names the file, schema or record.
        impl From<$crate::Error> for $name {
            fn from(e: $crate::Error) -> Self {
                $name::Storage(e.to_string())
            }
        }
    };
}
