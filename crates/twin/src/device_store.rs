//! [`DeviceStateStore`]: twins, commands and presence in one redb file,
//! each call one transaction over the pure logic of `document.rs`,
//! `commands.rs` and `presence.rs`.

use std::path::Path;

use crate::commands::{parse_command_id, Command, NewCommand, TransitionError};
use crate::document::{apply, validate_twin_name, Twin, TwinLimits, TwinUpdate, UpdateError};
use crate::error::TwinError;
use crate::presence::{FleetCounts, Presence};
use crate::query::TwinQuery;
use crate::records::{CommandRec, PresenceRec, TwinRec};
use crate::store::{self, CommandKeys, Reads, WriteTx, Writes};

/// The usual file name in the data directory.
pub const FILE_NAME: &str = "devices.redb";
/// Most commands one device may have open (queued, sent or delivered);
/// creating one more is a [`TwinError::Conflict`].
pub const MAX_OPEN_COMMANDS_PER_DEVICE: usize = 1000;
/// Longest namespace or device id accepted as a key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Twins, commands and presence of every device. `Send + Sync`; every
/// method takes `&self`, so one handle is shared (in an `Arc`). Every
/// mutating call is one write transaction, fsynced before it returns:
/// `Ok` means durable. Calls block on disk I/O: async callers run them on
/// the blocking pool.
pub struct DeviceStateStore {
    store: kv::Db,
}

type Result<T> = std::result::Result<T, TwinError>;

fn check_key(field: &str, value: &str) -> Result<()> {
    TwinError::check_key(field, value, MAX_KEY_BYTES)
}

fn command_keys(c: &Command) -> CommandKeys {
    CommandKeys {
        open: !c.status.is_final(),
        deadline_ms: c.deadline_ms(),
        finished_ms: c.finished_at_ms(),
    }
}

fn to_command(
    rec: Option<CommandRec>,
    ns: &str,
    device: &str,
    seq: u64,
) -> Result<Option<Command>> {
    rec.map(|r| r.into_command(ns, device, seq)).transpose()
}

/// Stores `c` (changed from `old`, its stored form) with its indexes.
fn save_command(tx: &WriteTx, old: Option<&Command>, c: &Command) -> Result<()> {
    tx.put_command(
        &c.namespace,
        &c.device_id,
        c.seq,
        &CommandRec::from_command(c),
        old.map(command_keys),
        command_keys(c),
    )
}

impl DeviceStateStore {
    /// Opens (or creates) the store at `path` (usually
    /// `<data-dir>/devices.redb`). Fails if the file has a newer schema
    /// version or is in use.
    pub fn open(path: &Path) -> Result<DeviceStateStore> {
        let store = store::open(path)?;
        tracing::debug!(path = %path.display(), "device state store opened");
        Ok(DeviceStateStore { store })
    }

    // ----- twins -----

    /// A device's twin `name` (`""` for the classic twin), if it was ever
    /// written.
    pub fn get_twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<Twin>> {
        let rec = self.store.read(|tx| tx.twin(ns, device, name))?;
        Ok(rec.map(TwinRec::into_twin))
    }

    /// A device's twins, by name (the classic twin, `""`, first).
    pub fn list_twins(&self, ns: &str, device: &str) -> Result<Vec<(String, Twin)>> {
        let recs = self.store.read(|tx| tx.twins_of(ns, device))?;
        Ok(recs
            .into_iter()
            .map(|(name, rec)| (name, rec.into_twin()))
            .collect())
    }

    /// Applies `update` to the twin (a never-written twin is
    /// `Twin::default()`) in one write transaction, so concurrent updates
    /// never lose each other. Returns (previous, current), or the refusal
    /// (nothing is written then). Creating a twin beyond
    /// `limits.max_twins_per_device` is refused with
    /// [`UpdateError::TooManyTwins`].
    pub fn update_twin(
        &self,
        ns: &str,
        device: &str,
        name: &str,
        update: &TwinUpdate,
        limits: &TwinLimits,
        now_ms: u64,
    ) -> Result<std::result::Result<(Twin, Twin), UpdateError>> {
        check_key("namespace", ns)?;
        check_key("device id", device)?;
        validate_twin_name(name)?;
        self.store.write(|tx| {
            let previous = match tx.twin(ns, device, name)? {
                Some(rec) => rec.into_twin(),
                None => {
                    if tx.twin_count(ns, device)? >= limits.max_twins_per_device {
                        return Ok(Err(UpdateError::TooManyTwins {
                            limit: limits.max_twins_per_device,
                        }));
                    }
                    Twin::default()
                }
            };
            let current = match apply(&previous, update, limits, now_ms) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            tx.put_twin(ns, device, name, &TwinRec::from_twin(&current))?;
            Ok(Ok((previous, current)))
        })
    }

