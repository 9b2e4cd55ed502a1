//! Sans-io tests of who may be whom: a client id belongs to one principal,
//! the devices' tree belongs to the devices, the platform acts only on what
//! a device published itself, persistent sessions are capped, and a v3.1.1
//! publisher is never acknowledged for a message that was not kept.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{
    Ack, ConnAck, Connect, ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};

use broker::{
    AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Grant, GrantRule, Output, PersistOp,
    Time,
};

const NOW: Time = Time(1_700_000_000_000);

/// Who connects.
#[derive(Clone, Copy)]
enum Who {
    Device(&'static str),
    User(&'static str),
    Anonymous,
}

fn grant(device: &str, extra: &[&str]) -> Arc<Grant> {
    let mut rules = vec![GrantRule {
        filter: format!("devices/{device}/#"),
        read: true,
        write: true,
    }];
    for f in extra {
        rules.push(GrantRule {
            filter: f.to_string(),
            read: true,
            write: true,
        });
    }
    Arc::new(Grant {
        principal: device.into(),
        rules,
        limits: Default::default(),
    })
}

fn connect_as(
    b: &mut Broker,
    conn: u64,
    who: Who,
    client_id: &str,
    v5: bool,
    clean: bool,
    extra: &[&str],
) -> Vec<Output> {
    let (username, g) = match who {
        Who::Device(d) => (Some(d.into()), Some(grant(d, extra))),
        Who::User(u) => (Some(u.into()), None),
        Who::Anonymous => (None, None),
    };
    let c = Connect {
        protocol: if v5 { Protocol::V5 } else { Protocol::V311 },
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username,
        password: None,
        properties: ConnectProperties {
            session_expiry_interval: (v5 && !clean).then_some(3600),
            ..Default::default()
        },
    };
    let info = ConnectInfo {
        peer: "127.0.0.1:1".into(),
        grant: g,
    };
    b.connect(ConnId(conn), c, &info, NOW);
    b.drain_outputs().collect()
}

fn handle(b: &mut Broker, conn: u64, p: Packet) -> Vec<Output> {
    b.handle(ConnId(conn), p, NOW);
    b.drain_outputs().collect()
}

fn publish(b: &mut Broker, conn: u64, topic: &str, payload: &'static [u8]) -> Vec<Output> {
    handle(
        b,
        conn,
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: 7,
            payload: Bytes::from_static(payload),
            ..Default::default()
        }),
    )
}

fn subscribe(b: &mut Broker, conn: u64, filter: &str) -> Vec<Output> {
    handle(
        b,
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

fn sent_to(out: &[Output], conn: u64) -> Vec<&Packet> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send {
                conn: c, packet, ..
            } if *c == ConnId(conn) => Some(packet),
            _ => None,
        })
        .collect()
}

fn connack(out: &[Output], conn: u64) -> &ConnAck {
    sent_to(out, conn)
        .into_iter()
        .find_map(|p| match p {
            Packet::ConnAck(c) => Some(c),
            _ => None,
        })
        .expect("no CONNACK")
}

fn closed(out: &[Output], conn: u64) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)))
}

fn broker() -> Broker {
    Broker::new(BrokerConfig::default(), AccessControl::new(true), NOW)
}

#[test]
fn another_device_cannot_resume_or_take_over_a_session() {
    for v5 in [true, false] {
        let mut b = broker();
        let out = connect_as(&mut b, 1, Who::Device("d1"), "d1", v5, false, &[]);
        assert_eq!(connack(&out, 1).reason_code, ReasonCode::SUCCESS);
        // d2 uses d1's client id with clean start = false.
        let out = connect_as(&mut b, 2, Who::Device("d2"), "d1", v5, false, &[]);
        let ack = connack(&out, 2);
        assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        assert!(!ack.session_present);
        assert!(closed(&out, 2));
        // The real device is untouched: not closed, still connected.
        assert!(!closed(&out, 1));
        assert!(sent_to(&out, 1).is_empty());
        assert_eq!(b.connected_count(), 1);
        assert_eq!(b.stats().client_id_refused, 1);
        // The device itself takes its session over as before.
        let out = connect_as(&mut b, 3, Who::Device("d1"), "d1", v5, false, &[]);
        assert!(connack(&out, 3).session_present);
        assert!(closed(&out, 1));
    }
}

#[test]
fn anonymous_users_and_devices_are_different_principals() {
    let mut b = broker();
    connect_as(&mut b, 1, Who::Anonymous, "shared-id", true, false, &[]);
    for (conn, who) in [(2, Who::Device("d1")), (3, Who::User("alice"))] {
        let out = connect_as(&mut b, conn, who, "shared-id", true, true, &[]);
        assert_eq!(
            connack(&out, conn).reason_code,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
        );
        assert!(!closed(&out, 1));
    }
    // Another anonymous client is the same (anonymous) principal.
    let out = connect_as(&mut b, 4, Who::Anonymous, "shared-id", true, false, &[]);
    assert!(connack(&out, 4).session_present);
}

