//! Sans-io simulations of the broker core with a virtual clock: keep-alive,
//! will delay, session expiry, message expiry, flow control and durability
//! ordering, in microseconds and without sleeps.

use bytes::Bytes;
use mqtt_proto::{
    Ack, ConnectProperties, Disconnect, LastWill, Packet, Protocol, Publish, PublishProperties,
    QoS, ReasonCode, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    WillProperties,
};

use broker::{
    AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Ingest, Output, PersistOp, Time,
};

struct Sim {
    b: Broker,
    now: Time,
}

struct ConnectOpts {
    v5: bool,
    clean: bool,
    expiry: u32,
    keep_alive: u16,
    will: Option<LastWill>,
    receive_maximum: Option<u16>,
    /// A device authenticated by the network layer (its own tree only).
    device: Option<&'static str>,
}

impl Default for ConnectOpts {
    fn default() -> Self {
        ConnectOpts {
            v5: true,
            clean: true,
            expiry: 0,
            keep_alive: 60,
            will: None,
            receive_maximum: None,
            device: None,
        }
    }
}

impl Sim {
    fn new() -> Sim {
        Sim::with_config(BrokerConfig::default())
    }

    fn with_config(config: BrokerConfig) -> Sim {
        let now = Time(1_700_000_000_000);
        Sim {
            b: Broker::new(config, AccessControl::new(true), now),
            now,
        }
    }

    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now.plus_ms(ms);
        self.b.tick(self.now);
        self.b.drain_outputs().collect()
    }

    fn connect(&mut self, conn: u64, id: &str, o: ConnectOpts) -> Vec<Output> {
        let c = mqtt_proto::Connect {
            protocol: if o.v5 { Protocol::V5 } else { Protocol::V311 },
            clean_start: o.clean,
            keep_alive: o.keep_alive,
            client_id: id.into(),
            will: o.will,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: (o.v5 && o.expiry > 0).then_some(o.expiry),
                receive_maximum: o.receive_maximum,
                ..Default::default()
            },
        };
        let info = ConnectInfo {
            grant: o.device.map(|d| {
                std::sync::Arc::new(broker::Grant {
                    principal: d.into(),
                    rules: vec![broker::GrantRule {
                        filter: format!("devices/{d}/#"),
                        read: true,
                        write: true,
                    }],
                    limits: Default::default(),
                })
            }),
            ..ConnectInfo::default()
        };
        self.b.connect(ConnId(conn), c, &info, self.now);
        self.b.drain_outputs().collect()
    }

    fn handle(&mut self, conn: u64, p: Packet) -> Vec<Output> {
        self.b.handle(ConnId(conn), p, self.now);
        self.b.drain_outputs().collect()
    }

    fn subscribe(&mut self, conn: u64, filter: &str, qos: QoS) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: filter.into(),
                    options: SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                }],
            }),
        )
    }

    fn publish(
        &mut self,
        conn: u64,
        topic: &str,
        qos: QoS,
        packet_id: u16,
        props: PublishProperties,
    ) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Publish(Publish {
                qos,
                topic: topic.into(),
                packet_id,
                properties: props,
                payload: Bytes::from_static(b"x"),
                ..Default::default()
            }),
        )
    }

    fn lost(&mut self, conn: u64) -> Vec<Output> {
        self.b.connection_lost(ConnId(conn), self.now);
        self.b.drain_outputs().collect()
    }
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

fn publishes_to(out: &[Output], conn: u64) -> Vec<&Publish> {
    sent_to(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn closed(out: &[Output], conn: u64) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)))
}

fn will(topic: &str, delay: Option<u32>) -> LastWill {
    LastWill {
        topic: topic.into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    }
}

#[test]
fn keepalive_timeout_at_one_and_a_half_times() {
    let mut s = Sim::new();
    s.connect(
        1,
        "a",
        ConnectOpts {
            keep_alive: 10,
            ..Default::default()
        },
    );
    assert!(
        !closed(&s.advance(14_000), 1),
        "closed before 1.5 x keep alive"
    );
    // Any packet resets the timer.
    s.handle(1, Packet::PingReq);
    assert!(!closed(&s.advance(14_000), 1));
    let out = s.advance(1_001);
    assert!(
        closed(&out, 1),
        "not closed after 1.5 x keep alive of silence"
    );
    assert!(matches!(
        sent_to(&out, 1)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::KEEP_ALIVE_TIMEOUT,
            ..
        })]
    ));
}

