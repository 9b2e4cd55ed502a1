//! The API's live streams over the broker's stream taps.

/// Live streams for `GET /api/stream`, fed by the broker through a tap
/// of `http.stream_queue` messages per stream.
pub struct BrokerStreams(pub broker_net::ServerHandle, pub usize);

/// Ends the forwarding task (and with it the broker subscription).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl api::StreamSource for BrokerStreams {
    fn subscribe(&self, filters: Vec<String>, sink: api::StreamSink) -> api::StreamGuard {
        let mut sub = self.0.subscribe_stream(filters, self.1);
        let task = tokio::spawn(async move {
            while let Some((topic, payload)) = sub.rx.recv().await {
                if !sink.offer(&topic, payload) {
                    break;
                }
            }
        });
        Box::new(AbortOnDrop(task))
    }
}

/// `GET /api/system`'s broker figures.
pub struct BrokerSystem(pub broker_net::ServerHandle);

impl api::SystemInfo for BrokerSystem {
    fn figures(&self) -> serde_json::Value {
        let f = self.0.figures();
        let s = &f.stats;
        serde_json::json!({
            "uptime_s": f.uptime_s,
            "connected": f.connected,
            "sessions": f.sessions,
            "subscriptions": f.subscriptions,
            "retained": f.retained,
            "messages_received": s.messages_received,
            "messages_sent": s.messages_sent,
            "messages_dropped": s.messages_dropped,
            "publish_denied": s.publish_denied,
            "subscribe_denied": s.subscribe_denied,
            "publish_rate_limited": s.publish_rate_limited,
            "telemetry_points": s.telemetry_points,
            "bytes_in": f.bytes_in,
            "bytes_out": f.bytes_out,
            "connections_refused": f.connections_refused,
            "qos0_dropped": f.qos0_dropped,
            "slow_consumers_dropped": f.slow_consumers_dropped,
            "auth_refused": f.auth_refused,
            "tls_handshake_failures": f.tls_handshake_failures,
            "platform_events_dropped": f.platform_events_dropped,
            "rules_dropped": f.rules_dropped,
            "streams_dropped": f.streams_dropped,
            "telemetry_rejected": s.telemetry_rejected,
            "client_id_refused": s.client_id_refused,
            "persistent_sessions_refused": s.persistent_sessions_refused,
            "not_from_device": s.not_from_device,
            "unacked_closes": s.unacked_closes,
            "publishers_paused": s.publishers_paused,
            "acks_held": s.acks_held,
            "stuck_subscribers_disconnected": s.slow_subscribers_disconnected,
        })
    }
}

/// `GET /health/ready`'s broker check: accepting work, last commit good.
pub struct BrokerReady(pub broker_net::ServerHandle);

impl api::ReadyCheck for BrokerReady {
    fn check(&self) -> Result<(), String> {
        self.0.readiness()
    }
}
