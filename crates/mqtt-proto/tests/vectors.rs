//! Known-good byte vectors for every packet type in both versions.
//!
//! Most were captured from mosquitto 2 and its `mosquitto_pub` /
//! `mosquitto_sub` clients through a recording proxy; the rest are written
//! by hand from the spec. Where mosquitto orders properties as we do, the
//! vector is checked in both directions; otherwise it is decoded and then
//! round-tripped through our own encoding.

use bytes::{Bytes, BytesMut};
use mqtt_proto::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Decodes the whole of `bytes` as exactly one packet.
fn dec(bytes: &[u8], protocol: Protocol) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, usize::MAX)
        .unwrap()
        .expect("complete packet");
    assert!(buf.is_empty(), "decode left {} bytes", buf.len());
    packet
}

fn enc(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).unwrap();
    assert_eq!(encoded_len(packet, protocol), buf.len());
    buf.to_vec()
}

/// The vector decodes to `packet` and `packet` encodes to the vector.
fn both_ways(vector: &str, protocol: Protocol, packet: Packet) {
    let bytes = hex(vector);
    assert_eq!(dec(&bytes, protocol), packet, "decoding {vector}");
    assert_eq!(enc(&packet, protocol), bytes, "encoding {packet:?}");
}

/// The vector decodes to `packet`, which survives our own round trip.
fn decodes_to(vector: &str, protocol: Protocol, packet: Packet) {
    let bytes = hex(vector);
    assert_eq!(dec(&bytes, protocol), packet, "decoding {vector}");
    assert_eq!(dec(&enc(&packet, protocol), protocol), packet);
}

fn s(v: &'static str) -> ByteString {
    ByteString::from_static(v)
}

fn connect(protocol: Protocol, client_id: &'static str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

fn publish(qos: QoS, retain: bool, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        qos,
        retain,
        topic: s("a/b"),
        packet_id,
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }
}

fn sub(filter: &'static str, qos: QoS) -> Subscription {
    Subscription {
        filter: s(filter),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    }
}

const V3: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