#[test]
fn server_keep_alive_caps_client_request() {
    let mut s = Sim::with_config(BrokerConfig {
        max_keepalive: 30,
        ..Default::default()
    });
    let out = s.connect(
        1,
        "a",
        ConnectOpts {
            keep_alive: 0,
            ..Default::default()
        },
    );
    let Packet::ConnAck(ack) = sent_to(&out, 1)[0] else {
        panic!("no CONNACK")
    };
    assert_eq!(ack.properties.server_keep_alive, Some(30));
    assert!(closed(&s.advance(45_001), 1));
}

#[test]
fn will_is_published_when_connection_is_lost() {
    let mut s = Sim::new();
    s.connect(1, "watcher", ConnectOpts::default());
    s.subscribe(1, "wills/#", QoS::AtLeastOnce);
    s.connect(
        2,
        "dev",
        ConnectOpts {
            will: Some(will("wills/dev", None)),
            ..Default::default()
        },
    );
    let out = s.lost(2);
    let p = publishes_to(&out, 1);
    assert_eq!(p.len(), 1);
    assert_eq!(&*p[0].topic, "wills/dev");
}

#[test]
fn will_is_not_published_on_normal_disconnect() {
    let mut s = Sim::new();
    s.connect(1, "watcher", ConnectOpts::default());
    s.subscribe(1, "wills/#", QoS::AtLeastOnce);
    s.connect(
        2,
        "dev",
        ConnectOpts {
            will: Some(will("wills/dev", None)),
            ..Default::default()
        },
    );
    let out = s.handle(2, Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    assert!(publishes_to(&out, 1).is_empty());
    assert!(closed(&out, 2));
    // ... but is with reason 0x04.
    s.connect(
        3,
        "dev2",
        ConnectOpts {
            will: Some(will("wills/dev2", None)),
            ..Default::default()
        },
    );
    let out = s.handle(
        3,
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
    );
    assert_eq!(publishes_to(&out, 1).len(), 1);
}

#[test]
fn will_delay_waits_and_reconnect_cancels_it() {
    let mut s = Sim::new();
    s.connect(1, "watcher", ConnectOpts::default());
    s.subscribe(1, "wills/#", QoS::AtLeastOnce);
    let with_will = || ConnectOpts {
        clean: false,
        expiry: 100,
        will: Some(will("wills/dev", Some(5))),
        ..Default::default()
    };
    s.connect(2, "dev", with_will());
    assert!(publishes_to(&s.lost(2), 1).is_empty());
    assert!(publishes_to(&s.advance(4_000), 1).is_empty());
    // Reconnect within the delay: the will is never sent.
    s.connect(3, "dev", with_will());
    assert!(publishes_to(&s.advance(10_000), 1).is_empty());
    // Lose it again and wait out the delay: sent once.
    s.lost(3);
    assert!(publishes_to(&s.advance(4_999), 1).is_empty());
    assert_eq!(publishes_to(&s.advance(1), 1).len(), 1);
    assert!(publishes_to(&s.advance(60_000), 1).is_empty());
}

#[test]
fn will_delay_is_cut_short_by_session_expiry() {
    let mut s = Sim::new();
    s.connect(1, "watcher", ConnectOpts::default());
    s.subscribe(1, "wills/#", QoS::AtLeastOnce);
    s.connect(
        2,
        "dev",
        ConnectOpts {
            clean: false,
            expiry: 2,
            will: Some(will("wills/dev", Some(60))),
            ..Default::default()
        },
    );
    s.lost(2);
    assert!(publishes_to(&s.advance(1_999), 1).is_empty());
    assert_eq!(publishes_to(&s.advance(1), 1).len(), 1);
}

#[test]
fn session_expires_after_its_interval() {
    let mut s = Sim::new();
    let opts = || ConnectOpts {
        clean: false,
        expiry: 10,
        ..Default::default()
    };
    s.connect(1, "dev", opts());
    s.subscribe(1, "t", QoS::AtLeastOnce);
    s.lost(1);
    s.advance(9_000);
    let out = s.connect(2, "dev", opts());
    let Packet::ConnAck(ack) = sent_to(&out, 2)[0] else {
        panic!()
    };
    assert!(ack.session_present, "session gone before its expiry");
    s.lost(2);
    let out = s.advance(10_000);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Persist(PersistOp::SessionDelete { .. }))));
    let out = s.connect(3, "dev", opts());
    let Packet::ConnAck(ack) = sent_to(&out, 3)[0] else {
        panic!()
    };
    assert!(!ack.session_present, "session outlived its expiry");
}

