//! Every figure the broker and its network layer count, in one table: its
//! `$SYS/broker/...` topic (retained messages, as Mosquitto publishes
//! them), its Prometheus name and help (`GET /metrics`), and how it is read
//! from a [`Snapshot`]. `$SYS`, `/metrics` and `GET /api/system` all read
//! the same snapshot, so they cannot disagree or drift apart.

use std::sync::atomic::{AtomicU64, Ordering};

use broker::{Broker, Stats, Time};

use crate::server::NetMetrics;

/// The broker's and the network layer's counters at one instant (the
/// core's read under its lock, once).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub uptime_s: u64,
    pub connected: u64,
    pub sessions: u64,
    pub persistent_sessions: u64,
    pub subscriptions: u64,
    pub retained: u64,
    pub stats: Stats,
    pub net: NetCounts,
}

/// The network layer's counters, loaded.
#[derive(Debug, Clone, Default)]
pub struct NetCounts {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub qos0_dropped: u64,
    pub slow_consumers_dropped: u64,
    pub conn_rate_limited: u64,
    pub auth_refused: u64,
    pub auth_backoff_refused: u64,
    pub principal_limit_refused: u64,
    pub tls_handshake_failures: u64,
    pub taps_dropped: u64,
    pub rules_dropped: u64,
    pub streams_dropped: u64,
    pub unacked_closes: u64,
    pub ws_upgrade_timeouts: u64,
    pub ws_oversized_refused: u64,
}

impl Snapshot {
    pub(crate) fn read(broker: &Broker, m: &NetMetrics, now: Time) -> Snapshot {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (ws_upgrade_timeouts, ws_oversized_refused) = crate::ws::ws_refusals();
        Snapshot {
            uptime_s: (now - broker.started()) / 1000,
            connected: broker.connected_count() as u64,
            sessions: broker.session_count() as u64,
            persistent_sessions: broker.persistent_session_count() as u64,
            subscriptions: broker.subscription_count() as u64,
            retained: broker.retained_count() as u64,
            stats: broker.stats().clone(),
            net: NetCounts {
                bytes_in: n(&m.bytes_in),
                bytes_out: n(&m.bytes_out),
                connections_accepted: n(&m.connections_accepted),
                connections_refused: n(&m.connections_refused),
                qos0_dropped: n(&m.qos0_dropped),
                slow_consumers_dropped: n(&m.slow_consumers_dropped),
                conn_rate_limited: n(&m.conn_rate_limited),
                auth_refused: n(&m.auth_refused),
                auth_backoff_refused: n(&m.auth_backoff_refused),
                principal_limit_refused: n(&m.principal_limit_refused),
                tls_handshake_failures: n(&m.tls_handshake_failures),
                taps_dropped: n(&m.taps_dropped),
                rules_dropped: n(&m.rules_dropped),
                streams_dropped: n(&m.streams_dropped),
                unacked_closes: n(&m.unacked_closes),
                ws_upgrade_timeouts,
                ws_oversized_refused,
            },
        }
    }
}

/// Whether a figure only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One figure. Figures sharing a Prometheus name are one labelled family
/// (`label` gives the label and this figure's value of it).
pub struct Figure {
    /// Its `$SYS/broker/...` topic, if it is published there.
    pub sys: Option<&'static str>,
    pub prom: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub label: Option<(&'static str, &'static str)>,
    pub read: fn(&Snapshot) -> u64,
}

const fn f(
    sys: Option<&'static str>,
    prom: &'static str,
    kind: Kind,
    help: &'static str,
    read: fn(&Snapshot) -> u64,
) -> Figure {
    Figure {
        sys,
        prom,
        help,
        kind,
        label: None,
        read,
    }
}

/// A drop counter of one bounded queue: `millwright_queue_dropped_total`
/// labelled with the queue's name.
const fn drop_of(
    sys: Option<&'static str>,
    queue: &'static str,
    read: fn(&Snapshot) -> u64,
) -> Figure {
    Figure {
        sys,
        prom: "millwright_queue_dropped_total",
        help: "Items a bounded queue dropped or refused because it was full, by queue.",
        kind: Kind::Counter,
        label: Some(("queue", queue)),
        read,
    }
}

