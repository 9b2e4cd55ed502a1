//! Ingest parsers: pure functions from bytes to points, no I/O.
//!
//! - [`parse_line_protocol`]: InfluxDB line protocol.
//! - [`parse_device_json`]: the device telemetry JSON forms of the device contract.
//!
//! Both reject a bad payload as a whole: they return either every point or
//! an error, never a part.

mod json;
mod line_protocol;

pub use json::parse_device_json;
pub use line_protocol::{parse_line_protocol, LineProtocolOptions, Precision};