#[test]
fn offline_persistent_session_gets_queued_messages_and_expired_ones_are_dropped() {
    let mut s = Sim::new();
    let opts = || ConnectOpts {
        clean: false,
        expiry: 3600,
        ..Default::default()
    };
    s.connect(1, "sub", opts());
    s.subscribe(1, "t", QoS::AtLeastOnce);
    s.lost(1);
    s.connect(2, "pub", ConnectOpts::default());
    let short = PublishProperties {
        message_expiry_interval: Some(5),
        ..Default::default()
    };
    let out = s.publish(2, "t", QoS::AtLeastOnce, 1, short);
    // The PUBACK is durable: it follows the MessageAdd that queues it.
    let add = out
        .iter()
        .position(|o| matches!(o, Output::Persist(PersistOp::MessageAdd { .. })))
        .expect("message not persisted for the offline session");
    let ack = out
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::Send {
                    packet: Packet::PubAck(_),
                    durable: true,
                    ..
                }
            )
        })
        .expect("no durable PUBACK");
    assert!(add < ack);
    s.publish(2, "t", QoS::AtLeastOnce, 2, PublishProperties::default());
    s.advance(6_000);
    let out = s.connect(3, "sub", opts());
    let p = publishes_to(&out, 3);
    assert_eq!(p.len(), 1, "expired message delivered, or live one lost");
    assert_eq!(p[0].properties.message_expiry_interval, None);
}

#[test]
fn message_expiry_interval_counts_down() {
    let mut s = Sim::new();
    let opts = || ConnectOpts {
        clean: false,
        expiry: 3600,
        ..Default::default()
    };
    s.connect(1, "sub", opts());
    s.subscribe(1, "t", QoS::AtLeastOnce);
    s.lost(1);
    s.connect(2, "pub", ConnectOpts::default());
    s.publish(
        2,
        "t",
        QoS::AtLeastOnce,
        1,
        PublishProperties {
            message_expiry_interval: Some(60),
            ..Default::default()
        },
    );
    s.advance(20_000);
    let out = s.connect(3, "sub", opts());
    assert_eq!(
        publishes_to(&out, 3)[0].properties.message_expiry_interval,
        Some(40)
    );
}

#[test]
fn inflight_window_respects_client_receive_maximum_and_resends_on_reconnect() {
    let mut s = Sim::new();
    let opts = || ConnectOpts {
        clean: false,
        expiry: 3600,
        receive_maximum: Some(2),
        ..Default::default()
    };
    s.connect(1, "sub", opts());
    s.subscribe(1, "t", QoS::AtLeastOnce);
    s.connect(2, "pub", ConnectOpts::default());
    let mut delivered = Vec::new();
    for i in 1..=5 {
        let out = s.publish(2, "t", QoS::AtLeastOnce, i, PublishProperties::default());
        delivered.extend(publishes_to(&out, 1).into_iter().map(|p| p.packet_id));
    }
    assert_eq!(delivered.len(), 2, "window of 2 exceeded");
    // Acking one releases one more.
    let out = s.handle(1, Packet::PubAck(Ack::new(delivered[0])));
    assert_eq!(publishes_to(&out, 1).len(), 1);
    // Reconnect: the two unacknowledged are resent with DUP, then no more
    // than the window.
    s.lost(1);
    let out = s.connect(3, "sub", opts());
    let p = publishes_to(&out, 3);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.dup));
}

