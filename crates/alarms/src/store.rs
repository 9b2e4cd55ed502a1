//! The storage seam: everything redb-specific is in this file.
//!
//! The handles ([`crate::AlarmStore`], [`crate::Outbox`]) see [`Store`],
//! [`ReadTx`] and [`WriteTx`] and their typed record methods, never a
//! table or a byte. One type serves both files; each handle only touches
//! its own tables, and [`Store::open`] creates those of its [`Kind`].
//!
//! `alarms.redb` (every value a JSON record from `records.rs`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | u64 (`schema_version`, `alarm_next_seq`) |
//! | `alarms` | (namespace, seq) | `AlarmRec` |
//! | `alarms_active` | (namespace, device id, type) | seq — the active alarm |
//! | `alarms_by_time` | (namespace, last raised ms, seq) | () |
//! | `alarms_by_device` | (namespace, device id, last raised ms, seq) | () |
//! | `alarms_prune` | (class, since ms, namespace, seq) | () — cleared alarms |
//! | `alarm_counts` | (namespace, state, severity) | u64, no zero rows |
//!
//! The indexes and counters are kept by [`WriteTx::put_alarm`] and
//! [`WriteTx::remove_alarm`] from the [`AlarmKeys`] the caller derives
//! from the alarm, so they never disagree with the records.
//!
//! `outbox.redb`:
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | u64 (`schema_version`, `outbox_next_id`) |
//! | `outbox` | id | `OutboxRec` (no body) |
//! | `outbox_bodies` | id | the body, raw |
//! | `outbox_due` | (next attempt ms, id) | () |
//!
//! Every write transaction that changed something commits with redb's
//! default durability (immediate, fsynced): when [`Store::write`] returns
//! `Ok`, the change is on disk. One that changed nothing is aborted, which
//! costs no fsync.

use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::error::AlarmError;
use crate::records::{decode, encode, AlarmRec, OutboxRec};

type Result<T> = std::result::Result<T, AlarmError>;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const ALARMS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("alarms");
const ACTIVE: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("alarms_active");
const BY_TIME: TableDefinition<(&str, u64, u64), ()> = TableDefinition::new("alarms_by_time");
const BY_DEVICE: TableDefinition<(&str, &str, u64, u64), ()> =
    TableDefinition::new("alarms_by_device");
const PRUNE: TableDefinition<(u8, u64, &str, u64), ()> = TableDefinition::new("alarms_prune");
const COUNTS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("alarm_counts");

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_bodies");
const DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("outbox_due");

/// The schema version this binary writes (of either file); it opens any
/// version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &str = "schema_version";
/// The `meta` key of the next alarm sequence number.
pub(crate) const ALARM_SEQ_KEY: &str = "alarm_next_seq";
/// The `meta` key of the next outbox id.
pub(crate) const OUTBOX_SEQ_KEY: &str = "outbox_next_id";

/// Which file a [`Store`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Alarms,
    Outbox,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Alarms => "alarm",
            Kind::Outbox => "outbox",
        }
    }
}

/// An alarm's entries in the indexes and counters, derived from the alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlarmKeys<'a> {
    pub device: &'a str,
    pub alarm_type: &'a str,
    /// Not cleared: the one active alarm of (device, type).
    pub active: bool,
    pub last_raised_ms: u64,
    /// Its place in the prune order, (class, since ms): class 0 for
    /// cleared and acknowledged, 1 for cleared and unacknowledged; `None`
    /// for active alarms, which are never pruned.
    pub prune: Option<(u8, u64)>,
    /// `AlarmState::as_str`.
    pub state: &'static str,
    /// `Severity::as_str`.
    pub severity: &'static str,
}