#[test]
fn v311_connect_plain_with_credentials_and_will() {
    both_ways(
        "101200044d5154540402003c0006707562333131",
        V3,
        Packet::Connect(Box::new(connect(V3, "pub311"))),
    );
    let mut c = connect(V3, "pub311q2");
    c.username = Some(s("user"));
    c.password = Some(Bytes::from_static(b"pass"));
    both_ways(
        "102000044d51545404c2003c00087075623331317132000475736572000470617373",
        V3,
        Packet::Connect(Box::new(c)),
    );
    let mut c = connect(V3, "w311");
    c.keep_alive = 30;
    c.will = Some(LastWill {
        topic: s("will/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    both_ways(
        "101d00044d515454042e001e000477333131000677696c6c2f740003627965",
        V3,
        Packet::Connect(Box::new(c)),
    );
    let mut c = connect(V3, "unsub311");
    c.clean_start = false;
    both_ways(
        "101400044d5154540400003c0008756e737562333131",
        V3,
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn v31_connect_uses_mqisdp() {
    // A CONNECT declares its own version whatever the connection assumed.
    let packet = Packet::Connect(Box::new(connect(Protocol::V31, "id")));
    let vector = "1010 0006 4d5149736470 03 02 003c 0002 6964";
    assert_eq!(dec(&hex(vector), V5), packet);
    both_ways(vector, V3, packet);
}

#[test]
fn v311_connack_return_codes() {
    both_ways("20020000", V3, Packet::ConnAck(ConnAck::default()));
    both_ways(
        "20020100",
        V3,
        Packet::ConnAck(ConnAck {
            session_present: true,
            ..ConnAck::default()
        }),
    );
    for (code, reason) in [
        (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
        (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        (3, ReasonCode::SERVER_UNAVAILABLE),
        (4, ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (5, ReasonCode::NOT_AUTHORIZED),
    ] {
        both_ways(
            &format!("2002000{code}"),
            V3,
            Packet::ConnAck(ConnAck {
                reason_code: reason,
                ..ConnAck::default()
            }),
        );
    }
    // A v5-only reason maps to the closest v3.1.1 return code.
    let banned = Packet::ConnAck(ConnAck {
        reason_code: ReasonCode::BANNED,
        ..ConnAck::default()
    });
    assert_eq!(enc(&banned, V3), hex("20020005"));
}

#[test]
fn v311_publish_all_qos() {
    both_ways(
        "30060003612f6278",
        V3,
        Packet::Publish(publish(QoS::AtMostOnce, false, 0, b"x")),
    );
    both_ways(
        "320c0003612f62000168656c6c6f",
        V3,
        Packet::Publish(publish(QoS::AtLeastOnce, false, 1, b"hello")),
    );
    both_ways(
        "33090003612f6200016869",
        V3,
        Packet::Publish(publish(QoS::AtLeastOnce, true, 1, b"hi")),
    );
    both_ways(
        "35090003612f6200016869",
        V3,
        Packet::Publish(publish(QoS::ExactlyOnce, true, 1, b"hi")),
    );
    let mut dup = publish(QoS::AtLeastOnce, false, 1, b"");
    dup.dup = true;
    both_ways("3a070003612f620001", V3, Packet::Publish(dup));
}

#[test]
fn v311_acks() {
    both_ways("40020001", V3, Packet::PubAck(Ack::new(1)));
    both_ways("50020001", V3, Packet::PubRec(Ack::new(1)));
    both_ways("62020001", V3, Packet::PubRel(Ack::new(1)));
    both_ways("70020001", V3, Packet::PubComp(Ack::new(1)));
    // v5-only reason codes and properties are dropped for v3.1.1.
    let mut ack = Ack::with_reason(0x1234, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    ack.properties.reason_string = Some(s("nobody"));
    assert_eq!(enc(&Packet::PubAck(ack), V3), hex("40021234"));
}

#[test]
fn v311_subscribe_suback() {
    both_ways(
        "820e00010003612f2b010003622f2301",
        V3,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![sub("a/+", QoS::AtLeastOnce), sub("b/#", QoS::AtLeastOnce)],
        }),
    );
    both_ways(
        "900400010101",
        V3,
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_1],
        }),
    );
    both_ways(
        "9003000180",
        V3,
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::UNSPECIFIED_ERROR],
        }),
    );
    // Every v5 failure code is 0x80 in v3.1.1.
    let refused = Packet::SubAck(SubAck {
        packet_id: 1,
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::NOT_AUTHORIZED, ReasonCode::GRANTED_QOS_2],
    });
    assert_eq!(enc(&refused, V3), hex("900400018002"));
}

#[test]
fn v311_unsubscribe_unsuback_ping_disconnect() {
    both_ways(
        "a20700020003612f2b",
        V3,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            user_properties: vec![],
            filters: vec![s("a/+")],
        }),
    );
    both_ways(
        "b0020002",
        V3,
        Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: AckProperties::default(),
            reason_codes: vec![],
        }),
    );
    both_ways("c000", V3, Packet::PingReq);
    both_ways("d000", V3, Packet::PingResp);
    both_ways("e000", V3, Packet::Disconnect(Disconnect::default()));
    // v3.1.1 DISCONNECT has no reason: it is always empty.
    let with_will = Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL));
    assert_eq!(enc(&with_will, V3), hex("e000"));
}

#[test]
fn v311_cannot_send_auth() {
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(&Packet::Auth(Auth::default()), V3, &mut buf),
        Err(EncodeError::NotInProtocol("AUTH"))
    );
    assert!(buf.is_empty());
}

