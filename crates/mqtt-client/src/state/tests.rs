//! State machine tests with a virtual clock: no sockets, no sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqtt_proto::{
    Ack, ConnAck, ConnAckProperties, Disconnect, Packet, Protocol, Publish, PublishProperties, QoS,
    ReasonCode, SubAck, Subscription, SubscriptionOptions, UnsubAck,
};

use super::{ClientState, DisconnectReason, Event, Phase};
use crate::{ClientError, ConnectOptions};

/// A virtual clock.
struct Clock(Instant);

impl Clock {
    fn new() -> Clock {
        Clock(Instant::now())
    }
    fn now(&self) -> Instant {
        self.0
    }
    fn advance(&mut self, d: Duration) -> Instant {
        self.0 += d;
        self.0
    }
}

fn drain(state: &mut ClientState, now: Instant) -> Vec<Packet> {
    std::iter::from_fn(|| state.poll_transmit(now)).collect()
}

fn events(state: &mut ClientState) -> Vec<Event> {
    std::iter::from_fn(|| state.poll_event()).collect()
}

fn connack(session_present: bool, properties: ConnAckProperties) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code: ReasonCode::SUCCESS,
        properties,
    })
}

fn message(topic: &str, qos: QoS) -> Publish {
    Publish {
        qos,
        topic: topic.into(),
        payload: Bytes::from_static(b"hello"),
        ..Publish::default()
    }
}

/// A client connected with the given CONNACK properties; all output drained.
fn connected(options: ConnectOptions, props: ConnAckProperties, clock: &Clock) -> ClientState {
    let mut state = ClientState::new(options);
    state.connect(clock.now()).unwrap();
    drain(&mut state, clock.now());
    state
        .handle_packet(clock.now(), connack(false, props))
        .unwrap();
    events(&mut state);
    state
}

fn publish_ids(packets: &[Packet]) -> Vec<(u16, bool)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.dup)),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_v311_carries_options_and_no_v5_properties() {
    let clock = Clock::new();
    let options = ConnectOptions::new("dev-1")
        .clean_start(false)
        .keep_alive(30)
        .session_expiry(3600)
        .receive_maximum(10)
        .credentials("user", Bytes::from_static(b"secret"));
    let mut state = ClientState::new(options);
    state.connect(clock.now()).unwrap();
    assert_eq!(state.phase(), Phase::Connecting);
    let out = drain(&mut state, clock.now());
    let [Packet::Connect(c)] = out.as_slice() else {
        panic!("expected CONNECT, got {out:?}");
    };
    assert_eq!(c.protocol, Protocol::V311);
    assert_eq!(&*c.client_id, "dev-1");
    assert!(!c.clean_start);
    assert_eq!(c.keep_alive, 30);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(c.properties, Default::default());
    assert!(matches!(
        state.connect(clock.now()),
        Err(ClientError::AlreadyConnected)
    ));
}

#[test]
fn connect_v5_carries_properties() {
    let clock = Clock::new();
    let options = ConnectOptions::new("dev-1")
        .protocol(Protocol::V5)
        .session_expiry(3600)
        .receive_maximum(10);
    let mut state = ClientState::new(options);
    state.connect(clock.now()).unwrap();
    let out = drain(&mut state, clock.now());
    let [Packet::Connect(c)] = out.as_slice() else {
        panic!("expected CONNECT, got {out:?}");
    };
    assert_eq!(c.protocol, Protocol::V5);
    assert_eq!(c.properties.session_expiry_interval, Some(3600));
    assert_eq!(c.properties.receive_maximum, Some(10));
}

