//! Identifiers: device ids and namespaces, and the one rule they follow.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// Longest id, in bytes (ids are ASCII, so also in characters).
pub const MAX_ID_CHARS: usize = 128;

/// The namespace (tenant) everything lives in until there are several.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Why a string is not an id. The messages are the ones the registry
/// returns to API callers, after the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {MAX_ID_CHARS} characters")]
    TooLong,
    #[error("character {0:?} not allowed (use A-Z a-z 0-9 . _ : -)")]
    Char(char),
    #[error("must not be \".\" or \"..\"")]
    Dots,
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// The id rule (device ids, namespaces, groups, device types, user
/// names): 1..=128 characters from `[A-Za-z0-9._:-]`, not `.` or `..`.
/// Such an id is safe as an MQTT topic level (no `/`, `+`, `#`, and no
/// leading `$`) and as an MQTT user name.
pub fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_CHARS {
        return Err(IdError::TooLong);
    }
    if let Some(c) = s.chars().find(|&c| !id_char(c)) {
        return Err(IdError::Char(c));
    }
    if s == "." || s == ".." {
        return Err(IdError::Dots);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($inner);

        impl $name {
            /// The id, once it follows [`check_id`].
            pub fn new(s: impl Into<String>) -> Result<$name, IdError> {
                let s = s.into();
                check_id(&s)?;
                Ok($name(s.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0.into()
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<$name, IdError> {
                $name::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<$name, IdError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<$name, IdError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.into_string()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

id_type!(
    /// A device id: the registry's id rule ([`check_id`]). It is the
    /// device's topic level in `devices/{id}/...` and its MQTT user name.
    DeviceId(String)
);

id_type!(
    /// A namespace (tenant): the same rule as device ids. Today every
    /// object lives in [`Namespace::DEFAULT`].
    Namespace(Cow<'static, str>)
);

impl Namespace {
    /// `"default"`, the namespace of everything for now.
    pub const DEFAULT: Namespace = Namespace(Cow::Borrowed(DEFAULT_NAMESPACE));
}

impl Default for Namespace {
    fn default() -> Namespace {
        Namespace::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_rule() {
        for ok in ["d1", "a", "A-Z_a.z:0-9", "...", ".a", &"x".repeat(128)] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_id(""), Err(IdError::Empty));
        assert_eq!(check_id(&"x".repeat(129)), Err(IdError::TooLong));
        assert_eq!(check_id("a/b"), Err(IdError::Char('/')));
        assert_eq!(check_id("+"), Err(IdError::Char('+')));
        assert_eq!(check_id("#"), Err(IdError::Char('#')));
        assert_eq!(check_id("$claim-1"), Err(IdError::Char('$')));
        assert_eq!(check_id("a b"), Err(IdError::Char(' ')));
        assert_eq!(check_id("é"), Err(IdError::Char('é')));
        assert_eq!(check_id("."), Err(IdError::Dots));
        assert_eq!(check_id(".."), Err(IdError::Dots));
        // The length is checked first, in bytes.
        assert_eq!(check_id(&"é".repeat(65)), Err(IdError::TooLong));
    }

    #[test]
    fn messages_are_the_registrys() {
        assert_eq!(IdError::Empty.to_string(), "must not be empty");
        assert_eq!(IdError::TooLong.to_string(), "longer than 128 characters");
        assert_eq!(
            IdError::Char(' ').to_string(),
            "character ' ' not allowed (use A-Z a-z 0-9 . _ : -)"
        );
        assert_eq!(IdError::Dots.to_string(), "must not be \".\" or \"..\"");
    }

    #[test]
    fn device_ids() {
        let d = DeviceId::new("press-7").unwrap();
        assert_eq!(d, "press-7");
        assert_eq!(d.as_str(), "press-7");
        assert_eq!(&*d, "press-7");
        assert_eq!(d.to_string(), "press-7");
        assert_eq!(format!("{d:?}"), "\"press-7\"");
        assert_eq!("press-7".parse::<DeviceId>(), Ok(d.clone()));
        assert_eq!(String::from(d), "press-7");
        assert_eq!(DeviceId::try_from("a/b"), Err(IdError::Char('/')));
        let set: std::collections::HashSet<DeviceId> = [DeviceId::new("x").unwrap()].into();
        assert!(set.contains("x"));
    }

    #[test]
    fn namespaces() {
        assert_eq!(Namespace::default(), Namespace::DEFAULT);
        assert_eq!(Namespace::DEFAULT.as_str(), DEFAULT_NAMESPACE);
        assert_eq!(Namespace::new("default"), Ok(Namespace::DEFAULT));
        assert_eq!(Namespace::new(""), Err(IdError::Empty));
        assert_eq!(Namespace::new("acme").unwrap().to_string(), "acme");
    }
}
