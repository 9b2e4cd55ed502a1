//! Back-pressure from a slow subscriber to its publishers, with a virtual
//! clock: nothing acknowledged is dropped, acknowledgements are held while
//! the subscriber is behind and released in order when it catches up, the
//! hard limit refuses instead of dropping, and a stuck subscriber is
//! disconnected.

mod support;

use mqtt_proto::{Ack, Packet, ReasonCode};

use broker::BrokerConfig;
use support::{closed, pubacks, publish_ids, sent_to, Sim, Who};

fn config() -> BrokerConfig {
    BrokerConfig {
        max_inflight: 2,
        max_queued_messages: 8,
        receive_maximum: 100,
        stuck_subscriber_secs: 30,
        ..BrokerConfig::default()
    }
}

/// The read pauses (`true`) and resumptions told for `conn`.
fn reading_of(out: &[broker::Output], conn: u64) -> Vec<bool> {
    out.iter()
        .filter_map(|o| match o {
            broker::Output::Reading { conn: c, paused } if *c == broker::ConnId(conn) => {
                Some(*paused)
            }
            _ => None,
        })
        .collect()
}

/// QoS 1 PUBLISH whose payload is its packet id.
fn publish(s: &mut Sim, conn: u64, topic: &str, id: u16) -> Vec<broker::Output> {
    s.publish(conn, topic, id, id.to_string().as_bytes())
}

/// Subscriber 2 (never acknowledging) and publisher 1.
fn setup() -> Sim {
    let mut s = Sim::new(config());
    s.connect(2, "slow", &Who::anonymous(true));
    s.subscribe(2, "t");
    s.connect(1, "pub", &Who::anonymous(true));
    s
}

#[test]
fn a_slow_subscriber_pauses_its_publisher_instead_of_losing_messages() {
    let mut s = setup();
    // 2 in flight + 8 queued reach the soft limit at the 10th message.
    let mut acked = Vec::new();
    for id in 1..=9u16 {
        acked.extend(pubacks(&publish(&mut s, 1, "t", id), 1));
    }
    assert_eq!(acked.len(), 9, "below the soft limit every PUBACK is sent");
    // From the 10th on, the publisher is paused: acknowledgements held,
    // and (a pure publisher) its socket no longer read.
    let mut reading = Vec::new();
    for id in 10..=14u16 {
        let out = publish(&mut s, 1, "t", id);
        assert!(pubacks(&out, 1).is_empty(), "{id}");
        reading.extend(reading_of(&out, 1));
    }
    assert_eq!(reading, [true], "told once to stop reading");
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
        if !released.is_empty() {
            assert_eq!(reading_of(&out, 1), [false], "read again when released");
        }
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
        codes.extend(pubacks(&publish(&mut s, 1, "t", id), 1));
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
    s.connect(2, "slow", &Who::anonymous(true));
    s.subscribe(2, "t");
    s.connect(1, "pub", &Who::anonymous(false));
    let mut out = Vec::new();
    for id in 1..=12u16 {
        out = publish(&mut s, 1, "t", id);
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
        publish(&mut s, 1, "t", id);
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
    s.connect(1, "a", &Who::anonymous(true));
    s.connect(2, "b", &Who::anonymous(true));
    s.subscribe(1, "to-a");
    s.subscribe(2, "to-b");
    // Both flood the other past its soft limit: both are paused.
    let mut a_acks = 0;
    let mut b_acks = 0;
    for id in 1..=12u16 {
        a_acks += pubacks(&publish(&mut s, 1, "to-b", id), 1).len();
        b_acks += pubacks(&publish(&mut s, 2, "to-a", id), 2).len();
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
