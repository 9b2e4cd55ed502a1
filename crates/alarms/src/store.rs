//! The storage seam: everything redb-specific is in this file.
//!
//! The handles ([`crate::AlarmStore`], [`crate::Outbox`]) see a `kv::Db`
//! and the typed record methods of [`Reads`] (either transaction kind)
//! and [`Writes`], never a table or a byte. Opening, the schema version,
//! transactions and the record codec are `kv`'s; this file holds only the
//! tables and their typed methods. One type serves both files; each
//! handle only touches its own tables, and [`open`] creates those of its
//! [`Kind`].
//!
//! `alarms.redb` (every value a `kv::Versioned` JSON record from
//! `records.rs`, `{"v":1,...}`):
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
//! default durability (immediate, fsynced): when `kv::Db::write` returns
//! `Ok`, the change is on disk. One that changed nothing is aborted, which
//! costs no fsync.

use std::borrow::Borrow;
use std::ops::Bound;
use std::path::Path;

use kv::{Db, Order, Read, Records, Schema, Table, TableSpec};
pub(crate) use kv::{ReadTx, WriteTx};

use crate::error::AlarmError;
use crate::records::{AlarmRec, OutboxRec};

type Result<T> = std::result::Result<T, AlarmError>;

const ALARMS: Records<(&str, u64), AlarmRec> = Records::new("alarms");
const ACTIVE: Table<(&str, &str, &str), u64> = Table::new("alarms_active");
const BY_TIME: Table<(&str, u64, u64), ()> = Table::new("alarms_by_time");
const BY_DEVICE: Table<(&str, &str, u64, u64), ()> = Table::new("alarms_by_device");
const PRUNE: Table<(u8, u64, &str, u64), ()> = Table::new("alarms_prune");
const COUNTS: Table<(&str, &str, &str), u64> = Table::new("alarm_counts");

const OUTBOX: Records<u64, OutboxRec> = Records::new("outbox");
const BODIES: Table<u64, &[u8]> = Table::new("outbox_bodies");
const DUE: Table<(u64, u64), ()> = Table::new("outbox_due");

/// The schema version this binary writes (of either file); it opens any
/// version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const ALARMS_SCHEMA: Schema = Schema::new(
    "alarm",
    SCHEMA_VERSION,
    &[&ALARMS, &ACTIVE, &BY_TIME, &BY_DEVICE, &PRUNE, &COUNTS],
);
const OUTBOX_TABLES: &[&dyn TableSpec] = &[&OUTBOX, &BODIES, &DUE];
const OUTBOX_SCHEMA: Schema = Schema::new("outbox", SCHEMA_VERSION, OUTBOX_TABLES);
/// The `meta` key of the next alarm sequence number.
pub(crate) const ALARM_SEQ_KEY: &str = "alarm_next_seq";
/// The `meta` key of the next outbox id.
pub(crate) const OUTBOX_SEQ_KEY: &str = "outbox_next_id";

/// Which file [`open`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Alarms,
    Outbox,
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