#[test]
fn v5_connect_with_properties() {
    let mut c = connect(V5, "pub5");
    c.properties.receive_maximum = Some(20);
    both_ways(
        "101400044d5154540502003c03210014000470756235",
        V5,
        Packet::Connect(Box::new(c)),
    );
    let mut c = connect(V5, "pub5q2");
    c.properties.session_expiry_interval = Some(100);
    c.properties.receive_maximum = Some(20);
    both_ways(
        "101b00044d5154540502003c0811000000642100140006707562357132",
        V5,
        Packet::Connect(Box::new(c)),
    );
    // Hand-written: a will with properties, and a password without user
    // name (allowed in v5).
    let mut c = connect(V5, "c");
    c.will = Some(LastWill {
        topic: s("w"),
        payload: Bytes::from_static(b"z"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(5),
            ..WillProperties::default()
        },
    });
    c.password = Some(Bytes::from_static(b"pw"));
    both_ways(
        "101e 00044d515454 05 46 003c 00 000163 05 1800000005 000177 00017a 00027077",
        V5,
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn v5_connack_from_mosquitto() {
    decodes_to(
        "200900000622000a210014",
        V5,
        Packet::ConnAck(ConnAck {
            properties: ConnAckProperties {
                topic_alias_maximum: Some(10),
                receive_maximum: Some(20),
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        }),
    );
    // Our order: receive maximum first.
    both_ways(
        "20090000062100142200 0a",
        V5,
        Packet::ConnAck(ConnAck {
            properties: ConnAckProperties {
                topic_alias_maximum: Some(10),
                receive_maximum: Some(20),
                ..ConnAckProperties::default()
            },
            ..ConnAck::default()
        }),
    );
    both_ways(
        "2003018700",
        V5,
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: ConnAckProperties::default(),
        }),
    );
}

#[test]
fn v5_publish_with_properties() {
    let mut p = publish(QoS::AtLeastOnce, false, 1, b"hello");
    p.properties.user_properties = vec![(s("k"), s("v"))];
    p.properties.message_expiry_interval = Some(60);
    p.properties.content_type = Some(s("text/plain"));
    decodes_to(
        "32260003612f620001192600016b000176020000003c03000a746578742f706c61696e68656c6c6f",
        V5,
        Packet::Publish(p),
    );
    let mut p = publish(QoS::AtMostOnce, false, 0, b"r");
    p.properties.response_topic = Some(s("resp/t"));
    p.properties.correlation_data = Some(Bytes::from_static(b"abc"));
    p.properties.payload_format_indicator = Some(true);
    decodes_to(
        "30180003612f6211080006726573702f74090003616263010172",
        V5,
        Packet::Publish(p),
    );
    both_ways(
        "340a0003612f620001006869",
        V5,
        Packet::Publish(publish(QoS::ExactlyOnce, false, 1, b"hi")),
    );
    let mut p = publish(QoS::ExactlyOnce, true, 1, b"hi");
    p.properties.subscription_identifiers = vec![7];
    both_ways("350c0003612f620001020b076869", V5, Packet::Publish(p));
    // An empty topic stands for the topic alias.
    let mut p = publish(QoS::AtMostOnce, false, 0, b"");
    p.topic = ByteString::new();
    p.properties.topic_alias = Some(3);
    both_ways("3006 0000 03 230003", V5, Packet::Publish(p));
}

#[test]
fn v5_acks_short_and_long_forms() {
    both_ways("40020001", V5, Packet::PubAck(Ack::new(1)));
    both_ways(
        "4003000110",
        V5,
        Packet::PubAck(Ack::with_reason(1, ReasonCode::NO_MATCHING_SUBSCRIBERS)),
    );
    both_ways("50020001", V5, Packet::PubRec(Ack::new(1)));
    both_ways("62020001", V5, Packet::PubRel(Ack::new(1)));
    both_ways("70020001", V5, Packet::PubComp(Ack::new(1)));
    let mut ack = Ack::with_reason(1, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    ack.properties.reason_string = Some(s("gone"));
    both_ways("620b 0001 92 07 1f0004676f6e65", V5, Packet::PubRel(ack));
    // A reason code followed by an empty property list is also valid.
    assert_eq!(
        dec(&hex("400400011000"), V5),
        Packet::PubAck(Ack::with_reason(1, ReasonCode(0x10)))
    );
    assert_eq!(dec(&hex("5004000100 00"), V5), Packet::PubRec(Ack::new(1)));
}

#[test]
fn v5_subscribe_unsubscribe() {
    both_ways(
        "82090001000003612f2b01",
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![sub("a/+", QoS::AtLeastOnce)],
        }),
    );
    both_ways(
        "82120001090b072600016b0001760003612f2b02",
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties {
                subscription_identifier: Some(7),
                user_properties: vec![(s("k"), s("v"))],
            },
            subscriptions: vec![sub("a/+", QoS::ExactlyOnce)],
        }),
    );
    // All option bits: QoS 1, no local, retain as published, handling 2.
    both_ways(
        "820900010000 03612f2b 2d",
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![Subscription {
                filter: s("a/+"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        }),
    );
    both_ways(
        "900400010002",
        V5,
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::GRANTED_QOS_2],
        }),
    );
    both_ways(
        "a2080002000003612f2b",
        V5,
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            user_properties: vec![],
            filters: vec![s("a/+")],
        }),
    );
    both_ways(
        "b00400020011",
        V5,
        Packet::UnsubAck(UnsubAck {
            packet_id: 2,
            properties: AckProperties::default(),
            reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        }),
    );
}

