//! `store_trait!`: a domain store trait and its embedded implementation
//! from one list of signatures.

/// Declares a store trait (`Send + Sync`) from a list of method
/// signatures, and implements it for the embedded store type by calling
/// that type's inherent methods of the same names, so that the trait and
/// the public API of the embedded store cannot drift apart.
///
/// ```ignore
/// kv::store_trait! {
///     /// An alarm store.
///     pub trait AlarmStorage for AlarmStore {
///         fn get(&self, ns: &str, id: &str) -> Result<Option<Alarm>>;
///     }
/// }
/// ```
#[macro_export]
macro_rules! store_trait {
    (
        $(#[$meta:meta])*
        $vis:vis trait $name:ident for $imp:ty {
            $(
                $(#[$fmeta:meta])*
                fn $f:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$meta])*
        $vis trait $name: Send + Sync {
            $(
                $(#[$fmeta])*
                fn $f(&self $(, $arg: $ty)*) -> $ret;
            )*
        }

        impl $name for $imp {
            $(
                $(#[$fmeta])*
                fn $f(&self $(, $arg: $ty)*) -> $ret {
                    <$imp>::$f(self $(, $arg)*)
                }
            )*
        }
    };
}
