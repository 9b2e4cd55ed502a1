//! `$SYS/broker/...` statistics, published as retained messages.

use std::sync::atomic::Ordering;

use broker::{Broker, StoredMessage, Time};
use bytes::Bytes;
use mqtt_proto::QoS;

use crate::server::NetMetrics;

/// Publishes the current statistics.
pub(crate) fn publish(broker: &mut Broker, metrics: &NetMetrics, now: Time) {
    let s = broker.stats().clone();
    let uptime = (now - broker.started()) / 1000;
    let values: Vec<(&str, String)> = vec![
        (
            "$SYS/broker/version",
            format!("millwright {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        (
            "$SYS/broker/clients/connected",
            broker.connected_count().to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            broker.session_count().to_string(),
        ),
        (
            "$SYS/broker/messages/received",
            s.messages_received.to_string(),
        ),
        ("$SYS/broker/messages/sent", s.messages_sent.to_string()),
        (
            "$SYS/broker/messages/dropped",
            s.messages_dropped.to_string(),
        ),
        (
            "$SYS/broker/messages/expired",
            s.messages_expired.to_string(),
        ),
        (
            "$SYS/broker/publish/bytes/received",
            s.publish_bytes_received.to_string(),
        ),
        (
            "$SYS/broker/bytes/received",
            metrics.bytes_in.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/bytes/sent",
            metrics.bytes_out.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            broker.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            broker.retained_count().to_string(),
        ),
        (
            "$SYS/broker/connections/refused",
            metrics
                .connections_refused
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "$SYS/broker/messages/qos0_dropped",
            metrics.qos0_dropped.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/clients/slow_dropped",
            metrics
                .slow_consumers_dropped
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("$SYS/broker/auth/failures", s.auth_failures.to_string()),
        (
            "$SYS/broker/acl/publish_denied",
            s.publish_denied.to_string(),
        ),
        (
            "$SYS/broker/acl/subscribe_denied",
            s.subscribe_denied.to_string(),
        ),
        (
            "$SYS/broker/publish/rate_limited",
            s.publish_rate_limited.to_string(),
        ),
    ];
    let counter = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    let values = values.into_iter().chain([
        ("$SYS/broker/auth/refused", counter(&metrics.auth_refused)),
        (
            "$SYS/broker/auth/backoff_refused",
            counter(&metrics.auth_backoff_refused),
        ),
        (
            "$SYS/broker/connections/rate_limited",
            counter(&metrics.conn_rate_limited),
        ),
        (
            "$SYS/broker/connections/identity_limit_refused",
            counter(&metrics.principal_limit_refused),
        ),
        (
            "$SYS/broker/tls/handshake_failures",
            counter(&metrics.tls_handshake_failures),
        ),
        (
            "$SYS/broker/platform/taps_dropped",
            counter(&metrics.taps_dropped),
        ),
        (
            "$SYS/broker/platform/rules_dropped",
            counter(&metrics.rules_dropped),
        ),
        (
            "$SYS/broker/platform/streams_dropped",
            counter(&metrics.streams_dropped),
        ),
        (
            "$SYS/broker/clients/client_id_refused",
            s.client_id_refused.to_string(),
        ),
        (
            "$SYS/broker/sessions/persistent",
            broker.persistent_session_count().to_string(),
        ),
        (
            "$SYS/broker/sessions/persistent_refused",
            s.persistent_sessions_refused.to_string(),
        ),
        (
            "$SYS/broker/acl/not_from_device",
            s.not_from_device.to_string(),
        ),
        (
            "$SYS/broker/publish/unacked_closes",
            (s.unacked_closes + metrics.unacked_closes.load(Ordering::Relaxed)).to_string(),
        ),
        (
            "$SYS/broker/publish/publishers_paused",
            s.publishers_paused.to_string(),
        ),
        ("$SYS/broker/publish/acks_held", s.acks_held.to_string()),
        (
            "$SYS/broker/clients/stuck_disconnected",
            s.slow_subscribers_disconnected.to_string(),
        ),
        (
            "$SYS/broker/telemetry/rejected",
            s.telemetry_rejected.to_string(),
        ),
        (
            "$SYS/broker/websocket/upgrade_timeouts",
            crate::ws::ws_refusals().0.to_string(),
        ),
        (
            "$SYS/broker/websocket/oversized_refused",
            crate::ws::ws_refusals().1.to_string(),
        ),
    ]);
    for (topic, value) in values {
        broker.publish_internal(
            StoredMessage {
                topic: topic.into(),
                payload: Bytes::from(value),
                qos: QoS::AtMostOnce,
                retain: true,
                payload_format_indicator: Some(true),
                content_type: None,
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
                expires_at: None,
            },
            now,
        );
    }
}