#[test]
fn connack_success_and_refusal() {
    let clock = Clock::new();
    let mut state = ClientState::new(ConnectOptions::new("a"));
    state.connect(clock.now()).unwrap();
    state
        .handle_packet(clock.now(), connack(false, Default::default()))
        .unwrap();
    assert_eq!(state.phase(), Phase::Connected);
    assert!(matches!(
        events(&mut state).as_slice(),
        [Event::Connected {
            session_present: false,
            ..
        }]
    ));

    let mut state = ClientState::new(ConnectOptions::new("b"));
    state.connect(clock.now()).unwrap();
    let refused = Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Default::default(),
    });
    state.handle_packet(clock.now(), refused).unwrap();
    assert_eq!(state.phase(), Phase::Disconnected);
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected {
            reason: DisconnectReason::Refused(ReasonCode::NOT_AUTHORIZED)
        }]
    );
    assert!(drain(&mut state, clock.now()).is_empty());
}

#[test]
fn packet_before_connack_is_a_protocol_error() {
    let clock = Clock::new();
    let mut state = ClientState::new(ConnectOptions::new("a").protocol(Protocol::V5));
    state.connect(clock.now()).unwrap();
    drain(&mut state, clock.now());
    let err = state
        .handle_packet(clock.now(), Packet::PingResp)
        .unwrap_err();
    assert!(matches!(err, ClientError::ProtocolViolation(_)));
    assert_eq!(state.phase(), Phase::Disconnected);
}

#[test]
fn qos0_publish_goes_out_at_once_and_needs_a_connection() {
    let clock = Clock::new();
    let mut state = ClientState::new(ConnectOptions::new("a"));
    assert!(matches!(
        state.publish(message("t", QoS::AtMostOnce)),
        Err(ClientError::NotConnected)
    ));
    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);
    assert_eq!(state.publish(message("t", QoS::AtMostOnce)).unwrap(), 0);
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(0, false)]
    );
    assert!(matches!(
        state.publish(message("a/+", QoS::AtMostOnce)),
        Err(ClientError::InvalidTopic)
    ));
}

#[test]
fn qos1_publish_is_acked_and_respects_receive_maximum() {
    let clock = Clock::new();
    let props = ConnAckProperties {
        receive_maximum: Some(2),
        ..Default::default()
    };
    let mut state = connected(
        ConnectOptions::new("a").protocol(Protocol::V5),
        props,
        &clock,
    );
    let ids: Vec<u16> = (0..3)
        .map(|_| state.publish(message("t", QoS::AtLeastOnce)).unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(1, false), (2, false)]
    );
    assert_eq!(state.inflight(), 2);
    assert_eq!(state.queued(), 1);

    state
        .handle_packet(clock.now(), Packet::PubAck(Ack::new(1)))
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![Event::PubAck {
            packet_id: 1,
            reason_code: ReasonCode::SUCCESS
        }]
    );
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(3, false)]
    );
    state
        .handle_packet(clock.now(), Packet::PubAck(Ack::new(2)))
        .unwrap();
    state
        .handle_packet(
            clock.now(),
            Packet::PubAck(Ack::with_reason(3, ReasonCode::QUOTA_EXCEEDED)),
        )
        .unwrap();
    assert_eq!(state.inflight(), 0);
    assert_eq!(
        events(&mut state)[1],
        Event::PubAck {
            packet_id: 3,
            reason_code: ReasonCode::QUOTA_EXCEEDED
        }
    );
    // An unknown or repeated PUBACK is ignored.
    state
        .handle_packet(clock.now(), Packet::PubAck(Ack::new(3)))
        .unwrap();
    assert!(events(&mut state).is_empty());
}

#[test]
fn local_max_inflight_caps_the_window() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").max_inflight(1),
        Default::default(),
        &clock,
    );
    state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    assert_eq!(publish_ids(&drain(&mut state, clock.now())).len(), 1);
    assert_eq!(state.send_quota(), 0);
}

