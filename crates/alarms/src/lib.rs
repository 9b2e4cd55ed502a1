//! Alarms and the webhook outbox: the domain logic and its two stores.
//!
//! # What it is and is not
//!
//! - Pure logic: the alarm life cycle (`alarm.rs`), history filters and
//!   dashboard counts (`filter.rs`), the webhook queue's retry and
//!   back-off bookkeeping (`outbox.rs`). No sockets, no environment, and
//!   the clock is never read: every call that needs the time takes
//!   `now_ms` (Unix milliseconds).
//! - [`AlarmStorage`]: the alarm store as a trait, so that another
//!   backend is another `impl`; `conformance::run` (feature
//!   `conformance`) is the behaviour every implementation must have, and
//!   this crate's tests run it against [`AlarmStore`].
//! - Two redb files over `kv`, each opened by path: [`AlarmStore`]
//!   (`<data-dir>/alarms.redb`) and [`Outbox`] (`<data-dir>/outbox.redb`,
//!   separate so that a busy queue never contends with alarm writes).
//!   Every mutating call is one write transaction committed with redb's
//!   default durability (immediate, fsynced) before it returns: `Ok`
//!   means durable. Tables appear only in `store.rs`; stored values are
//!   private serde structs (`records.rs`) stored as `kv::Versioned`
//!   records (`{"v":1,...}`), and each file records its schema version
//!   (1) in its `meta` table (a newer one is refused with
//!   [`AlarmError::Storage`]).
//! - Not MQTT and not HTTP: the service publishes a [`Change`] on
//!   `$events/alarms/...`, makes the webhook calls and maps errors to
//!   statuses. The domain types have no serde derives; `details` is JSON
//!   because alarm details *are* caller-supplied JSON.
//! - Not the registry: it does not know whether a device exists. Callers
//!   delete a device's alarms with [`AlarmStore::delete_device`].
//! - Every alarm key starts with the namespace (tenant).
//!
//! # Alarms
//!
//! An [`Alarm`] has a type, a device (the originator), a [`Severity`],
//! JSON details and an [`AlarmState`]: active or cleared, and
//! acknowledged or not. Ids are `a` and 16 hex digits ([`alarm_id`]).
//!
//! ```text
//!            raise (count+1)           raise (count+1, ack kept)
//!              ┌────┐                       ┌────┐
//!   raise ──► ActiveUnack ──acknowledge──► ActiveAck
//!                 │ clear                     │ clear
//!                 ▼                           ▼
//!            ClearedUnack ──acknowledge──► ClearedAck   (closed)
//! ```
//!
//! De-duplication follows ThingsBoard: a (namespace, device, type) has at
//! most one *active* alarm, and a raise while it is active updates it
//! ([`Change::Updated`]: count + 1, last raise time, details, severity
//! and rule) instead of creating another. A cleared alarm is over for
//! de-duplication even while unacknowledged: the next raise creates a new
//! alarm ([`Change::Raised`]), so the history shows each episode, and the
//! cleared one still waits for its acknowledgement. A raise of an
//! acknowledged active alarm keeps the acknowledgement (as ThingsBoard
//! does): the operator took the condition in hand, and a repeated raise is
//! the same condition; a severity change is visible in the `Updated`
//! event.
//!
//! Acknowledge (`active_unack → active_ack`, `cleared_unack →
//! cleared_ack`) and clear (`active_* → cleared_*`, keeping the
//! acknowledgement) record who and when; repeating either is
//! [`AlarmError::Conflict`]. A rule clears with
//! [`AlarmStore::clear_active`] and `by = "rule:<name>"`.
//!
//! [`AlarmStore::query`] returns history newest first (by last raise)
//! with an [`AlarmFilter`] (device, type, a list of severities — see
//! [`Severity::at_least`] for a minimum — states, and a `[since, until)`
//! range of last raise) and cursor paging. [`AlarmStore::counts`] reads
//! per-(state, severity) counters kept with every change.
//! [`AlarmStore::prune`] bounds the store: cleared-and-acknowledged
//! alarms go first (closed longest ago first), then cleared-unacknowledged
//! ones; active alarms are never forgotten.
//!
//! # The webhook outbox
//!
//! [`Outbox`] is a bounded (`max_entries`, `max_bytes`) durable queue:
//! [`Outbox::push`] never waits on an endpoint, and returns
//! [`OutboxError::Full`] when the queue is at its bound (the caller
//! records the action as failed). The sender takes [`Outbox::due`]
//! entries (oldest first across targets; see `outbox.rs` on order),
//! reports [`Outbox::done`] or [`Outbox::failed`], and sleeps until
//! [`Outbox::next_due_ms`]. A failure schedules a retry after
//! [`backoff_ms`] (1 s doubled per failure up to 5 min, plus up to 10%
//! deterministic jitter) or drops the entry after `max_attempts` or
//! `max_age_ms` ([`Retry`]).
//!
//! # Limits
//!
//! - Namespace and device id 1..=256 bytes; alarm type 1..=128
//!   characters without control characters, `/`, `+` or `#` (it is a
//!   topic level of its events); `by` and rule names 1..=256 characters;
//!   details at most 16 KiB as JSON.
//! - Outbox: `last_error` kept to 1,024 characters.

mod alarm;
mod alarm_store;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod filter;
mod outbox;
mod records;
mod storage;
mod store;

pub use alarm::{alarm_id, Alarm, AlarmState, Change, Severity};
pub use alarm_store::{
    AlarmStore, ALARMS_FILE_NAME, MAX_DETAILS_BYTES, MAX_KEY_BYTES, MAX_NAME_CHARS, MAX_TYPE_CHARS,
};
pub use error::{AlarmError, OutboxError};
pub use filter::{AlarmCounts, AlarmFilter};
pub use outbox::{
    backoff_ms, Outbox, OutboxEntry, Retry, BACKOFF_BASE_MS, BACKOFF_MAX_MS, MAX_ERROR_CHARS,
    OUTBOX_FILE_NAME,
};
pub use storage::AlarmStorage;
