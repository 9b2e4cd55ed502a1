//! Counters shared by the worker tasks, the once-a-second progress line,
//! and latency histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::BenchError;

/// Highest latency the histograms hold, in microseconds (one minute).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Totals every worker adds to (in batches), read by the progress line and
/// by subscribers deciding when they have everything.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    pub connections: AtomicU64,
    /// Publishers that have stopped publishing (their `sent` is final).
    pub publishers_stopped: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A latency histogram in microseconds. Fewer significant digits when there
/// are many subscribers, so that a thousand histograms stay small.
pub(crate) fn latency_histogram(subscribers: usize) -> Result<Histogram<u64>, BenchError> {
    let sigfig = if subscribers <= 64 { 3 } else { 2 };
    Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig)
        .map_err(|e| BenchError::Histogram(e.to_string()))
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            samples: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Records one latency; values beyond the histogram's range are clamped.
pub(crate) fn record_latency(h: &mut Histogram<u64>, latency: Duration) {
    let us = u64::try_from(latency.as_micros())
        .unwrap_or(MAX_LATENCY_US)
        .clamp(1, MAX_LATENCY_US);
    let _ = h.record(us);
}

/// Prints a progress line to stderr once a second until dropped.
pub(crate) struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(shared: Arc<Shared>, enabled: bool, connections_mode: bool) -> Progress {
        if !enabled {
            return Progress { task: None };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let mut last = Snapshot::take(&shared);
            let mut last_at = start;
            loop {
                let at = tick.tick().await;
                let now = Snapshot::take(&shared);
                let secs = (at - last_at).as_secs_f64().max(1e-3);
                let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
                if connections_mode {
                    eprintln!(
                        "[{:6.1}s] connections {:>7} ({:>8.0}/s)  errors {}",
                        (at - start).as_secs_f64(),
                        now.connections,
                        rate(now.connections, last.connections),
                        now.errors,
                    );
                } else {
                    eprintln!(
                        "[{:6.1}s] sent {:>10.0} msg/s  acked {:>10.0} msg/s  received {:>10.0} msg/s  errors {}",
                        (at - start).as_secs_f64(),
                        rate(now.sent, last.sent),
                        rate(now.acked, last.acked),
                        rate(now.received, last.received),
                        now.errors,
                    );
                }
                last = now;
                last_at = at;
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Snapshot {
    sent: u64,
    acked: u64,
    received: u64,
    errors: u64,
    connections: u64,
}

impl Snapshot {
    fn take(s: &Shared) -> Snapshot {
        Snapshot {
            sent: Shared::get(&s.sent),
            acked: Shared::get(&s.acked),
            received: Shared::get(&s.received),
            errors: Shared::get(&s.errors),
            connections: Shared::get(&s.connections),
        }
    }
}