#[test]
fn qos2_publish_full_flow() {
    let clock = Clock::new();
    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);
    let id = state.publish(message("t", QoS::ExactlyOnce)).unwrap();
    drain(&mut state, clock.now());
    state
        .handle_packet(clock.now(), Packet::PubRec(Ack::new(id)))
        .unwrap();
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::PubRel(Ack::new(id))]
    );
    assert!(events(&mut state).is_empty());
    // A repeated PUBREC gets the PUBREL again.
    state
        .handle_packet(clock.now(), Packet::PubRec(Ack::new(id)))
        .unwrap();
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::PubRel(Ack::new(id))]
    );
    state
        .handle_packet(clock.now(), Packet::PubComp(Ack::new(id)))
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![Event::PubComp {
            packet_id: id,
            reason_code: ReasonCode::SUCCESS
        }]
    );
    assert_eq!(state.inflight(), 0);
}

#[test]
fn qos2_pubrec_failure_ends_the_flow() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").protocol(Protocol::V5),
        Default::default(),
        &clock,
    );
    let id = state.publish(message("t", QoS::ExactlyOnce)).unwrap();
    drain(&mut state, clock.now());
    let rec = Ack::with_reason(id, ReasonCode::NOT_AUTHORIZED);
    state
        .handle_packet(clock.now(), Packet::PubRec(rec))
        .unwrap();
    assert!(drain(&mut state, clock.now()).is_empty());
    assert_eq!(
        events(&mut state),
        vec![Event::PubComp {
            packet_id: id,
            reason_code: ReasonCode::NOT_AUTHORIZED
        }]
    );
    assert_eq!(state.inflight(), 0);
}

#[test]
fn incoming_qos1_and_qos2_are_acknowledged_and_delivered_once() {
    let clock = Clock::new();
    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);

    let mut p1 = message("t", QoS::AtLeastOnce);
    p1.packet_id = 7;
    state
        .handle_packet(clock.now(), Packet::Publish(p1.clone()))
        .unwrap();
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::PubAck(Ack::new(7))]
    );
    assert_eq!(events(&mut state), vec![Event::Message(p1)]);

    let mut p2 = message("t", QoS::ExactlyOnce);
    p2.packet_id = 9;
    state
        .handle_packet(clock.now(), Packet::Publish(p2.clone()))
        .unwrap();
    let mut dup = p2.clone();
    dup.dup = true;
    state
        .handle_packet(clock.now(), Packet::Publish(dup))
        .unwrap();
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::PubRec(Ack::new(9)), Packet::PubRec(Ack::new(9))]
    );
    assert_eq!(events(&mut state), vec![Event::Message(p2.clone())]);
    state
        .handle_packet(clock.now(), Packet::PubRel(Ack::new(9)))
        .unwrap();
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::PubComp(Ack::new(9))]
    );
    // After release the same id is a new message.
    state
        .handle_packet(clock.now(), Packet::Publish(p2.clone()))
        .unwrap();
    assert_eq!(events(&mut state), vec![Event::Message(p2)]);
}

#[test]
fn incoming_qos2_beyond_receive_maximum_is_a_protocol_error() {
    let clock = Clock::new();
    let options = ConnectOptions::new("a")
        .protocol(Protocol::V5)
        .receive_maximum(1);
    let mut state = connected(options, Default::default(), &clock);
    for id in [1, 2] {
        let mut p = message("t", QoS::ExactlyOnce);
        p.packet_id = id;
        let result = state.handle_packet(clock.now(), Packet::Publish(p));
        assert_eq!(result.is_err(), id == 2);
    }
    let out = drain(&mut state, clock.now());
    assert_eq!(
        out.last(),
        Some(&Packet::Disconnect(Disconnect::new(
            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
        )))
    );
}

