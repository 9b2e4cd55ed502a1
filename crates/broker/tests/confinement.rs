//! Sans-io tests of who may be whom: a client id belongs to one principal,
//! the devices' tree belongs to the devices, the platform acts only on what
//! a device published itself, persistent sessions are capped, and a v3.1.1
//! publisher is never acknowledged for a message that was not kept.

mod support;

use mqtt_proto::{Ack, Packet, ReasonCode};

use broker::{AccessControl, BrokerConfig, ConnId, Ingest, Output, PersistOp, Time};
use support::{closed, connack, publish_ids, sent_to, suback_codes, Sim, Who, T0};

const NOW: Time = T0;

fn broker() -> Sim {
    Sim::new(BrokerConfig::default())
}

/// Connects `who` as `client_id`: clean, or persistent with `clean = false`.
fn connect_as(s: &mut Sim, conn: u64, who: Who, client_id: &str, clean: bool) -> Vec<Output> {
    let who = if clean { who } else { who.persistent() };
    s.connect(conn, client_id, &who)
}

fn publish(s: &mut Sim, conn: u64, topic: &str, payload: &[u8]) -> Vec<Output> {
    s.publish(conn, topic, 7, payload)
}

fn refused_with(out: &[Output], conn: u64, code: ReasonCode) -> bool {
    matches!(
        sent_to(out, conn)[..],
        [Packet::PubAck(Ack { reason_code, .. })] if *reason_code == code
    )
}

#[test]
fn another_device_cannot_resume_or_take_over_a_session() {
    for v5 in [true, false] {
        let mut b = broker();
        let out = connect_as(&mut b, 1, Who::device("d1", v5, &[]), "d1", false);
        assert_eq!(connack(&out, 1).reason_code, ReasonCode::SUCCESS);
        // d2 uses d1's client id with clean start = false.
        let out = connect_as(&mut b, 2, Who::device("d2", v5, &[]), "d1", false);
        let ack = connack(&out, 2);
        assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        assert!(!ack.session_present);
        assert!(closed(&out, 2));
        // The real device is untouched: not closed, still connected.
        assert!(!closed(&out, 1));
        assert!(sent_to(&out, 1).is_empty());
        assert_eq!(b.b.connected_count(), 1);
        assert_eq!(b.b.stats().client_id_refused, 1);
        // The device itself takes its session over as before.
        let out = connect_as(&mut b, 3, Who::device("d1", v5, &[]), "d1", false);
        assert!(connack(&out, 3).session_present);
        assert!(closed(&out, 1));
    }
}

#[test]
fn anonymous_users_and_devices_are_different_principals() {
    let mut b = broker();
    connect_as(&mut b, 1, Who::anonymous(true), "shared-id", false);
    for (conn, who) in [
        (2, Who::device("d1", true, &[])),
        (3, Who::user("alice", true)),
    ] {
        let out = connect_as(&mut b, conn, who, "shared-id", true);
        assert_eq!(
            connack(&out, conn).reason_code,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
        );
        assert!(!closed(&out, 1));
    }
    // Another anonymous client is the same (anonymous) principal.
    let out = connect_as(&mut b, 4, Who::anonymous(true), "shared-id", false);
    assert!(connack(&out, 4).session_present);
}

