//! The storage seam: every table is in this file.
//!
//! The store handle ([`crate::DeviceStateStore`]) sees a `kv::Db` and the
//! typed record methods of [`Reads`] (either transaction kind) and
//! [`Writes`], never a table or a byte. Opening, the schema version,
//! transactions and the record codec are `kv`'s; this file holds only the
//! tables and their typed methods.
//!
//! Tables (every value is a `kv::Versioned` JSON record from
//! `records.rs`, `{"v":1,...}`):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | u64 (`schema_version`, `command_next_seq`) |
//! | `twins` | (namespace, device id, twin name) | `TwinRec` |
//! | `commands` | (namespace, device id, seq) | `CommandRec` |
//! | `commands_open` | (namespace, device id, seq) | () — not final |
//! | `command_deadlines` | (deadline ms, namespace, device id, seq) | () |
//! | `commands_finished` | (finished ms, namespace, device id, seq) | () |
//! | `presence` | (namespace, device id) | `PresenceRec` |
//!
//! The three command indexes are kept by [`WriteTx::put_command`] and
//! [`WriteTx::remove_command`] from the [`CommandKeys`] the caller derives
//! from the command, so they never disagree with the records.
//!
//! Every write transaction that changed something commits with redb's
//! default durability (immediate, fsynced): when `kv::Db::write` returns
//! `Ok`, the change is on disk. One that changed nothing is aborted, which
//! costs no fsync.

use std::borrow::Borrow;
use std::ops::Bound;
use std::path::Path;

pub(crate) use kv::WriteTx;
use kv::{Db, Order, Read, Records, Schema, Table};

use crate::error::TwinError;
use crate::records::{CommandRec, PresenceRec, TwinRec};

type Result<T> = std::result::Result<T, TwinError>;

const TWINS: Records<(&str, &str, &str), TwinRec> = Records::new("twins");
const COMMANDS: Records<(&str, &str, u64), CommandRec> = Records::new("commands");
const COMMANDS_OPEN: Table<(&str, &str, u64), ()> = Table::new("commands_open");
const DEADLINES: Table<(u64, &str, &str, u64), ()> = Table::new("command_deadlines");
const FINISHED: Table<(u64, &str, &str, u64), ()> = Table::new("commands_finished");
const PRESENCE: Records<(&str, &str), PresenceRec> = Records::new("presence");

/// The schema version this binary writes; it opens any version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA: Schema = Schema::new(
    "device-state",
    SCHEMA_VERSION,
    &[
        &TWINS,
        &COMMANDS,
        &COMMANDS_OPEN,
        &DEADLINES,
        &FINISHED,
        &PRESENCE,
    ],
);
const COMMAND_SEQ_KEY: &str = "command_next_seq";

/// A command's entries in the indexes, derived from the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommandKeys {
    /// Not in a final status.
    pub open: bool,
    /// When the clock changes it (see `Command::deadline_ms`).
    pub deadline_ms: Option<u64>,
    /// When it reached its final status.
    pub finished_ms: Option<u64>,
}

/// A command's full key.
pub(crate) type CommandKey = (String, String, u64);

/// Opens or creates the file, checks its schema version and creates
/// missing tables. Transactions are `kv::Db::read` and `kv::Db::write`
/// (`Ok` means fsynced; a failed or empty write writes nothing).
pub(crate) fn open(path: &Path) -> Result<Db> {
    Ok(Db::open(path, SCHEMA, &[])?)
}

/// Test hook: stores raw bytes as a command record, with no index
/// entries.
#[cfg(test)]
pub(crate) fn put_raw_command(
    db: &Db,
    ns: &str,
    device: &str,
    seq: u64,
    bytes: &[u8],
) -> Result<()> {
    db.write(|tx| {
        tx.table(COMMANDS.raw())?.insert((ns, device, seq), bytes)?;
        Ok(())
    })
}

/// The keys in an index of (time, namespace, device, seq) up to `until`,
/// earliest first.
fn keys_until<R: Read + ?Sized>(
    tx: &R,
    index: &Table<(u64, &str, &str, u64), ()>,
    until: u64,
) -> Result<Vec<CommandKey>> {
    let mut out = Vec::new();
    tx.open(index)?
        .scan((0, "", "", 0).., Order::Ascending, |k, _| {
            let (at, ns, device, seq) = k.value();
            if at > until {
                return Ok(false);
            }
            out.push((ns.to_string(), device.to_string(), seq));
            Ok::<_, TwinError>(true)
        })?;
    Ok(out)
}