    /// Deletes one twin; returns whether it existed.
    pub fn delete_twin(&self, ns: &str, device: &str, name: &str) -> Result<bool> {
        self.store.write(|tx| tx.remove_twin(ns, device, name))
    }

    /// Deletes every twin of a device (the device was deleted).
    pub fn delete_twins(&self, ns: &str, device: &str) -> Result<()> {
        self.store.write(|tx| remove_twins(tx, ns, device))
    }

    /// Ids of the devices whose twin `name` matches `query`, in id order,
    /// starting after the device id `after`; at most `limit` (at least 1).
    /// The second value is the cursor for the next page (`None` at the
    /// end). There is no index on values: a page reads the namespace's
    /// twins until it is full.
    pub fn query_twins(
        &self,
        ns: &str,
        name: &str,
        query: &TwinQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        let limit = limit.max(1);
        let mut ids = Vec::new();
        let mut more = false;
        self.store.read(|tx| {
            tx.scan_twins_named(ns, name, after, &mut |device, rec| {
                if query.matches(&rec.into_twin()) {
                    if ids.len() == limit {
                        more = true;
                        return false;
                    }
                    ids.push(device.to_string());
                }
                true
            })
        })?;
        let next = if more { ids.last().cloned() } else { None };
        Ok((ids, next))
    }

    // ----- commands -----

    /// Validates and queues a command for a device. Fails with
    /// [`TwinError::Invalid`] (see [`NewCommand::validate`]) or, when the
    /// device already has [`MAX_OPEN_COMMANDS_PER_DEVICE`] open commands,
    /// [`TwinError::Conflict`].
    pub fn create_command(
        &self,
        ns: &str,
        device: &str,
        new: NewCommand,
        now_ms: u64,
    ) -> Result<Command> {
        check_key("namespace", ns)?;
        check_key("device id", device)?;
        new.validate()?;
        self.store.write(|tx| {
            if tx.open_command_seqs(ns, device)?.len() >= MAX_OPEN_COMMANDS_PER_DEVICE {
                return Err(TwinError::Conflict(format!(
                    "device {device:?} already has {MAX_OPEN_COMMANDS_PER_DEVICE} open commands"
                )));
            }
            let seq = tx.next_command_seq()?;
            let c = Command::queued(ns, device, seq, new, now_ms);
            save_command(tx, None, &c)?;
            Ok(c)
        })
    }

    /// One command of a device.
    pub fn get_command(&self, ns: &str, device: &str, id: &str) -> Result<Option<Command>> {
        let Some(seq) = parse_command_id(id) else {
            return Ok(None);
        };
        self.store
            .read(|tx| to_command(tx.command(ns, device, seq)?, ns, device, seq))
    }

