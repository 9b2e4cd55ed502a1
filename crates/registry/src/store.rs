//! The storage seam: everything redb-specific is in this file.
//!
//! The domain modules see [`Store`], [`ReadTx`] and [`WriteTx`] and their
//! typed record methods (`device`, `put_device`, `claims`, ...), never a
//! table or a byte. A second backend (PostgreSQL, for several nodes) would
//! provide the same method sets; while there is one backend they are
//! concrete types rather than a trait, so no generics or `dyn` spread
//! through the domain code.
//!
//! Tables (every value is a JSON record from `records.rs`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | u64 (`schema_version`, `audit_next_seq`) |
//! | `devices` | (namespace, device id) | `DeviceRec` |
//! | `device_counts` | namespace | u64 |
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
//! Every write transaction commits with redb's default durability
//! (immediate, fsynced): when [`Store::write`] returns `Ok`, the change is on
//! disk. The one exception is [`Store::write_unsynced`], for changes whose
//! loss in a crash is harmless (replacing a legacy argon2 hash by the fast
//! form of the same token: the old hash still verifies).

use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::error::RegistryError;
use crate::records::{
    decode, encode, ApiTokenRec, AuditRec, CertRec, ClaimRec, DeviceRec, DeviceTokensRec, UserRec,
};

type Result<T> = std::result::Result<T, RegistryError>;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const DEVICES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("devices");
const DEVICE_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("device_counts");
const DEVICE_TOKENS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("device_tokens");
const CERTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("certs");
const DEVICE_CERTS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("device_certs");
const CERT_SERIALS: TableDefinition<&str, &str> = TableDefinition::new("cert_serials");
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked_serials");
const CLAIMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("claims");
const CLAIM_INDEX: TableDefinition<&str, &str> = TableDefinition::new("claim_index");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const API_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");
const USER_TOKENS: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_tokens");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// The schema version this binary writes; it opens any version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &str = "schema_version";
const AUDIT_NEXT_KEY: &str = "audit_next_seq";

/// The registry's database.
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates the file, checks its schema version and creates
    /// missing tables.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => RegistryError::Storage(format!(
                "{} is already open (by another process or another Registry)",
                path.display()
            )),
            other => RegistryError::Storage(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match version {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(RegistryError::Storage(format!(
                        "{} has registry schema version {v}, newer than this binary's \
                         {SCHEMA_VERSION}; run a newer Millwright",
                        path.display()
                    )))
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(DEVICES)?;
            txn.open_table(DEVICE_COUNTS)?;
            txn.open_table(DEVICE_TOKENS)?;
            txn.open_table(CERTS)?;
            txn.open_table(DEVICE_CERTS)?;
            txn.open_table(CERT_SERIALS)?;
            txn.open_table(REVOKED)?;
            txn.open_table(CLAIMS)?;
            txn.open_table(CLAIM_INDEX)?;
            txn.open_table(USERS)?;
            txn.open_table(API_TOKENS)?;
            txn.open_table(USER_TOKENS)?;
            txn.open_table(AUDIT)?;
        }
        txn.commit()?;
        Ok(Store { db })
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&ReadTx) -> Result<T>) -> Result<T> {
        let tx = ReadTx {
            txn: self.db.begin_read()?,
        };
        f(&tx)
    }

    /// Runs `f` in a write transaction and commits (fsync) if it returns
    /// `Ok`; on `Err` nothing is written.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut WriteTx) -> Result<T>) -> Result<T> {
        let mut tx = WriteTx {
            txn: self.db.begin_write()?,
        };
        match f(&mut tx) {
            Ok(v) => {
                tx.txn.commit()?;
                Ok(v)
            }
            Err(e) => {
                tx.txn.abort()?;
                Err(e)
            }
        }
    }

    /// Like [`Store::write`] but without an fsync (redb `Durability::None`):
    /// the change is visible at once and reaches the disk with the next
    /// durable commit; a crash before that loses it. Only for changes whose
    /// loss is harmless.
    pub(crate) fn write_unsynced<T>(&self, f: impl FnOnce(&mut WriteTx) -> Result<T>) -> Result<T> {
        let mut txn = self.db.begin_write()?;
        // No persistent savepoints are ever made, so lowering the
        // durability cannot panic.
        txn.set_durability(redb::Durability::None);
        let mut tx = WriteTx { txn };
        match f(&mut tx) {
            Ok(v) => {
                tx.txn.commit()?;
                Ok(v)
            }
            Err(e) => {
                tx.txn.abort()?;
                Err(e)
            }
        }
    }

    /// Test hook: overwrites the stored schema version.
    #[cfg(test)]
    pub(crate) fn set_schema_version(&self, v: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(SCHEMA_KEY, v)?;
        txn.commit()?;
        Ok(())
    }
}