use Kind::{Counter, Gauge};

/// Every figure, in `$SYS` publication order.
#[rustfmt::skip]
pub const FIGURES: &[Figure] = &[
    f(Some("$SYS/broker/clients/connected"), "millwright_mqtt_connections", Gauge, "MQTT connections open now.", |s| s.connected),
    f(Some("$SYS/broker/clients/total"), "millwright_mqtt_sessions", Gauge, "MQTT sessions (connected, and disconnected persistent ones).", |s| s.sessions),
    f(Some("$SYS/broker/messages/received"), "millwright_mqtt_messages_received_total", Counter, "PUBLISH packets received from clients.", |s| s.stats.messages_received),
    f(Some("$SYS/broker/messages/sent"), "millwright_mqtt_messages_sent_total", Counter, "PUBLISH packets sent to clients.", |s| s.stats.messages_sent),
    f(Some("$SYS/broker/messages/dropped"), "millwright_mqtt_messages_dropped_total", Counter, "Messages the broker dropped (refused over a quota, or QoS 0 to a full session queue).", |s| s.stats.messages_dropped),
    f(Some("$SYS/broker/messages/expired"), "millwright_mqtt_messages_expired_total", Counter, "Queued messages whose message expiry interval ran out.", |s| s.stats.messages_expired),
    f(Some("$SYS/broker/publish/bytes/received"), "millwright_mqtt_publish_received_bytes_total", Counter, "Payload bytes of PUBLISH packets received.", |s| s.stats.publish_bytes_received),
    f(Some("$SYS/broker/bytes/received"), "millwright_mqtt_received_bytes_total", Counter, "Bytes read from MQTT connections (TCP, TLS and WebSocket).", |s| s.net.bytes_in),
    f(Some("$SYS/broker/bytes/sent"), "millwright_mqtt_sent_bytes_total", Counter, "Bytes written to MQTT connections (TCP, TLS and WebSocket).", |s| s.net.bytes_out),
    f(Some("$SYS/broker/subscriptions/count"), "millwright_mqtt_subscriptions", Gauge, "Subscriptions of all sessions.", |s| s.subscriptions),
    f(Some("$SYS/broker/retained messages/count"), "millwright_mqtt_retained_messages", Gauge, "Retained messages stored.", |s| s.retained),
    f(Some("$SYS/broker/connections/refused"), "millwright_mqtt_connections_refused_total", Counter, "Connections refused at accept (over max_connections).", |s| s.net.connections_refused),
    drop_of(Some("$SYS/broker/messages/qos0_dropped"), "outbound_qos0", |s| s.net.qos0_dropped),
    f(Some("$SYS/broker/clients/slow_dropped"), "millwright_mqtt_slow_clients_dropped_total", Counter, "Clients disconnected because their outbound queue was full.", |s| s.net.slow_consumers_dropped),
    f(Some("$SYS/broker/auth/failures"), "millwright_mqtt_auth_failures_total", Counter, "CONNECTs refused by the password file or ACLs of the core.", |s| s.stats.auth_failures),
    f(Some("$SYS/broker/acl/publish_denied"), "millwright_mqtt_publish_denied_total", Counter, "PUBLISH packets refused by access control.", |s| s.stats.publish_denied),
    f(Some("$SYS/broker/acl/subscribe_denied"), "millwright_mqtt_subscribe_denied_total", Counter, "Subscriptions refused by access control.", |s| s.stats.subscribe_denied),
    f(Some("$SYS/broker/publish/rate_limited"), "millwright_mqtt_publish_rate_limited_total", Counter, "PUBLISH packets refused over a client's rate limit.", |s| s.stats.publish_rate_limited),
    f(Some("$SYS/broker/auth/refused"), "millwright_mqtt_auth_refused_total", Counter, "CONNECTs refused by the authenticator (bad or unknown credentials).", |s| s.net.auth_refused),
    f(Some("$SYS/broker/auth/backoff_refused"), "millwright_mqtt_auth_backoff_refused_total", Counter, "CONNECTs refused unchecked while their address and user back off.", |s| s.net.auth_backoff_refused),
    f(Some("$SYS/broker/connections/rate_limited"), "millwright_mqtt_connections_rate_limited_total", Counter, "Connections closed over the per-address connection rate.", |s| s.net.conn_rate_limited),
    f(Some("$SYS/broker/connections/identity_limit_refused"), "millwright_mqtt_identity_limit_refused_total", Counter, "CONNECTs refused over max_connections_per_identity.", |s| s.net.principal_limit_refused),
    f(Some("$SYS/broker/tls/handshake_failures"), "millwright_tls_handshake_failures_total", Counter, "TLS handshakes that failed (MQTT over TLS and secure WebSocket).", |s| s.net.tls_handshake_failures),
    drop_of(Some("$SYS/broker/platform/taps_dropped"), "platform_events", |s| s.net.taps_dropped),
    drop_of(Some("$SYS/broker/platform/rules_dropped"), "rules", |s| { s.net.rules_dropped }),
    drop_of(Some("$SYS/broker/platform/streams_dropped"), "streams", |s| s.net.streams_dropped),
    f(Some("$SYS/broker/clients/client_id_refused"), "millwright_mqtt_client_id_refused_total", Counter, "CONNECTs refused because the client id belongs to another principal.", |s| s.stats.client_id_refused),
    f(Some("$SYS/broker/sessions/persistent"), "millwright_mqtt_persistent_sessions", Gauge, "Persistent sessions (session expiry interval above 0).", |s| s.persistent_sessions),
    f(Some("$SYS/broker/sessions/persistent_refused"), "millwright_mqtt_persistent_sessions_refused_total", Counter, "Persistent sessions refused over the per-principal or total cap.", |s| s.stats.persistent_sessions_refused),
    f(Some("$SYS/broker/acl/not_from_device"), "millwright_mqtt_not_from_device_total", Counter, "Messages on a device's tree published by someone else (routed only, never acted on).", |s| s.stats.not_from_device),
    f(Some("$SYS/broker/publish/unacked_closes"), "millwright_mqtt_unacked_closes_total", Counter, "v3.1.1 publishers disconnected instead of acknowledging a message that was not kept.", |s| s.stats.unacked_closes + s.net.unacked_closes),
    f(Some("$SYS/broker/publish/publishers_paused"), "millwright_mqtt_publishers_paused_total", Counter, "Times a publisher's reading was paused for a full subscriber queue.", |s| s.stats.publishers_paused),
    f(Some("$SYS/broker/publish/acks_held"), "millwright_mqtt_acks_held_total", Counter, "Acknowledgements held back while a subscriber queue was full.", |s| s.stats.acks_held),
    f(Some("$SYS/broker/clients/stuck_disconnected"), "millwright_mqtt_stuck_subscribers_disconnected_total", Counter, "Subscribers disconnected for holding publishers back too long.", |s| s.stats.slow_subscribers_disconnected),
    f(Some("$SYS/broker/telemetry/rejected"), "millwright_telemetry_messages_refused_total", Counter, "Device telemetry messages refused by the ingest stage (0x99).", |s| s.stats.telemetry_rejected),
    f(Some("$SYS/broker/websocket/upgrade_timeouts"), "millwright_websocket_upgrade_timeouts_total", Counter, "WebSocket upgrades that did not complete in time.", |s| s.net.ws_upgrade_timeouts),
    f(Some("$SYS/broker/websocket/oversized_refused"), "millwright_websocket_oversized_refused_total", Counter, "WebSocket frames or messages refused over the size limit.", |s| s.net.ws_oversized_refused),
    // Not in `$SYS`.
    f(None, "millwright_uptime_seconds", Gauge, "Seconds since the broker started.", |s| s.uptime_s),
    f(None, "millwright_mqtt_connections_accepted_total", Counter, "TCP, TLS and WebSocket connections accepted.", |s| s.net.connections_accepted),
    f(None, "millwright_mqtt_connects_total", Counter, "CONNECTs accepted.", |s| s.stats.connects),
    f(None, "millwright_mqtt_takeovers_total", Counter, "Sessions taken over by a new connection with the same client id.", |s| s.stats.takeovers),
    f(None, "millwright_mqtt_protocol_errors_total", Counter, "Connections closed for a protocol violation.", |s| s.stats.protocol_errors),
    f(None, "millwright_mqtt_keepalive_timeouts_total", Counter, "Connections closed for silence past their keep-alive.", |s| s.stats.keepalive_timeouts),
    f(None, "millwright_mqtt_wills_published_total", Counter, "Will messages published.", |s| s.stats.wills_published),
    f(None, "millwright_mqtt_sessions_expired_total", Counter, "Persistent sessions expired.", |s| s.stats.sessions_expired),
    f(None, "millwright_telemetry_messages_total", Counter, "Device telemetry messages taken for storage.", |s| s.stats.telemetry_messages),
    f(None, "millwright_telemetry_points_total", Counter, "Telemetry points taken for storage from device messages.", |s| s.stats.telemetry_points),
];

