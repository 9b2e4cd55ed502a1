//! Telemetry ingest from MQTT into the time-series engine, and the engine's
//! background maintenance.
//!
//! [`JsonDecoder`] is the broker's [`broker::TelemetryDecoder`]: it turns a
//! `devices/{id}/telemetry` payload (the JSON forms of the device contract)
//! into points, or refuses the whole payload. [`TsdbSink`] is the
//! persistence thread's [`broker_net::TelemetrySink`]: it writes every batch
//! of a group commit with one `Tsdb::write` (one WAL fsync), before the
//! publishers' PUBACKs are released.
//!
//! What it is not: a parser (those live in `tsdb::parse`) or an HTTP API
//! (that is `api`).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use broker::{TelemetryBatch, Time};
use tsdb::parse::ParseLimits;
use tsdb::{Tsdb, WritePoint};

/// Decodes device telemetry JSON into points of one namespace.
pub struct JsonDecoder {
    namespace: String,
    limits: Box<dyn Fn(i64) -> ParseLimits + Send + Sync>,
}

impl JsonDecoder {
    /// With the default limits ([`ParseLimits::at`]).
    pub fn new(namespace: impl Into<String>) -> JsonDecoder {
        JsonDecoder::with_limits(namespace, ParseLimits::at)
    }

    /// With the limits `limits(now)` gives for a message received at `now`
    /// (Unix ms): values per message and the timestamp window.
    pub fn with_limits(
        namespace: impl Into<String>,
        limits: impl Fn(i64) -> ParseLimits + Send + Sync + 'static,
    ) -> JsonDecoder {
        JsonDecoder {
            namespace: namespace.into(),
            limits: Box::new(limits),
        }
    }
}

impl broker::TelemetryDecoder for JsonDecoder {
    fn decode(&self, device: &str, payload: &[u8], now: Time) -> Result<TelemetryBatch, String> {
        let now_ms = iot_types::Timestamp::from_millis(now.0).as_millis_i64();
        let limits = (self.limits)(now_ms);
        let points =
            tsdb::parse_device_json_with(payload, &self.namespace, device, now_ms, &limits)
                .map_err(|e| e.to_string())?;
        if points.is_empty() {
            return Err("no values in the payload".into());
        }
        Ok(TelemetryBatch {
            points: points.len(),
            data: Arc::new(points),
        })
    }
}

/// Writes decoded batches to the time-series engine.
pub struct TsdbSink {
    tsdb: Arc<Tsdb>,
}

impl TsdbSink {
    pub fn new(tsdb: Arc<Tsdb>) -> TsdbSink {
        TsdbSink { tsdb }
    }
}

impl broker_net::TelemetrySink for TsdbSink {
    /// One WAL commit for every batch; a batch the engine refuses on its
    /// own (a type conflict with its series, the series cap) gets its
    /// reason, the others are stored.
    fn write(&self, batches: &[&TelemetryBatch]) -> Result<Vec<Option<String>>, String> {
        let mut slices: Vec<&[WritePoint]> = Vec::with_capacity(batches.len());
        for b in batches {
            match b.data.downcast_ref::<Vec<WritePoint>>() {
                Some(points) => slices.push(points),
                None => return Err("telemetry batch of an unknown type".into()),
            }
        }
        let verdicts = self
            .tsdb
            .write_batches(&slices)
            .map_err(|e| e.to_string())?;
        Ok(verdicts
            .into_iter()
            .map(|v| v.err().map(|e| e.to_string()))
            .collect())
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
    use broker::TelemetryDecoder;
    use broker_net::TelemetrySink;

    #[test]
    fn decode_then_sink_stores_points() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = Arc::new(Tsdb::open(dir.path(), tsdb::Options::default()).unwrap());
        let dec = JsonDecoder::new("default");
        let batch = dec
            .decode(
                "d1",
                br#"{"temp": 21.5, "rpm": 1200}"#,
                Time(1_700_000_000_000),
            )
            .unwrap();
        assert_eq!(batch.points, 2);
        TsdbSink::new(tsdb.clone()).write(&[&batch]).unwrap();
        let latest = tsdb.list_series("default", Some("d1"));
        assert_eq!(latest.len(), 2);
        assert!(dec.decode("d1", b"not json", Time(0)).is_err());
        assert!(dec.decode("d1", b"{}", Time(0)).is_err());
    }
}