/// A read snapshot.
pub(crate) struct ReadTx {
    txn: ReadTransaction,
}

/// A write transaction; see [`Store::write`].
pub(crate) struct WriteTx {
    txn: WriteTransaction,
}

fn pair_end(key: (&str, &str), ns: &str) -> bool {
    key.0 != ns
}

/// The read methods, identical for both transaction kinds.
macro_rules! read_methods {
    () => {
        pub(crate) fn device(&self, ns: &str, id: &str) -> Result<Option<DeviceRec>> {
            let t = self.txn.open_table(DEVICES)?;
            let r = t.get((ns, id))?;
            r.map(|v| decode(v.value(), "device")).transpose()
        }

        pub(crate) fn device_exists(&self, ns: &str, id: &str) -> Result<bool> {
            let t = self.txn.open_table(DEVICES)?;
            let r = t.get((ns, id))?;
            Ok(r.is_some())
        }

        /// Visits the devices of `ns` in id order from `start` until
        /// `visit` returns false.
        pub(crate) fn scan_devices(
            &self,
            ns: &str,
            start: Bound<&str>,
            visit: &mut dyn FnMut(&str, DeviceRec) -> bool,
        ) -> Result<()> {
            let t = self.txn.open_table(DEVICES)?;
            let lower = match start {
                Bound::Included(s) => Bound::Included((ns, s)),
                Bound::Excluded(s) => Bound::Excluded((ns, s)),
                Bound::Unbounded => Bound::Included((ns, "")),
            };
            for item in t.range::<(&str, &str)>((lower, Bound::Unbounded))? {
                let (k, v) = item?;
                let key = k.value();
                if pair_end(key, ns) {
                    break;
                }
                let rec: DeviceRec = decode(v.value(), "device")?;
                if !visit(key.1, rec) {
                    break;
                }
            }
            Ok(())
        }

        pub(crate) fn device_count(&self, ns: &str) -> Result<u64> {
            let t = self.txn.open_table(DEVICE_COUNTS)?;
            let r = t.get(ns)?;
            Ok(r.map_or(0, |v| v.value()))
        }

        pub(crate) fn device_tokens(&self, ns: &str, id: &str) -> Result<DeviceTokensRec> {
            let t = self.txn.open_table(DEVICE_TOKENS)?;
            let r = t.get((ns, id))?;
            Ok(r.map(|v| decode(v.value(), "device tokens"))
                .transpose()?
                .unwrap_or_default())
        }

        pub(crate) fn cert(&self, ns: &str, serial: &str) -> Result<Option<CertRec>> {
            let t = self.txn.open_table(CERTS)?;
            let r = t.get((ns, serial))?;
            r.map(|v| decode(v.value(), "certificate")).transpose()
        }

        pub(crate) fn device_cert_serials(&self, ns: &str, device: &str) -> Result<Vec<String>> {
            let t = self.txn.open_table(DEVICE_CERTS)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str, &str)>((ns, device, "")..)? {
                let (k, _) = item?;
                let (kn, kd, serial) = k.value();
                if kn != ns || kd != device {
                    break;
                }
                out.push(serial.to_string());
            }
            Ok(out)
        }

        pub(crate) fn serial_namespace(&self, serial: &str) -> Result<Option<String>> {
            let t = self.txn.open_table(CERT_SERIALS)?;
            let r = t.get(serial)?;
            Ok(r.map(|v| v.value().to_string()))
        }

        pub(crate) fn revoked_serials(&self) -> Result<Vec<String>> {
            let t = self.txn.open_table(REVOKED)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                out.push(item?.0.value().to_string());
            }
            Ok(out)
        }

        pub(crate) fn claim(&self, ns: &str, id: &str) -> Result<Option<ClaimRec>> {
            let t = self.txn.open_table(CLAIMS)?;
            let r = t.get((ns, id))?;
            r.map(|v| decode(v.value(), "claim")).transpose()
        }

        pub(crate) fn claim_namespace(&self, id: &str) -> Result<Option<String>> {
            let t = self.txn.open_table(CLAIM_INDEX)?;
            let r = t.get(id)?;
            Ok(r.map(|v| v.value().to_string()))
        }

        /// A claim by id alone (ids are unique across namespaces), with its
        /// namespace.
        pub(crate) fn find_claim(&self, id: &str) -> Result<Option<(String, ClaimRec)>> {
            let Some(ns) = self.claim_namespace(id)? else {
                return Ok(None);
            };
            Ok(self.claim(&ns, id)?.map(|rec| (ns, rec)))
        }

        pub(crate) fn claims(&self, ns: &str) -> Result<Vec<(String, ClaimRec)>> {
            let t = self.txn.open_table(CLAIMS)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str)>((ns, "")..)? {
                let (k, v) = item?;
                let key = k.value();
                if pair_end(key, ns) {
                    break;
                }
                out.push((key.1.to_string(), decode(v.value(), "claim")?));
            }
            Ok(out)
        }

        pub(crate) fn user(&self, name: &str) -> Result<Option<UserRec>> {
            let t = self.txn.open_table(USERS)?;
            let r = t.get(name)?;
            r.map(|v| decode(v.value(), "user")).transpose()
        }

        pub(crate) fn users(&self) -> Result<Vec<(String, UserRec)>> {
            let t = self.txn.open_table(USERS)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.push((k.value().to_string(), decode(v.value(), "user")?));
            }
            Ok(out)
        }

        pub(crate) fn api_token(&self, id: &str) -> Result<Option<ApiTokenRec>> {
            let t = self.txn.open_table(API_TOKENS)?;
            let r = t.get(id)?;
            r.map(|v| decode(v.value(), "API token")).transpose()
        }

        pub(crate) fn api_tokens(&self) -> Result<Vec<(String, ApiTokenRec)>> {
            let t = self.txn.open_table(API_TOKENS)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.push((k.value().to_string(), decode(v.value(), "API token")?));
            }
            Ok(out)
        }

        pub(crate) fn user_token_ids(&self, owner: &str) -> Result<Vec<String>> {
            let t = self.txn.open_table(USER_TOKENS)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str)>((owner, "")..)? {
                let (k, _) = item?;
                let key = k.value();
                if pair_end(key, owner) {
                    break;
                }
                out.push(key.1.to_string());
            }
            Ok(out)
        }

        /// Visits audit entries newest first, starting below `before`, until
        /// `visit` returns false.
        pub(crate) fn scan_audit(
            &self,
            before: Option<u64>,
            visit: &mut dyn FnMut(u64, AuditRec) -> bool,
        ) -> Result<()> {
            let t = self.txn.open_table(AUDIT)?;
            let range = match before {
                Some(b) => t.range(..b)?,
                None => t.range::<u64>(..)?,
            };
            for item in range.rev() {
                let (k, v) = item?;
                if !visit(k.value(), decode(v.value(), "audit entry")?) {
                    break;
                }
            }
            Ok(())
        }

        pub(crate) fn audit_len(&self) -> Result<u64> {
            let t = self.txn.open_table(AUDIT)?;
            Ok(t.len()?)
        }
    };
}