/// Adds every figure of `s`, and the commit histograms, to an exposition.
pub fn collect(s: &Snapshot, commits: &crate::CommitMetrics, out: &mut metrics::Exposition) {
    let mut i = 0;
    while i < FIGURES.len() {
        let first = &FIGURES[i];
        // A family: consecutive or not, every figure with this name.
        let family: Vec<&Figure> = FIGURES.iter().filter(|g| g.prom == first.prom).collect();
        let seen_before = FIGURES[..i].iter().any(|g| g.prom == first.prom);
        i += 1;
        if seen_before {
            continue;
        }
        let label: Vec<&str> = first.label.map(|(k, _)| k).into_iter().collect();
        let samples = family.iter().map(|g| {
            (
                g.label.map(|(_, v)| v).into_iter().collect::<Vec<_>>(),
                (g.read)(s),
            )
        });
        match first.kind {
            Kind::Counter => out.counters(first.prom, first.help, &label, samples),
            Kind::Gauge => out.gauges(
                first.prom,
                first.help,
                &label,
                samples.map(|(l, v)| (l, v as f64)),
            ),
        }
    }
    out.histogram(&commits.seconds);
    out.histogram(&commits.ops);
    out.histogram(&commits.points);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_renders_and_families_agree() {
        let mut topics = std::collections::HashSet::new();
        for f in FIGURES {
            if let Some(t) = f.sys {
                assert!(topics.insert(t), "{t} published twice");
            }
            assert!(f.prom.starts_with("millwright_"), "{}", f.prom);
            assert_eq!(
                f.kind == Kind::Counter,
                f.prom.ends_with("_total"),
                "{}: counters and only counters end in _total",
                f.prom
            );
            for g in FIGURES.iter().filter(|g| g.prom == f.prom) {
                assert_eq!((g.kind, g.help), (f.kind, f.help), "{}", f.prom);
                assert_eq!(g.label.map(|l| l.0), f.label.map(|l| l.0), "{}", f.prom);
            }
        }
        let snap = Snapshot {
            connected: 3,
            stats: Stats {
                messages_received: 41,
                ..Stats::default()
            },
            net: NetCounts {
                taps_dropped: 5,
                ..NetCounts::default()
            },
            ..Snapshot::default()
        };
        let mut e = metrics::Exposition::new();
        collect(&snap, &crate::CommitMetrics::default(), &mut e);
        let text = e.render().expect("every figure renders");
        assert!(text.contains("\nmillwright_mqtt_connections 3\n"), "{text}");
        assert!(
            text.contains("\nmillwright_mqtt_messages_received_total 41\n"),
            "{text}"
        );
        assert!(
            text.contains("millwright_queue_dropped_total{queue=\"platform_events\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("millwright_queue_dropped_total{queue=\"rules\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE millwright_persist_commit_seconds histogram"),
            "{text}"
        );
    }
}