#[test]
fn v5_shared_subscription_filter() {
    both_ways(
        "8215 0001 00 000f 2473686172652f672f7365 6e73 2f23 01",
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            subscriptions: vec![sub("$share/g/sens/#", QoS::AtLeastOnce)],
        }),
    );
}

#[test]
fn v5_ping_disconnect_auth() {
    both_ways("c000", V5, Packet::PingReq);
    both_ways("d000", V5, Packet::PingResp);
    both_ways("e000", V5, Packet::Disconnect(Disconnect::default()));
    both_ways(
        "e00104",
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL)),
    );
    let mut d = Disconnect::new(ReasonCode::SERVER_SHUTTING_DOWN);
    d.properties.session_expiry_interval = Some(0);
    d.properties.server_reference = Some(s("b"));
    both_ways("e00b 8b 09 1100000000 1c000162", V5, Packet::Disconnect(d));
    // Reason 0 with an empty property list is a normal disconnection.
    assert_eq!(
        dec(&hex("e0020000"), V5),
        Packet::Disconnect(Disconnect::default())
    );

    both_ways("f000", V5, Packet::Auth(Auth::default()));
    both_ways(
        "f00f 18 0d 150005534352414d 1600026162",
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some(s("SCRAM")),
                authentication_data: Some(Bytes::from_static(b"ab")),
                ..AuthProperties::default()
            },
        }),
    );
}

#[test]
fn decoded_fields_share_the_read_buffer() {
    let bytes = hex("320c0003612f62000168656c6c6f");
    let mut buf = BytesMut::from(&bytes[..]);
    buf.reserve(64);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, V3, 1024).unwrap() else {
        panic!("not a PUBLISH");
    };
    // The payload points into the original allocation: no copy was made.
    assert_eq!(p.payload.as_ptr() as usize, start + 9);
    assert_eq!(p.topic.as_bytes().as_ptr() as usize, start + 4);
}

#[test]
fn several_packets_in_one_buffer() {
    let mut buf = BytesMut::from(&hex("40020001 50020002 c000 3006 0003612f62 78 32")[..]);
    assert_eq!(
        decode(&mut buf, V3, 1024),
        Ok(Some(Packet::PubAck(Ack::new(1))))
    );
    assert_eq!(
        decode(&mut buf, V3, 1024),
        Ok(Some(Packet::PubRec(Ack::new(2))))
    );
    assert_eq!(decode(&mut buf, V3, 1024), Ok(Some(Packet::PingReq)));
    assert_eq!(
        decode(&mut buf, V3, 1024),
        Ok(Some(Packet::Publish(publish(
            QoS::AtMostOnce,
            false,
            0,
            b"x"
        ))))
    );
    assert_eq!(decode(&mut buf, V3, 1024), Ok(None));
    assert_eq!(&buf[..], &[0x32]);
}

#[test]
fn peek_header_reports_sizes() {
    assert_eq!(peek_header(&[]), Ok(None));
    assert_eq!(peek_header(&[0x30]), Ok(None));
    assert_eq!(peek_header(&[0x30, 0x80]), Ok(None));
    assert_eq!(
        peek_header(&[0x35, 0x80, 0x01]),
        Ok(Some(FixedHeader {
            packet_type: 3,
            flags: 5,
            remaining_length: 128,
            header_len: 3
        }))
    );
    assert_eq!(
        peek_header(&[0xE0, 0xFF, 0xFF, 0xFF, 0x7F])
            .unwrap()
            .unwrap()
            .remaining_length,
        268_435_455
    );
}

#[test]
fn encoded_len_matches_large_remaining_lengths() {
    for size in [
        0usize, 120, 121, 122, 16_380, 16_383, 16_384, 2_097_150, 2_097_152,
    ] {
        let p = Packet::Publish(Publish {
            topic: s("t"),
            payload: Bytes::from(vec![7u8; size]),
            ..Publish::default()
        });
        for protocol in [V3, V5] {
            let bytes = enc(&p, protocol);
            assert_eq!(dec(&bytes, protocol), p);
        }
    }
}