    /// A device's commands in creation order, starting after the command
    /// id `after`; at most `limit` (at least 1), and the cursor for the
    /// next page (`None` at the end).
    pub fn list_commands(
        &self,
        ns: &str,
        device: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Command>, Option<String>)> {
        let limit = limit.max(1);
        let from_seq = match after {
            None => 0,
            Some(a) => parse_command_id(a)
                .ok_or_else(|| TwinError::invalid("after", "not a command id"))?
                .saturating_add(1),
        };
        let mut items = Vec::new();
        let mut more = false;
        let mut bad = None;
        self.store.read(|tx| {
            tx.scan_commands(ns, device, from_seq, &mut |seq, rec| {
                if items.len() == limit {
                    more = true;
                    return false;
                }
                match rec.into_command(ns, device, seq) {
                    Ok(c) => items.push(c),
                    Err(e) => {
                        bad = Some(e);
                        return false;
                    }
                }
                true
            })
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        let next = if more {
            items.last().map(|c| c.id.clone())
        } else {
            None
        };
        Ok((items, next))
    }

    /// A device's open commands in creation order: the Queued ones are
    /// still to send; the Sent and Delivered ones are to send again when
    /// the device reconnects (their timeout keeps running from the first
    /// send).
    pub fn pending_commands(&self, ns: &str, device: &str) -> Result<Vec<Command>> {
        self.store.read(|tx| {
            let mut out = Vec::new();
            for seq in tx.open_command_seqs(ns, device)? {
                if let Some(c) = to_command(tx.command(ns, device, seq)?, ns, device, seq)? {
                    out.push(c);
                }
            }
            Ok(out)
        })
    }

    /// Applies a transition in one write transaction: `f` gets the stored
    /// command; if it returns `Ok` the result is stored (its identity
    /// fields are kept as stored) and returned. A refused transition
    /// writes nothing. A missing command is [`TwinError::NotFound`].
    pub fn update_command(
        &self,
        ns: &str,
        device: &str,
        id: &str,
        f: impl FnOnce(&mut Command) -> std::result::Result<(), TransitionError>,
    ) -> Result<std::result::Result<Command, TransitionError>> {
        let seq = parse_command_id(id).ok_or_else(|| TwinError::not_found("command", id))?;
        self.store.write(|tx| {
            let old = to_command(tx.command(ns, device, seq)?, ns, device, seq)?
                .ok_or_else(|| TwinError::not_found("command", id))?;
            let mut c = old.clone();
            if let Err(e) = f(&mut c) {
                return Ok(Err(e));
            }
            c.namespace.clone_from(&old.namespace);
            c.device_id.clone_from(&old.device_id);
            c.id.clone_from(&old.id);
            c.seq = old.seq;
            if c != old {
                save_command(tx, Some(&old), &c)?;
            }
            Ok(Ok(c))
        })
    }

    /// Applies the clock to every open command whose deadline
    /// (`expires_at_ms` while queued, sent time + `timeout_ms` once sent)
    /// is at or before `now_ms`, in one write transaction, and returns the
    /// commands that changed (now Expired or TimedOut). Reads only the
    /// deadline index and the due commands.
    pub fn expire_commands(&self, now_ms: u64) -> Result<Vec<Command>> {
        let changed = self.store.write::<_, TwinError>(|tx| {
            let mut changed = Vec::new();
            for (ns, device, seq) in tx.due_commands(now_ms)? {
                let Some(old) = to_command(tx.command(&ns, &device, seq)?, &ns, &device, seq)?
                else {
                    continue;
                };
                let mut c = old.clone();
                if c.check_time(now_ms) {
                    save_command(tx, Some(&old), &c)?;
                    changed.push(c);
                }
            }
            Ok(changed)
        })?;
        if !changed.is_empty() {
            tracing::debug!(count = changed.len(), "commands expired or timed out");
        }
        Ok(changed)
    }

    /// Deletes commands that reached a final status at least `keep_ms`
    /// before `now_ms`; returns how many. Reads only the index of finished
    /// commands and removes what it finds.
    pub fn prune_commands(&self, now_ms: u64, keep_ms: u64) -> Result<usize> {
        let Some(cutoff) = now_ms.checked_sub(keep_ms) else {
            return Ok(0);
        };
        self.store.write(|tx| {
            let mut n = 0;
            for (ns, device, seq) in tx.finished_commands(cutoff)? {
                if let Some(c) = to_command(tx.command(&ns, &device, seq)?, &ns, &device, seq)? {
                    tx.remove_command(&ns, &device, seq, command_keys(&c))?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Deletes every command of a device (the device was deleted).
    pub fn delete_commands(&self, ns: &str, device: &str) -> Result<()> {
        self.store.write(|tx| remove_commands(tx, ns, device))
    }

    // ----- presence -----

    /// A device's presence, if it ever had a record.
    pub fn get_presence(&self, ns: &str, device: &str) -> Result<Option<Presence>> {
        let rec = self.store.read(|tx| tx.presence(ns, device))?;
        rec.map(PresenceRec::into_presence).transpose()
    }

    /// Applies `f` (a transition from `presence.rs`, which returns whether
    /// an event should be published) to the device's presence (or
    /// `Presence::default()`) in one write transaction. Returns the new
    /// presence and what `f` returned. Nothing is written (no fsync) when
    /// the presence did not change; callers that report every message as
    /// `seen` should still call this at most every few seconds per device.
    pub fn update_presence(
        &self,
        ns: &str,
        device: &str,
        f: impl FnOnce(&mut Presence) -> bool,
    ) -> Result<(Presence, bool)> {
        check_key("namespace", ns)?;
        check_key("device id", device)?;
        self.store.write(|tx| {
            let old = tx.presence(ns, device)?;
            let mut p = match old.clone() {
                Some(rec) => rec.into_presence()?,
                None => Presence::default(),
            };
            let event = f(&mut p);
            let rec = PresenceRec::from_presence(&p);
            if old.as_ref() != Some(&rec) {
                tx.put_presence(ns, device, &rec)?;
            }
            Ok((p, event))
        })
    }

    /// Every presence record of a namespace, by device id (for fleet
    /// counts and inactivity scans).
    pub fn all_presence(&self, ns: &str) -> Result<Vec<(String, Presence)>> {
        let mut out = Vec::new();
        let mut bad = None;
        self.store.read(|tx| {
            tx.scan_presence(Some(ns), &mut |_, device, rec| match rec.into_presence() {
                Ok(p) => {
                    out.push((device.to_string(), p));
                    true
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            })
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// How many of a namespace's recorded devices are in each state
    /// (devices with no record are not counted; see [`FleetCounts::count`]).
    pub fn fleet_counts(&self, ns: &str) -> Result<FleetCounts> {
        let all = self.all_presence(ns)?;
        Ok(FleetCounts::count(all.iter().map(|(_, p)| p)))
    }

    /// For the start of the server: every device recorded Online or
    /// Inactive lost its connections when the server stopped; marks them
    /// Offline (reason `server restart`) in one write transaction and
    /// returns their (namespace, device id). Reads every presence record.
    pub fn reset_presence(&self, now_ms: u64) -> Result<Vec<(String, String)>> {
        let reset = self.store.write(|tx| {
            let mut stale = Vec::new();
            let mut bad = None;
            tx.scan_presence(None, &mut |ns, device, rec| {
                let mut p = match rec.clone().into_presence() {
                    Ok(p) => p,
                    Err(e) => {
                        bad = Some(e);
                        return false;
                    }
                };
                let event = p.reset(now_ms);
                let new = PresenceRec::from_presence(&p);
                if new != rec {
                    stale.push((ns.to_string(), device.to_string(), new, event));
                }
                true
            })?;
            if let Some(e) = bad {
                return Err(e);
            }
            let mut out = Vec::new();
            for (ns, device, rec, event) in stale {
                tx.put_presence(&ns, &device, &rec)?;
                if event {
                    out.push((ns, device));
                }
            }
            Ok(out)
        })?;
        tracing::debug!(devices = reset.len(), "presence reset after restart");
        Ok(reset)
    }

    /// Deletes a device's presence record.
    pub fn delete_presence(&self, ns: &str, device: &str) -> Result<()> {
        self.store
            .write(|tx| tx.remove_presence(ns, device).map(|_| ()))
    }

    /// Deletes everything this store holds about a device (twins,
    /// commands, presence) in one write transaction.
    pub fn delete_device(&self, ns: &str, device: &str) -> Result<()> {
        self.store.write(|tx| {
            remove_twins(tx, ns, device)?;
            remove_commands(tx, ns, device)?;
            tx.remove_presence(ns, device)?;
            Ok(())
        })
    }

    /// Entries in the command deadline index (for tests and metrics).
    pub fn deadline_index_len(&self) -> Result<u64> {
        self.store.read(|tx| tx.deadline_count())
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> &kv::Db {
        &self.store
    }
}

fn remove_twins(tx: &WriteTx, ns: &str, device: &str) -> Result<()> {
    for (name, _) in tx.twins_of(ns, device)? {
        tx.remove_twin(ns, device, &name)?;
    }
    Ok(())
}

fn remove_commands(tx: &WriteTx, ns: &str, device: &str) -> Result<()> {
    let mut all = Vec::new();
    tx.scan_commands(ns, device, 0, &mut |seq, rec| {
        all.push((seq, rec));
        true
    })?;
    for (seq, rec) in all {
        let c = rec.into_command(ns, device, seq)?;
        tx.remove_command(ns, device, seq, command_keys(&c))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_cmd(ttl_ms: Option<u64>) -> NewCommand {
        NewCommand {
            method: "reboot".into(),
            params: json!({}),
            timeout_ms: 1_000,
            ttl_ms,
        }
    }

    #[test]
    fn expiry_reads_only_the_deadline_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = DeviceStateStore::open(&dir.path().join(FILE_NAME)).unwrap();
        let a = s.create_command("ns", "d", new_cmd(Some(100)), 0).unwrap();
        // A record that cannot be decoded, with no index entry: a scan of
        // every command would fail on it.
        store::put_raw_command(s.raw(), "ns", "d", 999_999, b"garbage").unwrap();
        assert_eq!(s.deadline_index_len().unwrap(), 1);
        assert!(s.expire_commands(99).unwrap().is_empty());
        let changed = s.expire_commands(100).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].id, a.id);
        assert_eq!(s.deadline_index_len().unwrap(), 0);
    }
}
