//! [`AlarmStore`]: alarms in one redb file, each call one transaction over
//! the pure life cycle of `alarm.rs`.

use std::ops::Bound;
use std::path::Path;

use serde_json::Value;

use crate::alarm::{parse_alarm_id, Alarm, AlarmState, Change, Severity};
use crate::error::AlarmError;
use crate::filter::{AlarmCounts, AlarmFilter};
use crate::records::AlarmRec;
use crate::store::{self, AlarmKeys, Kind, ReadTx, Reads, WriteTx, Writes, ALARM_SEQ_KEY};

/// The usual file name in the data directory.
pub const ALARMS_FILE_NAME: &str = "alarms.redb";
/// Longest namespace or device id accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest alarm type, in characters.
pub const MAX_TYPE_CHARS: usize = 128;
/// Longest `by` (user or `rule:<name>`) or rule name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Largest `details`, serialised as JSON.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

type Result<T> = std::result::Result<T, AlarmError>;

/// Every alarm of every namespace. `Send + Sync`; every method takes
/// `&self`, so one handle is shared (in an `Arc`). Every mutating call is
/// one write transaction, fsynced before it returns: `Ok` means durable.
/// Calls block on disk I/O: async callers run them on the blocking pool.
pub struct AlarmStore {
    store: kv::Db,
}

fn check_key(field: &str, value: &str) -> Result<()> {
    AlarmError::check_key(field, value, MAX_KEY_BYTES)
}