/// The reads, the same in both transaction kinds.
pub(crate) trait Reads: Read {
    fn twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<TwinRec>> {
        Ok(self.open_records(&TWINS)?.get((ns, device, name))?)
    }

    /// A device's twins in name order.
    fn twins_of(&self, ns: &str, device: &str) -> Result<Vec<(String, TwinRec)>> {
        let mut out = Vec::new();
        self.open_records(&TWINS)?.scan(
            (ns, device, "")..,
            Order::Ascending,
            |(kn, kd, name), rec| {
                if kn != ns || kd != device {
                    return Ok(false);
                }
                out.push((name.to_string(), rec));
                Ok::<_, TwinError>(true)
            },
        )?;
        Ok(out)
    }

    /// How many twins a device has (keys only).
    fn twin_count(&self, ns: &str, device: &str) -> Result<usize> {
        let mut n = 0;
        self.open_records(&TWINS)?
            .raw()
            .scan((ns, device, "").., Order::Ascending, |k, _| {
                let (kn, kd, _) = k.value();
                if kn != ns || kd != device {
                    return Ok(false);
                }
                n += 1;
                Ok::<_, TwinError>(true)
            })?;
        Ok(n)
    }

    /// Visits the twins called `name` in namespace `ns`, in device id
    /// order after `after`, until `visit` returns false. Twins with
    /// other names are skipped without being decoded.
    fn scan_twins_named(
        &self,
        ns: &str,
        name: &str,
        after: Option<&str>,
        visit: &mut dyn FnMut(&str, TwinRec) -> bool,
    ) -> Result<()> {
        let lower = match after {
            Some(a) => Bound::Excluded((ns, a, name)),
            None => Bound::Included((ns, "", "")),
        };
        self.open_records(&TWINS)?.raw().scan(
            (lower, Bound::Unbounded),
            Order::Ascending,
            |k, v| {
                let (kn, device, kname) = k.value();
                if kn != ns {
                    return Ok(false);
                }
                if kname != name {
                    return Ok(true);
                }
                Ok::<_, TwinError>(visit(device, kv::Versioned::decode(v.value())?))
            },
        )
    }

    fn command(&self, ns: &str, device: &str, seq: u64) -> Result<Option<CommandRec>> {
        Ok(self.open_records(&COMMANDS)?.get((ns, device, seq))?)
    }

    /// Visits a device's commands in sequence order from `from_seq`
    /// until `visit` returns false.
    fn scan_commands(
        &self,
        ns: &str,
        device: &str,
        from_seq: u64,
        visit: &mut dyn FnMut(u64, CommandRec) -> bool,
    ) -> Result<()> {
        self.open_records(&COMMANDS)?.scan(
            (ns, device, from_seq)..,
            Order::Ascending,
            |(kn, kd, seq), rec| {
                if kn != ns || kd != device {
                    return Ok(false);
                }
                Ok::<_, TwinError>(visit(seq, rec))
            },
        )
    }

    /// Sequence numbers of a device's commands that are not final, in
    /// order.
    fn open_command_seqs(&self, ns: &str, device: &str) -> Result<Vec<u64>> {
        let range = (ns, device, 0)..=(ns, device, u64::MAX);
        Ok(self.open(&COMMANDS_OPEN)?.keys(range, |k| k.2)?)
    }

    /// Commands whose deadline is at or before `now_ms`, earliest first
    /// (reads the deadline index only).
    fn due_commands(&self, now_ms: u64) -> Result<Vec<CommandKey>> {
        keys_until(self, &DEADLINES, now_ms)
    }

    /// Final commands that finished at or before `cutoff_ms`, earliest
    /// first (reads the finished index only).
    fn finished_commands(&self, cutoff_ms: u64) -> Result<Vec<CommandKey>> {
        keys_until(self, &FINISHED, cutoff_ms)
    }

    /// Entries in the deadline index (for tests and metrics).
    fn deadline_count(&self) -> Result<u64> {
        Ok(self.open(&DEADLINES)?.len()?)
    }

    fn presence(&self, ns: &str, device: &str) -> Result<Option<PresenceRec>> {
        Ok(self.open_records(&PRESENCE)?.get((ns, device))?)
    }

