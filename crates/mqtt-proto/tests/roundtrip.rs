//! Property tests: arbitrary valid packets of every type, with every
//! property, in both versions, survive encode -> decode unchanged;
//! `encoded_len` is exact; a packet arriving a byte at a time is `Ok(None)`
//! until its last byte; and no input, random or a mutated valid packet,
//! makes the decoder panic.

use bytes::{Bytes, BytesMut};
use mqtt_proto::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

// Leaves: strings, topics, filters, binary data.

fn text() -> impl Strategy<Value = ByteString> {
    // Any characters but U+0000, including multi-byte ones.
    "[^\u{0}]{0,6}".prop_map(ByteString::from)
}

fn topic_name() -> impl Strategy<Value = ByteString> {
    "[a-z0-9/$é€ ]{1,10}".prop_map(ByteString::from)
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![Just("+".to_string()), "[a-z0-9é]{0,4}"]
}

fn filter() -> impl Strategy<Value = (ByteString, bool)> {
    let plain = (vec(level(), 1..4), any::<bool>()).prop_map(|(levels, hash)| {
        let mut f = levels.join("/");
        if hash {
            f.push_str("/#");
        } else if f.is_empty() {
            f.push('#');
        }
        f
    });
    (plain, of("[a-z0-9]{1,4}")).prop_map(|(f, group)| match group {
        Some(g) => (ByteString::from(format!("$share/{g}/{f}")), true),
        None => (ByteString::from(f), false),
    })
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn reason() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode)
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn sub_id() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

// Property structs (v5 only; v3.1.1 packets carry the defaults).

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(1..=u32::MAX),
            of(any::<u16>()),
        ),
        (of(any::<bool>()), of(any::<bool>()), users()),
        of((text(), of(binary()))),
    )
        .prop_map(|((sei, rm, mps, tam), (rri, rpi, user), auth)| {
            let (method, data) = match auth {
                Some((m, d)) => (Some(m), d),
                None => (None, None),
            };
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: method,
                authentication_data: data,
            }
        })
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        of(any::<u32>()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(text()),
        of(topic_name()),
        of(binary()),
        users(),
    )
        .prop_map(|(delay, pfi, mei, ct, rt, cd, user)| WillProperties {
            will_delay_interval: delay,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        ),
        (
            of(any::<bool>()),
            of(1..=u32::MAX),
            of(text()),
            of(any::<u16>()),
        ),
        (of(text()), users(), of(any::<bool>()), of(any::<bool>())),
        (of(any::<bool>()), of(any::<u16>()), of(text()), of(text())),
        (of(text()), of(binary())),
    )
        .prop_map(|(a, b, c, d, e)| ConnAckProperties {
            session_expiry_interval: a.0,
            receive_maximum: a.1,
            maximum_qos: a.2,
            retain_available: b.0,
            maximum_packet_size: b.1,
            assigned_client_identifier: b.2,
            topic_alias_maximum: b.3,
            reason_string: c.0,
            user_properties: c.1,
            wildcard_subscription_available: c.2,
            subscription_identifiers_available: c.3,
            shared_subscription_available: d.0,
            server_keep_alive: d.1,
            response_information: d.2,
            server_reference: d.3,
            authentication_method: e.0,
            authentication_data: e.1,
        })
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        (of(any::<bool>()), of(any::<u32>()), of(1..=u16::MAX)),
        (of(topic_name()), of(binary()), users()),
        (vec(sub_id(), 0..3), of(text())),
    )
        .prop_map(|(a, b, c)| PublishProperties {
            payload_format_indicator: a.0,
            message_expiry_interval: a.1,
            topic_alias: a.2,
            response_topic: b.0,
            correlation_data: b.1,
            user_properties: b.2,
            subscription_identifiers: c.0,
            content_type: c.1,
        })
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (of(text()), users()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

// Packets. `v5` says which version the packet must be expressible in.

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol.is_v5();
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        will_properties(),
    )
        .prop_map(move |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties: if v5 {
                properties
            } else {
                WillProperties::default()
            },
        });
    (
        (any::<bool>(), any::<u16>(), text(), of(will)),
        (of(text()), of(binary()), connect_properties()),
    )
        .prop_map(
            move |(
                (clean_start, keep_alive, client_id, will),
                (username, password, properties),
            )| {
                // v3.1.1 allows a password only with a user name.
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties: if v5 {
                        properties
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
}

fn publish(v5: bool) -> impl Strategy<Value = Packet> {
    (
        (qos(), any::<bool>(), any::<bool>(), packet_id()),
        (topic_name(), any::<bool>(), publish_properties(), binary()),
    )
        .prop_map(
            move |((qos, dup, retain, id), (topic, drop_topic, properties, payload))| {
                let properties = if v5 {
                    properties
                } else {
                    PublishProperties::default()
                };
                // In v5 a topic alias may stand in for the topic name.
                let topic = if drop_topic && properties.topic_alias.is_some() {
                    ByteString::new()
                } else {
                    topic
                };
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_most_once { 0 } else { id },
                    properties,
                    payload,
                })
            },
        )
}