#[allow(
    dead_code,
    reason = "the macro gives both transaction kinds every read; not all are used on both"
)]
impl ReadTx {
    read_methods!();
}

#[allow(
    dead_code,
    reason = "the macro gives both transaction kinds every read; not all are used on both"
)]
impl WriteTx {
    read_methods!();
}

impl WriteTx {
    /// Inserts or replaces a device; keeps the namespace's count.
    pub(crate) fn put_device(&mut self, ns: &str, id: &str, rec: &DeviceRec) -> Result<()> {
        let bytes = encode(rec)?;
        let is_new = {
            let mut t = self.txn.open_table(DEVICES)?;
            let old = t.insert((ns, id), bytes.as_slice())?;
            old.is_none()
        };
        if is_new {
            self.add_to_count(ns, 1)?;
        }
        Ok(())
    }

    /// Removes a device record; keeps the namespace's count.
    pub(crate) fn remove_device(&mut self, ns: &str, id: &str) -> Result<bool> {
        let existed = {
            let mut t = self.txn.open_table(DEVICES)?;
            let old = t.remove((ns, id))?;
            old.is_some()
        };
        if existed {
            self.add_to_count(ns, -1)?;
        }
        Ok(existed)
    }

    fn add_to_count(&mut self, ns: &str, delta: i64) -> Result<()> {
        let mut t = self.txn.open_table(DEVICE_COUNTS)?;
        let current = t.get(ns)?.map_or(0, |v| v.value());
        let next = current.saturating_add_signed(delta);
        if next == 0 {
            t.remove(ns)?;
        } else {
            t.insert(ns, next)?;
        }
        Ok(())
    }

