//! `millwright simulate`: simulated factory machines that speak the device
//! contract (see PRODUCT.md), the reference device implementation and the
//! demo fleet.
//!
//! Each device is one tokio task owning one MQTT connection
//! ([`mqtt_client::Connection`]) and a [`Machine`] whose physics are pure
//! (`machine.rs`, time passed in). It publishes telemetry on
//! `devices/{id}/telemetry`, keeps its twin in step (`twin.rs`: delta and
//! get documents in, reported patches out), answers commands
//! (`command.rs`), reconnects with back-off, and, if asked, reboots, drops
//! off the network now and then (churn) and overheats (faults).
//!
//! Credentials come from the HTTP API (`provision.rs`, which registers the
//! devices or gives existing ones fresh tokens) or from a CSV file. A caller
//! that has credentials already (the demo mode) builds a [`Fleet`] and calls
//! [`run_fleet`].
//!
//! This crate is a library used by the `millwright` binary. It knows
//! nothing of the server's internals: it speaks MQTT over TCP and, for
//! registration only, HTTP. It installs no tracing subscriber.

mod args;
mod command;
mod device;
mod error;
mod machine;
mod provision;
mod report;
mod twin;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use args::{FleetOptions, SimulateArgs};
pub use error::SimError;
pub use machine::{Machine, MachineKind, Mode, Reading};
pub use mqtt_client::Protocol;
pub use provision::{device_id, parse_credentials, provision, read_credentials, ApiTarget, Fleet};
pub use report::{print_report, Report};

use args::Plan;
use device::{Ctx, DeviceConfig};
use report::{ReportHeader, Stats};

/// Runs `millwright simulate` as described by `args`: gets the fleet's
/// credentials, runs it until `--duration` has passed or Ctrl-C (SIGINT or
/// SIGTERM), and returns the report.
pub async fn run(args: SimulateArgs) -> Result<Report, SimError> {
    let plan = Plan::from_args(&args)?;
    let broker = args::resolve(&args.mqtt).await?;
    let fleet = match &args.credentials {
        Some(path) => read_credentials(path)?,
        None => {
            let api = ApiTarget {
                url: args.url.clone(),
                token: args.token.clone().unwrap_or_default(),
            };
            let prefix = args.prefix.clone();
            let count = args.count;
            tokio::task::spawn_blocking(move || provision(&api, &prefix, count))
                .await
                .map_err(|e| SimError::Task(e.to_string()))??
        }
    };
    let options = plan.fleet_options(&args, broker);
    tracing::info!(
        devices = fleet.devices.len(),
        %broker,
        seed = options.seed,
        "simulating devices"
    );
    let duration = plan.duration;
    let shutdown = async move {
        match duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop_signal() => {}
                }
            }
            None => stop_signal().await,
        }
    };
    Ok(run_fleet(fleet, options, shutdown).await)
}

/// Runs every device of `fleet` until `shutdown` completes, then
/// disconnects them all and reports. Failures during the run (refused
/// connections, rejected publishes) are counted in the report, not
/// returned.
pub async fn run_fleet(
    fleet: Fleet,
    options: FleetOptions,
    shutdown: impl Future<Output = ()>,
) -> Report {
    let start = Instant::now();
    let header = ReportHeader {
        devices: fleet.devices.len(),
        broker: options.broker.to_string(),
        protocol: if options.protocol.is_v5() { 5 } else { 3 },
        seed: options.seed,
    };
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let options = Arc::new(options);
    let ctx = Ctx {
        options: options.clone(),
        stats: stats.clone(),
        stop: stop.clone(),
        connect_permits: Arc::new(Semaphore::new(options.connect_concurrency.max(1))),
        origin: start,
    };
    if let Some(every) = options.progress {
        tracker.spawn(report::progress(
            stats.clone(),
            header.devices,
            every,
            stop.clone(),
        ));
    }
    for (index, (id, token, kind)) in fleet.devices.into_iter().enumerate() {
        let config = DeviceConfig {
            id,
            token,
            kind,
            seed: device_seed(options.seed, index),
        };
        tracker.spawn(device::run(config, ctx.clone()));
    }
    tracker.close();
    shutdown.await;
    let connected_at_end = Stats::get(&stats.connected);
    tracing::info!("stopping the simulated devices");
    stop.cancel();
    tracker.wait().await;
    let mut report = stats.report(header, start.elapsed());
    report.connected_at_end = connected_at_end;
    report
}

/// A device's own seed, derived from the run's (splitmix64).
fn device_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed.wrapping_add((index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_seeds_differ_and_repeat() {
        assert_eq!(device_seed(1, 0), device_seed(1, 0));
        assert_ne!(device_seed(1, 0), device_seed(1, 1));
        assert_ne!(device_seed(1, 0), device_seed(2, 0));
    }
}