/// Opens or creates the file of `kind`, checks its schema version and
/// creates its missing tables. Transactions are `kv::Db::read` and
/// `kv::Db::write` (`Ok` means fsynced; a failed or empty write writes
/// nothing).
pub(crate) fn open(path: &Path, kind: Kind) -> Result<Db> {
    let schema = match kind {
        Kind::Alarms => ALARMS_SCHEMA,
        Kind::Outbox => OUTBOX_SCHEMA,
    };
    Ok(Db::open(path, schema, &[])?)
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

/// The reads, the same in both transaction kinds.
pub(crate) trait Reads: Read {
    fn alarm(&self, ns: &str, seq: u64) -> Result<Option<AlarmRec>> {
        Ok(self.open_records(&ALARMS)?.get((ns, seq))?)
    }

    /// The sequence of the active alarm of (device, type), if any.
    fn active_alarm(&self, ns: &str, device: &str, alarm_type: &str) -> Result<Option<u64>> {
        let t = self.open(&ACTIVE)?;
        let r = t.get((ns, device, alarm_type))?;
        Ok(r.map(|v| v.value()))
    }

    /// Visits the namespace's alarms whose (last raised ms, seq) lies
    /// between the bounds, newest first, until `visit` returns false.
    fn scan_alarms_by_time(
        &self,
        ns: &str,
        lower: Bound<(u64, u64)>,
        upper: Bound<(u64, u64)>,
        visit: &mut AlarmVisitor<'_>,
    ) -> Result<()> {
        let index = self.open(&BY_TIME)?;
        let alarms = self.open_records(&ALARMS)?;
        let key = |t, s| (ns, t, s);
        let lo = key_bound(lower, key, (ns, 0, 0));
        let hi = key_bound(upper, key, (ns, u64::MAX, u64::MAX));
        index.scan((lo, hi), Order::Descending, |k, _| {
            let (_, _, seq) = k.value();
            let rec = alarms.get((ns, seq))?.ok_or_else(|| {
                AlarmError::Storage(format!("time index names missing alarm {seq}"))
            })?;
            visit(seq, rec)
        })
    }

    /// Like `scan_alarms_by_time`, for one device's alarms.
    fn scan_device_alarms(
        &self,
        ns: &str,
        device: &str,
        lower: Bound<(u64, u64)>,
        upper: Bound<(u64, u64)>,
        visit: &mut AlarmVisitor<'_>,
    ) -> Result<()> {
        let index = self.open(&BY_DEVICE)?;
        let alarms = self.open_records(&ALARMS)?;
        let key = |t, s| (ns, device, t, s);
        let lo = key_bound(lower, key, (ns, device, 0, 0));
        let hi = key_bound(upper, key, (ns, device, u64::MAX, u64::MAX));
        index.scan((lo, hi), Order::Descending, |k, _| {
            let (_, _, _, seq) = k.value();
            let rec = alarms.get((ns, seq))?.ok_or_else(|| {
                AlarmError::Storage(format!("device index names missing alarm {seq}"))
            })?;
            visit(seq, rec)
        })
    }

    /// Sequences of a device's alarms (index keys only).
    fn device_alarm_seqs(&self, ns: &str, device: &str) -> Result<Vec<u64>> {
        let range = (ns, device, 0, 0)..=(ns, device, u64::MAX, u64::MAX);
        Ok(self.open(&BY_DEVICE)?.keys(range, |k| k.3)?)
    }

    /// The namespace's (state, severity, count) counters.
    fn alarm_counts(&self, ns: &str) -> Result<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        self.open(&COUNTS)?
            .scan((ns, "", "").., Order::Ascending, |k, v| {
                let (kn, state, severity) = k.value();
                if kn != ns {
                    return Ok(false);
                }
                out.push((state.to_string(), severity.to_string(), v.value()));
                Ok::<_, AlarmError>(true)
            })?;
        Ok(out)
    }

    /// Alarms in the store, every namespace.
    fn alarm_total(&self) -> Result<u64> {
        Ok(self.open_records(&ALARMS)?.raw().len()?)
    }

    /// The first `n` alarms in prune order: (namespace, seq).
    fn prune_candidates(&self, n: usize) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        if n == 0 {
            return Ok(out);
        }
        self.open(&PRUNE)?
            .scan((0, 0, "", 0).., Order::Ascending, |k, _| {
                let (_, _, ns, seq) = k.value();
                out.push((ns.to_string(), seq));
                Ok::<_, AlarmError>(out.len() < n)
            })?;
        Ok(out)
    }

    /// An outbox entry and its body.
    fn outbox_entry(&self, id: u64) -> Result<Option<(OutboxRec, Vec<u8>)>> {
        let Some(rec) = self.open_records(&OUTBOX)?.get(id)? else {
            return Ok(None);
        };
        let body = self
            .open(&BODIES)?
            .get(id)?
            .map(|b| b.value().to_vec())
            .ok_or_else(|| AlarmError::Storage(format!("outbox entry {id} has no body")))?;
        Ok(Some((rec, body)))
    }

    /// Ids of the entries whose next attempt is at or before `now_ms`,
    /// earliest attempt first (index keys only).
    fn due_outbox(&self, now_ms: u64) -> Result<Vec<u64>> {
        Ok(self.open(&DUE)?.keys(..=(now_ms, u64::MAX), |k| k.1)?)
    }

    /// The earliest next attempt.
    fn first_due(&self) -> Result<Option<u64>> {
        Ok(self.open(&DUE)?.first(|k, _| k.value().0)?)
    }

    /// Visits every outbox entry with its body's length, in id order.
    fn scan_outbox(
        &self,
        visit: &mut dyn FnMut(u64, OutboxRec, usize) -> Result<()>,
    ) -> Result<()> {
        let bodies = self.open(&BODIES)?;
        self.open_records(&OUTBOX)?
            .scan(0.., Order::Ascending, |id, rec| {
                let len = bodies.get(id)?.map_or(0, |b| b.value().len());
                visit(id, rec, len)?;
                Ok(true)
            })
    }
}