fn check_name(field: &str, value: &str, max_chars: usize) -> Result<()> {
    let chars = value.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(AlarmError::invalid(
            field,
            format!("must have 1 to {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AlarmError::invalid(field, "control characters not allowed"));
    }
    Ok(())
}

/// An alarm type is also a topic level of its events: no `/`, `+`, `#`.
fn check_type(alarm_type: &str) -> Result<()> {
    check_name("alarm_type", alarm_type, MAX_TYPE_CHARS)?;
    if alarm_type.contains(['/', '+', '#']) {
        return Err(AlarmError::invalid(
            "alarm_type",
            "'/', '+' and '#' not allowed",
        ));
    }
    Ok(())
}

fn check_details(details: &Value) -> Result<()> {
    let bytes = serde_json::to_vec(details).map_or(usize::MAX, |b| b.len());
    if bytes > MAX_DETAILS_BYTES {
        return Err(AlarmError::invalid(
            "details",
            format!("larger than {MAX_DETAILS_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// An alarm's index entries and counters.
fn alarm_keys(a: &Alarm) -> AlarmKeys<'_> {
    let cleared = a.cleared_ms.unwrap_or(a.last_raised_ms);
    let prune = match a.state {
        AlarmState::ActiveUnacknowledged | AlarmState::ActiveAcknowledged => None,
        AlarmState::ClearedUnacknowledged => Some((1, cleared)),
        AlarmState::ClearedAcknowledged => Some((0, cleared.max(a.acknowledged_ms.unwrap_or(0)))),
    };
    AlarmKeys {
        device: &a.device_id,
        alarm_type: &a.alarm_type,
        active: a.state.is_active(),
        last_raised_ms: a.last_raised_ms,
        prune,
        state: a.state.as_str(),
        severity: a.severity.as_str(),
    }
}

/// Stores `a` (changed from `old`, its stored form) with its indexes.
fn save(tx: &WriteTx, seq: u64, old: Option<&Alarm>, a: &Alarm) -> Result<()> {
    let new = alarm_keys(a);
    let old = old.map(alarm_keys);
    tx.put_alarm(
        &a.namespace,
        seq,
        &AlarmRec::from_alarm(a),
        old.as_ref(),
        &new,
    )
}

/// The stored alarm `seq`, or NotFound naming `id`.
fn load(tx: &WriteTx, ns: &str, seq: u64, id: &str) -> Result<Alarm> {
    tx.alarm(ns, seq)?
        .ok_or_else(|| AlarmError::not_found("alarm", id))?
        .into_alarm(ns, seq)
}

/// The active alarm of (device, type) as stored, with its sequence.
fn active_in(
    tx: &WriteTx,
    ns: &str,
    device_id: &str,
    alarm_type: &str,
) -> Result<Option<(u64, Alarm)>> {
    let Some(seq) = tx.active_alarm(ns, device_id, alarm_type)? else {
        return Ok(None);
    };
    let rec = tx
        .alarm(ns, seq)?
        .ok_or_else(|| AlarmError::Storage(format!("active index names missing alarm {seq}")))?;
    Ok(Some((seq, rec.into_alarm(ns, seq)?)))
}

fn get_in(tx: &ReadTx, ns: &str, seq: u64) -> Result<Option<Alarm>> {
    tx.alarm(ns, seq)?
        .map(|r| r.into_alarm(ns, seq))
        .transpose()
}

/// The paging cursor after `a`: `<last raised ms>-<id>`.
fn cursor_of(a: &Alarm) -> String {
    format!("{}-{}", a.last_raised_ms, a.id)
}

fn parse_cursor(c: &str) -> Result<(u64, u64)> {
    let bad = || AlarmError::invalid("after", "not a cursor from a previous page");
    let (t, id) = c.split_once('-').ok_or_else(bad)?;
    let t = t.parse::<u64>().map_err(|_| bad())?;
    let seq = parse_alarm_id(id).ok_or_else(bad)?;
    Ok((t, seq))
}

impl AlarmStore {
    /// Opens (or creates) the store at `path` (usually
    /// `<data-dir>/alarms.redb`). Fails if the file has a newer schema
    /// version or is in use.
    pub fn open(path: &Path) -> Result<AlarmStore> {
        let store = store::open(path, Kind::Alarms)?;
        tracing::debug!(path = %path.display(), "alarm store opened");
        Ok(AlarmStore { store })
    }

    /// Raises an alarm of `alarm_type` on `device_id`. If the device has an
    /// active alarm of that type it is updated ([`Change::Updated`]: one
    /// more raise, last raise, details, severity and rule; its acknowledgement is
    /// kept); otherwise a new alarm is created ([`Change::Raised`]), even
    /// if a cleared one of that type is still unacknowledged. `rule` is the
    /// raising rule's name (`None` from the API). Fails with
    /// [`AlarmError::Invalid`] for an empty or over-long key, a type with
    /// `/`, `+` or `#`, or details over [`MAX_DETAILS_BYTES`].
    #[allow(clippy::too_many_arguments, reason = "one argument per alarm field")]
    pub fn raise(
        &self,
        ns: &str,
        device_id: &str,
        alarm_type: &str,
        severity: Severity,
        details: Value,
        rule: Option<&str>,
        now_ms: u64,
    ) -> Result<Change> {
        check_key("namespace", ns)?;
        check_key("device_id", device_id)?;
        check_type(alarm_type)?;
        check_details(&details)?;
        if let Some(r) = rule {
            check_name("rule", r, MAX_NAME_CHARS)?;
        }
        self.store.write(|tx| {
            if let Some((seq, old)) = active_in(tx, ns, device_id, alarm_type)? {
                let change = old.raised_again(severity, details, rule, now_ms);
                save(tx, seq, Some(&old), change.alarm())?;
                return Ok(change);
            }
            let seq = tx.next_seq(ALARM_SEQ_KEY)?;
            let a = Alarm::new(
                ns, seq, device_id, alarm_type, severity, details, rule, now_ms,
            );
            save(tx, seq, None, &a)?;
            Ok(Change::Raised(a))
        })
    }

    /// Acknowledges alarm `id` as `by` (a user). Fails with
    /// [`AlarmError::NotFound`], or [`AlarmError::Conflict`] if it is
    /// already acknowledged.
    pub fn acknowledge(&self, ns: &str, id: &str, by: &str, now_ms: u64) -> Result<Change> {
        self.transition(ns, id, by, "acknowledged", |a| a.acknowledged(by, now_ms))
    }

    /// Clears alarm `id` as `by` (a user, or `rule:<name>`), keeping its
    /// acknowledgement. Fails with [`AlarmError::NotFound`], or
    /// [`AlarmError::Conflict`] if it is already cleared.
    pub fn clear(&self, ns: &str, id: &str, by: &str, now_ms: u64) -> Result<Change> {
        self.transition(ns, id, by, "cleared", |a| a.cleared(by, now_ms))
    }

    /// An operator's transition `step` of alarm `id` by `by`, in one
    /// write; [`AlarmError::Conflict`] ("already `done`") when it
    /// changes nothing.
    fn transition(
        &self,
        ns: &str,
        id: &str,
        by: &str,
        done: &str,
        step: impl FnOnce(&Alarm) -> Change,
    ) -> Result<Change> {
        check_name("by", by, MAX_NAME_CHARS)?;
        let seq = parse_alarm_id(id).ok_or_else(|| AlarmError::not_found("alarm", id))?;
        self.store.write(|tx| {
            let old = load(tx, ns, seq, id)?;
            let change = step(&old);
            if !change.changed() {
                return Err(AlarmError::Conflict(format!(
                    "alarm {id} is already {done}"
                )));
            }
            save(tx, seq, Some(&old), change.alarm())?;
            Ok(change)
        })
    }

    /// Clears the active alarm of (device, type), if any (auto-clear by a
    /// rule: `by` is `rule:<name>`). `None` when there is none; nothing is
    /// written then.
    pub fn clear_active(
        &self,
        ns: &str,
        device_id: &str,
        alarm_type: &str,
        by: &str,
        now_ms: u64,
    ) -> Result<Option<Change>> {
        check_name("by", by, MAX_NAME_CHARS)?;
        self.store.write(|tx| {
            let Some((seq, old)) = active_in(tx, ns, device_id, alarm_type)? else {
                return Ok(None);
            };
            let change = old.cleared(by, now_ms);
            save(tx, seq, Some(&old), change.alarm())?;
            Ok(Some(change))
        })
    }

    /// The active alarm of (device, type), if any.
    pub fn active(&self, ns: &str, device_id: &str, alarm_type: &str) -> Result<Option<Alarm>> {
        self.store
            .read(|tx| match tx.active_alarm(ns, device_id, alarm_type)? {
                Some(seq) => get_in(tx, ns, seq),
                None => Ok(None),
            })
    }

    /// One alarm; `None` for an unknown or malformed id.
    pub fn get(&self, ns: &str, id: &str) -> Result<Option<Alarm>> {
        let Some(seq) = parse_alarm_id(id) else {
            return Ok(None);
        };
        self.store.read(|tx| get_in(tx, ns, seq))
    }

    /// The history: the namespace's alarms that pass `filter`, newest
    /// first by `last_raised_ms` (then newest id first), after the cursor
    /// `after` (from a previous page); at most `limit` (at least 1). The
    /// second value is the cursor for the next page (`None` at the end).
    ///
    /// The time range and the device are read through indexes; the other
    /// conditions are checked alarm by alarm, so a page reads alarms until
    /// it is full. An alarm raised again between two pages moves ahead of
    /// the cursor and is not repeated. A cursor that is not one is
    /// [`AlarmError::Invalid`].
    pub fn query(
        &self,
        ns: &str,
        filter: &AlarmFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Alarm>, Option<String>)> {
        let limit = limit.max(1);
        // Positions are (last raised ms, seq); sequences start at 1, so
        // (t, 0) is just before every alarm raised at t.
        let mut upper = filter.until_ms.map(|u| (u, 0));
        if let Some(c) = after.map(parse_cursor).transpose()? {
            upper = Some(upper.map_or(c, |u| u.min(c)));
        }
        let lower = filter.since_ms.map(|s| (s, 0));
        if let (Some(lo), Some(hi)) = (lower, upper) {
            if lo >= hi {
                return Ok((Vec::new(), None));
            }
        }
        let lower = lower.map_or(Bound::Unbounded, Bound::Included);
        let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);

        let mut items = Vec::new();
        let mut more = false;
        self.store.read(|tx| {
            let mut visit = |seq: u64, rec: AlarmRec| -> Result<bool> {
                let a = rec.into_alarm(ns, seq)?;
                if !filter.matches(&a) {
                    return Ok(true);
                }
                if items.len() == limit {
                    more = true;
                    return Ok(false);
                }
                items.push(a);
                Ok(true)
            };
            match &filter.device_id {
                Some(d) => tx.scan_device_alarms(ns, d, lower, upper, &mut visit),
                None => tx.scan_alarms_by_time(ns, lower, upper, &mut visit),
            }
        })?;
        let next = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Ok((items, next))
    }

    /// How many of the namespace's alarms are in each state and severity
    /// (read from counters kept with every change, not from the alarms).
    pub fn counts(&self, ns: &str) -> Result<AlarmCounts> {
        let rows = self.store.read(|tx| tx.alarm_counts(ns))?;
        let mut counts = AlarmCounts::default();
        for (state, severity, n) in rows {
            let st = AlarmState::parse(&state)
                .ok_or_else(|| AlarmError::Storage(format!("unknown alarm state {state:?}")))?;
            let sev = Severity::parse(&severity)
                .ok_or_else(|| AlarmError::Storage(format!("unknown severity {severity:?}")))?;
            counts.add(st, sev, n);
        }
        Ok(counts)
    }

    /// Alarms in the store, every namespace (for metrics and
    /// [`AlarmStore::prune`]).
    pub fn total(&self) -> Result<u64> {
        self.store.read(|tx| tx.alarm_total())
    }

    /// Keeps the store at `max_alarms` alarms (every namespace together):
    /// forgets cleared-and-acknowledged alarms first, those closed longest
    /// ago first, then cleared-unacknowledged ones, those cleared longest
    /// ago first. Active alarms are never forgotten, so the store holds
    /// more than `max_alarms` only while more than that are active.
    /// Returns how many it deleted, in one write transaction.
    pub fn prune(&self, max_alarms: usize) -> Result<usize> {
        let removed = self.store.write::<_, AlarmError>(|tx| {
            let total = usize::try_from(tx.alarm_total()?).unwrap_or(usize::MAX);
            if total <= max_alarms {
                return Ok(0);
            }
            let victims = tx.prune_candidates(total - max_alarms)?;
            for (ns, seq) in &victims {
                let a = load(tx, ns, *seq, &crate::alarm::alarm_id(*seq))?;
                tx.remove_alarm(ns, *seq, &alarm_keys(&a))?;
            }
            Ok(victims.len())
        })?;
        if removed > 0 {
            tracing::debug!(removed, max_alarms, "alarms pruned");
        }
        Ok(removed)
    }

    /// Deletes every alarm of a device (the device was deleted), active or
    /// not, in one write transaction; returns how many.
    pub fn delete_device(&self, ns: &str, device_id: &str) -> Result<usize> {
        self.store.write(|tx| {
            let seqs = tx.device_alarm_seqs(ns, device_id)?;
            for seq in &seqs {
                let a = load(tx, ns, *seq, &crate::alarm::alarm_id(*seq))?;
                tx.remove_alarm(ns, *seq, &alarm_keys(&a))?;
            }
            Ok(seqs.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let a = Alarm::new("ns", 9, "d", "t", Severity::Minor, Value::Null, None, 1234);
        assert_eq!(parse_cursor(&cursor_of(&a)).unwrap(), (1234, 9));
        for bad in ["", "12", "x-a0000000000000009", "12-a9", "12-"] {
            assert!(
                matches!(parse_cursor(bad), Err(AlarmError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn prune_order_puts_closed_before_unacknowledged() {
        let a = Alarm::new("ns", 1, "d", "t", Severity::Minor, Value::Null, None, 10);
        assert_eq!(alarm_keys(&a).prune, None);
        let cleared = a.cleared("u", 20).into_alarm();
        assert_eq!(alarm_keys(&cleared).prune, Some((1, 20)));
        let closed = cleared.acknowledged("u", 30).into_alarm();
        assert_eq!(alarm_keys(&closed).prune, Some((0, 30)));
        let acked_first = a
            .acknowledged("u", 15)
            .into_alarm()
            .cleared("u", 25)
            .into_alarm();
        assert_eq!(alarm_keys(&acked_first).prune, Some((0, 25)));
    }
}