fn ack(v5: bool) -> impl Strategy<Value = Ack> {
    (packet_id(), reason(), ack_properties()).prop_map(move |(id, reason_code, properties)| {
        if v5 {
            Ack {
                packet_id: id,
                reason_code,
                properties,
            }
        } else {
            Ack::new(id)
        }
    })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0..3u8);
    let subscription =
        (filter(), options).prop_map(move |((filter, shared), (qos, nl, rap, rh))| {
            let options = if v5 {
                SubscriptionOptions {
                    qos,
                    // No Local is a protocol error on a shared subscription.
                    no_local: nl && !shared,
                    retain_as_published: rap,
                    retain_handling: match rh {
                        0 => RetainHandling::SendAtSubscribe,
                        1 => RetainHandling::SendIfNew,
                        _ => RetainHandling::DoNotSend,
                    },
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            };
            Subscription { filter, options }
        });
    (packet_id(), of(sub_id()), users(), vec(subscription, 1..4)).prop_map(
        move |(packet_id, id, user, subscriptions)| {
            let properties = if v5 {
                SubscribeProperties {
                    subscription_identifier: id,
                    user_properties: user,
                }
            } else {
                SubscribeProperties::default()
            };
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        },
    )
}

fn v311_suback_code() -> impl Strategy<Value = ReasonCode> {
    prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)].prop_map(ReasonCode)
}

fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let v5 = protocol.is_v5();
    let suback_code = if v5 {
        reason().boxed()
    } else {
        v311_suback_code().boxed()
    };
    let props = move |p: AckProperties| if v5 { p } else { AckProperties::default() };
    let v311_connack = prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5)]
        .prop_map(ReasonCode::from_v311_connack);
    let connack_reason = if v5 {
        reason().boxed()
    } else {
        v311_connack.boxed()
    };
    let mut choices = vec![
        connect(protocol).boxed(),
        (any::<bool>(), connack_reason, connack_properties())
            .prop_map(move |(session_present, reason_code, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties: if v5 {
                        properties
                    } else {
                        ConnAckProperties::default()
                    },
                })
            })
            .boxed(),
        publish(v5).boxed(),
        ack(v5).prop_map(Packet::PubAck).boxed(),
        ack(v5).prop_map(Packet::PubRec).boxed(),
        ack(v5).prop_map(Packet::PubRel).boxed(),
        ack(v5).prop_map(Packet::PubComp).boxed(),
        subscribe(v5).boxed(),
        (packet_id(), ack_properties(), vec(suback_code, 1..5))
            .prop_map(move |(packet_id, p, reason_codes)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    properties: props(p),
                    reason_codes,
                })
            })
            .boxed(),
        (packet_id(), users(), vec(filter(), 1..4))
            .prop_map(move |(packet_id, user, filters)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    user_properties: if v5 { user } else { Vec::new() },
                    filters: filters.into_iter().map(|(f, _)| f).collect(),
                })
            })
            .boxed(),
        (packet_id(), ack_properties(), vec(reason(), 1..5))
            .prop_map(move |(packet_id, p, codes)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties: props(p),
                    reason_codes: if v5 { codes } else { Vec::new() },
                })
            })
            .boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        (reason(), of(any::<u32>()), of(text()), users(), of(text()))
            .prop_map(move |(reason_code, sei, rs, user, sr)| {
                Packet::Disconnect(if v5 {
                    Disconnect {
                        reason_code,
                        properties: DisconnectProperties {
                            session_expiry_interval: sei,
                            reason_string: rs,
                            user_properties: user,
                            server_reference: sr,
                        },
                    }
                } else {
                    Disconnect::default()
                })
            })
            .boxed(),
    ];
    if v5 {
        choices.push(
            (reason(), of(text()), of(binary()), of(text()), users())
                .prop_map(|(reason_code, am, ad, rs, user)| {
                    Packet::Auth(Auth {
                        reason_code,
                        properties: AuthProperties {
                            authentication_method: am,
                            authentication_data: ad,
                            reason_string: rs,
                            user_properties: user,
                        },
                    })
                })
                .boxed(),
        );
    }
    proptest::strategy::Union::new(choices).boxed()
}

