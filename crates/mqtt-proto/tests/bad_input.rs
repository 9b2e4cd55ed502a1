//! Bad input: each malformed or forbidden packet maps to the right
//! [`DecodeError`] and so to the right MQTT 5 reason code; bad packets on
//! the encoding side are refused without writing anything.

use bytes::{Bytes, BytesMut};
use mqtt_proto::*;

const V3: Protocol = Protocol::V311;
const V5: Protocol = Protocol::V5;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn try_decode(vector: &str, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(&hex(vector)[..]), protocol, 1 << 20)
}

/// Decoding `vector` fails with an error whose reason code is `reason`.
#[track_caller]
fn rejects(vector: &str, protocol: Protocol, reason: ReasonCode) -> DecodeError {
    match try_decode(vector, protocol) {
        Err(e) => {
            assert_eq!(e.reason_code(), reason, "{vector}: {e}");
            e
        }
        Ok(p) => panic!("{vector} decoded as {p:?}"),
    }
}

#[track_caller]
fn accepts(vector: &str, protocol: Protocol) -> Packet {
    match try_decode(vector, protocol) {
        Ok(Some(p)) => p,
        other => panic!("{vector}: {other:?}"),
    }
}

const MALFORMED: ReasonCode = ReasonCode::MALFORMED_PACKET;
const PROTOCOL: ReasonCode = ReasonCode::PROTOCOL_ERROR;

