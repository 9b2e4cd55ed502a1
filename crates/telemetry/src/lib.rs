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
use tsdb::{Tsdb, WritePoint};

/// Decodes device telemetry JSON into points of one namespace.
pub struct JsonDecoder {
    namespace: String,
}

impl JsonDecoder {
    pub fn new(namespace: impl Into<String>) -> JsonDecoder {
        JsonDecoder {
            namespace: namespace.into(),
        }
    }
}

impl broker::TelemetryDecoder for JsonDecoder {
    fn decode(&self, device: &str, payload: &[u8], now: Time) -> Result<TelemetryBatch, String> {
        let points = tsdb::parse_device_json(payload, &self.namespace, device, now.0 as i64)
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
    fn write(&self, batches: &[&TelemetryBatch]) -> Result<Vec<Option<String>>, String> {
        let total: usize = batches.iter().map(|b| b.points).sum();
        let mut all: Vec<WritePoint> = Vec::with_capacity(total);
        for b in batches {
            match b.data.downcast_ref::<Vec<WritePoint>>() {
                Some(points) => all.extend_from_slice(points),
                None => return Err("telemetry batch of an unknown type".into()),
            }
        }
        self.tsdb.write(&all).map_err(|e| e.to_string())?;
        Ok(vec![None; batches.len()])
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