fn any_version_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![
        Just(Protocol::V31),
        Just(Protocol::V311),
        Just(Protocol::V5)
    ]
    .prop_flat_map(|p| packet(p).prop_map(move |packet| (p, packet)))
}

fn encode_vec(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).unwrap();
    buf.to_vec()
}

/// Decodes every packet in `bytes`; for each one also checks that it
/// re-encodes into something that decodes to the same packet. Stops at
/// the first error or incomplete packet. This is the fuzz target's body.
fn decode_all_and_reencode(bytes: &[u8], protocol: Protocol) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decode(&mut buf, protocol, 1 << 20) {
        let mut out = BytesMut::new();
        encode(&packet, protocol, &mut out).unwrap();
        assert_eq!(out.len(), encoded_len(&packet, protocol));
        let again = decode(&mut out, protocol, 1 << 20).unwrap().unwrap();
        assert_eq!(again, packet);
        assert!(out.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn encode_then_decode_is_identity((protocol, packet) in any_version_packet()) {
        let bytes = encode_vec(&packet, protocol);
        prop_assert_eq!(bytes.len(), encoded_len(&packet, protocol));
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = decode(&mut buf, protocol, bytes.len()).unwrap();
        prop_assert_eq!(decoded, Some(packet));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn byte_at_a_time_is_incomplete_until_the_end((protocol, packet) in any_version_packet()) {
        let bytes = encode_vec(&packet, protocol);
        let mut buf = BytesMut::new();
        for (i, &b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let out = decode(&mut buf, protocol, usize::MAX).unwrap();
            if i + 1 < bytes.len() {
                prop_assert_eq!(out, None);
                prop_assert_eq!(buf.len(), i + 1);
            } else {
                prop_assert_eq!(out.as_ref(), Some(&packet));
                prop_assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn split_in_two_anywhere((protocol, packet) in any_version_packet(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_vec(&packet, protocol);
        let cut = cut.index(bytes.len());
        let mut buf = BytesMut::from(&bytes[..cut]);
        prop_assert_eq!(decode(&mut buf, protocol, usize::MAX).unwrap(), None);
        buf.extend_from_slice(&bytes[cut..]);
        prop_assert_eq!(decode(&mut buf, protocol, usize::MAX).unwrap(), Some(packet));
    }

    #[test]
    fn back_to_back_packets(
        (protocol, packets) in prop_oneof![Just(Protocol::V311), Just(Protocol::V5)]
            .prop_flat_map(|p| vec(packet(p), 1..5).prop_map(move |v| (p, v)))
    ) {
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, protocol, &mut buf).unwrap();
        }
        for p in &packets {
            let decoded = decode(&mut buf, protocol, usize::MAX).unwrap();
            prop_assert_eq!(decoded.as_ref(), Some(p));
        }
        prop_assert!(buf.is_empty());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
            decode_all_and_reencode(&bytes, protocol);
        }
        let _ = peek_header(&bytes);
    }

    #[test]
    fn mutated_packets_never_panic(
        (protocol, packet) in any_version_packet(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode_vec(&packet, protocol);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = 1 + cut.index(bytes.len());
        for protocol in [Protocol::V311, Protocol::V5] {
            decode_all_and_reencode(&bytes, protocol);
            decode_all_and_reencode(&bytes[..keep], protocol);
        }
    }
}
