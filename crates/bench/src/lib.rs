//! `millwright bench`: an MQTT load generator.
//!
//! It runs one load against any MQTT broker (ours, Mosquitto, ...) and
//! reports what it measured: messages per second sent and received, the
//! QoS 1/2 messages acknowledged to a publisher but never delivered to a
//! subscriber that stayed connected (counted per message: each payload
//! names its publisher and sequence number), end-to-end latency
//! percentiles (each payload carries its send time), and
//! in connections mode the connection rate and the broker's memory per idle
//! connection. Loads: 1:1 pairs, fan-in, fan-out, idle connections. Every
//! client is one [`mqtt_client::Connection`] in its own tokio task, driven
//! with a window of unacknowledged publishes so that round trips do not
//! limit throughput.
//!
//! [`ingest`] holds the telemetry ingest drivers of `bench/tsdb/run.sh`
//! (MQTT JSON publishes over `mqtt-client`, line protocol over HTTP with
//! ureq), run as the `mqtt_load` and `lp_load` examples.
//!
//! This crate is a library: the `millwright` binary (and
//! `examples/bench.rs`) parse [`BenchArgs`], call [`run`] and print the
//! [`Report`]. It knows nothing about the broker's internals; it speaks
//! MQTT over TCP only.

mod accounting;
mod args;
mod connections;
mod error;
pub mod ingest;
mod load;
mod report;
mod stats;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use args::{BenchArgs, Mode};
pub use connections::broker_rss;
pub use error::BenchError;
pub use report::{print_report, ConnectionsReport, LoadReport, Report};
pub use stats::LatencySummary;

use args::{resolve, Plan};
use stats::{Progress, Shared};

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 10;

/// Runs one benchmark as described by `args` and returns its report. A
/// progress line goes to stderr once a second unless `--quiet`.
pub async fn run(args: BenchArgs) -> Result<Report, BenchError> {
    let plan = Plan::from_args(&args)?;
    let addr = resolve(&args.host, args.port).await?;
    let shared = Shared::new();
    let errors = ErrorLog::default();
    let progress = Progress::start(
        shared.clone(),
        plan.progress,
        plan.mode == Mode::Connections,
    );
    let (load, connections) = match plan.mode {
        Mode::Connections => {
            let report =
                connections::run_connections(&plan, addr, shared.clone(), errors.clone()).await?;
            (None, Some(report))
        }
        _ => {
            let report = load::run_load(&plan, addr, shared.clone(), errors.clone()).await?;
            (Some(report), None)
        }
    };
    drop(progress);
    Ok(Report {
        mode: plan.mode,
        broker: addr.to_string(),
        protocol: if plan.protocol.is_v5() { 5 } else { 3 },
        qos: plan.qos as u8,
        payload_bytes: plan.payload,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        rate_target: plan.rate,
        inflight_window: plan.inflight,
        clean_session: plan.clean_session,
        warmup_s: plan.warmup.as_secs_f64(),
        load,
        connections,
        errors: Shared::get(&shared.errors),
        error_samples: errors.samples(),
    })
}

/// Counts errors and keeps the first few messages.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorLog(Arc<Mutex<Vec<String>>>);

impl ErrorLog {
    pub(crate) fn record(&self, shared: &Shared, message: String) {
        Shared::add(&shared.errors, 1);
        tracing::debug!(%message, "bench error");
        // A std mutex is right here: the section is a push, with no await.
        if let Ok(mut samples) = self.0.lock() {
            if samples.len() < ERROR_SAMPLES {
                samples.push(message);
            }
        }
    }

    fn samples(&self) -> Vec<String> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A short id that keeps client ids and topics of different runs apart.
pub(crate) fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before
/// it).
pub(crate) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
