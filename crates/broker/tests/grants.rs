//! Clients authenticated outside the core (device registry, certificates,
//! claim credentials): their grants confine them, limit their rate, let a
//! revocation drop them, and platform taps see what they publish.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{
    Connect, ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions,
};

use broker::{
    AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Grant, GrantRule, Output, RateLimits,
    Time,
};

fn device_grant(id: &str, limits: RateLimits) -> Arc<Grant> {
    Arc::new(Grant {
        principal: id.into(),
        rules: vec![GrantRule {
            filter: format!("devices/{id}/#"),
            read: true,
            write: true,
        }],
        limits,
    })
}

fn claim_grant(client_id: &str) -> Arc<Grant> {
    Arc::new(Grant {
        principal: "claim:c1".into(),
        rules: vec![
            GrantRule {
                filter: format!("$provision/{client_id}/request"),
                read: false,
                write: true,
            },
            GrantRule {
                filter: format!("$provision/{client_id}/+"),
                read: true,
                write: false,
            },
        ],
        limits: RateLimits::default(),
    })
}

struct Sim {
    b: Broker,
    now: Time,
}

impl Sim {
    fn new() -> Sim {
        let now = Time(1_700_000_000_000);
        // No anonymous access: only granted clients get in.
        Sim {
            b: Broker::new(BrokerConfig::default(), AccessControl::new(false), now),
            now,
        }
    }

    fn connect(&mut self, conn: u64, id: &str, v5: bool, grant: Option<Arc<Grant>>) -> Vec<Output> {
        let c = Connect {
            protocol: if v5 { Protocol::V5 } else { Protocol::V311 },
            clean_start: true,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: Some(id.into()),
            password: None,
            properties: ConnectProperties::default(),
        };
        let info = ConnectInfo {
            peer: "127.0.0.1:1".into(),
            grant,
        };
        self.b.connect(ConnId(conn), c, &info, self.now);
        self.b.drain_outputs().collect()
    }

    fn handle(&mut self, conn: u64, p: Packet) -> Vec<Output> {
        self.b.handle(ConnId(conn), p, self.now);
        self.b.drain_outputs().collect()
    }

    fn subscribe(&mut self, conn: u64, filter: &str) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: filter.into(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    },
                }],
            }),
        )
    }

    fn publish(&mut self, conn: u64, topic: &str, packet_id: u16) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.into(),
                packet_id,
                payload: Bytes::from_static(b"{}"),
                ..Default::default()
            }),
        )
    }
}

fn connack(out: &[Output]) -> ReasonCode {
    out.iter()
        .find_map(|o| match o {
            Output::Send {
                packet: Packet::ConnAck(a),
                ..
            } => Some(a.reason_code),
            _ => None,
        })
        .expect("a CONNACK")
}

fn puback(out: &[Output]) -> ReasonCode {
    out.iter()
        .find_map(|o| match o {
            Output::Send {
                packet: Packet::PubAck(a),
                ..
            } => Some(a.reason_code),
            _ => None,
        })
        .expect("a PUBACK")
}

fn suback(out: &[Output]) -> Vec<ReasonCode> {
    out.iter()
        .find_map(|o| match o {
            Output::Send {
                packet: Packet::SubAck(a),
                ..
            } => Some(a.reason_codes.clone()),
            _ => None,
        })
        .expect("a SUBACK")
}

#[test]
fn grant_replaces_password_check_and_confines() {
    let mut sim = Sim::new();
    // Without a grant (and no anonymous access) the client is refused.
    assert_eq!(
        connack(&sim.connect(1, "d0", true, None)),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(&sim.connect(
            2,
            "d1",
            true,
            Some(device_grant("d1", RateLimits::default()))
        )),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(&sim.connect(
            3,
            "d2",
            false,
            Some(device_grant("d2", RateLimits::default()))
        )),
        ReasonCode::SUCCESS
    );
    // Own tree: allowed; another device's: refused (v5 0x87 in the PUBACK,
    // v3.1.1 acknowledged but dropped).
    assert_eq!(
        puback(&sim.publish(2, "devices/d1/telemetry", 1)),
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        puback(&sim.publish(2, "devices/d2/telemetry", 2)),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        suback(&sim.subscribe(2, "devices/d2/commands/#")),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        suback(&sim.subscribe(2, "devices/+/commands/#")),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        suback(&sim.subscribe(2, "devices/d1/commands/#")),
        vec![ReasonCode(1)]
    );
    // v3.1.1: SUBACK failure is 0x80.
    assert_eq!(
        suback(&sim.subscribe(3, "devices/d1/#")),
        vec![ReasonCode(0x80)]
    );
    let out = sim.publish(3, "devices/d1/commands/x", 7);
    // Dropped: d1 gets nothing.
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Send {
            conn: ConnId(2),
            packet: Packet::Publish(_),
            ..
        }
    )));
    assert_eq!(sim.b.stats().publish_denied, 2);
    assert_eq!(sim.b.stats().subscribe_denied, 3);
}

