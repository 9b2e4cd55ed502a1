//! The storage seam: the registry's tables and their typed methods.
//!
//! Opening, the schema version, transactions and the record codec are
//! `kv`'s: the domain modules see a `kv::Db` (its `read`, `write` and
//! `write_unsynced`) and the typed record methods of [`Reads`] (either
//! transaction kind) and [`Writes`] (`device`, `put_device`, `claims`,
//! ...), never a table or a byte.
//!
//! Tables (every record a `kv::Versioned` JSON object from `records.rs`,
//! `{"v":1,...}`, byte for byte what the code before `kv` wrote):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | u64 (`schema_version`, `audit_next_seq`) |
//! | `devices` | (namespace, device id) | `DeviceRec` |
//! | `device_counts` | namespace | u64, no zero rows |
//! | `device_tokens` | (namespace, device id) | `DeviceTokensRec` |
//! | `certs` | (namespace, serial) | `CertRec` |
//! | `device_certs` | (namespace, device id, serial) | () |
//! | `cert_serials` | serial | namespace |
//! | `revoked_serials` | serial | revoked at (ms) |
//! | `claims` | (namespace, claim id) | `ClaimRec` |
//! | `claim_index` | claim id | namespace |
//! | `users` | username | `UserRec` |
//! | `api_tokens` | token id | `ApiTokenRec` |
//! | `user_tokens` | (username, token id) | () |
//! | `audit` | seq | `AuditRec` |
//!
//! Every write transaction that changed something commits with redb's
//! default durability (immediate, fsynced): when `kv::Db::write` returns
//! `Ok`, the change is on disk. The one exception is
//! `kv::Db::write_unsynced`, for changes whose loss in a crash is harmless
//! (replacing a legacy argon2 hash by the fast form of the same token:
//! the old hash still verifies).

use std::borrow::Borrow;
use std::ops::Bound;
use std::path::Path;

pub(crate) use kv::WriteTx;
use kv::{Db, Order, Read, Record, Records, Schema, Table};

use crate::error::RegistryError;
use crate::records::{
    ApiTokenRec, AuditRec, CertRec, ClaimRec, DeviceRec, DeviceTokensRec, UserRec,
};

type Result<T> = std::result::Result<T, RegistryError>;

const DEVICES: Records<(&str, &str), DeviceRec> = Records::new("devices");
const DEVICE_COUNTS: Table<&str, u64> = Table::new("device_counts");
const DEVICE_TOKENS: Records<(&str, &str), DeviceTokensRec> = Records::new("device_tokens");
const CERTS: Records<(&str, &str), CertRec> = Records::new("certs");
const DEVICE_CERTS: Table<(&str, &str, &str), ()> = Table::new("device_certs");
const CERT_SERIALS: Table<&str, &str> = Table::new("cert_serials");
const REVOKED: Table<&str, u64> = Table::new("revoked_serials");
const CLAIMS: Records<(&str, &str), ClaimRec> = Records::new("claims");
const CLAIM_INDEX: Table<&str, &str> = Table::new("claim_index");
const USERS: Records<&str, UserRec> = Records::new("users");
const API_TOKENS: Records<&str, ApiTokenRec> = Records::new("api_tokens");
const USER_TOKENS: Table<(&str, &str), ()> = Table::new("user_tokens");
const AUDIT: Records<u64, AuditRec> = Records::new("audit");

/// The schema version this binary writes; it opens any version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA: Schema = Schema::new(
    "registry",
    SCHEMA_VERSION,
    &[
        &DEVICES,
        &DEVICE_COUNTS,
        &DEVICE_TOKENS,
        &CERTS,
        &DEVICE_CERTS,
        &CERT_SERIALS,
        &REVOKED,
        &CLAIMS,
        &CLAIM_INDEX,
        &USERS,
        &API_TOKENS,
        &USER_TOKENS,
        &AUDIT,
    ],
);
/// The `meta` key of the next audit sequence number.
const AUDIT_SEQ_KEY: &str = "audit_next_seq";

/// Opens or creates the registry file, checks its schema version and
/// creates its missing tables.
pub(crate) fn open(path: &Path) -> Result<Db> {
    Ok(Db::open(path, SCHEMA, &[])?)
}

