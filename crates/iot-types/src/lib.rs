//! `iot-types`: the words every Millwright crate shares.
//!
//! What it is: [`DeviceId`] and [`Namespace`] (validated identifiers, one
//! rule for both, see [`check_id`]), [`Timestamp`] (Unix milliseconds, the
//! one unit of platform time), the [`Clock`] trait with [`SystemClock`] and
//! [`ManualClock`], and [`device_topics`], the one parser and formatter of
//! the device topic contract (`devices/{id}/telemetry`, twins, commands,
//! `$events/...`, `$provision/...`).
//!
//! What it is not: a store, a codec of payloads, or anything that does
//! I/O. It depends on nothing but `std` (and `thiserror`); the only clock
//! read in it is [`SystemClock`]'s.

mod clock;
pub mod device_topics;
mod id;
mod time;

pub use clock::{shared, Clock, ManualClock, SharedClock, SystemClock};
pub use device_topics::DeviceTopic;
pub use id::{check_id, DeviceId, IdError, Namespace, DEFAULT_NAMESPACE, MAX_ID_CHARS};
pub use time::{rfc3339_ms, Timestamp};