#[test]
fn incoming_topic_aliases_are_resolved() {
    let clock = Clock::new();
    let mut options = ConnectOptions::new("a").protocol(Protocol::V5);
    options.topic_alias_maximum = Some(4);
    let mut state = connected(options, Default::default(), &clock);
    let mut first = message("long/topic/name", QoS::AtMostOnce);
    first.properties = PublishProperties {
        topic_alias: Some(2),
        ..Default::default()
    };
    let mut second = first.clone();
    second.topic = "".into();
    state
        .handle_packet(clock.now(), Packet::Publish(first))
        .unwrap();
    state
        .handle_packet(clock.now(), Packet::Publish(second))
        .unwrap();
    let topics: Vec<String> = events(&mut state)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(p) => Some(p.topic.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(topics, vec!["long/topic/name", "long/topic/name"]);

    let mut unknown = message("", QoS::AtMostOnce);
    unknown.properties.topic_alias = Some(3);
    assert!(state
        .handle_packet(clock.now(), Packet::Publish(unknown))
        .is_err());
}

#[test]
fn subscribe_and_unsubscribe_get_their_acks() {
    let clock = Clock::new();
    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);
    let sub = Subscription {
        filter: "a/+/c".into(),
        options: SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        },
    };
    let id = state.subscribe(vec![sub]).unwrap();
    assert!(matches!(
        drain(&mut state, clock.now()).as_slice(),
        [Packet::Subscribe(s)] if s.packet_id == id
    ));
    let suback = SubAck {
        packet_id: id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::GRANTED_QOS_1],
    };
    state
        .handle_packet(clock.now(), Packet::SubAck(suback.clone()))
        .unwrap();
    assert_eq!(events(&mut state), vec![Event::SubAck(suback)]);

    let id = state.unsubscribe(vec!["a/+/c".into()]).unwrap();
    let unsuback = UnsubAck {
        packet_id: id,
        properties: Default::default(),
        reason_codes: vec![],
    };
    state
        .handle_packet(clock.now(), Packet::UnsubAck(unsuback.clone()))
        .unwrap();
    assert_eq!(events(&mut state), vec![Event::UnsubAck(unsuback)]);

    assert!(matches!(
        state.unsubscribe(vec!["a/#/b".into()]),
        Err(ClientError::InvalidFilter)
    ));
    assert!(matches!(
        state.subscribe(vec![]),
        Err(ClientError::NoFilters)
    ));
}

#[test]
fn keep_alive_sends_pingreq_and_times_out_without_pingresp() {
    let mut clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").keep_alive(10),
        Default::default(),
        &clock,
    );
    let start = clock.now();
    assert_eq!(state.poll_timeout(), Some(start + Duration::from_secs(10)));

    // Traffic restarts the interval.
    let t = clock.advance(Duration::from_secs(6));
    state.publish(message("t", QoS::AtMostOnce)).unwrap();
    drain(&mut state, t);
    assert_eq!(state.poll_timeout(), Some(t + Duration::from_secs(10)));
    state.handle_timeout(clock.advance(Duration::from_secs(5)));
    assert!(drain(&mut state, clock.now()).is_empty());

    let t = clock.advance(Duration::from_secs(5));
    state.handle_timeout(t);
    assert_eq!(drain(&mut state, t), vec![Packet::PingReq]);
    state.handle_packet(clock.now(), Packet::PingResp).unwrap();

    let t = clock.advance(Duration::from_secs(10));
    state.handle_timeout(t);
    assert_eq!(drain(&mut state, t), vec![Packet::PingReq]);
    state.handle_timeout(clock.advance(Duration::from_secs(9)));
    assert_eq!(state.phase(), Phase::Connected);
    state.handle_timeout(clock.advance(Duration::from_secs(1)));
    assert_eq!(state.phase(), Phase::Disconnected);
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected {
            reason: DisconnectReason::KeepAliveTimeout
        }]
    );
    assert_eq!(state.poll_timeout(), None);
}

#[test]
fn server_keep_alive_overrides_ours() {
    let clock = Clock::new();
    let props = ConnAckProperties {
        server_keep_alive: Some(5),
        ..Default::default()
    };
    let state = connected(
        ConnectOptions::new("a")
            .protocol(Protocol::V5)
            .keep_alive(60),
        props,
        &clock,
    );
    assert_eq!(state.keep_alive(), 5);
    assert_eq!(
        state.poll_timeout(),
        Some(clock.now() + Duration::from_secs(5))
    );
}

