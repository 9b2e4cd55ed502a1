//! Telemetry ingest from MQTT into the time-series engine, and the engine's
//! background maintenance.
//!
//! [`Ingest`] is the broker's [`broker_net::IngestStage`]: the one typed
//! stage a device's `devices/{id}/telemetry` payload goes through on its
//! way to disk. Its `decode` turns the payload (the JSON forms of the
//! device contract) into points or refuses it, outside the broker's lock;
//! its `write` stores every batch the broker took in one group commit with
//! one `Tsdb::write_batches` (one WAL fsync), before the publishers'
//! PUBACKs are released.
//!
//! What it is not: a parser (those live in `tsdb::parse`) or an HTTP API
//! (that is `api`).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use broker::Time;
use tsdb::parse::ParseLimits;
use tsdb::{Tsdb, WritePoint};

/// Limits for a message received at a time (Unix ms).
type LimitsAt = Box<dyn Fn(i64) -> ParseLimits + Send + Sync>;

/// The ingest stage of device telemetry into one namespace of the
/// time-series engine.
pub struct Ingest {
    tsdb: Arc<Tsdb>,
    namespace: String,
    limits: LimitsAt,
}

impl Ingest {
    /// With the default limits ([`ParseLimits::at`]).
    pub fn new(tsdb: Arc<Tsdb>, namespace: impl Into<String>) -> Ingest {
        Ingest::with_limits(tsdb, namespace, ParseLimits::at)
    }

    /// With the limits `limits(now)` gives for a message received at `now`
    /// (Unix ms): values per message and the timestamp window.
    pub fn with_limits(
        tsdb: Arc<Tsdb>,
        namespace: impl Into<String>,
        limits: impl Fn(i64) -> ParseLimits + Send + Sync + 'static,
    ) -> Ingest {
        Ingest {
            tsdb,
            namespace: namespace.into(),
            limits: Box::new(limits),
        }
    }
}

impl broker_net::IngestStage for Ingest {
    fn decode(&self, device: &str, payload: &[u8], now: Time) -> Result<Vec<WritePoint>, String> {
        let now_ms = iot_types::Timestamp::from_millis(now.0).as_millis_i64();
        let limits = (self.limits)(now_ms);
        let points =
            tsdb::parse_device_json_with(payload, &self.namespace, device, now_ms, &limits)
                .map_err(|e| e.to_string())?;
        if points.is_empty() {
            return Err("no values in the payload".into());
        }
        Ok(points)
    }

    /// One WAL commit for every batch; a batch the engine refuses on its
    /// own (a type conflict with its series, the series cap) gets its
    /// reason, the others are stored.
    fn write(&self, batches: &[&[WritePoint]]) -> Result<Vec<Option<String>>, String> {
        let verdicts = self
            .tsdb
            .write_batches(batches)
            .map_err(|e| e.to_string())?;
        Ok(verdicts
            .into_iter()
            .map(|v| v.err().map(|e| e.to_string()))
            .collect())
    }
}

/// The telemetry store's figures for `/metrics`: series, chunks and bytes
/// on disk, the WAL and the head block, and writes refused by reason.
pub struct StoreMetrics(pub Arc<Tsdb>);

impl metrics::Source for StoreMetrics {
    fn collect(&self, out: &mut metrics::Exposition) {
        let s = self.0.storage_stats();
        let w = self.0.write_stats();
        let q = self.0.query_stats();
        out.gauge(
            "millwright_telemetry_series",
            "Series in the telemetry store.",
            s.series as f64,
        );
        out.gauges(
            "millwright_telemetry_chunks",
            "Sealed chunk files of the telemetry store, by level.",
            &["level"],
            [
                (["raw"], s.raw_chunks as f64),
                (["rollup"], s.rollup_chunks as f64),
            ],
        );
        out.gauges(
            "millwright_telemetry_disk_bytes",
            "Bytes of the telemetry store on disk, by part.",
            &["part"],
            [
                (["raw_chunks"], s.raw_chunk_bytes as f64),
                (["rollup_chunks"], s.rollup_chunk_bytes as f64),
                (["wal"], s.wal_bytes as f64),
            ],
        );
        out.gauge(
            "millwright_telemetry_head_points",
            "Points in the in-memory head block, not yet in chunks.",
            s.head_points as f64,
        );
        out.gauge(
            "millwright_telemetry_raw_chunk_points",
            "Points in sealed raw chunks.",
            s.raw_chunk_points as f64,
        );
        out.counters(
            "millwright_telemetry_writes_refused_total",
            "Write batches the telemetry store refused, by reason.",
            &["reason"],
            [
                (["type_conflict"], w.type_conflicts),
                (["series_cap"], w.series_refused),
            ],
        );
        out.counters(
            "millwright_telemetry_query_work_total",
            "Work done by telemetry queries, by kind.",
            &["kind"],
            [
                (["chunk_series_decoded"], q.chunk_series_decoded),
                (["chunk_summaries_used"], q.chunk_summaries_used),
                (["rollup_series_read"], q.rollup_series_read),
            ],
        );
    }
}