    /// Visits presence records in key order — of namespace `ns`, or
    /// of every namespace when `None` — until `visit` returns false.
    fn scan_presence(
        &self,
        ns: Option<&str>,
        visit: &mut dyn FnMut(&str, &str, PresenceRec) -> bool,
    ) -> Result<()> {
        self.open_records(&PRESENCE)?.scan(
            (ns.unwrap_or(""), "")..,
            Order::Ascending,
            |(kn, device), rec| {
                if ns.is_some_and(|n| n != kn) {
                    return Ok(false);
                }
                Ok::<_, TwinError>(visit(kn, device, rec))
            },
        )
    }
}

impl<R: Read> Reads for R {}

/// The writes (provided methods, so that each is written once).
pub(crate) trait Writes: Borrow<WriteTx> {
    fn put_twin(&self, ns: &str, device: &str, name: &str, rec: &TwinRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&TWINS)?.put((ns, device, name), rec)?)
    }

    fn remove_twin(&self, ns: &str, device: &str, name: &str) -> Result<bool> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&TWINS)?.remove((ns, device, name))?)
    }

    /// Takes the next command sequence number (from 1, never reused).
    fn next_command_seq(&self) -> Result<u64> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.next_seq(COMMAND_SEQ_KEY)?)
    }

    /// Stores a command and moves its index entries from `old` (its keys
    /// as stored, if it was) to `new`.
    fn put_command(
        &self,
        ns: &str,
        device: &str,
        seq: u64,
        rec: &CommandRec,
        old: Option<CommandKeys>,
        new: CommandKeys,
    ) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&COMMANDS)?.put((ns, device, seq), rec)?;
        if let Some(old) = old {
            remove_command_keys(tx, ns, device, seq, old)?;
        }
        if new.open {
            tx.table(&COMMANDS_OPEN)?.insert((ns, device, seq), ())?;
        }
        if let Some(d) = new.deadline_ms {
            tx.table(&DEADLINES)?.insert((d, ns, device, seq), ())?;
        }
        if let Some(f) = new.finished_ms {
            tx.table(&FINISHED)?.insert((f, ns, device, seq), ())?;
        }
        Ok(())
    }

    /// Removes a command and its index entries (`keys` as stored).
    fn remove_command(&self, ns: &str, device: &str, seq: u64, keys: CommandKeys) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        tx.records(&COMMANDS)?.remove((ns, device, seq))?;
        remove_command_keys(tx, ns, device, seq, keys)
    }

    fn put_presence(&self, ns: &str, device: &str, rec: &PresenceRec) -> Result<()> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&PRESENCE)?.put((ns, device), rec)?)
    }

    fn remove_presence(&self, ns: &str, device: &str) -> Result<bool> {
        let tx: &WriteTx = self.borrow();
        Ok(tx.records(&PRESENCE)?.remove((ns, device))?)
    }
}

impl Writes for WriteTx {}

