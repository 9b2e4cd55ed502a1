//! Rule definitions in `<data-dir>/rules.redb`: one table, (namespace,
//! name) -> a versioned JSON record. Every change is one fsynced
//! transaction.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::AutomationError;

const RULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("rules");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_VERSION: u64 = 1;

pub(crate) struct RuleStore {
    db: Database,
}

fn storage<E: std::fmt::Display>(e: E) -> AutomationError {
    AutomationError::Storage(e.to_string())
}

impl RuleStore {
    pub fn open(path: &Path) -> Result<RuleStore, AutomationError> {
        let db = Database::create(path).map_err(storage)?;
        let tx = db.begin_write().map_err(storage)?;
        {
            let mut meta = tx.open_table(META).map_err(storage)?;
            let v = meta.get("schema").map_err(storage)?.map(|g| g.value());
            match v {
                None => {
                    meta.insert("schema", SCHEMA_VERSION).map_err(storage)?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(AutomationError::Storage(format!(
                        "{} has schema version {v}; this build reads up to {SCHEMA_VERSION}",
                        path.display()
                    )))
                }
                Some(_) => {}
            }
            tx.open_table(RULES).map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(RuleStore { db })
    }

    /// Every stored rule record (JSON with `"v": 1`).
    pub fn all(&self, ns: &str) -> Result<Vec<Value>, AutomationError> {
        let tx = self.db.begin_read().map_err(storage)?;
        let t = tx.open_table(RULES).map_err(storage)?;
        let mut out = Vec::new();
        for row in t.range((ns, "")..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            if k.value().0 != ns {
                break;
            }
            match serde_json::from_slice::<Value>(v.value()) {
                Ok(rec) if rec.get("v").and_then(Value::as_u64) == Some(1) => out.push(rec),
                Ok(_) => tracing::warn!(
                    rule = k.value().1,
                    "rule record of an unknown version; skipped"
                ),
                Err(e) => {
                    tracing::warn!(rule = k.value().1, error = %e, "unreadable rule record; skipped")
                }
            }
        }
        Ok(out)
    }

    pub fn put(&self, ns: &str, name: &str, record: &Value) -> Result<(), AutomationError> {
        let bytes = serde_json::to_vec(record).map_err(storage)?;
        let tx = self.db.begin_write().map_err(storage)?;
        {
            let mut t = tx.open_table(RULES).map_err(storage)?;
            t.insert((ns, name), bytes.as_slice()).map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    pub fn delete(&self, ns: &str, name: &str) -> Result<bool, AutomationError> {
        let tx = self.db.begin_write().map_err(storage)?;
        let existed = {
            let mut t = tx.open_table(RULES).map_err(storage)?;
            let r = t.remove((ns, name)).map_err(storage)?.is_some();
            r
        };
        tx.commit().map_err(storage)?;
        Ok(existed)
    }
}
