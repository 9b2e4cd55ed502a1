//! `tsdb`: Millwright's embedded time-series engine.
//!
//! What it is: a library that stores telemetry points durably in a data
//! directory and answers queries over them. Writes go to a write-ahead log
//! with group commit (one fdatasync shared by all concurrent writers), then
//! to an in-memory head block; flushes turn the head into immutable,
//! columnar chunk files compressed with pco, with per-series summaries in
//! each chunk's index. Rollups (1 min and 1 h by default) keep
//! min/max/sum/count/first/last per bucket, stay correct under late data,
//! and outlive raw data; by default a partition's 1-minute rollup chunks
//! are only written when raw retention starts to remove its points, and
//! until then queries at that level read the raw chunks
//! ([`Options::deferred_rollups_below_ms`]); retention is per namespace. Late, out-of-order and
//! duplicate points are accepted: the last write wins.
//!
//! Writes are validated per batch: [`Tsdb::write_batches`] commits several
//! publishers' batches with one fdatasync and refuses a bad one alone (type
//! conflict, [`Options::max_series_per_device`], invalid point) with a
//! [`WriteError`]. A failed WAL write or fdatasync never costs an
//! acknowledged record: the writer cuts back or moves to a new segment; its
//! file operations go through an I/O seam ([`WalBackend`]) so tests can
//! inject faults.
//!
//! It also holds pure ingest parsers (InfluxDB line protocol, device
//! telemetry JSON, with [`ParseLimits`]: a cap on values per message and a
//! window of plausible timestamps) and a TSBS-like data generator for
//! benchmarks.
//!
//! What it is not: it opens no sockets, knows nothing of HTTP or MQTT, never
//! reads the clock (every operation that needs "now" takes it as an
//! argument), starts no threads and installs no logging subscriber. It is
//! not a general database: no deletes by predicate, no schema, no SQL.
//!
//! Data model: a series is (namespace, device id, metric name) plus sorted
//! labels; a point is a millisecond timestamp and a value (`f64`, `i64`,
//! `bool` or string); a series keeps the type of its first value.
//! Byte layouts are described in `FORMAT.md` next to this crate.

mod batch;
mod catalog;
mod chunk;
mod chunkset;
mod column;
mod commit;
mod db;
mod error;
mod flush;
pub mod gen;
mod head;
mod model;
mod options;
pub mod parse;
mod query;
mod recovery;
mod retention;
mod rollup;
mod summary;
mod wal;
mod wire;

pub use batch::WriteError;
pub use chunk::{decode_chunk, DecodedChunk, DecodedSeries, RollupBucket};
pub use db::Tsdb;
pub use error::Error;
pub use model::{
    Point, SeriesKey, Value, ValueType, WritePoint, MAX_LABELS, MAX_NAME_LEN, MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
};
pub use options::{Options, RollupLevel, DAY_MS};
pub use parse::{
    parse_device_json, parse_device_json_with, parse_line_protocol, parse_line_protocol_with,
    LineProtocolOptions, ParseLimits, Precision,
};
pub use query::{
    AggPoint, AggSeries, Filter, GroupBy, GroupKey, QueryStats, Selector, SeriesPoints,
    StorageStats, WriteStats,
};
pub use recovery::{RecoveryReport, TruncatedWal};
pub use retention::MaintenanceStats;
pub use summary::Agg;
pub use wal::{FsWalBackend, WalBackend, WalFile};