#[test]
fn qos2_incoming_is_routed_once_and_receive_maximum_is_enforced() {
    let mut s = Sim::with_config(BrokerConfig {
        receive_maximum: 2,
        ..Default::default()
    });
    s.connect(1, "sub", ConnectOpts::default());
    s.subscribe(1, "t", QoS::ExactlyOnce);
    s.connect(2, "pub", ConnectOpts::default());
    let out = s.publish(2, "t", QoS::ExactlyOnce, 7, PublishProperties::default());
    assert_eq!(publishes_to(&out, 1).len(), 1);
    assert!(matches!(sent_to(&out, 2)[..], [Packet::PubRec(_)]));
    // A resend of the same packet id before PUBREL is not routed again.
    let out = s.publish(2, "t", QoS::ExactlyOnce, 7, PublishProperties::default());
    assert!(publishes_to(&out, 1).is_empty());
    let out = s.handle(2, Packet::PubRel(Ack::new(7)));
    assert!(matches!(sent_to(&out, 2)[..], [Packet::PubComp(_)]));
    // Two unreleased QoS 2 publishes fill our receive maximum; a third
    // is a protocol violation (0x93).
    s.publish(2, "t", QoS::ExactlyOnce, 8, PublishProperties::default());
    s.publish(2, "t", QoS::ExactlyOnce, 9, PublishProperties::default());
    let out = s.publish(2, "t", QoS::ExactlyOnce, 10, PublishProperties::default());
    assert!(matches!(
        sent_to(&out, 2)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            ..
        })]
    ));
    assert!(closed(&out, 2));
}

#[test]
fn takeover_disconnects_old_connection_with_0x8e() {
    let mut s = Sim::new();
    s.connect(1, "dev", ConnectOpts::default());
    let out = s.connect(2, "dev", ConnectOpts::default());
    assert!(matches!(
        sent_to(&out, 1)[..],
        [Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            ..
        })]
    ));
    assert!(closed(&out, 1));
    assert_eq!(s.b.connected_count(), 1);
}

#[test]
fn full_persistent_queue_refuses_publish_with_quota_exceeded() {
    let mut s = Sim::with_config(BrokerConfig {
        max_queued_messages: 2,
        ..Default::default()
    });
    s.connect(
        1,
        "sub",
        ConnectOpts {
            clean: false,
            expiry: 3600,
            ..Default::default()
        },
    );
    s.subscribe(1, "t", QoS::AtLeastOnce);
    s.lost(1);
    s.connect(2, "pub", ConnectOpts::default());
    for i in 1..=2 {
        let out = s.publish(2, "t", QoS::AtLeastOnce, i, PublishProperties::default());
        assert!(matches!(
            sent_to(&out, 2)[..],
            [Packet::PubAck(Ack {
                reason_code: ReasonCode::SUCCESS,
                ..
            })]
        ));
    }
    let out = s.publish(2, "t", QoS::AtLeastOnce, 3, PublishProperties::default());
    assert!(matches!(
        sent_to(&out, 2)[..],
        [Packet::PubAck(Ack {
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            ..
        })]
    ));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Persist(PersistOp::MessageAdd { .. }))));
}

#[test]
fn topic_alias_from_client() {
    let mut s = Sim::new();
    s.connect(1, "sub", ConnectOpts::default());
    s.subscribe(1, "a/b", QoS::AtMostOnce);
    s.connect(2, "pub", ConnectOpts::default());
    let alias = |a| PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    };
    assert_eq!(
        publishes_to(&s.publish(2, "a/b", QoS::AtMostOnce, 0, alias(3)), 1).len(),
        1
    );
    let out = s.publish(2, "", QoS::AtMostOnce, 0, alias(3));
    let p = publishes_to(&out, 1);
    assert_eq!(&*p[0].topic, "a/b");
    // An unknown alias is a protocol error.
    let out = s.publish(2, "", QoS::AtMostOnce, 0, alias(4));
    assert!(closed(&out, 2));
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member() {
    let mut s = Sim::new();
    s.connect(1, "m1", ConnectOpts::default());
    s.connect(2, "m2", ConnectOpts::default());
    s.subscribe(1, "$share/g/jobs/#", QoS::AtMostOnce);
    s.subscribe(2, "$share/g/jobs/#", QoS::AtMostOnce);
    s.connect(3, "pub", ConnectOpts::default());
    let (mut a, mut b) = (0, 0);
    for _ in 0..10 {
        let out = s.publish(
            3,
            "jobs/x",
            QoS::AtMostOnce,
            0,
            PublishProperties::default(),
        );
        let (x, y) = (publishes_to(&out, 1).len(), publishes_to(&out, 2).len());
        assert_eq!(x + y, 1);
        a += x;
        b += y;
    }
    assert_eq!((a, b), (5, 5));
}

