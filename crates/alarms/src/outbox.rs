//! [`Outbox`]: the disk-backed, bounded queue of webhook calls, with the
//! retry and back-off bookkeeping. It makes no HTTP call and reads no
//! clock: the rules engine [`Outbox::push`]es (never waiting on the
//! endpoint), and one sender loop asks for [`Outbox::due`] entries, makes
//! the calls, and reports each with [`Outbox::done`] or
//! [`Outbox::failed`].
//!
//! Order: [`Outbox::due`] returns due entries oldest first (by id, that is
//! push order) across every target. An entry waiting out a back-off does
//! not hold back newer ones, even for the same target, so calls to one
//! endpoint may arrive out of order after a failure; receivers that care
//! order by a timestamp in the body.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::{AlarmError, OutboxError};
use crate::records::OutboxRec;
use crate::store::{self, Kind, Reads, Writes, OUTBOX_SEQ_KEY};

/// The usual file name in the data directory.
pub const OUTBOX_FILE_NAME: &str = "outbox.redb";
/// The first retry waits this long (then 2×, 4×, ...).
pub const BACKOFF_BASE_MS: u64 = 1_000;
/// No retry waits longer than this, plus its jitter.
pub const BACKOFF_MAX_MS: u64 = 5 * 60 * 1_000;
/// `last_error` is kept up to this many characters.
pub const MAX_ERROR_CHARS: usize = 1_024;

type Result<T> = std::result::Result<T, AlarmError>;

/// One queued call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// From 1 in push order, never reused.
    pub id: u64,
    /// Where to deliver it (the webhook URL).
    pub target: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// The rule whose action queued it.
    pub rule: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be tried before this time.
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    /// Why the latest attempt failed (at most [`MAX_ERROR_CHARS`]).
    pub last_error: Option<String>,
}

impl OutboxEntry {
    /// What the entry counts against the outbox's byte bound: the lengths
    /// of target, body, header names and values, and rule.
    pub fn size(&self) -> usize {
        entry_size(&self.target, self.body.len(), &self.headers, &self.rule)
    }
}

pub(crate) fn entry_size(
    target: &str,
    body_len: usize,
    headers: &[(String, String)],
    rule: &str,
) -> usize {
    headers
        .iter()
        .fold(target.len() + body_len + rule.len(), |n, (k, v)| {
            n + k.len() + v.len()
        })
}

/// What [`Outbox::failed`] did with the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It will be due again at this time.
    Scheduled(u64),
    /// It was removed: out of attempts or too old.
    Dropped,
}

/// How long to wait after the `attempts`-th failed attempt of entry `id`:
/// [`BACKOFF_BASE_MS`] doubled per earlier failure, at most
/// [`BACKOFF_MAX_MS`], plus a jitter of up to a tenth of that derived from
/// the id and the attempt (so it is deterministic, yet entries that failed
/// together do not retry together).
pub fn backoff_ms(attempts: u32, id: u64) -> u64 {
    let doublings = attempts.saturating_sub(1).min(20);
    let delay = (BACKOFF_BASE_MS << doublings).min(BACKOFF_MAX_MS);
    delay + mix(id ^ (u64::from(attempts) << 48)) % (delay / 10 + 1)
}

/// splitmix64's finaliser: a well-spread hash of `z`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The webhook queue. `Send + Sync`; every method takes `&self`. Every
/// mutating call is one write transaction, fsynced before it returns: an
/// entry [`Outbox::push`] accepted survives a crash until
/// [`Outbox::done`] or a drop by [`Outbox::failed`] removes it. Entries
/// stay due until then, so there is one sender, and it does not ask for
/// entries it is still delivering.
pub struct Outbox {
    store: kv::Db,
    max_entries: usize,
    max_bytes: usize,
    /// Held across every write so that the totals below change together
    /// with the file: the bound check in `push` and its insert are one
    /// step. A std mutex is right: nothing awaits under it, and redb
    /// serialises writers anyway, so it costs no concurrency.
    writer: Mutex<()>,
    len: AtomicUsize,
    bytes: AtomicUsize,
}

impl Outbox {
    /// Opens (or creates) the queue at `path` (usually
    /// `<data-dir>/outbox.redb`), bounded by `max_entries` entries and
    /// `max_bytes` bytes (see [`OutboxEntry::size`]). Entries left by an
    /// earlier run are kept, even beyond a smaller bound (pushes are
    /// refused until they drain).
    pub fn open(path: &Path, max_entries: usize, max_bytes: usize) -> Result<Outbox> {
        let store = store::open(path, Kind::Outbox)?;
        let (mut len, mut bytes) = (0usize, 0usize);
        store.read(|tx| {
            tx.scan_outbox(&mut |_, rec, body_len| {
                len += 1;
                bytes += rec.size(body_len);
                Ok(())
            })
        })?;
        tracing::debug!(path = %path.display(), len, bytes, "webhook outbox opened");
        Ok(Outbox {
            store,
            max_entries,
            max_bytes,
            writer: Mutex::new(()),
            len: AtomicUsize::new(len),
            bytes: AtomicUsize::new(bytes),
        })
    }

