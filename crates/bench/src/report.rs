//! The report of a run: printed as text for people or as JSON for the
//! comparison script.

use std::fmt;

use serde::Serialize;

use crate::stats::LatencySummary;
use crate::{BenchError, Mode};

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub broker: String,
    pub protocol: u8,
    pub qos: u8,
    pub payload_bytes: usize,
    pub publishers: usize,
    pub subscribers: usize,
    /// Target total rate (0 = flat out).
    pub rate_target: u64,
    pub inflight_window: u16,
    pub clean_session: bool,
    pub warmup_s: f64,
    /// Load modes: publish/subscribe figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    /// Connections mode figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionsReport>,
    /// Failed operations (connects, rejected publishes, dropped
    /// connections, malformed payloads).
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

/// Publish/subscribe figures. "Window" counts cover the measured interval
/// after the warm-up; "total" counts cover the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Length of the measured interval in seconds.
    pub window_s: f64,
    pub sent_window: u64,
    pub received_window: u64,
    pub sent_per_sec: f64,
    pub received_per_sec: f64,
    pub sent_total: u64,
    /// QoS 1/2 publishes the broker answered (PUBACK, or PUBREC/PUBCOMP),
    /// refusals included.
    pub acked_total: u64,
    /// Of those, answers with an error reason (e.g. 0x97 quota exceeded):
    /// the publisher was told, so these are not losses.
    pub refused_total: u64,
    pub received_total: u64,
    /// Deliveries the subscriptions call for (sent × subscribers per
    /// message).
    pub expected_total: u64,
    /// Expected deliveries that did not arrive before the drain ended
    /// (sent × subscribers − received: totals, so at QoS 0 this is the
    /// loss, and duplicates would hide part of it).
    pub missing: u64,
    /// QoS 1/2 publishes sent but never acknowledged (or refused with an
    /// error reason); 0 at QoS 0.
    pub unacked: u64,
    /// QoS 1/2: acknowledged messages × the subscribers that match them and
    /// stayed connected to the end: the deliveries the broker promised.
    pub expected_acked_deliveries: u64,
    /// QoS 1/2: of those, the ones that never arrived before the drain
    /// ended, counted per message (each payload names its publisher and
    /// sequence number). Anything above 0 means acknowledged messages were
    /// lost. Always 0 at QoS 0, which acknowledges nothing.
    pub acked_not_delivered: u64,
    /// Deliveries a subscriber had already received.
    pub duplicates: u64,
    /// Subscribers whose connection ended before the run did: left out of
    /// the loss count.
    pub subscribers_disconnected: u64,
    /// End-to-end latency of messages sent inside the measured interval.
    pub latency: LatencySummary,
}

/// Connections-mode figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsReport {
    pub requested: usize,
    pub opened: usize,
    pub failed: usize,
    /// From the first connect to the last CONNACK, in seconds.
    pub elapsed_s: f64,
    pub connections_per_sec: f64,
    /// Wall-clock start and end (Unix ms), to combine several processes.
    pub started_unix_ms: u128,
    pub finished_unix_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_after: Option<u64>,
    /// (after - before) / opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_bytes_per_connection: Option<f64>,
}

impl Report {
    /// The report as one JSON document.
    pub fn to_json(&self) -> Result<String, BenchError> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// Prints the report to stdout, as JSON or as text.
pub fn print_report(report: &Report, json: bool) -> Result<(), BenchError> {
    if json {
        println!("{}", report.to_json()?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Pairs => "pairs",
            Mode::FanIn => "fan-in",
            Mode::FanOut => "fan-out",
            Mode::Connections => "connections",
        };
        writeln!(f, "millwright bench: {mode} against {}", self.broker)?;
        if let Some(load) = &self.load {
            writeln!(
                f,
                "  MQTT {} QoS {}, {} B payload, {} publishers -> {} subscribers, rate {}, window {}",
                if self.protocol == 5 { "5" } else { "3.1.1" },
                self.qos,
                self.payload_bytes,
                self.publishers,
                self.subscribers,
                if self.rate_target == 0 {
                    "flat out".to_string()
                } else {
                    format!("{} msg/s", self.rate_target)
                },
                self.inflight_window,
            )?;
            writeln!(
                f,
                "  measured {:.1} s after {:.1} s warm-up",
                load.window_s, self.warmup_s
            )?;
            writeln!(
                f,
                "  sent      {:>12.0} msg/s  ({} in window, {} total, {} acked, {} of them refused)",
                load.sent_per_sec,
                load.sent_window,
                load.sent_total,
                load.acked_total,
                load.refused_total
            )?;
            writeln!(
                f,
                "  received  {:>12.0} msg/s  ({} in window, {} of {} expected, {} missing)",
                load.received_per_sec,
                load.received_window,
                load.received_total,
                load.expected_total,
                load.missing
            )?;
            if self.qos > 0 {
                writeln!(
                    f,
                    "  loss      {} acknowledged but not delivered (of {} acknowledged deliveries to connected subscribers; {} unacknowledged, {} duplicates, {} subscribers disconnected)",
                    load.acked_not_delivered,
                    load.expected_acked_deliveries,
                    load.unacked,
                    load.duplicates,
                    load.subscribers_disconnected
                )?;
            }
            let l = &load.latency;
            writeln!(
                f,
                "  latency   p50 {:.3} ms  p95 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  ({} samples)",
                ms(l.p50_us),
                ms(l.p95_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us),
                l.samples
            )?;
        }
        if let Some(c) = &self.connections {
            writeln!(
                f,
                "  opened {} of {} connections ({} failed) in {:.2} s: {:.0} connections/s",
                c.opened, c.requested, c.failed, c.elapsed_s, c.connections_per_sec
            )?;
            if let (Some(before), Some(after)) = (c.broker_rss_before, c.broker_rss_after) {
                writeln!(
                    f,
                    "  broker RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per connection",
                    before as f64 / 1048576.0,
                    after as f64 / 1048576.0,
                    c.broker_bytes_per_connection.unwrap_or(0.0)
                )?;
            }
        }
        writeln!(f, "  errors {}", self.errors)?;
        for e in &self.error_samples {
            writeln!(f, "    {e}")?;
        }
        Ok(())
    }
}