/// The start of a scan of the keys `(ns, id)` of one namespace from
/// `start`.
fn from_in<'a>(ns: &'a str, start: Bound<&'a str>) -> Bound<(&'a str, &'a str)> {
    match start {
        Bound::Included(s) => Bound::Included((ns, s)),
        Bound::Excluded(s) => Bound::Excluded((ns, s)),
        Bound::Unbounded => Bound::Included((ns, "")),
    }
}

/// The reads, the same in both transaction kinds.
pub(crate) trait Reads: Read {
    fn device(&self, ns: &str, id: &str) -> Result<Option<DeviceRec>> {
        Ok(self.open_records(&DEVICES)?.get((ns, id))?)
    }

    fn device_exists(&self, ns: &str, id: &str) -> Result<bool> {
        Ok(self.open_records(&DEVICES)?.raw().contains((ns, id))?)
    }

    /// Visits the devices of `ns` in id order from `start` until `visit`
    /// returns false.
    fn scan_devices(
        &self,
        ns: &str,
        start: Bound<&str>,
        visit: &mut dyn FnMut(&str, DeviceRec) -> bool,
    ) -> Result<()> {
        let range = (from_in(ns, start), Bound::Unbounded);
        self.open_records(&DEVICES)?
            .scan(range, Order::Ascending, |(kn, id), rec| {
                Ok::<_, RegistryError>(kn == ns && visit(id, rec))
            })
    }

    fn device_count(&self, ns: &str) -> Result<u64> {
        Ok(self.open(&DEVICE_COUNTS)?.get(ns)?.map_or(0, |v| v.value()))
    }

    fn device_tokens(&self, ns: &str, id: &str) -> Result<DeviceTokensRec> {
        let rec = self.open_records(&DEVICE_TOKENS)?.get((ns, id))?;
        Ok(rec.unwrap_or_default())
    }

    fn cert(&self, ns: &str, serial: &str) -> Result<Option<CertRec>> {
        Ok(self.open_records(&CERTS)?.get((ns, serial))?)
    }

    fn device_cert_serials(&self, ns: &str, device: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.open(&DEVICE_CERTS)?
            .scan((ns, device, "").., Order::Ascending, |k, _| {
                let (kn, kd, serial) = k.value();
                if kn != ns || kd != device {
                    return Ok(false);
                }
                out.push(serial.to_string());
                Ok::<_, RegistryError>(true)
            })?;
        Ok(out)
    }

    fn serial_namespace(&self, serial: &str) -> Result<Option<String>> {
        let t = self.open(&CERT_SERIALS)?;
        let r = t.get(serial)?;
        Ok(r.map(|v| v.value().to_string()))
    }

    fn revoked_serials(&self) -> Result<Vec<String>> {
        Ok(self.open(&REVOKED)?.keys("".., |k| k.to_string())?)
    }

    fn claim(&self, ns: &str, id: &str) -> Result<Option<ClaimRec>> {
        Ok(self.open_records(&CLAIMS)?.get((ns, id))?)
    }

    fn claim_namespace(&self, id: &str) -> Result<Option<String>> {
        let t = self.open(&CLAIM_INDEX)?;
        let r = t.get(id)?;
        Ok(r.map(|v| v.value().to_string()))
    }

    /// A claim by id alone (ids are unique across namespaces), with its
    /// namespace.
    fn find_claim(&self, id: &str) -> Result<Option<(String, ClaimRec)>> {
        let Some(ns) = self.claim_namespace(id)? else {
            return Ok(None);
        };
        Ok(self.claim(&ns, id)?.map(|rec| (ns, rec)))
    }

    fn claims(&self, ns: &str) -> Result<Vec<(String, ClaimRec)>> {
        let mut out = Vec::new();
        self.open_records(&CLAIMS)?
            .scan((ns, "").., Order::Ascending, |(kn, id), rec| {
                if kn != ns {
                    return Ok(false);
                }
                out.push((id.to_string(), rec));
                Ok::<_, RegistryError>(true)
            })?;
        Ok(out)
    }

    fn user(&self, name: &str) -> Result<Option<UserRec>> {
        Ok(self.open_records(&USERS)?.get(name)?)
    }

    fn users(&self) -> Result<Vec<(String, UserRec)>> {
        self.named(&USERS)
    }

    fn api_token(&self, id: &str) -> Result<Option<ApiTokenRec>> {
        Ok(self.open_records(&API_TOKENS)?.get(id)?)
    }

