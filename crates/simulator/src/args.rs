//! Command-line options, parsed loosely by clap and then validated into the
//! [`FleetOptions`] the rest of the crate uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mqtt_client::Protocol;

use crate::SimError;

/// `millwright simulate`: a fleet of simulated factory machines speaking
/// the device contract (telemetry, twin, commands).
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The HTTP API's base URL (to register the devices).
    #[arg(long, env = "MILLWRIGHT_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token with the operator role (not needed with --credentials).
    #[arg(long, env = "MILLWRIGHT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The MQTT broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: String,
    /// How many devices.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Device id prefix: ids are {prefix}0001, {prefix}0002, ...
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    /// Seconds between two telemetry messages of one device (jittered).
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
    /// Overheating faults per machine per hour of running (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Probability per device per minute of going offline for 5-30 s.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Seconds to run (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// MQTT protocol: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 5)]
    pub protocol: u8,
    /// Seed of all randomness, to repeat a run (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// A CSV file of id,token[,type] lines: use these devices instead of
    /// registering them through the API (--url, --token, --count and
    /// --prefix are then not used).
    #[arg(long)]
    pub credentials: Option<PathBuf>,
    /// Seconds between summary lines on stderr (0 = none).
    #[arg(long, default_value_t = 5.0)]
    pub progress: f64,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How a fleet runs, once its credentials are known.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub broker: SocketAddr,
    pub protocol: Protocol,
    /// Mean time between two telemetry messages of one device.
    pub interval: Duration,
    /// Overheating faults per machine per hour of running.
    pub fault_rate_per_hour: f64,
    /// Probability per device per minute of going offline for a while.
    pub churn_per_minute: f64,
    /// Seed of all randomness.
    pub seed: u64,
    pub keep_alive: u16,
    /// Session expiry (v5) so that commands sent while a device is offline
    /// reach it when it is back.
    pub session_expiry: u32,
    /// Connection handshakes in progress at once.
    pub connect_concurrency: usize,
    /// A summary line on stderr this often (`None`: no summary lines).
    pub progress: Option<Duration>,
    /// The firmware version devices report.
    pub firmware: String,
}

impl FleetOptions {
    /// Defaults: MQTT 5, telemetry every 5 s, no faults, no churn, a
    /// random seed, keep alive 30 s, session expiry one hour, no summary
    /// lines.
    pub fn new(broker: SocketAddr) -> FleetOptions {
        FleetOptions {
            broker,
            protocol: Protocol::V5,
            interval: Duration::from_secs(5),
            fault_rate_per_hour: 0.0,
            churn_per_minute: 0.0,
            seed: rand::random(),
            keep_alive: 30,
            session_expiry: 3600,
            connect_concurrency: 16,
            progress: None,
            firmware: "1.0.0".to_string(),
        }
    }
}

/// The validated form of [`SimulateArgs`] (the broker address is resolved
/// separately).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub protocol: Protocol,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub progress: Option<Duration>,
}

impl Plan {
    pub(crate) fn from_args(args: &SimulateArgs) -> Result<Plan, SimError> {
        let invalid = |msg: &str| Err(SimError::InvalidArgs(msg.to_string()));
        let protocol = match args.protocol {
            3 | 4 => Protocol::V311,
            5 => Protocol::V5,
            _ => return invalid("--protocol must be 3 (3.1.1) or 5"),
        };
        let secs = |v: f64, name: &str| {
            if (0.0..1e9).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(SimError::InvalidArgs(format!(
                    "{name} must be a number of seconds"
                )))
            }
        };
        let interval = secs(args.interval, "--interval")?;
        if interval < Duration::from_millis(10) {
            return invalid("--interval must be at least 0.01 seconds");
        }
        let duration = secs(args.duration, "--duration")?;
        let progress = secs(args.progress, "--progress")?;
        if !(0.0..=1000.0).contains(&args.fault_rate) {
            return invalid("--fault-rate must be from 0 to 1000 faults per hour");
        }
        if !(0.0..=1.0).contains(&args.churn) {
            return invalid("--churn must be a probability per minute, from 0 to 1");
        }
        if args.credentials.is_none() {
            if args.count == 0 {
                return invalid("--count must be at least 1");
            }
            if args.prefix.is_empty() || args.prefix.contains(['/', '+', '#']) {
                return invalid("--prefix must be non-empty, without / + #");
            }
            if args.token.is_none() {
                return invalid(
                    "--token (or MILLWRIGHT_TOKEN) is needed to register devices; \
                     or give --credentials FILE",
                );
            }
        }
        Ok(Plan {
            protocol,
            interval,
            duration: (!duration.is_zero()).then_some(duration),
            progress: (!progress.is_zero()).then_some(progress),
        })
    }

    /// The fleet options for this plan against `broker`.
    pub(crate) fn fleet_options(&self, args: &SimulateArgs, broker: SocketAddr) -> FleetOptions {
        FleetOptions {
            protocol: self.protocol,
            interval: self.interval,
            fault_rate_per_hour: args.fault_rate,
            churn_per_minute: args.churn,
            seed: args.seed.unwrap_or_else(rand::random),
            progress: self.progress,
            ..FleetOptions::new(broker)
        }
    }
}

/// Resolves `host:port` to the first address.
pub(crate) async fn resolve(target: &str) -> Result<SocketAddr, SimError> {
    let fail = |reason: String| SimError::Resolve {
        target: target.to_string(),
        reason,
    };
    let first = tokio::net::lookup_host(target)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next();
    first.ok_or_else(|| fail("no address".to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(argv: &[&str]) -> SimulateArgs {
        Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn defaults_are_valid_with_a_token() {
        let args = parse(&["--token", "t"]);
        assert_eq!(args.count, 10);
        assert_eq!(args.prefix, "sim-");
        assert_eq!(args.mqtt, "127.0.0.1:1883");
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.protocol, Protocol::V5);
        assert_eq!(plan.interval, Duration::from_secs(5));
        assert_eq!(plan.duration, None);
        let options = plan.fleet_options(&args, "127.0.0.1:1883".parse().unwrap());
        assert_eq!(options.keep_alive, 30);
        assert_eq!(options.session_expiry, 3600);
    }

    #[test]
    fn bad_arguments_are_refused() {
        for argv in [
            &["--protocol", "4x"][..],
            &["--token", "t", "--protocol", "6"],
            &["--token", "t", "--interval", "0"],
            &["--token", "t", "--churn", "2"],
            &["--token", "t", "--fault-rate", "-1"],
            &["--token", "t", "--count", "0"],
            &["--token", "t", "--prefix", "a/b"],
            &["--token", "t", "--duration", "-3"],
            &[],
        ] {
            let Ok(args) =
                Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))
            else {
                continue;
            };
            if std::env::var_os("MILLWRIGHT_TOKEN").is_some() && argv.is_empty() {
                continue;
            }
            assert!(Plan::from_args(&args.args).is_err(), "{argv:?}");
        }
        let args = parse(&[
            "--credentials",
            "fleet.csv",
            "--seed",
            "7",
            "--protocol",
            "3",
        ]);
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.protocol, Protocol::V311);
        let options = plan.fleet_options(&args, "127.0.0.1:1883".parse().unwrap());
        assert_eq!(options.seed, 7);
    }
}