    /// Queues a call, due at once; returns its id once it is durable.
    /// Refused with [`OutboxError::Full`] (nothing written) when it would
    /// take the queue past either bound.
    pub fn push(
        &self,
        target: &str,
        body: &[u8],
        headers: Vec<(String, String)>,
        rule: &str,
        now_ms: u64,
    ) -> std::result::Result<u64, OutboxError> {
        let size = entry_size(target, body.len(), &headers, rule);
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (len, bytes) = (self.len(), self.bytes());
        if len >= self.max_entries || bytes.saturating_add(size) > self.max_bytes {
            return Err(OutboxError::Full {
                entries: len,
                bytes,
            });
        }
        let rec = OutboxRec {
            target: target.to_string(),
            headers,
            rule: rule.to_string(),
            attempts: 0,
            next_attempt_ms: now_ms,
            created_ms: now_ms,
            last_error: None,
        };
        let id = self.store.write::<_, AlarmError>(|tx| {
            let id = tx.next_seq(OUTBOX_SEQ_KEY)?;
            tx.put_outbox(id, &rec, Some(body), None)?;
            Ok(id)
        })?;
        self.len.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(id)
    }

    /// The entries due at `now_ms` (next attempt at or before it), oldest
    /// (lowest id) first, at most `n`. Changes nothing.
    pub fn due(&self, now_ms: u64, n: usize) -> Result<Vec<OutboxEntry>> {
        self.store.read(|tx| {
            let mut ids = tx.due_outbox(now_ms)?;
            ids.sort_unstable();
            ids.truncate(n);
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let (rec, body) = tx.outbox_entry(id)?.ok_or_else(|| {
                    AlarmError::Storage(format!("due index names missing outbox entry {id}"))
                })?;
                out.push(rec.into_entry(id, body));
            }
            Ok(out)
        })
    }

    /// One entry, if it is still queued.
    pub fn get(&self, id: u64) -> Result<Option<OutboxEntry>> {
        let found = self.store.read(|tx| tx.outbox_entry(id))?;
        Ok(found.map(|(rec, body)| rec.into_entry(id, body)))
    }

    /// Entry `id` was delivered: removes it. An id no longer queued is
    /// fine (nothing happens), so a repeated report is harmless.
    pub fn done(&self, id: u64) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let freed = self.store.write::<_, AlarmError>(|tx| {
            let Some((rec, body)) = tx.outbox_entry(id)? else {
                return Ok(None);
            };
            tx.remove_outbox(id, rec.next_attempt_ms)?;
            Ok(Some(rec.size(body.len())))
        })?;
        if let Some(size) = freed {
            self.forget(size);
        }
        Ok(())
    }

    /// An attempt at entry `id` failed with `error`: one more attempt is
    /// counted, and the entry is dropped if that makes `max_attempts`
    /// (at least 1) or it was created `max_age_ms` or more before
    /// `now_ms`; otherwise it is due again after [`backoff_ms`]. Fails
    /// with [`AlarmError::NotFound`] if the entry is not queued.
    pub fn failed(
        &self,
        id: u64,
        error: &str,
        now_ms: u64,
        max_attempts: u32,
        max_age_ms: u64,
    ) -> Result<Retry> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (retry, freed) = self.store.write::<_, AlarmError>(|tx| {
            let (mut rec, body) = tx
                .outbox_entry(id)?
                .ok_or_else(|| AlarmError::not_found("outbox entry", id.to_string()))?;
            let old_due = rec.next_attempt_ms;
            rec.attempts = rec.attempts.saturating_add(1);
            if rec.attempts >= max_attempts.max(1)
                || now_ms.saturating_sub(rec.created_ms) >= max_age_ms
            {
                tx.remove_outbox(id, old_due)?;
                tracing::debug!(
                    id,
                    rule = %rec.rule,
                    attempts = rec.attempts,
                    error,
                    "webhook call dropped"
                );
                return Ok((Retry::Dropped, Some(rec.size(body.len()))));
            }
            rec.next_attempt_ms = now_ms.saturating_add(backoff_ms(rec.attempts, id));
            rec.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
            tx.put_outbox(id, &rec, None, Some(old_due))?;
            Ok((Retry::Scheduled(rec.next_attempt_ms), None))
        })?;
        if let Some(size) = freed {
            self.forget(size);
        }
        Ok(retry)
    }

    /// Entries queued (a metric).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued, as [`OutboxEntry::size`] counts them (a metric).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The earliest next attempt of any entry (possibly in the past), or
    /// `None` when the queue is empty: how long the sender may sleep.
    pub fn next_due_ms(&self) -> Result<Option<u64>> {
        self.store.read(|tx| tx.first_due())
    }

    /// Takes a removed entry out of the totals (called under `writer`).
    fn forget(&self, size: usize) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_a_bounded_jitter() {
        for id in [1, 2, 77, u64::MAX] {
            for attempts in 1..40u32 {
                let base =
                    (BACKOFF_BASE_MS << attempts.saturating_sub(1).min(20)).min(BACKOFF_MAX_MS);
                let d = backoff_ms(attempts, id);
                assert!(d >= base && d <= base + base / 10, "{attempts}: {d}");
                assert_eq!(d, backoff_ms(attempts, id), "deterministic");
            }
        }
        assert_eq!(backoff_ms(1, 1) / 1_000, 1);
        assert_eq!(backoff_ms(2, 1) / 1_000, 2);
        assert!(backoff_ms(30, 1) <= BACKOFF_MAX_MS + BACKOFF_MAX_MS / 10);
        // Different entries spread out.
        let spread: std::collections::HashSet<u64> = (1..50).map(|id| backoff_ms(5, id)).collect();
        assert!(spread.len() > 10);
    }

    #[test]
    fn sizes_count_every_part() {
        let h = vec![("ab".to_string(), "cde".to_string())];
        assert_eq!(entry_size("http://x", 10, &h, "rule"), 8 + 10 + 5 + 4);
    }
}