#[test]
fn a_restored_session_keeps_its_owner() {
    let mut b = broker();
    let out = connect_as(&mut b, 1, Who::device("d1", true, &[]), "d1", false);
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
    b.b.restore(state, NOW);
    let out = connect_as(&mut b, 1, Who::device("d2", true, &[]), "d1", false);
    assert_eq!(
        connack(&out, 1).reason_code,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    let out = connect_as(&mut b, 2, Who::device("d1", true, &[]), "d1", false);
    assert!(connack(&out, 2).session_present);
}

#[test]
fn persistent_sessions_are_capped_per_principal_and_in_total() {
    for v5 in [true, false] {
        let mut b = capped();
        assert_eq!(
            connack(
                &connect_as(&mut b, 1, Who::device("d1", v5, &[]), "d1", false),
                1
            )
            .reason_code,
            ReasonCode::SUCCESS
        );
        assert_eq!(
            connack(
                &connect_as(&mut b, 2, Who::device("d1", v5, &[]), "d1-b", false),
                2
            )
            .reason_code,
            ReasonCode::SUCCESS
        );
        let out = connect_as(&mut b, 3, Who::device("d1", v5, &[]), "d1-c", false);
        assert_eq!(connack(&out, 3).reason_code, ReasonCode::QUOTA_EXCEEDED);
        assert_eq!(ReasonCode::QUOTA_EXCEEDED.to_v311_connack(), 3);
        // Resuming one's own session takes no new slot; a clean session
        // needs none.
        let out = connect_as(&mut b, 4, Who::device("d1", v5, &[]), "d1", false);
        assert!(connack(&out, 4).session_present);
        let out = connect_as(&mut b, 5, Who::device("d1", v5, &[]), "d1-d", true);
        assert_eq!(connack(&out, 5).reason_code, ReasonCode::SUCCESS);
        assert_eq!(b.b.persistent_session_count(), 2);
        assert_eq!(b.b.stats().persistent_sessions_refused, 1);
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
                Who::device(d, true, &[]),
                &format!("{d}-{k}"),
                false,
            );
            if connack(&out, conn).reason_code == ReasonCode::SUCCESS {
                n += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert_eq!((n, refused), (5, 3));
    assert_eq!(b.b.persistent_session_count(), 5);
}

fn capped() -> Sim {
    Sim::new(BrokerConfig {
        max_persistent_sessions: 5,
        max_persistent_sessions_per_principal: 2,
        ..BrokerConfig::default()
    })
}

#[test]
fn the_device_tree_belongs_to_devices() {
    let mut b = broker();
    connect_as(&mut b, 1, Who::device("d1", true, &[]), "d1", true);
    connect_as(&mut b, 2, Who::anonymous(true), "anon", true);
    connect_as(&mut b, 3, Who::device("d2", true, &[]), "d2", true);
    // Anonymous (no ACL file: everything else allowed) may neither publish
    // into nor subscribe to a device's tree.
    let out = publish(&mut b, 2, "devices/d1/commands/x", b"forged");
    assert!(refused_with(&out, 2, ReasonCode::NOT_AUTHORIZED));
    let out = b.subscribe(2, "devices/d1/#");
    assert_eq!(suback_codes(&out, 2), [ReasonCode::NOT_AUTHORIZED]);
    // A wide filter is granted, but carries nothing from the devices' tree.
    b.subscribe(2, "#");
    b.subscribe(3, "devices/d2/#");
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert!(publish_ids(&out, 2).is_empty());
    let out = publish(&mut b, 2, "plain/topic", b"x");
    assert_eq!(publish_ids(&out, 2).len(), 1);
    // Another device cannot reach d1's tree either.
    let out = publish(&mut b, 3, "devices/d1/commands/x", b"forged");
    assert!(refused_with(&out, 3, ReasonCode::NOT_AUTHORIZED));
}

#[test]
fn an_explicit_acl_rule_grants_an_integration_read_access() {
    let acl = AccessControl::new(true)
        .with_acl_file("topic readwrite #\nuser integ\ntopic read devices/+/telemetry\n")
        .unwrap();
    let mut b = Sim::with_access(BrokerConfig::default(), acl);
    connect_as(&mut b, 1, Who::device("d1", true, &[]), "d1", true);
    connect_as(&mut b, 2, Who::user("integ", true), "integ", true);
    connect_as(&mut b, 3, Who::user("other", true), "other", true);
    let out = b.subscribe(2, "devices/+/telemetry");
    assert!(!suback_codes(&out, 2)[0].is_error());
    // `topic readwrite #` does not reach into the devices' tree.
    let out = b.subscribe(3, "devices/+/telemetry");
    assert!(suback_codes(&out, 3)[0].is_error());
    let out = publish(&mut b, 2, "devices/d1/telemetry", b"{}");
    assert!(refused_with(&out, 2, ReasonCode::NOT_AUTHORIZED));
    let out = publish(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert_eq!(publish_ids(&out, 2).len(), 1);
}

/// A PUBLISH handed in with the ingest stage's verdict on its payload, as
/// the network layer does for every device's telemetry topic: `bad` is
/// refused, anything else holds one point. Returns whether it was taken for
/// storage, and the outputs.
fn publish_ingested(s: &mut Sim, conn: u64, topic: &str, payload: &[u8]) -> (bool, Vec<Output>) {
    let verdict = if payload == b"bad" {
        Ingest::Refused("bad".into())
    } else {
        Ingest::Accepted { points: 1 }
    };
    let taken = s.b.handle_decoded(
        ConnId(conn),
        Packet::Publish(mqtt_proto::Publish {
            qos: mqtt_proto::QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: 7,
            payload: bytes::Bytes::copy_from_slice(payload),
            ..Default::default()
        }),
        Some(verdict),
        s.now,
    );
    (taken, s.b.drain_outputs().collect())
}

#[test]
fn the_platform_acts_only_on_what_the_device_itself_published() {
    let mut b = broker();
    b.b.add_tap("devices/+/twin/#");
    // d2 has an extra rule that lets it write into d1's tree.
    connect_as(&mut b, 1, Who::device("d1", true, &[]), "d1", true);
    connect_as(
        &mut b,
        2,
        Who::device("d2", true, &["devices/d1/#"]),
        "d2",
        true,
    );
    let (taken, out) = publish_ingested(&mut b, 2, "devices/d1/telemetry", b"{}");
    assert!(!taken, "d2's publish into d1's telemetry taken for storage");
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
    let out = publish(&mut b, 2, "devices/d1/twin/update", b"{}");
    assert!(!out.iter().any(|o| matches!(o, Output::Tap(_))));
    assert_eq!(b.b.stats().not_from_device, 2);
    // d1 itself: stored and tapped.
    let (taken, out) = publish_ingested(&mut b, 1, "devices/d1/telemetry", b"{}");
    assert!(taken, "d1's own telemetry not taken for storage");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            conn: ConnId(1),
            packet: Packet::PubAck(Ack { packet_id: 7, .. }),
            durable: true,
        }
    )));
    let out = publish(&mut b, 1, "devices/d1/twin/update", b"{}");
    assert!(out.iter().any(|o| matches!(o, Output::Tap(_))));
}

