//! `Versioned<T>`: the codec of stored records. A record is a serde struct
//! stored as one JSON object whose first field is its format version,
//! `{"v":1,...}`; the struct itself has no `v` field. A record of an
//! older version is handed to [`Record::upgrade`]; a newer one is refused.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A type stored as a versioned record.
pub trait Record: Serialize + DeserializeOwned {
    /// What it is, for messages (`"alarm"`).
    const KIND: &'static str;
    /// The version this binary writes.
    const VERSION: u32;

    /// Reads a record written with an older `version` (`bytes` is the
    /// whole stored object, `v` included). The default refuses it.
    fn upgrade(version: u32, bytes: &[u8]) -> Result<Self, Error> {
        let _ = bytes;
        Err(Error::RecordVersion {
            kind: Self::KIND,
            found: version,
            supported: Self::VERSION,
        })
    }
}

/// The codec of `T` records (see the module documentation).
pub struct Versioned<T>(PhantomData<fn() -> T>);

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

impl<T: Record> Versioned<T> {
    /// `{"v":VERSION,` followed by the fields of `rec`.
    pub fn encode(rec: &T) -> Result<Vec<u8>, Error> {
        let body = serde_json::to_vec(rec).map_err(|e| Error::Encode {
            kind: T::KIND,
            message: e.to_string(),
        })?;
        let Some(rest) = body.strip_prefix(b"{") else {
            return Err(Error::Encode {
                kind: T::KIND,
                message: "not a JSON object".into(),
            });
        };
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"{\"v\":");
        out.extend_from_slice(T::VERSION.to_string().as_bytes());
        if rest != b"}" {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        Ok(out)
    }

    /// The record in `bytes`: decoded directly at [`Record::VERSION`],
    /// upgraded from an older one, refused from a newer one.
    pub fn decode(bytes: &[u8]) -> Result<T, Error> {
        let corrupt = |e: serde_json::Error| Error::Corrupt {
            kind: T::KIND,
            message: e.to_string(),
        };
        let VersionOnly { v } = serde_json::from_slice(bytes).map_err(corrupt)?;
        match v.cmp(&T::VERSION) {
            std::cmp::Ordering::Equal => serde_json::from_slice(bytes).map_err(corrupt),
            std::cmp::Ordering::Less => T::upgrade(v, bytes),
            std::cmp::Ordering::Greater => Err(Error::RecordVersion {
                kind: T::KIND,
                found: v,
                supported: T::VERSION,
            }),
        }
    }

    /// The version of the record in `bytes`, without decoding the rest.
    pub fn version(bytes: &[u8]) -> Result<u32, Error> {
        let VersionOnly { v } = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            kind: T::KIND,
            message: e.to_string(),
        })?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        name: String,
        n: u64,
    }

    impl Record for Thing {
        const KIND: &'static str = "thing";
        const VERSION: u32 = 2;

        fn upgrade(version: u32, bytes: &[u8]) -> Result<Self, Error> {
            #[derive(Deserialize)]
            struct V1 {
                name: String,
            }
            if version != 1 {
                return Err(Error::RecordVersion {
                    kind: Self::KIND,
                    found: version,
                    supported: Self::VERSION,
                });
            }
            let old: V1 = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
                kind: Self::KIND,
                message: e.to_string(),
            })?;
            Ok(Thing {
                name: old.name,
                n: 0,
            })
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Empty {}

    impl Record for Empty {
        const KIND: &'static str = "empty";
        const VERSION: u32 = 1;
    }

    #[test]
    fn the_version_comes_first_and_round_trips() {
        let t = Thing {
            name: "a".into(),
            n: 3,
        };
        let bytes = Versioned::encode(&t).unwrap();
        assert_eq!(bytes, br#"{"v":2,"name":"a","n":3}"#);
        assert_eq!(Versioned::<Thing>::version(&bytes).unwrap(), 2);
        assert_eq!(Versioned::<Thing>::decode(&bytes).unwrap(), t);
        let e = Versioned::encode(&Empty {}).unwrap();
        assert_eq!(e, br#"{"v":1}"#);
        assert_eq!(Versioned::<Empty>::decode(&e).unwrap(), Empty {});
    }

    #[test]
    fn older_records_are_upgraded_newer_refused() {
        let old = br#"{"name":"b","v":1}"#;
        assert_eq!(
            Versioned::<Thing>::decode(old).unwrap(),
            Thing {
                name: "b".into(),
                n: 0
            }
        );
        let e = Versioned::<Thing>::decode(br#"{"v":3,"name":"c","n":1}"#).unwrap_err();
        assert!(matches!(e, Error::RecordVersion { found: 3, .. }), "{e}");
        assert!(e.to_string().contains("version 3"));
        let e = Versioned::<Empty>::decode(br#"{"v":0}"#).unwrap_err();
        assert!(matches!(e, Error::RecordVersion { found: 0, .. }));
    }

    #[test]
    fn garbage_is_corrupt_and_non_objects_do_not_encode() {
        assert!(matches!(
            Versioned::<Thing>::decode(b"{"),
            Err(Error::Corrupt { kind: "thing", .. })
        ));
        assert!(matches!(
            Versioned::<Thing>::decode(br#"{"v":2,"name":1}"#),
            Err(Error::Corrupt { .. })
        ));
        #[derive(Serialize, Deserialize)]
        struct NotAnObject(u8);
        impl Record for NotAnObject {
            const KIND: &'static str = "number";
            const VERSION: u32 = 1;
        }
        assert!(matches!(
            Versioned::encode(&NotAnObject(1)),
            Err(Error::Encode { .. })
        ));
    }
}
