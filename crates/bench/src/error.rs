//! The crate's error type.

use mqtt_client::ClientError;

/// Why a benchmark run could not be done (failures during a run are
/// counted in the report instead, where that makes sense).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options do not describe a run.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The broker's host name did not resolve.
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    /// A client of a load run could not connect or subscribe; the load
    /// would not be the one asked for, so the run stops.
    #[error("{role} {index} failed: {source}")]
    Client {
        role: &'static str,
        index: usize,
        #[source]
        source: ClientError,
    },
    /// An ingest device could not connect (a refused CONNACK names its
    /// reason: a wrong token, an unknown device, ...).
    #[error("device {device} could not connect: {source}")]
    DeviceConnect {
        device: String,
        #[source]
        source: ClientError,
    },
    /// The broker refused messages of an ingest run (PUBACK reason code
    /// 0x80 or above): the run measured nothing valid.
    #[error("{count} message(s) refused; the first with reason {reason} (device {device})")]
    Refused {
        count: u64,
        reason: String,
        device: String,
    },
    /// The broker refused a subscription.
    #[error("subscription to {filter} refused with reason {reason}")]
    SubscribeRefused { filter: String, reason: String },
    /// The broker's memory could not be read from /proc.
    #[error("cannot read VmRSS of pid {pid}: {reason}")]
    BrokerMemory { pid: u32, reason: String },
    /// An ingest driver's data file is missing or malformed.
    #[error("data file: {0}")]
    Data(String),
    /// A null server could not decode or encode an MQTT packet.
    #[error("MQTT codec: {0}")]
    Codec(String),
    /// Writing the ready file or a report, or a socket, failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A worker task panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Task(String),
    /// A latency histogram could not be created or merged.
    #[error("latency histogram: {0}")]
    Histogram(String),
    /// The JSON report could not be rendered.
    #[error("cannot render the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}