#[test]
fn a_restored_session_keeps_its_owner() {
    let mut b = broker();
    let out = connect_as(&mut b, 1, Who::Device("d1"), "d1", true, false, &[]);
    let put = out
        .iter()
        .find_map(|o| match o {
            Output::Persist(PersistOp::SessionPut { owner, .. }) => Some(owner.clone()),
            _ => None,
        })
        .expect("no SessionPut");
    assert_eq!(put.as_deref(), Some("g:d1"));
    let state = broker::RestoredState {
        sessions: vec![broker::RestoredSession {
            client_id: "d1".into(),
            protocol_level: 5,
            expiry_interval: 3600,
            expires_at: None,
            subscriptions: vec![],
            owner: put,
            messages: vec![],
            incoming_qos2: vec![],
        }],
        retained: vec![],
    };
    let mut b = broker();
    b.restore(state, NOW);
    let out = connect_as(&mut b, 1, Who::Device("d2"), "d1", true, false, &[]);
    assert_eq!(
        connack(&out, 1).reason_code,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    let out = connect_as(&mut b, 2, Who::Device("d1"), "d1", true, false, &[]);
    assert!(connack(&out, 2).session_present);
}

#[test]
fn persistent_sessions_are_capped_per_principal_and_in_total() {
    for v5 in [true, false] {
        let mut b = capped();
        assert_eq!(
            connack(
                &connect_as(&mut b, 1, Who::Device("d1"), "d1", v5, false, &[]),
                1
            )
            .reason_code,
            ReasonCode::SUCCESS
        );
        assert_eq!(
            connack(
                &connect_as(&mut b, 2, Who::Device("d1"), "d1-b", v5, false, &[]),
                2
            )
            .reason_code,
            ReasonCode::SUCCESS
        );
        let out = connect_as(&mut b, 3, Who::Device("d1"), "d1-c", v5, false, &[]);
        assert_eq!(connack(&out, 3).reason_code, ReasonCode::QUOTA_EXCEEDED);
        assert_eq!(ReasonCode::QUOTA_EXCEEDED.to_v311_connack(), 3);
        // Resuming one's own session takes no new slot; a clean session
        // needs none.
        let out = connect_as(&mut b, 4, Who::Device("d1"), "d1", v5, false, &[]);
        assert!(connack(&out, 4).session_present);
        let out = connect_as(&mut b, 5, Who::Device("d1"), "d1-d", v5, true, &[]);
        assert_eq!(connack(&out, 5).reason_code, ReasonCode::SUCCESS);
        assert_eq!(b.persistent_session_count(), 2);
        assert_eq!(b.stats().persistent_sessions_refused, 1);
    }
    // In total: four principals of two sessions each hit the cap of five.
    let mut b = capped();
    let mut n = 0;
    let mut refused = 0;
    for (i, d) in ["a", "b", "c", "e"].iter().enumerate() {
        for k in 0..2 {
            let conn = (i * 10 + k + 1) as u64;
            let out = connect_as(
                &mut b,
                conn,
                Who::Device(d),
                &format!("{d}-{k}"),
                true,
                false,
                &[],
            );
            if connack(&out, conn).reason_code == ReasonCode::SUCCESS {
                n += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert_eq!((n, refused), (5, 3));
    assert_eq!(b.persistent_session_count(), 5);
}

fn capped() -> Broker {
    let config = BrokerConfig {
        max_persistent_sessions: 5,
        max_persistent_sessions_per_principal: 2,
        ..BrokerConfig::default()
    };
    Broker::new(config, AccessControl::new(true), NOW)
}

#[test]
fn the_device_tree_belongs_to_devices() {
    let mut b = broker();
    connect_as(&mut b, 1, Who::Device("d1"), "d1", true, true, &[]);
    connect_as(&mut b, 2, Who::Anonymous, "anon", true, true, &[]);
    connect_as(&mut b, 3, Who::Device("d2"), "d2", true, true, &[]);
    // Anonymous (no ACL file: everything else allowed) may neither publish
    // into nor subscribe to a device's tree.
    let out = publish(&mut b, 2, "devices/d1/commands/x", b"forged");
    assert!(matches!(
        sent_to(&out, 2)[..],
        [Packet::PubAck(Ack {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..
        })]
    ));
    let out = subscribe(&mut b, 2, "devices/d1/#");
    assert!(matches!(
        sent_to(&out, 2)[..],
        [Packet::SubAck(s)] if s.reason_codes == [ReasonCode::NOT_AUTHORIZED]
    ));
    // A wide filter is granted, but carries nothing from the devices' tree.
    subscribe(&mut b, 2, "#");
    subscribe(&mut b, 3, "devices/d2/#");
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert!(sent_to(&out, 2)
        .iter()
        .all(|p| !matches!(p, Packet::Publish(_))));
    let out = publish(&mut b, 2, "plain/topic", b"x");
    assert!(sent_to(&out, 2)
        .iter()
        .any(|p| matches!(p, Packet::Publish(_))));
    // Another device cannot reach d1's tree either.
    let out = publish(&mut b, 3, "devices/d1/commands/x", b"forged");
    assert!(matches!(
        sent_to(&out, 3)[..],
        [Packet::PubAck(Ack {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..
        })]
    ));
}

#[test]
fn an_explicit_acl_rule_grants_an_integration_read_access() {
    let acl = AccessControl::new(true)
        .with_acl_file("topic readwrite #\nuser integ\ntopic read devices/+/telemetry\n")
        .unwrap();
    let mut b = Broker::new(BrokerConfig::default(), acl, NOW);
    connect_as(&mut b, 1, Who::Device("d1"), "d1", true, true, &[]);
    connect_as(&mut b, 2, Who::User("integ"), "integ", true, true, &[]);
    connect_as(&mut b, 3, Who::User("other"), "other", true, true, &[]);
    let out = subscribe(&mut b, 2, "devices/+/telemetry");
    assert!(matches!(sent_to(&out, 2)[..], [Packet::SubAck(s)] if !s.reason_codes[0].is_error()));
    // `topic readwrite #` does not reach into the devices' tree.
    let out = subscribe(&mut b, 3, "devices/+/telemetry");
    assert!(matches!(sent_to(&out, 3)[..], [Packet::SubAck(s)] if s.reason_codes[0].is_error()));
    let out = publish(&mut b, 2, "devices/d1/telemetry", b"{}");
    assert!(matches!(
        sent_to(&out, 2)[..],
        [Packet::PubAck(Ack {
            reason_code: ReasonCode::NOT_AUTHORIZED,
            ..
        })]
    ));
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert_eq!(
        sent_to(&out, 2)
            .iter()
            .filter(|p| matches!(p, Packet::Publish(_)))
            .count(),
        1
    );
}

struct Decoder;

impl broker::TelemetryDecoder for Decoder {
    fn decode(
        &self,
        _d: &str,
        payload: &[u8],
        _now: Time,
    ) -> Result<broker::TelemetryBatch, String> {
        if payload == b"bad" {
            return Err("bad".into());
        }
        Ok(broker::TelemetryBatch {
            data: Arc::new(()),
            points: 1,
        })
    }
}

#[test]
fn the_platform_acts_only_on_what_the_device_itself_published() {
    let mut b = broker();
    b.set_telemetry_decoder(Arc::new(Decoder));
    b.add_tap("devices/+/twin/#");
    // d2 has an extra rule that lets it write into d1's tree.
    connect_as(&mut b, 1, Who::Device("d1"), "d1", true, true, &[]);
    connect_as(
        &mut b,
        2,
        Who::Device("d2"),
        "d2",
        true,
        true,
        &["devices/d1/#"],
    );
    let out = publish(&mut b, 2, "devices/d1/telemetry", b"{}");
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
    let out = publish(&mut b, 2, "devices/d1/twin/update", b"{}");
    assert!(!out.iter().any(|o| matches!(o, Output::Tap(_))));
    assert_eq!(b.stats().not_from_device, 2);
    // d1 itself: stored and tapped.
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Persist(PersistOp::Telemetry {
            ack: Some((ConnId(1), 7)),
            ..
        })
    )));
    let out = publish(&mut b, 1, "devices/d1/twin/update", b"{}");
    assert!(out.iter().any(|o| matches!(o, Output::Tap(_))));
}

#[test]
fn a_v311_publisher_is_not_acknowledged_for_what_was_not_kept() {
    let mut b = Broker::new(
        BrokerConfig {
            max_retained_messages: 1,
            ..BrokerConfig::default()
        },
        AccessControl::new(true),
        NOW,
    );
    b.set_telemetry_decoder(Arc::new(Decoder));
    // A bad telemetry payload.
    connect_as(&mut b, 1, Who::Device("d1"), "d1", false, true, &[]);
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"bad");
    assert!(sent_to(&out, 1).is_empty(), "{out:?}");
    assert!(closed(&out, 1));
    // The retained store is full.
    connect_as(&mut b, 2, Who::Anonymous, "a", false, true, &[]);
    let retained = |b: &mut Broker, topic: &str| {
        handle(
            b,
            2,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: topic.into(),
                packet_id: 9,
                payload: Bytes::from_static(b"r"),
                ..Default::default()
            }),
        )
    };
    let out = retained(&mut b, "r/1");
    assert!(matches!(sent_to(&out, 2)[..], [Packet::PubAck(_)]));
    let out = retained(&mut b, "r/2");
    assert!(sent_to(&out, 2).is_empty(), "{out:?}");
    assert!(closed(&out, 2));
    assert_eq!(b.stats().unacked_closes, 2);
}