#[test]
fn rate_limit_refuses_with_quota_exceeded() {
    let mut sim = Sim::new();
    let limits = RateLimits {
        messages_per_sec: 3,
        bytes_per_sec: 0,
    };
    sim.connect(1, "d1", true, Some(device_grant("d1", limits)));
    let codes: Vec<ReasonCode> = (1..=5)
        .map(|i| puback(&sim.publish(1, "devices/d1/t", i)))
        .collect();
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == ReasonCode::QUOTA_EXCEEDED)
            .count(),
        2
    );
    sim.now = sim.now.plus_ms(1000);
    assert_ne!(
        puback(&sim.publish(1, "devices/d1/t", 9)),
        ReasonCode::QUOTA_EXCEEDED
    );
    assert_eq!(sim.b.stats().publish_rate_limited, 2);
}

#[test]
fn disconnect_principal_drops_its_connections_only() {
    let mut sim = Sim::new();
    sim.connect(
        1,
        "d1",
        true,
        Some(device_grant("d1", RateLimits::default())),
    );
    sim.connect(
        2,
        "d1-second",
        false,
        Some(device_grant("d1", RateLimits::default())),
    );
    sim.connect(
        3,
        "d2",
        true,
        Some(device_grant("d2", RateLimits::default())),
    );
    let now = sim.now;
    assert_eq!(
        sim.b
            .disconnect_principal("d1", ReasonCode::NOT_AUTHORIZED, now),
        2
    );
    let out: Vec<Output> = sim.b.drain_outputs().collect();
    assert!(out.iter().any(|o| matches!(o, Output::Send { conn: ConnId(1), packet: Packet::Disconnect(d), .. } if d.reason_code == ReasonCode::NOT_AUTHORIZED)));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn: ConnId(1) })));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Close { conn: ConnId(2) })));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Close { conn: ConnId(3) })));
    assert_eq!(sim.b.connected_count(), 1);
}

#[test]
fn provisioning_topics_are_private_and_tapped() {
    let mut sim = Sim::new();
    sim.b.add_tap("$provision/+/request");
    sim.connect(1, "serial-1", true, Some(claim_grant("serial-1")));
    sim.connect(2, "serial-2", true, Some(claim_grant("serial-2")));
    assert_eq!(
        suback(&sim.subscribe(1, "$provision/serial-1/+")),
        vec![ReasonCode(1)]
    );
    // Nobody reads another client's exchange, even with a wildcard.
    assert_eq!(
        suback(&sim.subscribe(2, "$provision/serial-1/+")),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        suback(&sim.subscribe(2, "$provision/+/accepted")),
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    // A claim credential reaches nothing else.
    assert_eq!(
        puback(&sim.publish(1, "devices/serial-1/telemetry", 1)),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        puback(&sim.publish(1, "$provision/serial-2/request", 2)),
        ReasonCode::NOT_AUTHORIZED
    );
    let out = sim.publish(1, "$provision/serial-1/request", 3);
    let tap = out
        .iter()
        .find_map(|o| match o {
            Output::Tap(t) => Some(t),
            _ => None,
        })
        .expect("tapped");
    assert_eq!(&*tap.client_id, "serial-1");
    assert_eq!(tap.principal.as_deref(), Some("claim:c1"));
    assert_eq!(&*tap.message.topic, "$provision/serial-1/request");
    // A device grant does not reach provisioning topics.
    sim.connect(
        3,
        "d1",
        true,
        Some(device_grant("d1", RateLimits::default())),
    );
    assert_eq!(
        puback(&sim.publish(3, "$provision/d1/request", 4)),
        ReasonCode::NOT_AUTHORIZED
    );
}
