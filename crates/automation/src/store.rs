//! Rule definitions: [`RuleStorage`], what the engine asks of a rule
//! store, and its embedded implementation [`RedbRuleStore`] in
//! `<data-dir>/rules.redb` over `kv`. One table, (namespace, name) -> a
//! `kv::Versioned` JSON record (`{"v":1,...}`; the engine's record is
//! stored as it is, its `v` being the record version). The schema
//! version is in `meta` under `schema` (the key this file used before
//! `kv`). Every change is one fsynced transaction.

use std::path::Path;

use kv::{Db, Order, Read, Record, Records, Schema, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AutomationError;

type Result<T> = std::result::Result<T, AutomationError>;

/// A stored rule: the engine's JSON object.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct RuleRec(Value);

impl Record for RuleRec {
    const KIND: &'static str = "rule";
    const VERSION: u32 = 1;
}

const RULES: Records<(&str, &str), RuleRec> = Records::new("rules");
const SCHEMA: Schema = Schema::new("rules", 1, &[&RULES]).version_key("schema");

fn storage(e: kv::Error) -> AutomationError {
    AutomationError::Storage(e.to_string())
}

/// A rule store. Records are JSON objects; the one given to
/// [`RuleStorage::put`] comes back from [`RuleStorage::all`] with `"v": 1`.
pub trait RuleStorage: Send + Sync {
    /// The namespace's rule records, by name; records of an unknown
    /// version or unreadable are skipped (with a warning).
    fn all(&self, ns: &str) -> Result<Vec<Value>>;
    /// Stores (or replaces) the record of rule `name`; durable on `Ok`.
    fn put(&self, ns: &str, name: &str, record: &Value) -> Result<()>;
    /// Deletes rule `name`; whether it existed.
    fn delete(&self, ns: &str, name: &str) -> Result<bool>;
}

/// The embedded rule store (one redb file).
pub struct RedbRuleStore {
    db: Db,
}

impl RedbRuleStore {
    /// Opens (or creates) the store at `path`; a newer schema version is
    /// refused.
    pub fn open(path: &Path) -> Result<RedbRuleStore> {
        let db = Db::open(path, SCHEMA, &[]).map_err(storage)?;
        Ok(RedbRuleStore { db })
    }
}

impl RuleStorage for RedbRuleStore {
    fn all(&self, ns: &str) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        self.db
            .read(|tx| {
                tx.open_records(&RULES)?
                    .raw()
                    .scan((ns, "").., Order::Ascending, |k, v| {
                        let (kn, name) = k.value();
                        if kn != ns {
                            return Ok(false);
                        }
                        match Versioned::<RuleRec>::decode(v.value()) {
                            Ok(RuleRec(rec)) => out.push(rec),
                            Err(e @ kv::Error::RecordVersion { .. }) => {
                                tracing::warn!(rule = name, error = %e, "rule record of an unknown version; skipped")
                            }
                            Err(e) => {
                                tracing::warn!(rule = name, error = %e, "unreadable rule record; skipped")
                            }
                        }
                        Ok::<_, kv::Error>(true)
                    })
            })
            .map_err(storage)?;
        Ok(out)
    }

    fn put(&self, ns: &str, name: &str, record: &Value) -> Result<()> {
        // The version is the codec's to write: drop the engine's `v`.
        let mut rec = record.clone();
        if let Some(o) = rec.as_object_mut() {
            o.remove("v");
        }
        let rec = RuleRec(rec);
        self.db
            .write(|tx| tx.records(&RULES)?.put((ns, name), &rec))
            .map_err(storage)
    }

    fn delete(&self, ns: &str, name: &str) -> Result<bool> {
        self.db
            .write(|tx| tx.records(&RULES)?.remove((ns, name)))
            .map_err(storage)
    }
}

/// The behaviour every [`RuleStorage`] implementation must have (this
/// crate's tests and the `conformance` feature).
#[cfg(any(test, feature = "conformance"))]
pub mod conformance {
    use std::path::Path;

    use serde_json::{json, Value};

    use super::RuleStorage;

    /// Runs the suite: `make` gives a store for a path (empty for a new path,
    /// the same data for one seen before). Panics on the first difference.
    pub fn run<S: RuleStorage>(make: impl Fn(&Path) -> S) {
        let (_dir, path) = kv::conformance::temp_path("rules.redb");
        let rule = |name: &str, n: u64| json!({"v": 1, "name": name, "sql": "SELECT 1", "n": n});
        {
            let s = make(&path);
            assert_eq!(s.all("ns").unwrap(), Vec::<Value>::new());
            s.put("ns", "b", &rule("b", 1)).unwrap();
            s.put("ns", "a", &rule("a", 1)).unwrap();
            s.put("ns", "a", &rule("a", 2)).unwrap();
            s.put("nsx", "a", &rule("a", 9)).unwrap();
            s.put("n", "z", &rule("z", 9)).unwrap();
            assert_eq!(s.all("ns").unwrap(), [rule("a", 2), rule("b", 1)]);
            assert_eq!(s.all("nsx").unwrap(), [rule("a", 9)]);
            assert!(s.delete("ns", "b").unwrap());
            assert!(!s.delete("ns", "b").unwrap());
            assert!(!s.delete("other", "a").unwrap());
            assert_eq!(s.all("ns").unwrap(), [rule("a", 2)]);
        }
        let s = make(&path);
        assert_eq!(s.all("ns").unwrap(), [rule("a", 2)]);
        assert_eq!(s.all("n").unwrap(), [rule("z", 9)]);
        assert_eq!(s.all("none").unwrap(), Vec::<Value>::new());
    }
}

#[cfg(test)]
mod tests {
    use redb::{Database, TableDefinition};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_redb_store_conforms() {
        conformance::run(|path| RedbRuleStore::open(path).expect("open"));
    }

    /// Writes a file the way the code before `kv` did: meta `schema`, and
    /// records serialised as the engine's `Value` (`v` among the sorted
    /// keys), plus one of an unknown version and one unreadable.
    fn old_file(path: &Path, schema: u64) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: TableDefinition<&str, u64> = TableDefinition::new("meta");
            txn.open_table(meta)
                .unwrap()
                .insert("schema", schema)
                .unwrap();
            let rules: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("rules");
            let mut t = txn.open_table(rules).unwrap();
            let rec =
                serde_json::to_vec(&json!({"v": 1, "name": "hot", "sql": "SELECT 1"})).unwrap();
            t.insert(("default", "hot"), rec.as_slice()).unwrap();
            t.insert(("default", "new"), br#"{"v":2,"name":"new"}"#.as_slice())
                .unwrap();
            t.insert(("default", "bad"), b"{".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_file_written_before_kv_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.redb");
        old_file(&path, 1);
        let s = RedbRuleStore::open(&path).unwrap();
        let all = s.all("default").unwrap();
        assert_eq!(all, [json!({"v": 1, "name": "hot", "sql": "SELECT 1"})]);
        s.put("default", "hot", &all[0]).unwrap();
        assert_eq!(s.all("default").unwrap(), all);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.redb");
        old_file(&path, 2);
        let Err(AutomationError::Storage(m)) = RedbRuleStore::open(&path) else {
            panic!("a newer file opened");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }
}