fn remove_command_keys(
    tx: &WriteTx,
    ns: &str,
    device: &str,
    seq: u64,
    keys: CommandKeys,
) -> Result<()> {
    if keys.open {
        tx.table(&COMMANDS_OPEN)?.remove((ns, device, seq))?;
    }
    if let Some(d) = keys.deadline_ms {
        tx.table(&DEADLINES)?.remove((d, ns, device, seq))?;
    }
    if let Some(f) = keys.finished_ms {
        tx.table(&FINISHED)?.remove((f, ns, device, seq))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence_rec(state: &str) -> PresenceRec {
        PresenceRec {
            state: state.into(),
            ..PresenceRec::from_presence(&crate::Presence::default())
        }
    }

    #[test]
    fn namespaces_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("d.redb")).unwrap();
        store
            .write::<_, TwinError>(|tx| {
                for (ns, id) in [("a", "1"), ("a", "2"), ("b", "1"), ("ab", "0")] {
                    tx.put_presence(ns, id, &presence_rec("online"))?;
                }
                Ok(())
            })
            .unwrap();
        let keys = |ns: Option<&str>| {
            store
                .read::<_, TwinError>(|tx| {
                    let mut keys = Vec::new();
                    tx.scan_presence(ns, &mut |n, d, _| {
                        keys.push(format!("{n}/{d}"));
                        true
                    })?;
                    Ok(keys)
                })
                .unwrap()
        };
        assert_eq!(keys(Some("a")), ["a/1", "a/2"]);
        assert_eq!(keys(None), ["a/1", "a/2", "ab/0", "b/1"]);
    }

    #[test]
    fn failed_or_empty_writes_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("d.redb")).unwrap();
        let r: Result<()> = store.write(|tx| {
            tx.put_presence("ns", "x", &presence_rec("online"))?;
            Err(TwinError::Conflict("no".into()))
        });
        assert!(r.is_err());
        assert!(store.read(|tx| tx.presence("ns", "x")).unwrap().is_none());
        // Removing what is not there leaves the transaction clean.
        assert!(!store.write(|tx| tx.remove_presence("ns", "x")).unwrap());
    }

    #[test]
    fn sequence_numbers_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
        {
            let store = open(&path).unwrap();
            assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 1);
            assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 2);
            // An aborted transaction gives its number back.
            let _ = store.write(|tx| {
                tx.next_command_seq()?;
                Err::<(), _>(TwinError::Conflict("no".into()))
            });
        }
        let store = open(&path).unwrap();
        assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 3);
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
        open(&path).unwrap().set_schema_version(2).unwrap();
        let Err(TwinError::Storage(m)) = open(&path) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }

    /// A file written by the code before `kv` (raw redb; records were
    /// serde structs with `v: 1` as their first field) opens, reads and
    /// goes on; what this binary writes is byte-for-byte what it wrote.
    #[test]
    fn a_file_written_before_kv_opens() {
        use serde::Serialize;
        use serde_json::{json, Map, Value};

        #[derive(Serialize)]
        struct OldTwinRec {
            v: u32,
            desired: Map<String, Value>,
            reported: Map<String, Value>,
            meta_desired: Map<String, Value>,
            meta_reported: Map<String, Value>,
            version: u64,
            updated_at_ms: u64,
        }
        let obj = |v: Value| v.as_object().cloned().unwrap();
        let old_twin = serde_json::to_vec(&OldTwinRec {
            v: 1,
            desired: Map::new(),
            reported: obj(json!({"fw": "1.0"})),
            meta_desired: Map::new(),
            meta_reported: obj(json!({"fw": {"timestamp": 7}})),
            version: 1,
            updated_at_ms: 7,
        })
        .unwrap();
        let old_presence = br#"{"v":1,"state":"online","last_connected_ms":5,"last_disconnected_ms":null,"last_seen_ms":5,"address":null,"protocol":"mqtt/5","last_reason":null,"connections":1}"#;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::FILE_NAME);
        kv::conformance::write_raw(&path, |tx| {
            tx.insert::<&str, u64>("meta", "schema_version", 1)
                .insert::<&str, u64>("meta", "command_next_seq", 5)
                .insert::<(&str, &str, &str), &[u8]>("twins", ("ns", "d", ""), old_twin.as_slice())
                .insert::<(&str, &str), &[u8]>("presence", ("ns", "d"), old_presence.as_slice());
        });
        let s = crate::DeviceStateStore::open(&path).unwrap();
        let t = s.get_twin("ns", "d", "").unwrap().unwrap();
        assert_eq!(t.reported, obj(json!({"fw": "1.0"})));
        assert_eq!(t.version, 1);
        let p = s.get_presence("ns", "d").unwrap().unwrap();
        assert_eq!(p.state, crate::PresenceState::Online);
        assert_eq!(s.fleet_counts("ns").unwrap().online, 1);
        let c = s
            .create_command(
                "ns",
                "d",
                crate::NewCommand {
                    method: "m".into(),
                    params: json!({}),
                    timeout_ms: 1_000,
                    ttl_ms: None,
                },
                9,
            )
            .unwrap();
        assert_eq!(c.seq, 5, "the sequence goes on from the old file's");
        // Rewriting the same twin gives the old bytes.
        s.raw()
            .write(|tx| {
                let rec = tx.twin("ns", "d", "")?.unwrap();
                tx.put_twin("ns", "d", "", &rec)
            })
            .unwrap();
        let bytes = s
            .raw()
            .read::<_, TwinError>(|tx| {
                Ok(tx
                    .open(TWINS.raw())?
                    .get(("ns", "d", ""))?
                    .map(|v| v.value().to_vec()))
            })
            .unwrap();
        assert_eq!(bytes, Some(old_twin));
    }
}