#[test]
fn keep_alive_zero_has_no_timer() {
    let clock = Clock::new();
    let state = connected(
        ConnectOptions::new("a").keep_alive(0),
        Default::default(),
        &clock,
    );
    assert_eq!(state.poll_timeout(), None);
}

#[test]
fn connect_timeout() {
    let mut clock = Clock::new();
    let mut options = ConnectOptions::new("a");
    options.connect_timeout = Duration::from_secs(3);
    let mut state = ClientState::new(options);
    state.connect(clock.now()).unwrap();
    assert_eq!(
        state.poll_timeout(),
        Some(clock.now() + Duration::from_secs(3))
    );
    state.handle_timeout(clock.advance(Duration::from_secs(3)));
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected {
            reason: DisconnectReason::ConnectTimeout
        }]
    );
}

#[test]
fn reconnect_with_session_resends_in_order_with_dup() {
    let clock = Clock::new();
    let options = ConnectOptions::new("a").clean_start(false);
    let mut state = connected(options, Default::default(), &clock);
    let q1 = state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    let q2 = state.publish(message("t", QoS::ExactlyOnce)).unwrap();
    let q2b = state.publish(message("t", QoS::ExactlyOnce)).unwrap();
    drain(&mut state, clock.now());
    state
        .handle_packet(clock.now(), Packet::PubRec(Ack::new(q2)))
        .unwrap();
    drain(&mut state, clock.now());

    state.connection_lost();
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected {
            reason: DisconnectReason::ConnectionLost
        }]
    );
    // Published while disconnected: goes out after the resends.
    let later = state.publish(message("t", QoS::AtLeastOnce)).unwrap();

    state.connect(clock.now()).unwrap();
    let out = drain(&mut state, clock.now());
    assert!(matches!(out.as_slice(), [Packet::Connect(_)]));
    state
        .handle_packet(clock.now(), connack(true, Default::default()))
        .unwrap();
    let out = drain(&mut state, clock.now());
    assert_eq!(out[0], Packet::PubRel(Ack::new(q2)));
    assert_eq!(
        publish_ids(&out[1..]),
        vec![(q1, true), (q2b, true), (later, false)]
    );
    assert_eq!(state.inflight(), 4);
    assert!(matches!(
        events(&mut state).as_slice(),
        [Event::Connected {
            session_present: true,
            ..
        }]
    ));
}

#[test]
fn reconnect_without_session_resends_as_new_and_completes_released() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").clean_start(false),
        Default::default(),
        &clock,
    );
    let q1 = state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    let q2 = state.publish(message("t", QoS::ExactlyOnce)).unwrap();
    drain(&mut state, clock.now());
    state
        .handle_packet(clock.now(), Packet::PubRec(Ack::new(q2)))
        .unwrap();
    let mut incoming = message("t", QoS::ExactlyOnce);
    incoming.packet_id = 5;
    state
        .handle_packet(clock.now(), Packet::Publish(incoming.clone()))
        .unwrap();
    state.connection_lost();
    events(&mut state);

    state.connect(clock.now()).unwrap();
    drain(&mut state, clock.now());
    state
        .handle_packet(clock.now(), connack(false, Default::default()))
        .unwrap();
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(q1, false)]
    );
    let evs = events(&mut state);
    assert_eq!(
        evs[0],
        Event::PubComp {
            packet_id: q2,
            reason_code: ReasonCode::SUCCESS
        }
    );
    assert_eq!(state.inflight(), 1);
    // The server forgot the incoming QoS 2 message, so a new one with the
    // same id is delivered.
    state
        .handle_packet(clock.now(), Packet::Publish(incoming.clone()))
        .unwrap();
    assert_eq!(events(&mut state), vec![Event::Message(incoming)]);
}