    /// Stores a device's tokens; an empty list removes the record.
    pub(crate) fn put_device_tokens(
        &mut self,
        ns: &str,
        id: &str,
        rec: &DeviceTokensRec,
    ) -> Result<()> {
        let mut t = self.txn.open_table(DEVICE_TOKENS)?;
        if rec.tokens.is_empty() {
            t.remove((ns, id))?;
        } else {
            t.insert((ns, id), encode(rec)?.as_slice())?;
        }
        Ok(())
    }

    /// Inserts or replaces a certificate record and its indexes.
    pub(crate) fn put_cert(&mut self, ns: &str, serial: &str, rec: &CertRec) -> Result<()> {
        self.txn
            .open_table(CERTS)?
            .insert((ns, serial), encode(rec)?.as_slice())?;
        self.txn
            .open_table(DEVICE_CERTS)?
            .insert((ns, rec.device_id.as_str(), serial), ())?;
        self.txn.open_table(CERT_SERIALS)?.insert(serial, ns)?;
        Ok(())
    }

    /// Removes a certificate record and its indexes (the revocation, if
    /// any, stays).
    pub(crate) fn remove_cert(&mut self, ns: &str, serial: &str) -> Result<()> {
        let rec = self.cert(ns, serial)?;
        self.txn.open_table(CERTS)?.remove((ns, serial))?;
        if let Some(rec) = rec {
            self.txn
                .open_table(DEVICE_CERTS)?
                .remove((ns, rec.device_id.as_str(), serial))?;
        }
        self.txn.open_table(CERT_SERIALS)?.remove(serial)?;
        Ok(())
    }

    /// Remembers `serial` as revoked (keeps the first revocation time).
    pub(crate) fn add_revoked(&mut self, serial: &str, at_ms: u64) -> Result<()> {
        let mut t = self.txn.open_table(REVOKED)?;
        if t.get(serial)?.is_none() {
            t.insert(serial, at_ms)?;
        }
        Ok(())
    }

