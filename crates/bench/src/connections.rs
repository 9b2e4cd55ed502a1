//! Connections mode: open many idle connections as fast as allowed, report
//! the rate, and read the broker's resident memory before and after.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mqtt_client::{Connection, TcpTarget};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Plan;
use crate::load::client_options;
use crate::report::ConnectionsReport;
use crate::stats::Shared;
use crate::{unix_ms, BenchError, ErrorLog};

/// How long after the last connection the broker's memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Opens `plan.connections` connections, holds them, closes them.
pub(crate) async fn run_connections(
    plan: &Plan,
    addr: SocketAddr,
    shared: Arc<Shared>,
    errors: ErrorLog,
) -> Result<ConnectionsReport, BenchError> {
    let rss_before = plan.pid.map(broker_rss).transpose()?;
    let run_id = crate::run_id();
    let semaphore = Arc::new(Semaphore::new(plan.concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (up_tx, mut up_rx) = mpsc::channel::<Result<(), String>>(plan.connections.max(1));
    let started_unix_ms = unix_ms();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..plan.connections {
        let options = client_options(plan, format!("{}-{run_id}-c{i}", plan.topic_prefix));
        let target = TcpTarget {
            addr,
            bind: plan.source_for(i),
        };
        let semaphore = semaphore.clone();
        let up = up_tx.clone();
        let mut stop = stop_rx.clone();
        let shared = shared.clone();
        tasks.spawn(async move {
            let permit = semaphore.acquire_owned().await;
            let connected = Connection::connect(target, options).await;
            drop(permit);
            let mut conn = match connected {
                Ok((conn, _)) => {
                    Shared::add(&shared.connections, 1);
                    let _ = up.send(Ok(())).await;
                    conn
                }
                Err(e) => {
                    let _ = up.send(Err(format!("connection {i}: {e}"))).await;
                    return;
                }
            };
            drop(up);
            // Idle: only keep-alive traffic until told to stop.
            loop {
                tokio::select! {
                    driven = conn.drive() => {
                        if driven.is_err() {
                            return;
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
            drop(conn);
        });
    }
    drop(up_tx);

    let mut opened = 0usize;
    let mut failed = 0usize;
    while let Some(outcome) = up_rx.recv().await {
        match outcome {
            Ok(()) => opened += 1,
            Err(e) => {
                failed += 1;
                errors.record(&shared, e);
            }
        }
        if opened + failed == plan.connections {
            break;
        }
    }
    let elapsed = start.elapsed();
    let finished_unix_ms = unix_ms();
    if let Some(path) = &plan.ready_file {
        std::fs::write(path, format!("{opened}\n"))?;
    }

    let hold_until = Instant::now() + plan.hold.max(SETTLE);
    tokio::time::sleep(SETTLE).await;
    let rss_after = plan.pid.map(broker_rss).transpose()?;
    tokio::time::sleep_until(hold_until).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let elapsed_s = elapsed.as_secs_f64();
    let bytes_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => {
            Some((after as f64 - before as f64) / opened as f64)
        }
        _ => None,
    };
    Ok(ConnectionsReport {
        requested: plan.connections,
        opened,
        failed,
        elapsed_s,
        connections_per_sec: if elapsed_s > 0.0 {
            opened as f64 / elapsed_s
        } else {
            0.0
        },
        started_unix_ms,
        finished_unix_ms,
        broker_rss_before: rss_before,
        broker_rss_after: rss_after,
        broker_bytes_per_connection: bytes_per_connection,
    })
}

/// The resident memory of a process in bytes (VmRSS in /proc/PID/status).
pub fn broker_rss(pid: u32) -> Result<u64, BenchError> {
    let err = |reason: String| BenchError::BrokerMemory { pid, reason };
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| err(e.to_string()))?;
    parse_vmrss(&status).ok_or_else(|| err("no VmRSS line".to_string()))
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        Some("kB") | None => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_is_parsed_in_bytes() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6912 kB\nThreads:\t1\n";
        assert_eq!(parse_vmrss(status), Some(6912 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        let rss = broker_rss(std::process::id()).unwrap();
        assert!(rss > 0);
    }
}