#[test]
fn reconnect_respects_a_smaller_receive_maximum() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").protocol(Protocol::V5),
        Default::default(),
        &clock,
    );
    for _ in 0..5 {
        state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    }
    drain(&mut state, clock.now());
    state.connection_lost();
    state.connect(clock.now()).unwrap();
    drain(&mut state, clock.now());
    let props = ConnAckProperties {
        receive_maximum: Some(2),
        ..Default::default()
    };
    state
        .handle_packet(clock.now(), connack(true, props))
        .unwrap();
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(1, true), (2, true)]
    );
    state
        .handle_packet(clock.now(), Packet::PubAck(Ack::new(1)))
        .unwrap();
    assert_eq!(
        publish_ids(&drain(&mut state, clock.now())),
        vec![(3, true)]
    );
}

#[test]
fn subscriptions_in_flight_are_abandoned_on_disconnect() {
    let clock = Clock::new();
    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);
    let sub = Subscription {
        filter: "x".into(),
        options: Default::default(),
    };
    let id = state.subscribe(vec![sub]).unwrap();
    state.connection_lost();
    state.connect(clock.now()).unwrap();
    state
        .handle_packet(clock.now(), connack(false, Default::default()))
        .unwrap();
    events(&mut state);
    let suback = SubAck {
        packet_id: id,
        properties: Default::default(),
        reason_codes: vec![ReasonCode::SUCCESS],
    };
    state
        .handle_packet(clock.now(), Packet::SubAck(suback))
        .unwrap();
    assert!(events(&mut state).is_empty());
}

#[test]
fn packet_ids_skip_ids_in_use_and_wrap() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").max_inflight(1),
        Default::default(),
        &clock,
    );
    state.next_packet_id = u16::MAX;
    assert_eq!(
        state.publish(message("t", QoS::AtLeastOnce)).unwrap(),
        u16::MAX
    );
    assert_eq!(state.publish(message("t", QoS::AtLeastOnce)).unwrap(), 1);
    state.next_packet_id = u16::MAX;
    assert_eq!(state.publish(message("t", QoS::AtLeastOnce)).unwrap(), 2);
}

#[test]
fn packet_ids_run_out() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").max_inflight(1),
        Default::default(),
        &clock,
    );
    for _ in 0..u16::MAX {
        state.publish(message("t", QoS::AtLeastOnce)).unwrap();
    }
    assert!(matches!(
        state.publish(message("t", QoS::AtLeastOnce)),
        Err(ClientError::PacketIdsExhausted)
    ));
}

#[test]
fn server_limits_are_enforced() {
    let clock = Clock::new();
    let props = ConnAckProperties {
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        ..Default::default()
    };
    let mut state = connected(
        ConnectOptions::new("a").protocol(Protocol::V5),
        props,
        &clock,
    );
    assert!(matches!(
        state.publish(message("t", QoS::ExactlyOnce)),
        Err(ClientError::QosNotSupported(QoS::ExactlyOnce))
    ));
    let mut retained = message("t", QoS::AtMostOnce);
    retained.retain = true;
    assert!(matches!(
        state.publish(retained),
        Err(ClientError::RetainNotSupported)
    ));
}

#[test]
fn server_disconnect_and_local_disconnect() {
    let clock = Clock::new();
    let mut state = connected(
        ConnectOptions::new("a").protocol(Protocol::V5),
        Default::default(),
        &clock,
    );
    let d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
    state
        .handle_packet(clock.now(), Packet::Disconnect(d.clone()))
        .unwrap();
    assert_eq!(
        events(&mut state),
        vec![Event::Disconnected {
            reason: DisconnectReason::Server(Box::new(d))
        }]
    );

    let mut state = connected(ConnectOptions::new("a"), Default::default(), &clock);
    state.disconnect().unwrap();
    assert_eq!(state.phase(), Phase::Disconnected);
    assert_eq!(
        drain(&mut state, clock.now()),
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::NORMAL_DISCONNECTION
        ))]
    );
    assert!(matches!(state.disconnect(), Err(ClientError::NotConnected)));
}