    fn api_tokens(&self) -> Result<Vec<(String, ApiTokenRec)>> {
        self.named(&API_TOKENS)
    }

    /// Every record of a table keyed by a name, in name order.
    fn named<T: Record>(&self, t: &Records<&'static str, T>) -> Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        self.open_records(t)?
            .scan("".., Order::Ascending, |name, rec| {
                out.push((name.to_string(), rec));
                Ok::<_, RegistryError>(true)
            })?;
        Ok(out)
    }

    fn user_token_ids(&self, owner: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.open(&USER_TOKENS)?
            .scan((owner, "").., Order::Ascending, |k, _| {
                let (ko, id) = k.value();
                if ko != owner {
                    return Ok(false);
                }
                out.push(id.to_string());
                Ok::<_, RegistryError>(true)
            })?;
        Ok(out)
    }

    /// Visits audit entries newest first, starting below `before`, until
    /// `visit` returns false.
    fn scan_audit(
        &self,
        before: Option<u64>,
        visit: &mut dyn FnMut(u64, AuditRec) -> bool,
    ) -> Result<()> {
        let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
        self.open_records(&AUDIT)?
            .scan((Bound::Unbounded, upper), Order::Descending, |seq, rec| {
                Ok::<_, RegistryError>(visit(seq, rec))
            })
    }

    fn audit_len(&self) -> Result<u64> {
        Ok(self.open_records(&AUDIT)?.raw().len()?)
    }
}

impl<R: Read> Reads for R {}

/// The writes (provided methods, so that each is written once).
pub(crate) trait Writes: Borrow<WriteTx> {
    /// Inserts or replaces a device; keeps the namespace's count.
    fn put_device(&self, ns: &str, id: &str, rec: &DeviceRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        let mut t = tx.records(&DEVICES)?;
        let is_new = !t.raw().contains((ns, id))?;
        t.put((ns, id), rec)?;
        if is_new {
            tx.table(&DEVICE_COUNTS)?.add(ns, 1)?;
        }
        Ok(())
    }

    /// Removes a device record; keeps the namespace's count.
    fn remove_device(&self, ns: &str, id: &str) -> Result<bool> {
        let tx: &WriteTx = self.borrow();
        let existed = tx.records(&DEVICES)?.remove((ns, id))?;
        if existed {
            tx.table(&DEVICE_COUNTS)?.add(ns, -1)?;
        }
        Ok(existed)
    }

    /// Stores a device's tokens; an empty list removes the record.
    fn put_device_tokens(&self, ns: &str, id: &str, rec: &DeviceTokensRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        let mut t = tx.records(&DEVICE_TOKENS)?;
        if rec.tokens.is_empty() {
            t.remove((ns, id))?;
        } else {
            t.put((ns, id), rec)?;
        }
        Ok(())
    }

