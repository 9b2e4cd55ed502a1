//! Device twins, commands and presence: the domain logic and its store.
//!
//! # What it is and is not
//!
//! - Pure state machines: twin documents and their merge, delta and
//!   queries (`document.rs`, `delta.rs`, `query.rs`), the command life
//!   cycle (`commands.rs`), presence (`presence.rs`). No sockets, no
//!   environment, and the clock is never read: every function that needs
//!   the time takes `now_ms` (Unix milliseconds).
//! - One store for all three behind the [`DeviceStateStorage`] trait
//!   (so that another backend is another `impl`; `conformance::run`,
//!   feature `conformance`, is the behaviour every implementation must
//!   have). Its embedded implementation is [`DeviceStateStore`]
//!   (`<data-dir>/devices.redb` over `kv`, opened by path). Every
//!   mutating call is one write transaction committed with redb's
//!   default durability (immediate, fsynced) before it returns: `Ok`
//!   means durable. Tables appear only in `store.rs`; stored values are
//!   private serde structs (`records.rs`) stored as `kv::Versioned`
//!   records (`{"v":1,...}`), and the file records its schema version
//!   (1) in its `meta` table (a newer one is refused with
//!   [`TwinError::Storage`]).
//! - Not MQTT and not HTTP: topics (`devices/{id}/twin/...`,
//!   `devices/{id}/commands/{cmd_id}`, `$events/...`) and routes live in
//!   the glue and API crates. The JSON here is the twin document itself
//!   (twin documents *are* JSON, so `serde_json::Value` is the document
//!   type) and the command message `{"method", "params"}`; the domain types
//!   have no serde derives.
//! - Not the registry: it does not know whether a device exists. Callers
//!   delete a device's state with [`DeviceStateStore::delete_device`] when
//!   they delete the device.
//! - Every key starts with the namespace (tenant): (namespace, device id,
//!   ...).
//!
//! # The twin document
//!
//! One twin per device, the classic twin (name `""`), plus named twins
//! (see [`validate_twin_name`]). A [`Twin`] holds a `desired` and a
//! `reported` JSON object, per-leaf metadata mirroring each
//! (`{"timestamp": ms}` for every leaf, i.e. every non-object value), a
//! version (0 for a twin never written, +1 for every accepted update) and
//! `updated_at_ms`. Updates are JSON merge patches (RFC 7386) applied by
//! [`apply`]; [`delta`] is what desired asks that reported does not have;
//! [`document`] and [`delta_document`] are the shapes served:
//!
//! ```json
//! {"state": {"desired": {"speed": 10}, "reported": {"speed": 5},
//!            "delta": {"speed": 10}},
//!  "metadata": {"desired": {"speed": {"timestamp": 1700000000000}},
//!               "reported": {"speed": {"timestamp": 1700000000500}}},
//!  "version": 7, "timestamp": 1700000000500}
//! ```
//!
//! Refusals are [`UpdateError`]s with an HTTP-like [`UpdateError::code`]:
//! 409 version conflict, 413 too large, 400 too deep / not an object /
//! empty / too many twins. [`TwinQuery`] selects devices by their twin
//! values (`reported.firmware = "1.2.0" and desired.speed > 10`).
//!
//! # Commands
//!
//! A [`Command`] is a method call for one device, queued by an operator
//! and sent by the glue when the device is connected:
//!
//! ```text
//! Queued ──mark_sent──► Sent ──mark_delivered──► Delivered
//!   │                    ├──respond──► Succeeded (status 0) | Failed
//!   │                    ├──cancel───► Cancelled
//!   │                    └──clock────► TimedOut (sent + timeout_ms)
//!   ├──cancel──► Cancelled      (Delivered: respond, cancel, clock as Sent)
//!   └──clock───► Expired (expires_at_ms = created + ttl_ms)
//! ```
//!
//! Illegal moves are refused with a [`TransitionError`] (409). The store
//! numbers commands with a store-wide sequence and names them
//! `c<16 hex digits>`; it finds due deadlines through an index
//! ([`DeviceStateStore::expire_commands`]) and forgets final commands
//! after a retention ([`DeviceStateStore::prune_commands`]).
//!
//! # Presence
//!
//! [`Presence`] is NeverConnected, Online, Inactive or Offline. A device
//! may hold several connections at once: it goes Offline only when the
//! last one closes. An Online device not seen for the inactivity timeout
//! becomes Inactive, and Online again when it is seen. At start,
//! [`DeviceStateStore::reset_presence`] marks every device still recorded
//! as connected Offline (reason `server restart`). Each transition returns
//! whether the state changed (an event to publish).
//!
//! # Limits
//!
//! - Twin: 64 KiB for desired + reported + metadata as compact JSON, depth
//!   8, 16 twins per device ([`TwinLimits`], set by the caller); twin
//!   names up to 64 characters.
//! - Command: method 1..=128 characters without control characters;
//!   params a JSON object or null of at most 16 KiB; timeout 1 ms ..= 7
//!   days; ttl 1 ms ..= 30 days or none; responses kept up to 16 KiB
//!   (larger ones as their status only); at most
//!   [`MAX_OPEN_COMMANDS_PER_DEVICE`] open commands per device. A trail
//!   has at most four entries.
//! - Presence: address, protocol and reason cut to 256 characters.
//! - Query: 4 KiB of text, 32 clauses.

mod commands;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod delta;
mod device_store;
mod document;
mod error;
mod presence;
mod query;
mod records;
mod storage;
mod store;

pub use commands::{
    command_id, Command, CommandStatus, NewCommand, TransitionError, MAX_METHOD_CHARS,
    MAX_PARAMS_BYTES, MAX_RESPONSE_BYTES, MAX_TIMEOUT_MS, MAX_TTL_MS,
};
pub use delta::delta;
pub use device_store::{DeviceStateStore, FILE_NAME, MAX_KEY_BYTES, MAX_OPEN_COMMANDS_PER_DEVICE};
pub use document::{
    apply, delta_document, document, validate_twin_name, Twin, TwinLimits, TwinUpdate, UpdateError,
    MAX_TWIN_NAME_CHARS,
};
pub use error::TwinError;
pub use presence::{FleetCounts, Presence, PresenceState, MAX_PRESENCE_TEXT_CHARS};
pub use query::{TwinQuery, MAX_QUERY_BYTES, MAX_QUERY_CLAUSES};
pub use storage::DeviceStateStorage;