    /// Inserts or replaces a claim and its token-id index.
    pub(crate) fn put_claim(&mut self, ns: &str, id: &str, rec: &ClaimRec) -> Result<()> {
        self.txn
            .open_table(CLAIMS)?
            .insert((ns, id), encode(rec)?.as_slice())?;
        self.txn.open_table(CLAIM_INDEX)?.insert(id, ns)?;
        Ok(())
    }

    pub(crate) fn put_user(&mut self, name: &str, rec: &UserRec) -> Result<()> {
        self.txn
            .open_table(USERS)?
            .insert(name, encode(rec)?.as_slice())?;
        Ok(())
    }

    pub(crate) fn remove_user(&mut self, name: &str) -> Result<bool> {
        let mut t = self.txn.open_table(USERS)?;
        let old = t.remove(name)?;
        Ok(old.is_some())
    }

    /// Inserts or replaces an API or session token and its owner index.
    pub(crate) fn put_api_token(&mut self, id: &str, rec: &ApiTokenRec) -> Result<()> {
        self.txn
            .open_table(API_TOKENS)?
            .insert(id, encode(rec)?.as_slice())?;
        if let Some(owner) = &rec.owner {
            self.txn
                .open_table(USER_TOKENS)?
                .insert((owner.as_str(), id), ())?;
        }
        Ok(())
    }

    pub(crate) fn remove_api_token(&mut self, id: &str) -> Result<bool> {
        let Some(rec) = self.api_token(id)? else {
            return Ok(false);
        };
        self.txn.open_table(API_TOKENS)?.remove(id)?;
        if let Some(owner) = &rec.owner {
            self.txn
                .open_table(USER_TOKENS)?
                .remove((owner.as_str(), id))?;
        }
        Ok(true)
    }

    /// Appends an audit entry, then removes the oldest entries beyond
    /// `max_entries`. Returns the entry's sequence number (from 1, never
    /// reused).
    pub(crate) fn append_audit(&mut self, rec: &AuditRec, max_entries: u64) -> Result<u64> {
        let seq = {
            let mut meta = self.txn.open_table(META)?;
            let seq = meta.get(AUDIT_NEXT_KEY)?.map_or(1, |v| v.value());
            meta.insert(AUDIT_NEXT_KEY, seq + 1)?;
            seq
        };
        let mut t = self.txn.open_table(AUDIT)?;
        t.insert(seq, encode(rec)?.as_slice())?;
        let mut len = t.len()?;
        while len > max_entries {
            if t.pop_first()?.is_none() {
                break;
            }
            len -= 1;
        }
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::VALUE_VERSION;

    fn rec(name: &str) -> DeviceRec {
        DeviceRec {
            v: VALUE_VERSION,
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
        let store = Store::open(&dir.path().join("r.redb")).unwrap();
        store
            .write(|tx| {
                for (ns, id) in [("a", "1"), ("a", "2"), ("b", "1"), ("ab", "0")] {
                    tx.put_device(ns, id, &rec(id))?;
                }
                Ok(())
            })
            .unwrap();
        let ids = store
            .read(|tx| {
                let mut ids = Vec::new();
                tx.scan_devices("a", Bound::Unbounded, &mut |id, _| {
                    ids.push(id.to_string());
                    true
                })?;
                Ok(ids)
            })
            .unwrap();
        assert_eq!(ids, vec!["1", "2"]);
        assert_eq!(store.read(|tx| tx.device_count("a")).unwrap(), 2);
        assert_eq!(store.read(|tx| tx.device_count("ab")).unwrap(), 1);
    }

    #[test]
    fn failed_write_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("r.redb")).unwrap();
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
        let store = Store::open(&dir.path().join("r.redb")).unwrap();
        let a = AuditRec {
            v: VALUE_VERSION,
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
                Ok(s)
            })
            .unwrap();
        assert_eq!(seqs, vec![5, 4, 3]);
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        Store::open(&path).unwrap().set_schema_version(2).unwrap();
        let Err(RegistryError::Storage(m)) = Store::open(&path) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }
}
