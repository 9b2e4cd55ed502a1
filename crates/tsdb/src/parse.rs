//! Ingest parsers: pure functions from bytes to points, no I/O.
//!
//! - [`parse_line_protocol`]: InfluxDB line protocol.
//! - [`parse_device_json`]: the device telemetry JSON forms of the device contract.
//!
//! The `_with` variants take [`ParseLimits`]: a cap on metric values per
//! JSON message and the window of accepted timestamps.
//!
//! Both reject a bad payload as a whole: they return either every point or
//! an error, never a part.

mod json;
mod limits;
mod line_protocol;

pub use json::{parse_device_json, parse_device_json_with};
pub use limits::{ParseLimits, YEAR_2000_MS};
pub use line_protocol::{
    parse_line_protocol, parse_line_protocol_with, LineProtocolOptions, Precision,
};
