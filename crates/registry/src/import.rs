//! Bulk import: all rows or none.

use std::collections::HashMap;

use crate::devices::{new_record, NewDevice};
use crate::error::RegistryError;
use crate::records::{DeviceRec, DeviceTokenRec, DeviceTokensRec};
use crate::registry::Registry;
use crate::store::{Reads, Writes};
use crate::validate;

/// Why one import row was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRowError {
    /// Position of the row in the input (from 0).
    pub index: usize,
    pub id: String,
    pub message: String,
}

/// The outcome of [`Registry::import_devices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Devices created: all rows, or 0 when `errors` is not empty.
    pub created: usize,
    pub errors: Vec<ImportRowError>,
    /// (device id, plaintext token) per device when tokens were asked for;
    /// shown once, only hashes are stored.
    pub tokens: Vec<(String, String)>,
}

impl Registry {
    /// All-or-nothing bulk create. Every row is checked first (id syntax
    /// and every other field, duplicates within the batch, ids that exist
    /// already); if any row fails, nothing is written and the report lists
    /// every failing row with its index and reason. Otherwise all rows are
    /// written in one transaction. With `issue_tokens`, each device also
    /// gets a token returned in the report.
    pub fn import_devices(
        &self,
        ns: &str,
        rows: Vec<NewDevice>,
        issue_tokens: bool,
        now_ms: u64,
    ) -> Result<ImportReport, RegistryError> {
        validate::id("namespace", ns)?;
        let mut errors = Vec::new();
        let mut records: Vec<(String, DeviceRec)> = Vec::with_capacity(rows.len());
        let mut first_index: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            let id = row.id.clone();
            match new_record(row, now_ms) {
                Err(e) => errors.push(ImportRowError {
                    index,
                    id,
                    message: e.to_string(),
                }),
                Ok(rec) => {
                    if let Some(first) = first_index.get(&id) {
                        errors.push(ImportRowError {
                            index,
                            id,
                            message: format!("duplicate of row {first}"),
                        });
                    } else {
                        first_index.insert(id, index);
                        records.push(rec);
                    }
                }
            }
        }
        let existing = self
            .store
            .read(|tx| existing_rows(&|id| tx.device_exists(ns, id), &records, &first_index))?;
        errors.extend(existing);
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.index);
            return Ok(ImportReport {
                created: 0,
                errors,
                tokens: Vec::new(),
            });
        }
        let tokens = if issue_tokens {
            self.hash_tokens(records.len(), now_ms)?
        } else {
            Vec::new()
        };
        let conflicts = self.store.write(|tx| -> Result<_, RegistryError> {
            // Checked again: a device may have been created meanwhile.
            let conflicts = existing_rows(&|id| tx.device_exists(ns, id), &records, &first_index)?;
            if !conflicts.is_empty() {
                return Ok(conflicts);
            }
            for (i, (id, rec)) in records.iter().enumerate() {
                tx.put_device(ns, id, rec)?;
                if let Some((_, stored)) = tokens.get(i) {
                    let creds = DeviceTokensRec {
                        tokens: vec![stored.clone()],
                    };
                    tx.put_device_tokens(ns, id, &creds)?;
                }
            }
            Ok(Vec::new())
        })?;
        if !conflicts.is_empty() {
            return Ok(ImportReport {
                created: 0,
                errors: conflicts,
                tokens: Vec::new(),
            });
        }
        tracing::info!(
            ns,
            devices = records.len(),
            issue_tokens,
            "devices imported"
        );
        let tokens = records
            .iter()
            .zip(tokens)
            .map(|((id, _), (plain, _))| (id.clone(), plain))
            .collect();
        Ok(ImportReport {
            created: records.len(),
            errors: Vec::new(),
            tokens,
        })
    }

    /// `n` new device tokens with their records (one HMAC each: 10,000
    /// take milliseconds, so no threads).
    fn hash_tokens(
        &self,
        n: usize,
        now_ms: u64,
    ) -> Result<Vec<(String, DeviceTokenRec)>, RegistryError> {
        (0..n).map(|_| self.new_device_token(now_ms)).collect()
    }
}

/// The rows whose id `exists` already.
fn existing_rows(
    exists: &dyn Fn(&str) -> Result<bool, RegistryError>,
    records: &[(String, DeviceRec)],
    first_index: &HashMap<String, usize>,
) -> Result<Vec<ImportRowError>, RegistryError> {
    let mut out = Vec::new();
    for (id, _) in records {
        if exists(id)? {
            out.push(ImportRowError {
                index: first_index.get(id).copied().unwrap_or(0),
                id: id.clone(),
                message: "device already exists".to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;
    use crate::DeviceAuth;

    #[test]
    fn bad_rows_are_all_reported_and_nothing_written() {
        let (_dir, r) = test_registry();
        r.create_device("default", NewDevice::new("taken"), 0)
            .unwrap();
        let rows = vec![
            NewDevice::new("ok-1"),
            NewDevice::new("bad/id"),
            NewDevice::new("ok-2"),
            NewDevice::new("ok-1"),
            NewDevice::new("taken"),
        ];
        let rep = r.import_devices("default", rows, true, 0).unwrap();
        assert_eq!(rep.created, 0);
        assert!(rep.tokens.is_empty());
        let got: Vec<(usize, &str)> = rep
            .errors
            .iter()
            .map(|e| (e.index, e.id.as_str()))
            .collect();
        assert_eq!(got, vec![(1, "bad/id"), (3, "ok-1"), (4, "taken")]);
        assert!(
            rep.errors[0].message.contains("invalid id"),
            "{:?}",
            rep.errors[0]
        );
        assert_eq!(rep.errors[1].message, "duplicate of row 0");
        assert_eq!(rep.errors[2].message, "device already exists");
        assert_eq!(r.count_devices("default").unwrap(), 1);
    }

    #[test]
    fn tokens_are_issued_and_work() {
        let (_dir, r) = test_registry();
        let rows = (0..7).map(|i| NewDevice::new(format!("d{i}"))).collect();
        let rep = r.import_devices("default", rows, true, 0).unwrap();
        assert_eq!(rep.created, 7);
        assert_eq!(rep.tokens.len(), 7);
        for (id, token) in &rep.tokens {
            assert!(token.starts_with("mwd_"));
            let auth = r
                .authenticate_device("default", id, token.as_bytes(), 1)
                .unwrap();
            assert!(matches!(auth, DeviceAuth::Ok(d) if d.id == *id));
        }
        assert_eq!(r.count_devices("default").unwrap(), 7);
    }

    #[test]
    fn empty_import() {
        let (_dir, r) = test_registry();
        let rep = r.import_devices("default", Vec::new(), true, 0).unwrap();
        assert_eq!(rep, ImportReport::default());
    }
}