#[test]
fn retained_message_set_replace_delete() {
    let mut s = Sim::new();
    s.connect(1, "pub", ConnectOpts::default());
    let retained = |s: &mut Sim, payload: &'static [u8]| {
        s.handle(
            1,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                retain: true,
                topic: "r".into(),
                packet_id: 1,
                payload: Bytes::from_static(payload),
                ..Default::default()
            }),
        )
    };
    let out = retained(&mut s, b"one");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Persist(PersistOp::RetainPut { .. }))));
    retained(&mut s, b"two");
    s.connect(2, "sub", ConnectOpts::default());
    let out = s.subscribe(2, "#", QoS::AtLeastOnce);
    let p = publishes_to(&out, 2);
    assert_eq!(p.len(), 1);
    assert!(p[0].retain);
    assert_eq!(&p[0].payload[..], b"two");
    retained(&mut s, b"");
    s.connect(3, "sub2", ConnectOpts::default());
    assert!(publishes_to(&s.subscribe(3, "#", QoS::AtLeastOnce), 3).is_empty());
}

/// A PUBLISH with the ingest stage's verdict on it, as the network layer
/// hands it in; returns whether it was taken for storage, and the outputs.
fn publish_with_verdict(
    s: &mut Sim,
    conn: u64,
    topic: &str,
    packet_id: u16,
    verdict: Ingest,
) -> (bool, Vec<Output>) {
    let taken = s.b.handle_decoded(
        ConnId(conn),
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id,
            payload: Bytes::from_static(b"x"),
            ..Default::default()
        }),
        Some(verdict),
        s.now,
    );
    (taken, s.b.drain_outputs().collect())
}

#[test]
fn telemetry_is_taken_for_storage_with_a_durable_puback_and_bad_payloads_are_refused() {
    let mut s = Sim::new();
    s.connect(
        1,
        "d1",
        ConnectOpts {
            device: Some("d1"),
            ..Default::default()
        },
    );
    s.connect(
        2,
        "d2",
        ConnectOpts {
            device: Some("d2"),
            ..Default::default()
        },
    );
    let (taken, out) = publish_with_verdict(
        &mut s,
        1,
        "devices/d1/telemetry",
        1,
        Ingest::Accepted { points: 3 },
    );
    assert!(taken, "accepted telemetry is taken for storage");
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                packet: Packet::PubAck(Ack {
                    reason_code: ReasonCode::SUCCESS,
                    ..
                }),
                durable: true,
                ..
            }
        )),
        "no durable success PUBACK: {out:?}"
    );
    assert_eq!(s.b.stats().telemetry_points, 3);
    // A refused payload: 0x99, nothing taken, nothing routed or persisted.
    s.subscribe(2, "devices/+/telemetry", QoS::AtLeastOnce);
    let (taken, out) = publish_with_verdict(
        &mut s,
        1,
        "devices/d1/telemetry",
        2,
        Ingest::Refused("bad payload".into()),
    );
    assert!(!taken);
    assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
    assert!(
        publishes_to(&out, 2).is_empty(),
        "a refused payload was routed"
    );
    assert!(matches!(
        sent_to(&out, 1)[..],
        [Packet::PubAck(Ack {
            reason_code: ReasonCode::PAYLOAD_FORMAT_INVALID,
            ..
        })]
    ));
    // A verdict on anything but the sender's own telemetry topic is ignored:
    // other topics under the device tree are plain pub/sub.
    for topic in ["devices/d1/status", "devices/d2/telemetry"] {
        let (taken, out) =
            publish_with_verdict(&mut s, 1, topic, 3, Ingest::Accepted { points: 1 });
        assert!(!taken, "{topic} taken for storage");
        assert!(!out.iter().any(|o| matches!(o, Output::Persist(_))));
    }
    assert_eq!(s.b.stats().telemetry_rejected, 1);
    assert_eq!(s.b.stats().telemetry_messages, 1);
}

#[test]
fn keepalive_is_not_charged_while_the_network_layer_holds_reading() {
    let mut s = Sim::new();
    s.connect(
        1,
        "a",
        ConnectOpts {
            keep_alive: 10,
            ..Default::default()
        },
    );
    s.b.hold_reading(ConnId(1), true);
    assert!(
        !closed(&s.advance(60_000), 1),
        "closed for silence while its reading was held"
    );
    s.b.hold_reading(ConnId(1), false);
    assert!(!closed(&s.advance(14_000), 1));
    assert!(
        closed(&s.advance(2_000), 1),
        "not closed after 1.5 x keep alive of silence once released"
    );
}
