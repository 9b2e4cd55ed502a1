//! Back-pressure from a slow subscriber to its publishers, with a virtual
//! clock: nothing acknowledged is dropped, acknowledgements are held while
//! the subscriber is behind and released in order when it catches up, the
//! hard limit refuses instead of dropping, and a stuck subscriber is
//! disconnected.

use bytes::Bytes;
use mqtt_proto::{
    Ack, Connect, ConnectProperties, Packet, Protocol, Publish, QoS, ReasonCode, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions,
};

use broker::{AccessControl, Broker, BrokerConfig, ConnId, ConnectInfo, Output, Time};

const T0: Time = Time(1_700_000_000_000);

fn config() -> BrokerConfig {
    BrokerConfig {
        max_inflight: 2,
        max_queued_messages: 8,
        receive_maximum: 100,
        stuck_subscriber_secs: 30,
        ..BrokerConfig::default()
    }
}

struct Sim {
    b: Broker,
    now: Time,
}

impl Sim {
    fn new(config: BrokerConfig) -> Sim {
        Sim {
            b: Broker::new(config, AccessControl::new(true), T0),
            now: T0,
        }
    }

    fn connect(&mut self, conn: u64, id: &str, v5: bool) -> Vec<Output> {
        let c = Connect {
            protocol: if v5 { Protocol::V5 } else { Protocol::V311 },
            clean_start: true,
            keep_alive: 0,
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
                payload: Bytes::from(packet_id.to_string()),
                ..Default::default()
            }),
        )
    }

    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = self.now.plus_ms(ms);
        self.b.tick(self.now);
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

fn pubacks(out: &[Output], conn: u64) -> Vec<(u16, ReasonCode)> {
    sent_to(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some((a.packet_id, a.reason_code)),
            _ => None,
        })
        .collect()
}

fn publish_ids(out: &[Output], conn: u64) -> Vec<u16> {
    sent_to(out, conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p.packet_id),
            _ => None,
        })
        .collect()
}

fn closed(out: &[Output], conn: u64) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Close { conn: c } if *c == ConnId(conn)))
}

/// Subscriber 2 (never acknowledging) and publisher 1.
fn setup() -> Sim {
    let mut s = Sim::new(config());
    s.connect(2, "slow", true);
    s.subscribe(2, "t");
    s.connect(1, "pub", true);
    s
}

#[test]
fn a_slow_subscriber_pauses_its_publisher_instead_of_losing_messages() {
    let mut s = setup();
    // 2 in flight + 8 queued reach the soft limit at the 10th message.
    let mut acked = Vec::new();
    for id in 1..=9u16 {
        acked.extend(pubacks(&s.publish(1, "t", id), 1));
    }
    assert_eq!(acked.len(), 9, "below the soft limit every PUBACK is sent");
    // From the 10th on, the publisher is paused: acknowledgements held.
    for id in 10..=14u16 {
        assert!(pubacks(&s.publish(1, "t", id), 1).is_empty(), "{id}");
    }
    assert_eq!(s.b.stats().messages_dropped, 0);
    assert_eq!(s.b.stats().publishers_paused, 1);
    // The subscriber catches up: each PUBACK of it moves one message into
    // flight; once its queue is down to 6 (3/4 of 8) the held
    // acknowledgements go out, in order.
    let mut released = Vec::new();
    let mut delivered = 2; // packet ids 1 and 2 are in flight
    let mut next_ack = 1u16;
    while released.is_empty() {
        let out = s.handle(2, Packet::PubAck(Ack::new(next_ack)));
        next_ack += 1;
        delivered += publish_ids(&out, 2).len();
        released = pubacks(&out, 1);
    }
    assert_eq!(
        released.iter().map(|a| a.0).collect::<Vec<_>>(),
        (10..=14).collect::<Vec<_>>()
    );
    assert!(released.iter().all(|a| a.1 == ReasonCode::SUCCESS));
    // Everything acknowledged reaches the subscriber.
    while delivered < 14 {
        let out = s.handle(2, Packet::PubAck(Ack::new(next_ack)));
        next_ack += 1;
        delivered += publish_ids(&out, 2).len();
    }
    assert_eq!(s.b.stats().messages_dropped, 0);
}