#[test]
fn a_v311_publisher_is_not_acknowledged_for_what_was_not_kept() {
    let mut b = Sim::new(BrokerConfig {
        max_retained_messages: 1,
        ..BrokerConfig::default()
    });
    // A bad telemetry payload.
    connect_as(&mut b, 1, Who::device("d1", false, &[]), "d1", true);
    let (taken, out) = publish_ingested(&mut b, 1, "devices/d1/telemetry", b"bad");
    assert!(!taken);
    assert!(sent_to(&out, 1).is_empty(), "{out:?}");
    assert!(closed(&out, 1));
    // The retained store is full.
    connect_as(&mut b, 2, Who::anonymous(false), "a", true);
    let retained = |b: &mut Sim, topic: &str| {
        b.handle(
            2,
            Packet::Publish(mqtt_proto::Publish {
                qos: mqtt_proto::QoS::AtLeastOnce,
                retain: true,
                topic: topic.into(),
                packet_id: 9,
                payload: bytes::Bytes::from_static(b"r"),
                ..Default::default()
            }),
        )
    };
    let out = retained(&mut b, "r/1");
    assert!(matches!(sent_to(&out, 2)[..], [Packet::PubAck(_)]));
    let out = retained(&mut b, "r/2");
    assert!(sent_to(&out, 2).is_empty(), "{out:?}");
    assert!(closed(&out, 2));
    assert_eq!(b.b.stats().unacked_closes, 2);
}
