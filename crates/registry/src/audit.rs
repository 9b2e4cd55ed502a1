//! The audit log: who did what to which object, from where, with what
//! outcome. Bounded: appending trims the oldest entries beyond
//! `audit_max_entries`. Sequence numbers start at 1 and are never reused.
//!
//! [`AuditStore`] is the embedded log (the `audit` table of the registry
//! file, sharing the [`Registry`]'s `kv::Db`), and the implementation of
//! [`crate::AuditStorage`]; [`Registry::append_audit`] and its siblings
//! call it.

use std::path::Path;
use std::sync::Arc;

use kv::Db;

use crate::devices::Page;
use crate::error::RegistryError;
use crate::records::AuditRec;
use crate::registry::Registry;
use crate::store::{self, Reads, Writes};

type Result<T> = std::result::Result<T, RegistryError>;

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub time_ms: u64,
    pub actor: String,
    /// E.g. `device.create`.
    pub action: String,
    pub target: String,
    /// Client address.
    pub source: String,
    /// HTTP-like status of the outcome.
    pub status: u16,
    pub details: serde_json::Value,
}

/// An entry to append (the registry assigns `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub time_ms: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub status: u16,
    pub details: serde_json::Value,
}

/// Which entries a query returns; every set condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// E.g. `device.` for every device action.
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    /// Inclusive.
    pub since_ms: Option<u64>,
    /// Exclusive.
    pub until_ms: Option<u64>,
}

impl AuditFilter {
    /// Whether `rec` satisfies every set condition.
    fn matches(&self, rec: &AuditRec) -> bool {
        self.actor.as_ref().is_none_or(|a| *a == rec.actor)
            && self
                .action_prefix
                .as_ref()
                .is_none_or(|p| rec.action.starts_with(p.as_str()))
            && self.target.as_ref().is_none_or(|t| *t == rec.target)
            && self.since_ms.is_none_or(|s| rec.time_ms >= s)
            && self.until_ms.is_none_or(|u| rec.time_ms < u)
    }
}

fn entry_from(seq: u64, rec: AuditRec) -> AuditEntry {
    AuditEntry {
        seq,
        time_ms: rec.time_ms,
        actor: rec.actor,
        action: rec.action,
        target: rec.target,
        source: rec.source,
        status: rec.status,
        details: rec.details,
    }
}

/// The audit log of a registry file. `Send + Sync`.
#[derive(Clone)]
pub struct AuditStore {
    db: Arc<Db>,
    max_entries: u64,
}

impl AuditStore {
    /// Opens (or creates) the registry file at `path` for its audit log
    /// alone, keeping at most `max_entries` entries (at least 1).
    pub fn open(path: &Path, max_entries: u64) -> Result<AuditStore> {
        AuditStore::check_bound(max_entries)?;
        Ok(AuditStore::new(Arc::new(store::open(path)?), max_entries))
    }

    pub(crate) fn new(db: Arc<Db>, max_entries: u64) -> AuditStore {
        AuditStore { db, max_entries }
    }

    pub(crate) fn check_bound(max_entries: u64) -> Result<()> {
        if max_entries == 0 {
            return Err(RegistryError::invalid(
                "audit_max_entries",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Appends an entry durably and returns its sequence number; trims
    /// the oldest entries beyond the bound in the same transaction.
    pub fn append(&self, entry: NewAuditEntry) -> Result<u64> {
        let rec = AuditRec {
            time_ms: entry.time_ms,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            source: entry.source,
            status: entry.status,
            details: entry.details,
        };
        self.db.write(|tx| tx.append_audit(&rec, self.max_entries))
    }

    /// Matching entries newest first, below the cursor `before_seq`, at
    /// most `limit`; `next` is the cursor (a sequence number as a string)
    /// for the following page. Entries are scanned, not indexed: a rare
    /// match may read the whole (bounded) log.
    pub fn query(
        &self,
        filter: &AuditFilter,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        if limit == 0 {
            return Err(RegistryError::invalid("limit", "must be at least 1"));
        }
        let mut items = Vec::new();
        let mut more = false;
        self.db.read(|tx| {
            tx.scan_audit(before_seq, &mut |seq, rec| {
                if filter.matches(&rec) {
                    if items.len() == limit {
                        more = true;
                        return false;
                    }
                    items.push(entry_from(seq, rec));
                }
                true
            })
        })?;
        let next = if more {
            items.last().map(|e: &AuditEntry| e.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Entries currently kept.
    pub fn count(&self) -> Result<u64> {
        self.db.read(|tx| tx.audit_len())
    }
}

impl Registry {
    /// The audit log (also reachable as a trait object:
    /// `&dyn AuditStorage`).
    pub fn audit(&self) -> &AuditStore {
        &self.audit
    }

    /// [`AuditStore::append`] with `audit_max_entries`.
    pub fn append_audit(&self, entry: NewAuditEntry) -> Result<u64> {
        self.audit.append(entry)
    }

    /// [`AuditStore::query`].
    pub fn query_audit(
        &self,
        filter: &AuditFilter,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        self.audit.query(filter, before_seq, limit)
    }

    /// Entries currently kept.
    pub fn audit_len(&self) -> Result<u64> {
        self.audit.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;

    fn entry(t: u64, actor: &str, action: &str) -> NewAuditEntry {
        NewAuditEntry {
            time_ms: t,
            actor: actor.into(),
            action: action.into(),
            target: "devices/d1".into(),
            source: "127.0.0.1".into(),
            status: 200,
            details: serde_json::json!({"t": t}),
        }
    }

    #[test]
    fn append_and_query_newest_first() {
        let (_dir, r) = test_registry();
        for i in 0..10 {
            let action = if i % 2 == 0 {
                "device.create"
            } else {
                "user.login"
            };
            assert_eq!(r.append_audit(entry(i, "ada", action)).unwrap(), i + 1);
        }
        let f = AuditFilter {
            action_prefix: Some("device.".into()),
            ..AuditFilter::default()
        };
        let p = r.query_audit(&f, None, 3).unwrap();
        let seqs: Vec<u64> = p.items.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [9, 7, 5]);
        assert_eq!(p.items[0].details, serde_json::json!({"t": 8}));
        let before = p.next.as_deref().unwrap().parse().unwrap();
        let p = r.query_audit(&f, Some(before), 3).unwrap();
        let seqs: Vec<u64> = p.items.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 1]);
        assert_eq!(p.next, None);
        let f = AuditFilter {
            since_ms: Some(2),
            until_ms: Some(4),
            ..AuditFilter::default()
        };
        let p = r.query_audit(&f, None, 10).unwrap();
        let seqs: Vec<u64> = p.items.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4, 3]);
        let f = AuditFilter {
            actor: Some("bob".into()),
            ..AuditFilter::default()
        };
        assert!(r.query_audit(&f, None, 10).unwrap().items.is_empty());
    }
}
