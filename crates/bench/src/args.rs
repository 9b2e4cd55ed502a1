//! Command-line options, parsed loosely by clap and then validated into a
//! [`Plan`] that the rest of the crate uses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use mqtt_client::{Protocol, QoS};

use crate::BenchError;

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// N publishers, each with its own subscriber on its own topic (1:1).
    Pairs,
    /// N publishers on their own topics, M subscribers to all of them.
    FanIn,
    /// N publishers on one topic, M subscribers to it.
    FanOut,
    /// Open K idle connections as fast as possible; report the rate and
    /// the broker's memory per connection.
    Connections,
}

/// `millwright bench`: an MQTT load generator.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Load shape.
    #[arg(long, value_enum, default_value_t = Mode::Pairs)]
    pub mode: Mode,
    /// Publishing clients (pairs: also the number of subscribers).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Subscribing clients (fan-in and fan-out; default 1).
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Payload size in bytes (at least 16: the send time, the publisher's
    /// index and the message's sequence number).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Total publish rate in messages per second over all publishers
    /// (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Stop after this many messages in total, rounded up to a multiple of
    /// --publishers (0 = only the duration bounds the run).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Unacknowledged QoS 1/2 publishes per publisher at most.
    #[arg(long, default_value_t = 64)]
    pub inflight: u16,
    /// MQTT protocol: 3 (3.1.1) or 5.
    #[arg(long, default_value_t = 5)]
    pub protocol: u8,
    /// Clean session / clean start for every client.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub clean_session: bool,
    /// Session expiry interval in seconds (MQTT 5).
    #[arg(long)]
    pub session_expiry: Option<u32>,
    /// Local addresses to connect from, round-robin (e.g.
    /// 127.0.0.1,127.0.0.2): each gives its own range of source ports.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,
    /// Connections mode: how many idle connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Connections mode: the broker's pid, to read its resident memory
    /// (VmRSS) before and after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Connections mode: seconds to hold the connections open after the
    /// last one is up (memory is read one second in).
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Connections mode: a file to create once every connection is up (so
    /// that a script can measure while several bench processes hold).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Worker threads of the subscribers' own runtime (publishers run on
    /// the caller's runtime).
    #[arg(long, default_value_t = 1)]
    pub subscriber_threads: usize,
    /// Connection handshakes in progress at once. More than a broker's
    /// accept queue takes makes the kernel drop SYNs, and each dropped SYN
    /// costs a one-second retransmit: measured on loopback, 32 opens
    /// connections fastest (more than twice as fast as 128).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Keep alive in seconds for every client.
    #[arg(long, default_value_t = 60)]
    pub keep_alive: u16,
    /// Seconds to wait after publishing stops for acknowledgements and
    /// messages still on their way.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// Topic prefix (a per-run id is added below it).
    #[arg(long, default_value = "mwbench")]
    pub topic_prefix: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// A validated run description.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub mode: Mode,
    pub publishers: usize,
    pub subscribers: usize,
    pub qos: QoS,
    pub payload: usize,
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub count: u64,
    pub inflight: u16,
    pub protocol: Protocol,
    pub clean_session: bool,
    pub session_expiry: Option<u32>,
    pub source_addrs: Vec<IpAddr>,
    pub connections: usize,
    pub pid: Option<u32>,
    pub hold: Duration,
    pub ready_file: Option<PathBuf>,
    pub concurrency: usize,
    pub subscriber_threads: usize,
    pub keep_alive: u16,
    pub drain: Duration,
    pub topic_prefix: String,
    pub progress: bool,
}

impl Plan {
    /// Validates the arguments (the address is resolved separately).
    pub(crate) fn from_args(args: &BenchArgs) -> Result<Plan, BenchError> {
        let invalid = |msg: &str| Err(BenchError::InvalidArgs(msg.to_string()));
        let qos = match QoS::from_u8(args.qos) {
            Some(q) => q,
            None => return invalid("--qos must be 0, 1 or 2"),
        };
        let protocol = match args.protocol {
            3 | 4 => Protocol::V311,
            5 => Protocol::V5,
            _ => return invalid("--protocol must be 3 (3.1.1) or 5"),
        };
        if args.payload < crate::load::PAYLOAD_HEADER {
            return invalid(
                "--payload must be at least 16 bytes (send time, publisher, sequence number)",
            );
        }
        let secs = |v: f64, name: &str| {
            if (0.0..1e6).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(BenchError::InvalidArgs(format!(
                    "{name} must be a number of seconds"
                )))
            }
        };
        let duration = secs(args.duration, "--duration")?;
        let warmup = secs(args.warmup, "--warmup")?;
        let hold = secs(args.hold, "--hold")?;
        let drain = secs(args.drain, "--drain")?;
        if duration.is_zero() {
            return invalid("--duration must be positive");
        }
        if args.mode != Mode::Connections && args.publishers == 0 {
            return invalid("--publishers must be at least 1");
        }
        let subscribers = match args.mode {
            Mode::Pairs => {
                if args.subscribers.is_some_and(|s| s != args.publishers) {
                    return invalid("pairs mode has one subscriber per publisher");
                }
                args.publishers
            }
            Mode::FanIn | Mode::FanOut => args.subscribers.unwrap_or(1),
            Mode::Connections => 0,
        };
        if matches!(args.mode, Mode::FanIn | Mode::FanOut) && subscribers == 0 {
            return invalid("--subscribers must be at least 1");
        }
        if args.mode == Mode::Connections && args.connections == 0 {
            return invalid("--connections must be at least 1");
        }
        if args.inflight == 0 {
            return invalid("--inflight must be at least 1");
        }
        if args.concurrency == 0 {
            return invalid("--concurrency must be at least 1");
        }
        if args.topic_prefix.is_empty() || args.topic_prefix.contains(['+', '#']) {
            return invalid("--topic-prefix must be a non-empty topic without wildcards");
        }
        Ok(Plan {
            mode: args.mode,
            publishers: if args.mode == Mode::Connections {
                0
            } else {
                args.publishers
            },
            subscribers,
            qos,
            payload: args.payload,
            rate: args.rate,
            duration,
            warmup,
            count: args.count,
            inflight: args.inflight,
            protocol,
            clean_session: args.clean_session,
            session_expiry: args.session_expiry,
            source_addrs: args.source_addrs.clone(),
            connections: args.connections,
            pid: args.pid,
            hold,
            ready_file: args.ready_file.clone(),
            concurrency: args.concurrency,
            subscriber_threads: args.subscriber_threads.clamp(1, 64),
            keep_alive: args.keep_alive,
            drain,
            topic_prefix: args.topic_prefix.clone(),
            progress: !args.quiet,
        })
    }

    /// The local address for the `i`-th connection, if any were given.
    pub(crate) fn source_for(&self, i: usize) -> Option<IpAddr> {
        if self.source_addrs.is_empty() {
            None
        } else {
            Some(self.source_addrs[i % self.source_addrs.len()])
        }
    }
}

/// Resolves `host:port` to the first address.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<SocketAddr, BenchError> {
    resolve_target(&format!("{host}:{port}")).await
}

/// The first address `host:port` resolves to.
pub(crate) async fn resolve_target(target: &str) -> Result<SocketAddr, BenchError> {
    let first = tokio::net::lookup_host(target)
        .await
        .map_err(|e| BenchError::Resolve {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .next();
    first.ok_or(BenchError::Resolve {
        target: target.to_string(),
        reason: "no address".to_string(),
    })
}
