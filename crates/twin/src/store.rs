//! The storage seam: everything redb-specific is in this file.
//!
//! The store handle ([`crate::DeviceStateStore`]) sees [`Store`], [`ReadTx`]
//! and [`WriteTx`] and their typed record methods, never a table or a
//! byte. As in the registry these are concrete types rather than a trait
//! while there is one backend.
//!
//! Tables (every value is a JSON record from `records.rs`):
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
//! default durability (immediate, fsynced): when [`Store::write`] returns
//! `Ok`, the change is on disk. One that changed nothing is aborted, which
//! costs no fsync.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::error::TwinError;
use crate::records::{decode, encode, CommandRec, PresenceRec, TwinRec};

type Result<T> = std::result::Result<T, TwinError>;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TWINS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("twins");
const COMMANDS: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("commands");
const COMMANDS_OPEN: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("commands_open");
const DEADLINES: TableDefinition<(u64, &str, &str, u64), ()> =
    TableDefinition::new("command_deadlines");
const FINISHED: TableDefinition<(u64, &str, &str, u64), ()> =
    TableDefinition::new("commands_finished");
const PRESENCE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("presence");

/// The schema version this binary writes; it opens any version up to it.
pub(crate) const SCHEMA_VERSION: u64 = 1;
const SCHEMA_KEY: &str = "schema_version";
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

