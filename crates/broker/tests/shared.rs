//! Shared subscriptions driven through the sans-io core: the bookkeeping
//! kept per share group (members, round-robin position) is freed when a
//! group empties, by UNSUBSCRIBE or with the member's session, so that
//! clients choosing random group names cannot grow the broker; and group
//! names have a length cap.

use bytes::Bytes;
use mqtt_proto::{
    ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, Unsubscribe,
};

use broker::{AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Output, Time};

struct Sim {
    b: Broker,
    now: Time,
}

impl Sim {
    fn new(config: BrokerConfig) -> Sim {
        let now = Time(1_700_000_000_000);
        Sim {
            b: Broker::new(config, AccessControl::new(true), now),
            now,
        }
    }

    fn connect(&mut self, conn: u64, id: &str, v5: bool) -> Vec<Output> {
        let c = mqtt_proto::Connect {
            protocol: if v5 { Protocol::V5 } else { Protocol::V311 },
            clean_start: true,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        self.b
            .connect(ConnId(conn), c, &ConnectInfo::default(), self.now);
        self.b.drain_outputs().collect()
    }

    fn handle(&mut self, conn: u64, p: Packet) -> Vec<Output> {
        self.now = self.now.plus_ms(1);
        self.b.handle(ConnId(conn), p, self.now);
        self.b.drain_outputs().collect()
    }

    fn subscribe(&mut self, conn: u64, filter: &str) -> Vec<ReasonCode> {
        let out = self.handle(
            conn,
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: filter.into(),
                    options: SubscriptionOptions::default(),
                }],
            }),
        );
        sent_to(&out, conn)
            .into_iter()
            .find_map(|p| match p {
                Packet::SubAck(a) => Some(a.reason_codes.clone()),
                _ => None,
            })
            .expect("a SUBACK")
    }

    fn unsubscribe(&mut self, conn: u64, filter: &str) {
        let out = self.handle(
            conn,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                user_properties: Vec::new(),
                filters: vec![filter.into()],
            }),
        );
        assert!(sent_to(&out, conn)
            .iter()
            .any(|p| matches!(p, Packet::UnsubAck(_))));
    }

    fn publish(&mut self, conn: u64, topic: &str) -> Vec<Output> {
        self.handle(
            conn,
            Packet::Publish(Publish {
                qos: QoS::AtMostOnce,
                topic: topic.into(),
                payload: Bytes::from_static(b"x"),
                ..Default::default()
            }),
        )
    }

    fn lost(&mut self, conn: u64) {
        self.b.connection_lost(ConnId(conn), self.now);
        self.b.drain_outputs().for_each(drop);
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

fn publishes_to(out: &[Output], conn: u64) -> usize {
    sent_to(out, conn)
        .into_iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count()
}

/// xorshift64*: deterministic "random" group names without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn name(&mut self, max: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.";
        let len = 1 + (self.next() as usize) % max;
        (0..len)
            .map(|_| ALPHABET[(self.next() as usize) % ALPHABET.len()] as char)
            .collect()
    }
}

#[test]
fn random_share_groups_leave_no_bookkeeping_behind() {
    let mut s = Sim::new(BrokerConfig::default());
    s.connect(1, "member-a", true);
    s.connect(2, "member-b", false);
    s.connect(3, "publisher", true);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let filters = ["jobs/+", "jobs/#", "jobs/x", "+/x"];
    for round in 0..5_000 {
        let group = rng.name(128);
        let filter = filters[round % filters.len()];
        let shared = format!("$share/{group}/{filter}");
        assert_eq!(s.subscribe(1, &shared), [ReasonCode(0)], "{shared}");
        assert_eq!(s.subscribe(2, &shared), [ReasonCode(0)], "{shared}");
        assert_eq!(s.b.shared_group_count(), 1);
        let out = s.publish(3, "jobs/x");
        assert_eq!(
            publishes_to(&out, 1) + publishes_to(&out, 2),
            1,
            "one member of {shared} gets the message"
        );
        s.unsubscribe(1, &shared);
        assert_eq!(s.b.shared_group_count(), 1, "member-b is still in it");
        if round % 3 == 0 {
            // The last member leaves with its session (clean start, the
            // connection drops): the session-end path frees it too.
            s.lost(2);
            assert_eq!(s.b.shared_group_count(), 0, "round {round}");
            s.connect(2, "member-b", false);
        } else {
            s.unsubscribe(2, &shared);
            assert_eq!(s.b.shared_group_count(), 0, "round {round}");
        }
        // Publishing to a group that no longer exists creates nothing.
        let out = s.publish(3, "jobs/x");
        assert_eq!(publishes_to(&out, 1) + publishes_to(&out, 2), 0);
        assert_eq!(s.b.shared_group_count(), 0);
    }
    assert_eq!(s.b.subscription_count(), 0);
    assert_eq!(s.b.shared_group_count(), 0);
}

#[test]
fn round_robin_survives_members_coming_and_going() {
    let mut s = Sim::new(BrokerConfig::default());
    for (conn, id) in [(1, "a"), (2, "b"), (3, "c"), (9, "pub")] {
        s.connect(conn, id, true);
    }
    for conn in [1, 2, 3] {
        s.subscribe(conn, "$share/g/t");
    }
    let mut got = [0usize; 3];
    for _ in 0..30 {
        let out = s.publish(9, "t");
        for (i, conn) in [1, 2, 3].into_iter().enumerate() {
            got[i] += publishes_to(&out, conn);
        }
    }
    assert_eq!(got, [10, 10, 10], "even round robin");
    s.unsubscribe(2, "$share/g/t");
    let mut got = [0usize; 3];
    for _ in 0..10 {
        let out = s.publish(9, "t");
        for (i, conn) in [1, 2, 3].into_iter().enumerate() {
            got[i] += publishes_to(&out, conn);
        }
    }
    assert_eq!(got, [5, 0, 5]);
    assert_eq!(s.b.shared_group_count(), 1);
    s.unsubscribe(1, "$share/g/t");
    s.unsubscribe(3, "$share/g/t");
    assert_eq!(s.b.shared_group_count(), 0);
}

#[test]
fn share_group_names_are_capped() {
    let mut s = Sim::new(BrokerConfig::default());
    assert_eq!(BrokerConfig::default().max_share_group_bytes, 128);
    s.connect(1, "v5", true);
    s.connect(2, "v3", false);
    let ok = format!("$share/{}/t", "g".repeat(128));
    let long = format!("$share/{}/t", "g".repeat(129));
    assert_eq!(s.subscribe(1, &ok), [ReasonCode(0)]);
    assert_eq!(s.subscribe(1, &long), [ReasonCode::TOPIC_FILTER_INVALID]);
    assert_eq!(s.subscribe(2, &ok), [ReasonCode(0)]);
    assert_eq!(s.subscribe(2, &long), [ReasonCode(0x80)]);
    assert_eq!(s.b.shared_group_count(), 1);
    assert_eq!(s.b.subscription_count(), 2);

    // The cap is a setting; multi-byte names count in bytes.
    let mut s = Sim::new(BrokerConfig {
        max_share_group_bytes: 8,
        ..BrokerConfig::default()
    });
    s.connect(1, "v5", true);
    assert_eq!(s.subscribe(1, "$share/éééé/t"), [ReasonCode(0)]);
    assert_eq!(
        s.subscribe(1, "$share/éééég/t"),
        [ReasonCode::TOPIC_FILTER_INVALID]
    );
}