    /// Inserts or replaces a certificate record and its indexes.
    fn put_cert(&self, ns: &str, serial: &str, rec: &CertRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&CERTS)?.put((ns, serial), rec)?;
        tx.table(&DEVICE_CERTS)?
            .insert((ns, rec.device_id.as_str(), serial), ())?;
        tx.table(&CERT_SERIALS)?.insert(serial, ns)?;
        Ok(())
    }

    /// Removes a certificate record and its indexes (the revocation, if
    /// any, stays).
    fn remove_cert(&self, ns: &str, serial: &str) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        let rec = tx.cert(ns, serial)?;
        tx.records(&CERTS)?.remove((ns, serial))?;
        if let Some(rec) = rec {
            tx.table(&DEVICE_CERTS)?
                .remove((ns, rec.device_id.as_str(), serial))?;
        }
        tx.table(&CERT_SERIALS)?.remove(serial)?;
        Ok(())
    }

    /// Remembers `serial` as revoked (keeps the first revocation time).
    fn add_revoked(&self, serial: &str, at_ms: u64) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        let mut t = tx.table(&REVOKED)?;
        if !t.contains(serial)? {
            t.insert(serial, at_ms)?;
        }
        Ok(())
    }

    /// Inserts or replaces a claim and its token-id index.
    fn put_claim(&self, ns: &str, id: &str, rec: &ClaimRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&CLAIMS)?.put((ns, id), rec)?;
        tx.table(&CLAIM_INDEX)?.insert(id, ns)?;
        Ok(())
    }

    fn put_user(&self, name: &str, rec: &UserRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&USERS)?.put(name, rec)?)
    }

    fn remove_user(&self, name: &str) -> Result<bool> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&USERS)?.remove(name)?)
    }

    /// Inserts or replaces an API or session token and its owner index.
    fn put_api_token(&self, id: &str, rec: &ApiTokenRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&API_TOKENS)?.put(id, rec)?;
        if let Some(owner) = &rec.owner {
            tx.table(&USER_TOKENS)?.insert((owner.as_str(), id), ())?;
        }
        Ok(())
    }

    fn remove_api_token(&self, id: &str) -> Result<bool> {
        let tx: &WriteTx = self.borrow();
        let Some(rec) = tx.api_token(id)? else {
            return Ok(false);
        };
        tx.records(&API_TOKENS)?.remove(id)?;
        if let Some(owner) = &rec.owner {
            tx.table(&USER_TOKENS)?.remove((owner.as_str(), id))?;
        }
        Ok(true)
    }

    /// Appends an audit entry, then removes the oldest entries beyond
    /// `max_entries`. Returns the entry's sequence number (from 1, never
    /// reused).
    fn append_audit(&self, rec: &AuditRec, max_entries: u64) -> Result<u64> {
        let tx: &WriteTx = self.borrow();
        let seq = tx.next_seq(AUDIT_SEQ_KEY)?;
        let mut t = tx.records(&AUDIT)?;
        t.put(seq, rec)?;
        let mut len = t.raw().len()?;
        while len > max_entries {
            let Some(oldest) = t.raw().first(|k, _| k.value())? else {
                break;
            };
            t.remove(oldest)?;
            len -= 1;
        }
        Ok(seq)
    }
}

impl Writes for WriteTx {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> DeviceRec {
        DeviceRec {
            name: name.into(),
            device_type: "default".into(),
            labels: Default::default(),
            groups: vec![],
            metadata: Default::default(),
            enabled: true,
            firmware_version: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn namespaces_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("r.redb")).unwrap();
        store
            .write(|tx| {
                for (ns, id) in [("a", "1"), ("a", "2"), ("b", "1"), ("ab", "0")] {
                    tx.put_device(ns, id, &rec(id))?;
                }
                Ok::<_, RegistryError>(())
            })
            .unwrap();
        let ids = store
            .read(|tx| {
                let mut ids = Vec::new();
                tx.scan_devices("a", Bound::Unbounded, &mut |id, _| {
                    ids.push(id.to_string());
                    true
                })?;
                Ok::<_, RegistryError>(ids)
            })
            .unwrap();
        assert_eq!(ids, vec!["1", "2"]);
        assert_eq!(store.read(|tx| tx.device_count("a")).unwrap(), 2);
        assert_eq!(store.read(|tx| tx.device_count("ab")).unwrap(), 1);
    }

    #[test]
    fn failed_write_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("r.redb")).unwrap();
        let r: Result<()> = store.write(|tx| {
            tx.put_device("default", "x", &rec("x"))?;
            Err(RegistryError::Conflict("no".into()))
        });
        assert!(r.is_err());
        assert!(!store.read(|tx| tx.device_exists("default", "x")).unwrap());
        assert_eq!(store.read(|tx| tx.device_count("default")).unwrap(), 0);
    }

    #[test]
    fn audit_trims_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("r.redb")).unwrap();
        let a = AuditRec {
            time_ms: 0,
            actor: "a".into(),
            action: "x".into(),
            target: String::new(),
            source: String::new(),
            status: 200,
            details: serde_json::Value::Null,
        };
        for i in 1..=5 {
            assert_eq!(store.write(|tx| tx.append_audit(&a, 3)).unwrap(), i);
        }
        let seqs = store
            .read(|tx| {
                let mut s = Vec::new();
                tx.scan_audit(None, &mut |seq, _| {
                    s.push(seq);
                    true
                })?;
                Ok::<_, RegistryError>(s)
            })
            .unwrap();
        assert_eq!(seqs, vec![5, 4, 3]);
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        open(&path).unwrap().set_schema_version(2).unwrap();
        let Err(RegistryError::Storage(m)) = open(&path) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }
}