/// The device-state database.
pub(crate) struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates the file, checks its schema version and creates
    /// missing tables.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => TwinError::Storage(format!(
                "{} is already open (by another process or another store)",
                path.display()
            )),
            other => TwinError::Storage(format!("{}: {other}", path.display())),
        })?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match version {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(TwinError::Storage(format!(
                        "{} has device-state schema version {v}, newer than this binary's \
                         {SCHEMA_VERSION}; run a newer Millwright",
                        path.display()
                    )))
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
            txn.open_table(TWINS)?;
            txn.open_table(COMMANDS)?;
            txn.open_table(COMMANDS_OPEN)?;
            txn.open_table(DEADLINES)?;
            txn.open_table(FINISHED)?;
            txn.open_table(PRESENCE)?;
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

    /// Test hook: stores raw bytes as a command record, with no index
    /// entries.
    #[cfg(test)]
    pub(crate) fn put_raw_command(
        &self,
        ns: &str,
        device: &str,
        seq: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(COMMANDS)?.insert((ns, device, seq), bytes)?;
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

/// The read methods, identical for both transaction kinds.
macro_rules! read_methods {
    () => {
        pub(crate) fn twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<TwinRec>> {
            let t = self.txn.open_table(TWINS)?;
            let r = t.get((ns, device, name))?;
            r.map(|v| decode(v.value(), "twin")).transpose()
        }

        /// A device's twins in name order.
        pub(crate) fn twins_of(&self, ns: &str, device: &str) -> Result<Vec<(String, TwinRec)>> {
            let t = self.txn.open_table(TWINS)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str, &str)>((ns, device, "")..)? {
                let (k, v) = item?;
                let (kn, kd, name) = k.value();
                if kn != ns || kd != device {
                    break;
                }
                out.push((name.to_string(), decode(v.value(), "twin")?));
            }
            Ok(out)
        }

        /// How many twins a device has (keys only).
        pub(crate) fn twin_count(&self, ns: &str, device: &str) -> Result<usize> {
            let t = self.txn.open_table(TWINS)?;
            let mut n = 0;
            for item in t.range::<(&str, &str, &str)>((ns, device, "")..)? {
                let (k, _) = item?;
                let (kn, kd, _) = k.value();
                if kn != ns || kd != device {
                    break;
                }
                n += 1;
            }
            Ok(n)
        }

        /// Visits the twins called `name` in namespace `ns`, in device id
        /// order after `after`, until `visit` returns false. Twins with
        /// other names are skipped without being decoded.
        pub(crate) fn scan_twins_named(
            &self,
            ns: &str,
            name: &str,
            after: Option<&str>,
            visit: &mut dyn FnMut(&str, TwinRec) -> bool,
        ) -> Result<()> {
            let t = self.txn.open_table(TWINS)?;
            let lower = match after {
                Some(a) => Bound::Excluded((ns, a, name)),
                None => Bound::Included((ns, "", "")),
            };
            for item in t.range::<(&str, &str, &str)>((lower, Bound::Unbounded))? {
                let (k, v) = item?;
                let (kn, device, kname) = k.value();
                if kn != ns {
                    break;
                }
                if kname != name {
                    continue;
                }
                if !visit(device, decode(v.value(), "twin")?) {
                    break;
                }
            }
            Ok(())
        }

        pub(crate) fn command(
            &self,
            ns: &str,
            device: &str,
            seq: u64,
        ) -> Result<Option<CommandRec>> {
            let t = self.txn.open_table(COMMANDS)?;
            let r = t.get((ns, device, seq))?;
            r.map(|v| decode(v.value(), "command")).transpose()
        }

        /// Visits a device's commands in sequence order from `from_seq`
        /// until `visit` returns false.
        pub(crate) fn scan_commands(
            &self,
            ns: &str,
            device: &str,
            from_seq: u64,
            visit: &mut dyn FnMut(u64, CommandRec) -> bool,
        ) -> Result<()> {
            let t = self.txn.open_table(COMMANDS)?;
            for item in t.range::<(&str, &str, u64)>((ns, device, from_seq)..)? {
                let (k, v) = item?;
                let (kn, kd, seq) = k.value();
                if kn != ns || kd != device {
                    break;
                }
                if !visit(seq, decode(v.value(), "command")?) {
                    break;
                }
            }
            Ok(())
        }

        /// Sequence numbers of a device's commands that are not final, in
        /// order.
        pub(crate) fn open_command_seqs(&self, ns: &str, device: &str) -> Result<Vec<u64>> {
            let t = self.txn.open_table(COMMANDS_OPEN)?;
            let mut out = Vec::new();
            for item in t.range::<(&str, &str, u64)>((ns, device, 0)..)? {
                let (k, _) = item?;
                let (kn, kd, seq) = k.value();
                if kn != ns || kd != device {
                    break;
                }
                out.push(seq);
            }
            Ok(out)
        }

        /// Commands whose deadline is at or before `now_ms`, earliest first
        /// (reads the deadline index only).
        pub(crate) fn due_commands(&self, now_ms: u64) -> Result<Vec<CommandKey>> {
            let t = self.txn.open_table(DEADLINES)?;
            let mut out = Vec::new();
            for item in t.range::<(u64, &str, &str, u64)>((0, "", "", 0)..)? {
                let (k, _) = item?;
                let (deadline, ns, device, seq) = k.value();
                if deadline > now_ms {
                    break;
                }
                out.push((ns.to_string(), device.to_string(), seq));
            }
            Ok(out)
        }

        /// Final commands that finished at or before `cutoff_ms`, earliest
        /// first (reads the finished index only).
        pub(crate) fn finished_commands(&self, cutoff_ms: u64) -> Result<Vec<CommandKey>> {
            let t = self.txn.open_table(FINISHED)?;
            let mut out = Vec::new();
            for item in t.range::<(u64, &str, &str, u64)>((0, "", "", 0)..)? {
                let (k, _) = item?;
                let (finished, ns, device, seq) = k.value();
                if finished > cutoff_ms {
                    break;
                }
                out.push((ns.to_string(), device.to_string(), seq));
            }
            Ok(out)
        }

        /// Entries in the deadline index (for tests and metrics).
        pub(crate) fn deadline_count(&self) -> Result<u64> {
            use redb::ReadableTableMetadata;
            Ok(self.txn.open_table(DEADLINES)?.len()?)
        }

        pub(crate) fn presence(&self, ns: &str, device: &str) -> Result<Option<PresenceRec>> {
            let t = self.txn.open_table(PRESENCE)?;
            let r = t.get((ns, device))?;
            r.map(|v| decode(v.value(), "presence")).transpose()
        }

        /// Visits presence records in key order — of namespace `ns`, or
        /// of every namespace when `None` — until `visit` returns false.
        pub(crate) fn scan_presence(
            &self,
            ns: Option<&str>,
            visit: &mut dyn FnMut(&str, &str, PresenceRec) -> bool,
        ) -> Result<()> {
            let t = self.txn.open_table(PRESENCE)?;
            for item in t.range::<(&str, &str)>((ns.unwrap_or(""), "")..)? {
                let (k, v) = item?;
                let (kn, device) = k.value();
                if ns.is_some_and(|n| n != kn) {
                    break;
                }
                if !visit(kn, device, decode(v.value(), "presence")?) {
                    break;
                }
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
    pub(crate) fn put_twin(
        &mut self,
        ns: &str,
        device: &str,
        name: &str,
        rec: &TwinRec,
    ) -> Result<()> {
        self.dirty = true;
        self.txn
            .open_table(TWINS)?
            .insert((ns, device, name), encode(rec)?.as_slice())?;
        Ok(())
    }

    pub(crate) fn remove_twin(&mut self, ns: &str, device: &str, name: &str) -> Result<bool> {
        let mut t = self.txn.open_table(TWINS)?;
        let existed = t.remove((ns, device, name))?.is_some();
        self.dirty |= existed;
        Ok(existed)
    }

    /// Takes the next command sequence number (from 1, never reused).
    pub(crate) fn next_command_seq(&mut self) -> Result<u64> {
        self.dirty = true;
        let mut meta = self.txn.open_table(META)?;
        let seq = meta.get(COMMAND_SEQ_KEY)?.map_or(1, |v| v.value());
        let next = seq
            .checked_add(1)
            .ok_or_else(|| TwinError::Storage("command sequence exhausted".into()))?;
        meta.insert(COMMAND_SEQ_KEY, next)?;
        Ok(seq)
    }

    /// Stores a command and moves its index entries from `old` (its keys
    /// as stored, if it was) to `new`.
    pub(crate) fn put_command(
        &mut self,
        ns: &str,
        device: &str,
        seq: u64,
        rec: &CommandRec,
        old: Option<CommandKeys>,
        new: CommandKeys,
    ) -> Result<()> {
        self.dirty = true;
        self.txn
            .open_table(COMMANDS)?
            .insert((ns, device, seq), encode(rec)?.as_slice())?;
        if let Some(old) = old {
            self.remove_command_keys(ns, device, seq, old)?;
        }
        if new.open {
            self.txn
                .open_table(COMMANDS_OPEN)?
                .insert((ns, device, seq), ())?;
        }
        if let Some(d) = new.deadline_ms {
            self.txn
                .open_table(DEADLINES)?
                .insert((d, ns, device, seq), ())?;
        }
        if let Some(f) = new.finished_ms {
            self.txn
                .open_table(FINISHED)?
                .insert((f, ns, device, seq), ())?;
        }
        Ok(())
    }

    /// Removes a command and its index entries (`keys` as stored).
    pub(crate) fn remove_command(
        &mut self,
        ns: &str,
        device: &str,
        seq: u64,
        keys: CommandKeys,
    ) -> Result<()> {
        self.dirty = true;
        self.txn.open_table(COMMANDS)?.remove((ns, device, seq))?;
        self.remove_command_keys(ns, device, seq, keys)
    }

    fn remove_command_keys(
        &mut self,
        ns: &str,
        device: &str,
        seq: u64,
        keys: CommandKeys,
    ) -> Result<()> {
        if keys.open {
            self.txn
                .open_table(COMMANDS_OPEN)?
                .remove((ns, device, seq))?;
        }
        if let Some(d) = keys.deadline_ms {
            self.txn
                .open_table(DEADLINES)?
                .remove((d, ns, device, seq))?;
        }
        if let Some(f) = keys.finished_ms {
            self.txn
                .open_table(FINISHED)?
                .remove((f, ns, device, seq))?;
        }
        Ok(())
    }

    pub(crate) fn put_presence(&mut self, ns: &str, device: &str, rec: &PresenceRec) -> Result<()> {
        self.dirty = true;
        self.txn
            .open_table(PRESENCE)?
            .insert((ns, device), encode(rec)?.as_slice())?;
        Ok(())
    }

    pub(crate) fn remove_presence(&mut self, ns: &str, device: &str) -> Result<bool> {
        let mut t = self.txn.open_table(PRESENCE)?;
        let existed = t.remove((ns, device))?.is_some();
        self.dirty |= existed;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::VALUE_VERSION;

    fn presence_rec(state: &str) -> PresenceRec {
        PresenceRec {
            v: VALUE_VERSION,
            state: state.into(),
            last_connected_ms: None,
            last_disconnected_ms: None,
            last_seen_ms: None,
            address: None,
            protocol: None,
            last_reason: None,
            connections: 0,
        }
    }

    #[test]
    fn namespaces_do_not_leak_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("d.redb")).unwrap();
        store
            .write(|tx| {
                for (ns, id) in [("a", "1"), ("a", "2"), ("b", "1"), ("ab", "0")] {
                    tx.put_presence(ns, id, &presence_rec("online"))?;
                }
                Ok(())
            })
            .unwrap();
        let keys = |ns: Option<&str>| {
            store
                .read(|tx| {
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
        let store = Store::open(&dir.path().join("d.redb")).unwrap();
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
            let store = Store::open(&path).unwrap();
            assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 1);
            assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 2);
            // An aborted transaction gives its number back.
            let _ = store.write(|tx| {
                tx.next_command_seq()?;
                Err::<(), _>(TwinError::Conflict("no".into()))
            });
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.write(|tx| tx.next_command_seq()).unwrap(), 3);
    }

    #[test]
    fn newer_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.redb");
        Store::open(&path).unwrap().set_schema_version(2).unwrap();
        let Err(TwinError::Storage(m)) = Store::open(&path) else {
            panic!("expected a storage error");
        };
        assert!(m.contains("schema version 2"), "{m}");
    }
}