impl<R: Read> Reads for R {}

/// The writes (provided methods, so that each is written once).
pub(crate) trait Writes: Borrow<WriteTx> {
    /// Stores an alarm and moves its index entries and counters from `old`
    /// (its keys as stored, if it was) to `new`.
    fn put_alarm(
        &self,
        ns: &str,
        seq: u64,
        rec: &AlarmRec,
        old: Option<&AlarmKeys<'_>>,
        new: &AlarmKeys<'_>,
    ) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&ALARMS)?.put((ns, seq), rec)?;
        if let Some(old) = old {
            remove_alarm_keys(tx, ns, seq, old)?;
        }
        if new.active {
            tx.table(&ACTIVE)?
                .insert((ns, new.device, new.alarm_type), seq)?;
        }
        tx.table(&BY_TIME)?
            .insert((ns, new.last_raised_ms, seq), ())?;
        tx.table(&BY_DEVICE)?
            .insert((ns, new.device, new.last_raised_ms, seq), ())?;
        if let Some((class, since)) = new.prune {
            tx.table(&PRUNE)?.insert((class, since, ns, seq), ())?;
        }
        tx.table(&COUNTS)?.add((ns, new.state, new.severity), 1)?;
        Ok(())
    }

    /// Removes an alarm with its index entries and counters (`keys` as
    /// stored).
    fn remove_alarm(&self, ns: &str, seq: u64, keys: &AlarmKeys<'_>) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&ALARMS)?.remove((ns, seq))?;
        remove_alarm_keys(tx, ns, seq, keys)
    }

    /// Stores an outbox entry (with its body when given; an update keeps
    /// the stored body) and moves its due entry from `old_due` to the
    /// record's next attempt.
    fn put_outbox(
        &self,
        id: u64,
        rec: &OutboxRec,
        body: Option<&[u8]>,
        old_due: Option<u64>,
    ) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&OUTBOX)?.put(id, rec)?;
        if let Some(body) = body {
            tx.table(&BODIES)?.insert(id, body)?;
        }
        let mut due = tx.table(&DUE)?;
        if let Some(old) = old_due {
            due.remove((old, id))?;
        }
        due.insert((rec.next_attempt_ms, id), ())?;
        Ok(())
    }

    /// Removes an outbox entry, its body and its due entry (`due` as
    /// stored).
    fn remove_outbox(&self, id: u64, due: u64) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&OUTBOX)?.remove(id)?;
        tx.table(&BODIES)?.remove(id)?;
        tx.table(&DUE)?.remove((due, id))?;
        Ok(())
    }
}

impl Writes for WriteTx {}

