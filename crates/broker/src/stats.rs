//! Counters kept by the broker core, published under `$SYS/broker/...` and
//! as metrics.

/// Monotonic counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connects: u64,
    pub auth_failures: u64,
    pub takeovers: u64,
    pub protocol_errors: u64,
    pub keepalive_timeouts: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub messages_expired: u64,
    pub publish_bytes_received: u64,
    pub publish_denied: u64,
    pub subscribe_denied: u64,
    /// PUBLISH refused because the connection exceeded its rate limit.
    pub publish_rate_limited: u64,
    pub wills_published: u64,
    pub sessions_expired: u64,
    /// Telemetry messages accepted for storage, and their points.
    pub telemetry_messages: u64,
    pub telemetry_points: u64,
    /// Telemetry messages refused for a bad payload.
    pub telemetry_rejected: u64,
    /// CONNECTs refused because their client id belongs to another
    /// principal.
    pub client_id_refused: u64,
    /// CONNECTs refused because the persistent-session cap was reached.
    pub persistent_sessions_refused: u64,
    /// Telemetry (or other device-tree) messages the platform services
    /// ignored because their publisher was not the device itself.
    pub not_from_device: u64,
    /// v3.1.1 connections closed instead of acknowledging a QoS 1/2
    /// message that was not kept.
    pub unacked_closes: u64,
    /// Publishers paused by a slow subscriber (each pause counted once).
    pub publishers_paused: u64,
    /// Acknowledgements held while their publisher was paused.
    pub acks_held: u64,
    /// Subscribers disconnected for staying over their queue limit.
    pub slow_subscribers_disconnected: u64,
}
