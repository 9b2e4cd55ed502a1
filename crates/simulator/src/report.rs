//! Counters shared by the device tasks, the periodic summary line and the
//! final report.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 10;

/// Totals every device task adds to.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Devices connected now (a gauge).
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connections_lost: AtomicU64,
    pub telemetry_sent: AtomicU64,
    pub telemetry_acked: AtomicU64,
    pub telemetry_skipped: AtomicU64,
    pub publishes_rejected: AtomicU64,
    pub commands_answered: AtomicU64,
    pub commands_failed: AtomicU64,
    pub twin_reports: AtomicU64,
    pub twin_deltas: AtomicU64,
    pub twin_rejected: AtomicU64,
    pub reboots: AtomicU64,
    pub outages: AtomicU64,
    pub faults: AtomicU64,
    pub errors: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts an error and keeps the first few messages.
    pub(crate) fn error(&self, message: String) {
        Stats::inc(&self.errors);
        // A std mutex is right here: the section is a push, with no await.
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() < ERROR_SAMPLES {
                samples.push(message);
            }
        }
    }

    fn samples(&self) -> Vec<String> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The report of a run that has ended.
    pub(crate) fn report(&self, header: ReportHeader, elapsed: Duration) -> Report {
        let get = |c: &AtomicU64| Stats::get(c);
        Report {
            devices: header.devices,
            broker: header.broker,
            protocol: header.protocol,
            seed: header.seed,
            elapsed_s: elapsed.as_secs_f64(),
            connected_at_end: get(&self.connected),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            connections_lost: get(&self.connections_lost),
            telemetry_sent: get(&self.telemetry_sent),
            telemetry_acked: get(&self.telemetry_acked),
            telemetry_skipped: get(&self.telemetry_skipped),
            publishes_rejected: get(&self.publishes_rejected),
            commands_answered: get(&self.commands_answered),
            commands_failed: get(&self.commands_failed),
            twin_reports: get(&self.twin_reports),
            twin_deltas: get(&self.twin_deltas),
            twin_rejected: get(&self.twin_rejected),
            reboots: get(&self.reboots),
            outages: get(&self.outages),
            faults: get(&self.faults),
            errors: get(&self.errors),
            error_samples: self.samples(),
        }
    }
}

/// What the report says about the run's set-up.
#[derive(Debug, Clone)]
pub(crate) struct ReportHeader {
    pub devices: usize,
    pub broker: String,
    pub protocol: u8,
    pub seed: u64,
}

/// What a simulation run did. Printed as text, or as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub devices: usize,
    pub broker: String,
    /// 3 (3.1.1) or 5.
    pub protocol: u8,
    /// The seed of the run's randomness (to repeat it with `--seed`).
    pub seed: u64,
    pub elapsed_s: f64,
    /// Devices still connected when the run ended (before they
    /// disconnected).
    pub connected_at_end: u64,
    /// Successful connections, reconnections included.
    pub connects: u64,
    pub connect_failures: u64,
    /// Connections that ended without the device asking (not reboots or
    /// churn).
    pub connections_lost: u64,
    pub telemetry_sent: u64,
    /// Telemetry publishes the broker acknowledged with success.
    pub telemetry_acked: u64,
    /// Telemetry samples not sent because too many publishes were still
    /// unacknowledged.
    pub telemetry_skipped: u64,
    /// Publishes of any kind the broker acknowledged with a failure reason.
    pub publishes_rejected: u64,
    /// Commands answered (failed ones included).
    pub commands_answered: u64,
    /// Commands answered with a non-zero status.
    pub commands_failed: u64,
    /// Reports published on `devices/{id}/twin/update`.
    pub twin_reports: u64,
    pub twin_deltas: u64,
    /// Rejected twin gets and updates.
    pub twin_rejected: u64,
    pub reboots: u64,
    /// Churn: times a device went offline on its own.
    pub outages: u64,
    /// Overheating faults started.
    pub faults: u64,
    pub errors: u64,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl Report {
    /// The report as one JSON document.
    pub fn to_json(&self) -> String {
        // A struct of numbers and strings always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Prints the report to stdout, as JSON or as text.
pub fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "millwright simulate: {} devices against {} (MQTT {}), {:.1} s, seed {}",
            self.devices,
            self.broker,
            if self.protocol == 5 { "5" } else { "3.1.1" },
            self.elapsed_s,
            self.seed
        )?;
        writeln!(
            f,
            "  connections  {} connected at the end, {} connects, {} failed, {} lost",
            self.connected_at_end, self.connects, self.connect_failures, self.connections_lost
        )?;
        writeln!(
            f,
            "  telemetry    {} sent, {} acknowledged, {} skipped, {} publishes rejected",
            self.telemetry_sent,
            self.telemetry_acked,
            self.telemetry_skipped,
            self.publishes_rejected
        )?;
        writeln!(
            f,
            "  commands     {} answered ({} failed)",
            self.commands_answered, self.commands_failed
        )?;
        writeln!(
            f,
            "  twin         {} reports, {} deltas, {} rejected",
            self.twin_reports, self.twin_deltas, self.twin_rejected
        )?;
        writeln!(
            f,
            "  events       {} reboots, {} outages, {} faults",
            self.reboots, self.outages, self.faults
        )?;
        writeln!(f, "  errors       {}", self.errors)?;
        for e in &self.error_samples {
            writeln!(f, "    {e}")?;
        }
        Ok(())
    }
}

/// Prints a one-line summary to stderr every `every` until `stop`.
pub(crate) async fn progress(
    stats: Arc<Stats>,
    devices: usize,
    every: Duration,
    stop: CancellationToken,
) {
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(start + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = 0;
    let mut last_at = start;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            now = ticks.tick() => {
                let sent = Stats::get(&stats.telemetry_sent);
                let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
                eprintln!(
                    "simulate {:>6.0}s: {}/{} connected, telemetry {} (+{:.1}/s), {} commands answered, {} twin reports, {} faults, {} errors",
                    now.duration_since(start).as_secs_f64(),
                    Stats::get(&stats.connected),
                    devices,
                    sent,
                    sent.saturating_sub(last_sent) as f64 / secs,
                    Stats::get(&stats.commands_answered),
                    Stats::get(&stats.twin_reports),
                    Stats::get(&stats.faults),
                    Stats::get(&stats.errors),
                );
                last_sent = sent;
                last_at = now;
            }
        }
    }
}