#[test]
fn the_hard_limit_refuses_rather_than_drops() {
    let mut s = setup();
    // Soft limit 8 queued, hard 16 queued (+ 2 in flight).
    let mut codes = Vec::new();
    for id in 1..=20u16 {
        codes.extend(pubacks(&s.publish(1, "t", id), 1));
    }
    assert_eq!(
        s.b.stats().messages_dropped,
        2,
        "messages 19 and 20 refused"
    );
    // Release by draining the subscriber; the held acknowledgements carry
    // the refusals in order.
    let mut next = 1u16;
    while codes.len() < 20 {
        let out = s.handle(2, Packet::PubAck(Ack::new(next)));
        next += 1;
        codes.extend(pubacks(&out, 1));
        assert!(next < 100, "acknowledgements never released");
    }
    let refused: Vec<u16> = codes
        .iter()
        .filter(|c| c.1 == ReasonCode::QUOTA_EXCEEDED)
        .map(|c| c.0)
        .collect();
    assert_eq!(refused, vec![19, 20]);
    assert_eq!(
        codes.iter().map(|c| c.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>(),
        "acknowledgements in publish order"
    );
}

#[test]
fn a_publisher_ignoring_its_window_while_paused_is_closed() {
    let mut cfg = config();
    cfg.receive_maximum = 3;
    cfg.max_queued_messages = 100;
    let mut s = Sim::new(BrokerConfig {
        max_queued_messages: 4,
        ..cfg
    });
    s.connect(2, "slow", true);
    s.subscribe(2, "t");
    s.connect(1, "pub", false);
    let mut out = Vec::new();
    for id in 1..=12u16 {
        out = s.publish(1, "t", id);
        if closed(&out, 1) {
            break;
        }
    }
    assert!(closed(&out, 1), "v3.1.1 publisher closed");
    assert!(pubacks(&out, 1).is_empty());
    assert_eq!(s.b.stats().messages_dropped, 0);
}

#[test]
fn a_stuck_subscriber_is_disconnected_and_its_publishers_released() {
    let mut s = setup();
    for id in 1..=12u16 {
        s.publish(1, "t", id);
    }
    assert!(!closed(&s.advance(29_000), 2), "not yet stuck long enough");
    let out = s.advance(1_500);
    assert!(closed(&out, 2), "stuck subscriber disconnected");
    assert!(sent_to(&out, 2).iter().any(
        |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::QUOTA_EXCEEDED)
    ));
    let released = pubacks(&out, 1);
    assert_eq!(
        released.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert_eq!(s.b.stats().slow_subscribers_disconnected, 1);
}

#[test]
fn two_clients_publishing_to_each_other_do_not_deadlock() {
    let mut s = Sim::new(config());
    s.connect(1, "a", true);
    s.connect(2, "b", true);
    s.subscribe(1, "to-a");
    s.subscribe(2, "to-b");
    // Both flood the other past its soft limit: both are paused.
    let mut a_acks = 0;
    let mut b_acks = 0;
    for id in 1..=12u16 {
        a_acks += pubacks(&s.publish(1, "to-b", id), 1).len();
        b_acks += pubacks(&s.publish(2, "to-a", id), 2).len();
    }
    assert!(a_acks < 12 && b_acks < 12);
    // Each still acknowledges what it receives (its socket is read), so
    // both queues drain and both get every acknowledgement.
    let mut next = 1u16;
    while a_acks < 12 || b_acks < 12 {
        let out_a = s.handle(1, Packet::PubAck(Ack::new(next)));
        let out_b = s.handle(2, Packet::PubAck(Ack::new(next)));
        a_acks += pubacks(&out_a, 1).len() + pubacks(&out_b, 1).len();
        b_acks += pubacks(&out_a, 2).len() + pubacks(&out_b, 2).len();
        next += 1;
        assert!(next < 100, "deadlock: a {a_acks}, b {b_acks}");
    }
    assert_eq!(s.b.stats().messages_dropped, 0);
}