#[test]
fn truncated_packets_wait_for_more() {
    let full = hex("320c0003612f62000168656c6c6f");
    for cut in 0..full.len() {
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(decode(&mut buf, V3, 1024), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed");
    }
}

#[test]
fn remaining_length_shorter_than_content() {
    // The topic length says 5 bytes but the packet ends after 3.
    rejects("3005 0005 612f62", V3, MALFORMED);
    // PUBLISH QoS 1 without room for its packet identifier.
    rejects("3205 0003 612f62", V3, MALFORMED);
    // CONNECT cut inside the protocol name.
    rejects("1003 0004 4d", V5, MALFORMED);
    // An ack with one byte.
    rejects("400100", V5, MALFORMED);
    // A property length larger than what is left.
    rejects("3208 0003612f62 0001 09", V5, MALFORMED);
    // A property whose value runs past the property block.
    rejects("320a 0003612f62 0001 02 0200", V5, MALFORMED);
}

#[test]
fn remaining_length_longer_than_content() {
    rejects("40030001 00", V3, MALFORMED);
    rejects("c00100", V3, MALFORMED);
    rejects("d00100", V5, MALFORMED);
    rejects("e00100", V3, MALFORMED);
    rejects("b003000200", V3, MALFORMED);
    rejects("20030000 00", V3, MALFORMED);
    // CONNECT with one stray byte after the client identifier.
    rejects("100f 00044d515454 04 02 003c 0002 6964 ff", V3, MALFORMED);
}

#[test]
fn reserved_fixed_header_flags() {
    rejects("41020001", V3, MALFORMED); // PUBACK flags 1
    rejects("60020001", V3, MALFORMED); // PUBREL flags 0
    rejects("63020001", V5, MALFORMED); // PUBREL flags 3
    rejects("8008 0001 0003612f62 00", V3, MALFORMED); // SUBSCRIBE flags 0
    rejects("a007 0001 0003612f62", V3, MALFORMED); // UNSUBSCRIBE flags 0
    rejects("c100", V3, MALFORMED); // PINGREQ flags 1
    rejects("e800", V5, MALFORMED); // DISCONNECT flags 8
    rejects(
        "1112 00044d515454 04 02 003c 0006 707562333131",
        V3,
        MALFORMED,
    );
    rejects("0000", V5, MALFORMED); // type 0 is reserved
                                    // Flags are checked from the header alone, before the body arrives.
    rejects("6102", V3, MALFORMED);
}

#[test]
fn publish_flags() {
    rejects("3607 0003612f62 0001", V3, MALFORMED); // QoS 3
    rejects("3805 0003612f62", V3, MALFORMED); // DUP at QoS 0
    rejects("3805 0003612f62", V5, MALFORMED);
}

#[test]
fn connect_flags() {
    let connect = |flags: &str| format!("100f 00044d515454 04 {flags} 003c 0003 616263");
    rejects(&connect("03"), V3, MALFORMED); // reserved bit 0
    rejects(&connect("0a"), V3, MALFORMED); // will QoS 1 without will flag
    rejects(&connect("22"), V3, MALFORMED); // will retain without will flag
    rejects(&connect("1e"), V3, MALFORMED); // will QoS 3
    accepts(&connect("02"), V3);
    // Password without user name: forbidden in v3.1.1, allowed in v5.
    rejects(
        "1013 00044d515454 04 42 003c 0003 616263 0002 7077",
        V3,
        PROTOCOL,
    );
    accepts("1014 00044d515454 05 42 003c 00 0003 616263 0002 7077", V5);
}

#[test]
fn unsupported_protocol_versions() {
    let e = rejects(
        "100f 00044d515454 06 02 003c 0003 616263",
        V5,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
    assert_eq!(e, DecodeError::UnsupportedProtocolVersion(6));
    let e = rejects(
        "1011 00064d5149736470 04 02 003c 0003 616263",
        V3,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
    assert_eq!(e, DecodeError::UnsupportedProtocolVersion(4));
    let e = rejects(
        "100e 0003 464f4f 04 02 003c 0003 616263",
        V3,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
    assert_eq!(e, DecodeError::UnsupportedProtocolVersion(4));
}

#[test]
fn invalid_utf8_and_nul() {
    // 0xC3 0x28 is not UTF-8.
    rejects("3006 0002 c328 78 78", V3, MALFORMED);
    // An encoded surrogate (U+D800) is not UTF-8 either.
    rejects("3005 0003 eda080", V5, MALFORMED);
    rejects("3005 0003 610062", V3, MALFORMED);
    // Bad client identifier, user name and user property.
    rejects("100f 00044d515454 04 02 003c 0003 61ff63", V3, MALFORMED);
    rejects("3210 0003612f62 0001 08 2600016b0002c328", V5, MALFORMED);
    // Multi-byte UTF-8 is fine.
    accepts("3005 0003 c3a978", V3);
}

#[test]
fn topic_names() {
    let e = rejects("3007 0005 612f2b2f62", V3, ReasonCode::TOPIC_NAME_INVALID);
    assert_eq!(e, DecodeError::TopicNameInvalid);
    rejects("3005 0003 612f23", V5, ReasonCode::TOPIC_NAME_INVALID);
    rejects("3003 0001 23", V5, ReasonCode::TOPIC_NAME_INVALID);
    // Empty topic: invalid in v3.1.1; in v5 only with a topic alias.
    rejects("3002 0000", V3, ReasonCode::TOPIC_NAME_INVALID);
    rejects("3003 0000 00", V5, PROTOCOL);
    accepts("3006 0000 03 230001", V5);
    // A will topic is a topic name too.
    rejects(
        "1016 00044d515454 04 06 003c 0001 63 0003 612f23 0002 6869",
        V3,
        ReasonCode::TOPIC_NAME_INVALID,
    );
    // Response topic must not hold wildcards.
    rejects("300a 0003612f62 04 08000123", V5, PROTOCOL);
}

#[test]
fn packet_too_large_before_the_body_arrives() {
    // Only the header is here: it announces 16,383 bytes.
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0x7F][..]);
    assert_eq!(
        decode(&mut buf, V5, 1000),
        Err(DecodeError::PacketTooLarge {
            size: 16_386,
            max: 1000
        })
    );
    assert_eq!(
        DecodeError::PacketTooLarge { size: 1, max: 0 }.reason_code(),
        ReasonCode::PACKET_TOO_LARGE
    );
    // The limit counts the fixed header: a 16-byte packet fits in 16.
    let p = hex("320e0003612f62000168656c6c6f2121");
    assert!(decode(&mut BytesMut::from(&p[..]), V3, 16)
        .unwrap()
        .is_some());
    assert!(matches!(
        decode(&mut BytesMut::from(&p[..]), V3, 15),
        Err(DecodeError::PacketTooLarge { size: 16, max: 15 })
    ));
}

#[test]
fn remaining_length_encoding() {
    // A fifth length byte is malformed as soon as the fourth shows it.
    rejects("30 80808080 01", V3, MALFORMED);
    rejects("30 80808080", V5, MALFORMED);
    assert!(peek_header(&[0x30, 0x80, 0x80, 0x80, 0x80]).is_err());
    // Non-minimal encodings are malformed [MQTT-1.5.5-1].
    rejects("c0 8000", V3, MALFORMED);
    rejects("30 8580 00", V3, MALFORMED);
}

#[test]
fn packet_identifier_zero() {
    rejects("3207 0003612f62 0000", V3, PROTOCOL);
    rejects("40020000", V3, PROTOCOL);
    rejects("62020000", V5, PROTOCOL);
    rejects("9003 0000 00", V3, PROTOCOL);
    rejects("b0020000", V3, PROTOCOL);
    rejects("8208 0000 0003612f62 00", V3, PROTOCOL);
    rejects("a207 0000 0003612f62", V3, PROTOCOL);
}

#[test]
fn subscribe_payload() {
    // No filters at all.
    rejects("82020001", V3, PROTOCOL);
    rejects("8203000100", V5, PROTOCOL);
    rejects("a2020001", V3, PROTOCOL);
    rejects("a203000100", V5, PROTOCOL);
    // v3.1.1: only the two QoS bits may be set.
    rejects("8208 0001 0003612f62 04", V3, MALFORMED);
    rejects("8208 0001 0003612f62 03", V3, MALFORMED);
    // v5: bits 6-7 reserved; QoS 3 and retain handling 3 are protocol errors.
    rejects("8209 0001 00 0003612f62 40", V5, MALFORMED);
    rejects("8209 0001 00 0003612f62 03", V5, PROTOCOL);
    rejects("8209 0001 00 0003612f62 30", V5, PROTOCOL);
    // Invalid filters.
    for filter in ["a/#/b", "a+", "#/a", "$share/g", "$share//a", "$share/g+/a"] {
        let f = filter.as_bytes();
        let body = format!(
            "0001 00 {:04x} {} 00",
            f.len(),
            f.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let vector = format!("82{:02x} {body}", 2 + 1 + 2 + f.len() + 1);
        let e = rejects(&vector, V5, ReasonCode::TOPIC_FILTER_INVALID);
        assert_eq!(e, DecodeError::TopicFilterInvalid);
    }
    rejects("a206 0001 0002 6123", V3, ReasonCode::TOPIC_FILTER_INVALID);
    // Shared filters are valid, but not with No Local.
    accepts("8210 0001 00 000a 2473686172652f672f61 00", V5);
    rejects("8210 0001 00 000a 2473686172652f672f61 04", V5, PROTOCOL);
}

#[test]
fn reserved_return_codes() {
    rejects("20020006", V3, MALFORMED);
    rejects("20020200", V3, MALFORMED); // CONNACK reserved flag bits
    rejects("20030200 00", V5, MALFORMED);
    rejects("9003000103", V3, MALFORMED); // SUBACK 0x03
    rejects("9003000181", V3, MALFORMED);
    rejects("90030001 00", V5, PROTOCOL); // SUBACK without codes
    rejects("b0030002 00", V5, PROTOCOL);
}

#[test]
fn auth_is_reserved_in_v311() {
    rejects("f000", V3, MALFORMED);
    rejects("f000", Protocol::V31, MALFORMED);
    accepts("f000", V5);
}

#[test]
fn properties_not_allowed_in_the_packet() {
    // Session expiry in PUBLISH.
    rejects("300b 0003612f62 05 1100000001", V5, MALFORMED);
    // Unknown identifier 0x7F; a two-byte identifier.
    rejects("3008 0003612f62 02 7f00", V5, MALFORMED);
    rejects("3008 0003612f62 02 8001", V5, MALFORMED);
    // Topic alias in a will; receive maximum in DISCONNECT.
    rejects(
        "1017 00044d515454 05 06 003c 00 0001 63 03 230001 0001 77 0000",
        V5,
        MALFORMED,
    );
    rejects("e005 00 03 210001", V5, MALFORMED);
    // Anything but user properties in UNSUBSCRIBE.
    rejects("a20c 0001 04 1f000178 0003612f62", V5, MALFORMED);
}

#[test]
fn duplicated_properties() {
    rejects("3010 0003612f62 0a 0200000001 0200000002", V5, PROTOCOL);
    rejects("e00a 00 08 1f000161 1f000162", V5, PROTOCOL);
    rejects("820d 0001 04 0b01 0b02 0003612f62 00", V5, PROTOCOL);
    // User properties repeat freely, subscription identifiers in PUBLISH.
    let Packet::Publish(p) = accepts(
        "3018 0003612f62 12 2600016b000176 2600016b000177 0b01 0b02",
        V5,
    ) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
}

#[test]
fn property_values_out_of_range() {
    rejects("3008 0003612f62 02 0b00", V5, PROTOCOL); // subscription id 0
    rejects("3009 0003612f62 03 230000", V5, PROTOCOL); // topic alias 0
    rejects("3008 0003612f62 02 0102", V5, PROTOCOL); // payload format 2
    rejects("2006 0000 03 210000", V5, PROTOCOL); // receive maximum 0
    rejects("2008 0000 05 2700000000", V5, PROTOCOL); // max packet size 0
    rejects("2005 0000 02 2402", V5, PROTOCOL); // maximum QoS 2
    rejects("2005 0000 02 2502", V5, PROTOCOL); // retain available 2
    rejects("1010 00044d515454 05 02 003c 02 1702 0001 63", V5, PROTOCOL);
    // A subscription identifier longer than four bytes.
    rejects("300b 0003612f62 05 0b80808080", V5, MALFORMED);
    // Authentication data needs an authentication method.
    rejects(
        "1012 00044d515454 05 02 003c 04 16000178 0001 63",
        V5,
        PROTOCOL,
    );
}

#[test]
fn reason_codes_of_every_error() {
    for (e, code) in [
        (DecodeError::Malformed("x"), 0x81),
        (DecodeError::Protocol("x"), 0x82),
        (DecodeError::UnsupportedProtocolVersion(9), 0x84),
        (DecodeError::TopicFilterInvalid, 0x8F),
        (DecodeError::TopicNameInvalid, 0x90),
        (DecodeError::PacketTooLarge { size: 2, max: 1 }, 0x95),
    ] {
        assert_eq!(e.reason_code(), ReasonCode(code));
    }
}

#[test]
fn encoder_refuses_what_it_cannot_express() {
    let long = ByteString::from("x".repeat(65_536));
    let mut buf = BytesMut::from(&b"keep"[..]);
    let p = Packet::Publish(Publish {
        topic: long.clone(),
        ..Publish::default()
    });
    assert_eq!(encode(&p, V5, &mut buf), Err(EncodeError::FieldTooLong));
    let mut p = Publish {
        topic: ByteString::from_static("t"),
        ..Publish::default()
    };
    p.properties.user_properties.push((ByteString::new(), long));
    assert_eq!(
        encode(&Packet::Publish(p.clone()), V5, &mut buf),
        Err(EncodeError::FieldTooLong)
    );
    // v3.1.1 drops properties, so the same packet is fine there.
    let mut v3 = BytesMut::new();
    encode(&Packet::Publish(p), V3, &mut v3).unwrap();
    assert_eq!(&v3[..], &hex("3003 000174")[..]);

    let p = Packet::Connect(Box::new(Connect {
        protocol: V3,
        clean_start: true,
        keep_alive: 0,
        client_id: ByteString::new(),
        will: None,
        username: None,
        password: Some(Bytes::from_static(b"pw")),
        properties: ConnectProperties::default(),
    }));
    assert!(matches!(
        encode(&p, V3, &mut buf),
        Err(EncodeError::NotInProtocol(_))
    ));
    let mut sub = Publish {
        topic: ByteString::from_static("t"),
        ..Publish::default()
    };
    sub.properties.subscription_identifiers.push(268_435_456);
    assert!(matches!(
        encode(&Packet::Publish(sub), V5, &mut buf),
        Err(EncodeError::InvalidValue(_))
    ));
    let huge = Packet::Publish(Publish {
        topic: ByteString::from_static("t"),
        payload: Bytes::from(vec![0u8; 268_435_455]),
        ..Publish::default()
    });
    assert!(matches!(
        encode(&huge, V3, &mut buf),
        Err(EncodeError::PacketTooLarge(_))
    ));
    // Nothing was appended by any refused packet.
    assert_eq!(&buf[..], b"keep");
}

#[test]
fn encoder_never_sets_dup_at_qos_0() {
    let p = Packet::Publish(Publish {
        dup: true,
        topic: ByteString::from_static("t"),
        ..Publish::default()
    });
    let mut buf = BytesMut::new();
    encode(&p, V3, &mut buf).unwrap();
    assert_eq!(buf[0], 0x30);
}