/// Rounds of flush and retention between two compactions.
const COMPACT_EVERY: u32 = 10;

/// Runs flushes and retention in the background every `every`, and a
/// compaction (merging small chunk files, which also shrinks them) every
/// tenth round, with `clock` giving Unix milliseconds. Stops (after one last
/// flush) when the returned sender is dropped.
pub fn spawn_maintenance(
    tsdb: Arc<Tsdb>,
    every: Duration,
    clock: impl Fn() -> i64 + Send + 'static,
) -> std::io::Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let mut round = 0u32;
    let handle = std::thread::Builder::new()
        .name("tsdb-maintenance".into())
        .spawn(move || loop {
            let stop = !matches!(
                stop_rx.recv_timeout(every),
                Err(mpsc::RecvTimeoutError::Timeout)
            );
            round = round.wrapping_add(1);
            let now = clock();
            if let Err(e) = tsdb.flush(now) {
                tracing::error!(error = %e, "telemetry flush failed");
            }
            if stop {
                return;
            }
            if let Err(e) = tsdb.enforce_retention(now) {
                tracing::error!(error = %e, "telemetry retention failed");
            }
            if round.is_multiple_of(COMPACT_EVERY) {
                if let Err(e) = tsdb.compact() {
                    tracing::error!(error = %e, "telemetry compaction failed");
                }
            }
        })?;
    Ok((stop_tx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_net::IngestStage;

    #[test]
    fn the_store_figures_render() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(Tsdb::open(dir.path(), tsdb::Options::default()).unwrap());
        let ingest = Ingest::new(tsdb.clone(), "default");
        let a = ingest
            .decode("d1", br#"{"t": 1}"#, Time(1_700_000_000_000))
            .unwrap();
        let b = ingest
            .decode("d1", br#"{"t": "x"}"#, Time(1_700_000_000_001))
            .unwrap();
        ingest.write(&[&a, &b]).unwrap();
        let mut e = metrics::Exposition::new();
        metrics::Source::collect(&StoreMetrics(tsdb), &mut e);
        let text = e.render().unwrap();
        assert!(text.contains("millwright_telemetry_series 1\n"), "{text}");
        assert!(
            text.contains(
                "millwright_telemetry_writes_refused_total{reason=\"type_conflict\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("millwright_telemetry_head_points 1\n"),
            "{text}"
        );
    }

    #[test]
    fn decode_then_write_stores_points_and_refuses_bad_payloads() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(Tsdb::open(dir.path(), tsdb::Options::default()).unwrap());
        let ingest = Ingest::new(tsdb.clone(), "default");
        let points = ingest
            .decode(
                "d1",
                br#"{"temp": 21.5, "rpm": 1200}"#,
                Time(1_700_000_000_000),
            )
            .unwrap();
        assert_eq!(points.len(), 2);
        let conflict = ingest
            .decode("d1", br#"{"temp": "hot"}"#, Time(1_700_000_000_001))
            .unwrap();
        let verdicts = ingest.write(&[&points, &conflict]).unwrap();
        assert_eq!(verdicts[0], None);
        assert!(
            verdicts[1].is_some(),
            "a type conflict is refused on its own"
        );
        let latest = tsdb.list_series("default", Some("d1"));
        assert_eq!(latest.len(), 2);
        assert!(ingest.decode("d1", b"not json", Time(0)).is_err());
        assert!(ingest.decode("d1", b"{}", Time(0)).is_err());
    }
}