fn remove_alarm_keys(tx: &WriteTx, ns: &str, seq: u64, keys: &AlarmKeys<'_>) -> Result<()> {
    if keys.active {
        let mut active = tx.table(&ACTIVE)?;
        // Only if it still names this alarm.
        let current = active
            .get((ns, keys.device, keys.alarm_type))?
            .map(|v| v.value());
        if current == Some(seq) {
            active.remove((ns, keys.device, keys.alarm_type))?;
        }
    }
    tx.table(&BY_TIME)?.remove((ns, keys.last_raised_ms, seq))?;
    tx.table(&BY_DEVICE)?
        .remove((ns, keys.device, keys.last_raised_ms, seq))?;
    if let Some((class, since)) = keys.prune {
        tx.table(&PRUNE)?.remove((class, since, ns, seq))?;
    }
    tx.table(&COUNTS)?
        .add((ns, keys.state, keys.severity), -1)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(device: &str) -> AlarmRec {
        AlarmRec {
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
        let store = open(&dir.path().join("a.redb"), Kind::Alarms).unwrap();
        store
            .write::<_, AlarmError>(|tx| {
                for (i, ns) in ["a", "ab", "b", "a"].into_iter().enumerate() {
                    let seq = tx.next_seq(ALARM_SEQ_KEY)?;
                    tx.put_alarm(ns, seq, &rec("d"), None, &keys("d", i as u64))?;
                }
                Ok(())
            })
            .unwrap();
        let seqs = |ns: &str| {
            store
                .read::<_, AlarmError>(|tx| {
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
        let store = open(&dir.path().join("a.redb"), Kind::Alarms).unwrap();
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
            let store = open(&path, Kind::Outbox).unwrap();
            assert_eq!(
                store
                    .write::<_, AlarmError>(|tx| Ok(tx.next_seq(OUTBOX_SEQ_KEY)?))
                    .unwrap(),
                1
            );
            assert_eq!(
                store
                    .write::<_, AlarmError>(|tx| Ok(tx.next_seq(OUTBOX_SEQ_KEY)?))
                    .unwrap(),
                2
            );
            let _ = store.write(|tx| {
                tx.next_seq(OUTBOX_SEQ_KEY)?;
                Err::<(), _>(AlarmError::Conflict("no".into()))
            });
        }
        let store = open(&path, Kind::Outbox).unwrap();
        assert_eq!(
            store
                .write::<_, AlarmError>(|tx| Ok(tx.next_seq(OUTBOX_SEQ_KEY)?))
                .unwrap(),
            3
        );
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        open(&path, Kind::Alarms)
            .unwrap()
            .set_schema_version(2)
            .unwrap();
        let Err(AlarmError::Storage(m)) = open(&path, Kind::Alarms) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }

    #[test]
    fn a_second_open_of_one_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        let _first = open(&path, Kind::Outbox).unwrap();
        let Err(AlarmError::Storage(m)) = open(&path, Kind::Outbox) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("already open"), "{m}");
    }

    /// A file written by the code before `kv` (raw redb, JSON records
    /// serialised with their `v` field first) opens, reads and updates.
    #[test]
    fn a_file_written_before_kv_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::ALARMS_FILE_NAME);
        let rec = br#"{"v":1,"device_id":"d","alarm_type":"hot","severity":"major","state":"active_unack","details":{"t":91},"count":1,"first_raised_ms":5,"last_raised_ms":5,"acknowledged_by":null,"acknowledged_ms":null,"cleared_by":null,"cleared_ms":null,"rule":"r"}"#;
        kv::conformance::write_raw(&path, |tx| {
            tx.insert::<&str, u64>("meta", "schema_version", 1)
                .insert::<&str, u64>("meta", "alarm_next_seq", 2)
                .insert::<(&str, u64), &[u8]>("alarms", ("ns", 1), rec.as_slice())
                .insert::<(&str, &str, &str), u64>("alarms_active", ("ns", "d", "hot"), 1)
                .insert::<(&str, u64, u64), ()>("alarms_by_time", ("ns", 5, 1), ())
                .insert::<(&str, &str, u64, u64), ()>("alarms_by_device", ("ns", "d", 5, 1), ())
                .insert::<(&str, &str, &str), u64>(
                    "alarm_counts",
                    ("ns", "active_unack", "major"),
                    1,
                );
        });
        let store = crate::AlarmStore::open(&path).unwrap();
        let a = store.get("ns", &crate::alarm_id(1)).unwrap().unwrap();
        assert_eq!(a.details, serde_json::json!({"t": 91}));
        assert_eq!(a.rule.as_deref(), Some("r"));
        assert_eq!(store.counts("ns").unwrap().total(), 1);
        let (page, _) = store
            .query("ns", &crate::AlarmFilter::default(), None, 10)
            .unwrap();
        assert_eq!(page.len(), 1);
        let raise = |device, severity| {
            let details = serde_json::Value::Null;
            store.raise("ns", device, "hot", severity, details, None, 9)
        };
        let change = raise("d", crate::Severity::Major).unwrap();
        assert!(matches!(change, crate::Change::Updated(ref a) if a.count == 2));
        let next = raise("d2", crate::Severity::Minor).unwrap();
        assert_eq!(next.alarm().id, crate::alarm_id(2));
        // What this binary writes is what the old code wrote.
        drop(store);
        let bytes = open(&path, Kind::Alarms)
            .unwrap()
            .read::<_, AlarmError>(|tx| {
                Ok(tx
                    .open(ALARMS.raw())?
                    .get(("ns", 1))?
                    .map(|v| v.value().to_vec()))
            })
            .unwrap()
            .unwrap();
        assert!(bytes.starts_with(br#"{"v":1,"device_id":"d","alarm_type":"hot","#));
    }
}