/// One of the two databases.
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates the file, checks its schema version and creates
    /// the missing tables of `kind`.
    pub(crate) fn open(path: &Path, kind: Kind) -> Result<Store> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => AlarmError::Storage(format!(
                "{} is already open (by another process or another store)",
                path.display()
            )),
            other => AlarmError::Storage(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match version {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(AlarmError::Storage(format!(
                        "{} has {} schema version {v}, newer than this binary's \
                         {SCHEMA_VERSION}; run a newer Millwright",
                        path.display(),
                        kind.name()
                    )))
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
            match kind {
                Kind::Alarms => {
                    txn.open_table(ALARMS)?;
                    txn.open_table(ACTIVE)?;
                    txn.open_table(BY_TIME)?;
                    txn.open_table(BY_DEVICE)?;
                    txn.open_table(PRUNE)?;
                    txn.open_table(COUNTS)?;
                }
                Kind::Outbox => {
                    txn.open_table(OUTBOX)?;
                    txn.open_table(BODIES)?;
                    txn.open_table(DUE)?;
                }
            }
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

    /// Runs `f` in a write transaction (writers take turns, so a
    /// read-modify-write inside `f` loses no update) and commits (fsync)
    /// if it returns `Ok` and wrote something; otherwise nothing is
    /// written.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut WriteTx) -> Result<T>) -> Result<T> {
        let mut tx = WriteTx {
            txn: self.db.begin_write()?,
            dirty: false,
        };
        match f(&mut tx) {
            Ok(v) if tx.dirty => {
                tx.txn.commit()?;
                Ok(v)
            }
            Ok(v) => {
                tx.txn.abort()?;
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
    /// Whether anything was written (else the transaction is aborted).
    dirty: bool,
}

/// Maps a bound on (last raised ms, seq) to a bound on an index key built
/// by `key`; an unbounded end becomes `edge` (the first or last key of
/// the namespace or device), so that a scan never leaves it.
fn key_bound<K>(b: Bound<(u64, u64)>, key: impl Fn(u64, u64) -> K, edge: K) -> Bound<K> {
    match b {
        Bound::Included((t, s)) => Bound::Included(key(t, s)),
        Bound::Excluded((t, s)) => Bound::Excluded(key(t, s)),
        Bound::Unbounded => Bound::Included(edge),
    }
}

/// A visitor of alarms: gets (seq, record) and returns whether to go on.
pub(crate) type AlarmVisitor<'v> = dyn FnMut(u64, AlarmRec) -> Result<bool> + 'v;

/// The read methods, identical for both transaction kinds.
macro_rules! read_methods {
    () => {
        pub(crate) fn alarm(&self, ns: &str, seq: u64) -> Result<Option<AlarmRec>> {
            let t = self.txn.open_table(ALARMS)?;
            let r = t.get((ns, seq))?;
            r.map(|v| decode(v.value(), "alarm")).transpose()
        }

        /// The sequence of the active alarm of (device, type), if any.
        pub(crate) fn active_alarm(
            &self,
            ns: &str,
            device: &str,
            alarm_type: &str,
        ) -> Result<Option<u64>> {
            let t = self.txn.open_table(ACTIVE)?;
            let r = t.get((ns, device, alarm_type))?;
            Ok(r.map(|v| v.value()))
        }

        /// Visits the namespace's alarms whose (last raised ms, seq) lies
        /// between the bounds, newest first, until `visit` returns false.
        pub(crate) fn scan_alarms_by_time(
            &self,
            ns: &str,
            lower: Bound<(u64, u64)>,
            upper: Bound<(u64, u64)>,
            visit: &mut AlarmVisitor<'_>,
        ) -> Result<()> {
            let index = self.txn.open_table(BY_TIME)?;
            let alarms = self.txn.open_table(ALARMS)?;
            let key = |t, s| (ns, t, s);
            let lo = key_bound(lower, key, (ns, 0, 0));
            let hi = key_bound(upper, key, (ns, u64::MAX, u64::MAX));
            for item in index.range::<(&str, u64, u64)>((lo, hi))?.rev() {
                let (k, _) = item?;
                let (_, _, seq) = k.value();
                let Some(v) = alarms.get((ns, seq))? else {
                    return Err(AlarmError::Storage(format!(
                        "time index names missing alarm {seq}"
                    )));
                };
                if !visit(seq, decode(v.value(), "alarm")?)? {
                    break;
                }
            }
            Ok(())
        }

        /// Like `scan_alarms_by_time`, for one device's alarms.
        pub(crate) fn scan_device_alarms(
            &self,
            ns: &str,
            device: &str,
            lower: Bound<(u64, u64)>,
            upper: Bound<(u64, u64)>,
            visit: &mut AlarmVisitor<'_>,
        ) -> Result<()> {
            let index = self.txn.open_table(BY_DEVICE)?;
            let alarms = self.txn.open_table(ALARMS)?;
            let key = |t, s| (ns, device, t, s);
            let lo = key_bound(lower, key, (ns, device, 0, 0));
            let hi = key_bound(upper, key, (ns, device, u64::MAX, u64::MAX));
            for item in index.range::<(&str, &str, u64, u64)>((lo, hi))?.rev() {
                let (k, _) = item?;
                let (_, _, _, seq) = k.value();
                let Some(v) = alarms.get((ns, seq))? else {
                    return Err(AlarmError::Storage(format!(
                        "device index names missing alarm {seq}"
                    )));
                };
                if !visit(seq, decode(v.value(), "alarm")?)? {
                    break;
                }
            }
            Ok(())
        }

        /// Sequences of a device's alarms (index keys only).
        pub(crate) fn device_alarm_seqs(&self, ns: &str, device: &str) -> Result<Vec<u64>> {
            let t = self.txn.open_table(BY_DEVICE)?;
            let range = (ns, device, 0, 0)..=(ns, device, u64::MAX, u64::MAX);
            let mut out = Vec::new();
            for item in t.range::<(&str, &str, u64, u64)>(range)? {
                let (k, _) = item?;
                out.push(k.value().3);
            }
            Ok(out)
        }

        /// The namespace's (state, severity, count) counters.
        pub(crate) fn alarm_counts(&self, ns: &str) -> Result<Vec<(String, String, u64)>> {
            let t = self.txn.open_table(COUNTS)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str, &str)>((ns, "", "")..)? {
                let (k, v) = item?;
                let (kn, state, severity) = k.value();
                if kn != ns {
                    break;
                }
                out.push((state.to_string(), severity.to_string(), v.value()));
            }
            Ok(out)
        }

        /// Alarms in the store, every namespace.
        pub(crate) fn alarm_total(&self) -> Result<u64> {
            Ok(self.txn.open_table(ALARMS)?.len()?)
        }

        /// The first `n` alarms in prune order: (namespace, seq).
        pub(crate) fn prune_candidates(&self, n: usize) -> Result<Vec<(String, u64)>> {
            let t = self.txn.open_table(PRUNE)?;
            let mut out = Vec::new();
            for item in t.range::<(u8, u64, &str, u64)>((0, 0, "", 0)..)?.take(n) {
                let (k, _) = item?;
                let (_, _, ns, seq) = k.value();
                out.push((ns.to_string(), seq));
            }
            Ok(out)
        }

        /// An outbox entry and its body.
        pub(crate) fn outbox_entry(&self, id: u64) -> Result<Option<(OutboxRec, Vec<u8>)>> {
            let t = self.txn.open_table(OUTBOX)?;
            let Some(v) = t.get(id)? else {
                return Ok(None);
            };
            let rec = decode(v.value(), "outbox entry")?;
            let bodies = self.txn.open_table(BODIES)?;
            let body = bodies
                .get(id)?
                .map(|b| b.value().to_vec())
                .ok_or_else(|| AlarmError::Storage(format!("outbox entry {id} has no body")))?;
            Ok(Some((rec, body)))
        }

        /// Ids of the entries whose next attempt is at or before `now_ms`,
        /// earliest attempt first (index keys only).
        pub(crate) fn due_outbox(&self, now_ms: u64) -> Result<Vec<u64>> {
            let t = self.txn.open_table(DUE)?;
            let mut out = Vec::new();
            for item in t.range::<(u64, u64)>(..=(now_ms, u64::MAX))? {
                let (k, _) = item?;
                out.push(k.value().1);
            }
            Ok(out)
        }

        /// The earliest next attempt.
        pub(crate) fn first_due(&self) -> Result<Option<u64>> {
            let t = self.txn.open_table(DUE)?;
            let first = t.first()?;
            Ok(first.map(|(k, _)| k.value().0))
        }

        /// Visits every outbox entry with its body's length, in id order.
        pub(crate) fn scan_outbox(
            &self,
            visit: &mut dyn FnMut(u64, OutboxRec, usize) -> Result<()>,
        ) -> Result<()> {
            let t = self.txn.open_table(OUTBOX)?;
            let bodies = self.txn.open_table(BODIES)?;
            for item in t.iter()? {
                let (k, v) = item?;
                let id = k.value();
                let len = bodies.get(id)?.map_or(0, |b| b.value().len());
                visit(id, decode(v.value(), "outbox entry")?, len)?;
            }
            Ok(())
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
    /// Takes the next number of the sequence `key` (from 1, never reused).
    pub(crate) fn next_seq(&mut self, key: &str) -> Result<u64> {
        self.dirty = true;
        let mut meta = self.txn.open_table(META)?;
        let seq = meta.get(key)?.map_or(1, |v| v.value());
        let next = seq
            .checked_add(1)
            .ok_or_else(|| AlarmError::Storage(format!("{key} exhausted")))?;
        meta.insert(key, next)?;
        Ok(seq)
    }

    /// Stores an alarm and moves its index entries and counters from `old`
    /// (its keys as stored, if it was) to `new`.
    pub(crate) fn put_alarm(
        &mut self,
        ns: &str,
        seq: u64,
        rec: &AlarmRec,
        old: Option<&AlarmKeys<'_>>,
        new: &AlarmKeys<'_>,
    ) -> Result<()> {
        self.dirty = true;
        self.txn
            .open_table(ALARMS)?
            .insert((ns, seq), encode(rec)?.as_slice())?;
        if let Some(old) = old {
            self.remove_alarm_keys(ns, seq, old)?;
        }
        if new.active {
            self.txn
                .open_table(ACTIVE)?
                .insert((ns, new.device, new.alarm_type), seq)?;
        }
        self.txn
            .open_table(BY_TIME)?
            .insert((ns, new.last_raised_ms, seq), ())?;
        self.txn
            .open_table(BY_DEVICE)?
            .insert((ns, new.device, new.last_raised_ms, seq), ())?;
        if let Some((class, since)) = new.prune {
            self.txn
                .open_table(PRUNE)?
                .insert((class, since, ns, seq), ())?;
        }
        let mut counts = self.txn.open_table(COUNTS)?;
        let key = (ns, new.state, new.severity);
        let n = counts.get(key)?.map_or(0, |v| v.value());
        counts.insert(key, n.saturating_add(1))?;
        Ok(())
    }

    /// Removes an alarm with its index entries and counters (`keys` as
    /// stored).
    pub(crate) fn remove_alarm(&mut self, ns: &str, seq: u64, keys: &AlarmKeys<'_>) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(ALARMS)?.remove((ns, seq))?;
        self.remove_alarm_keys(ns, seq, keys)
    }

    fn remove_alarm_keys(&mut self, ns: &str, seq: u64, keys: &AlarmKeys<'_>) -> Result<()> {
        if keys.active {
            let mut active = self.txn.open_table(ACTIVE)?;
            // Only if it still names this alarm.
            let current = active
                .get((ns, keys.device, keys.alarm_type))?
                .map(|v| v.value());
            if current == Some(seq) {
                active.remove((ns, keys.device, keys.alarm_type))?;
            }
        }
        self.txn
            .open_table(BY_TIME)?
            .remove((ns, keys.last_raised_ms, seq))?;
        self.txn
            .open_table(BY_DEVICE)?
            .remove((ns, keys.device, keys.last_raised_ms, seq))?;
        if let Some((class, since)) = keys.prune {
            self.txn
                .open_table(PRUNE)?
                .remove((class, since, ns, seq))?;
        }
        let mut counts = self.txn.open_table(COUNTS)?;
        let key = (ns, keys.state, keys.severity);
        let n = counts.get(key)?.map_or(0, |v| v.value());
        if n <= 1 {
            counts.remove(key)?;
        } else {
            counts.insert(key, n - 1)?;
        }
        Ok(())
    }

    /// Stores an outbox entry (with its body when given; an update keeps
    /// the stored body) and moves its due entry from `old_due` to the
    /// record's next attempt.
    pub(crate) fn put_outbox(
        &mut self,
        id: u64,
        rec: &OutboxRec,
        body: Option<&[u8]>,
        old_due: Option<u64>,
    ) -> Result<()> {
        self.dirty = true;
        self.txn
            .open_table(OUTBOX)?
            .insert(id, encode(rec)?.as_slice())?;
        if let Some(body) = body {
            self.txn.open_table(BODIES)?.insert(id, body)?;
        }
        let mut due = self.txn.open_table(DUE)?;
        if let Some(old) = old_due {
            due.remove((old, id))?;
        }
        due.insert((rec.next_attempt_ms, id), ())?;
        Ok(())
    }

    /// Removes an outbox entry, its body and its due entry (`due` as
    /// stored).
    pub(crate) fn remove_outbox(&mut self, id: u64, due: u64) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(OUTBOX)?.remove(id)?;
        self.txn.open_table(BODIES)?.remove(id)?;
        self.txn.open_table(DUE)?.remove((due, id))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::VALUE_VERSION;

    fn rec(device: &str) -> AlarmRec {
        AlarmRec {
            v: VALUE_VERSION,
            device_id: device.into(),
            alarm_type: "t".into(),
            severity: "major".into(),
            state: "active_unack".into(),
            details: serde_json::Value::Null,
            count: 1,
            first_raised_ms: 1,
            last_raised_ms: 1,
            acknowledged_by: None,
            acknowledged_ms: None,
            cleared_by: None,
            cleared_ms: None,
            rule: None,
        }
    }

    fn keys(device: &str, t: u64) -> AlarmKeys<'_> {
        AlarmKeys {
            device,
            alarm_type: "t",
            active: true,
            last_raised_ms: t,
            prune: None,
            state: "active_unack",
            severity: "major",
        }
    }

    #[test]
    fn namespaces_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), Kind::Alarms).unwrap();
        store
            .write(|tx| {
                for (i, ns) in ["a", "ab", "b", "a"].into_iter().enumerate() {
                    let seq = tx.next_seq(ALARM_SEQ_KEY)?;
                    tx.put_alarm(ns, seq, &rec("d"), None, &keys("d", i as u64))?;
                }
                Ok(())
            })
            .unwrap();
        let seqs = |ns: &str| {
            store
                .read(|tx| {
                    let mut out = Vec::new();
                    tx.scan_alarms_by_time(ns, Bound::Unbounded, Bound::Unbounded, &mut |s, _| {
                        out.push(s);
                        Ok(true)
                    })?;
                    Ok((out, tx.device_alarm_seqs(ns, "d")?, tx.alarm_counts(ns)?))
                })
                .unwrap()
        };
        let (by_time, by_device, counts) = seqs("a");
        assert_eq!(by_time, [4, 1]);
        assert_eq!(by_device, [1, 4]);
        assert_eq!(counts, [("active_unack".into(), "major".into(), 2)]);
        assert_eq!(seqs("ab").0, [2]);
        assert_eq!(seqs("c").0, Vec::<u64>::new());
    }

    #[test]
    fn failed_or_empty_writes_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), Kind::Alarms).unwrap();
        let r: Result<()> = store.write(|tx| {
            tx.put_alarm("ns", 1, &rec("d"), None, &keys("d", 1))?;
            Err(AlarmError::Conflict("no".into()))
        });
        assert!(r.is_err());
        assert!(store.read(|tx| tx.alarm("ns", 1)).unwrap().is_none());
        assert_eq!(store.read(|tx| tx.alarm_total()).unwrap(), 0);
        assert_eq!(
            store.write(|tx| tx.active_alarm("ns", "d", "t")).unwrap(),
            None
        );
    }

    #[test]
    fn sequence_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        {
            let store = Store::open(&path, Kind::Outbox).unwrap();
            assert_eq!(store.write(|tx| tx.next_seq(OUTBOX_SEQ_KEY)).unwrap(), 1);
            assert_eq!(store.write(|tx| tx.next_seq(OUTBOX_SEQ_KEY)).unwrap(), 2);
            let _ = store.write(|tx| {
                tx.next_seq(OUTBOX_SEQ_KEY)?;
                Err::<(), _>(AlarmError::Conflict("no".into()))
            });
        }
        let store = Store::open(&path, Kind::Outbox).unwrap();
        assert_eq!(store.write(|tx| tx.next_seq(OUTBOX_SEQ_KEY)).unwrap(), 3);
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        Store::open(&path, Kind::Alarms)
            .unwrap()
            .set_schema_version(2)
            .unwrap();
        let Err(AlarmError::Storage(m)) = Store::open(&path, Kind::Alarms) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }

    #[test]
    fn a_second_open_of_one_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        let _first = Store::open(&path, Kind::Outbox).unwrap();
        let Err(AlarmError::Storage(m)) = Store::open(&path, Kind::Outbox) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("already open"), "{m}");
    }
}
