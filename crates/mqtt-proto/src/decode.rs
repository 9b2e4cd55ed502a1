//! Decoding: bytes -> packets.
//!
//! [`decode`] takes one complete packet off the front of a read buffer,
//! without copying: strings and payloads are slices of the same frozen
//! buffer. Incomplete input is `Ok(None)`; anything a receiver must reject
//! (spec chapters 1 to 3 of MQTT 3.1.1 and 5.0) is a [`DecodeError`].
//! Nothing here trusts a length before checking it against the bytes at
//! hand, so arbitrary input can neither panic nor over-allocate.

use bytes::{Bytes, BytesMut};

use crate::packet::*;
use crate::properties as props;
use crate::wire::{parse_varint, Reader};
use crate::{topic, DecodeError, ReasonCode};

/// The fixed header of the packet at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Control packet type, 1..=15.
    pub packet_type: u8,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// The remaining length field's value.
    pub remaining_length: usize,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Header plus body: the bytes the whole packet takes.
    pub fn packet_len(&self) -> usize {
        self.header_len + self.remaining_length
    }
}

/// Reads the fixed header at the front of `buf` without consuming it.
/// `Ok(None)` means more bytes are needed. A remaining length longer than
/// four bytes (or not minimally encoded) is malformed. The type and flags
/// are returned as found; [`decode`] validates them.
pub fn peek_header(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    let Some((remaining_length, n)) = parse_varint(rest)? else {
        return Ok(None);
    };
    Ok(Some(FixedHeader {
        packet_type: first >> 4,
        flags: first & 0x0F,
        remaining_length: remaining_length as usize,
        header_len: 1 + n,
    }))
}

/// Decodes one packet from the front of `buf`, consuming exactly its bytes.
///
/// `protocol` is the connection's negotiated version; CONNECT ignores it and
/// declares its own. `Ok(None)` means the packet is incomplete and nothing
/// was consumed. A packet larger than `max_packet_size` (fixed header
/// included) is refused as soon as its header is readable, before its body
/// arrives. After an error the connection must be closed; `buf` is then in
/// an unspecified state.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Protocol,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = peek_header(buf)? else {
        return Ok(None);
    };
    check_flags(&header, protocol)?;
    let size = header.packet_len();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let frame = buf.split_to(size).freeze();
    let mut r = Reader::new(&frame, header.header_len);
    let v5 = protocol.is_v5();
    let packet = match header.packet_type {
        1 => Packet::Connect(Box::new(connect(&mut r)?)),
        2 => Packet::ConnAck(connack(&mut r, v5)?),
        3 => Packet::Publish(publish(&mut r, header.flags, v5)?),
        4 => Packet::PubAck(ack(&mut r, v5)?),
        5 => Packet::PubRec(ack(&mut r, v5)?),
        6 => Packet::PubRel(ack(&mut r, v5)?),
        7 => Packet::PubComp(ack(&mut r, v5)?),
        8 => Packet::Subscribe(subscribe(&mut r, v5)?),
        9 => Packet::SubAck(suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(unsuback(&mut r, v5)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(disconnect(&mut r, v5)?),
        15 => Packet::Auth(auth(&mut r)?),
        _ => return Err(DecodeError::Malformed("reserved packet type 0")),
    };
    r.finish()?;
    Ok(Some(packet))
}

/// Checks the packet type and the fixed-header flags (spec §2.1.3):
/// reserved bits must hold their fixed values, PUBLISH may not use QoS 3
/// nor set DUP at QoS 0, and type 15 exists only in MQTT 5.
fn check_flags(h: &FixedHeader, protocol: Protocol) -> Result<(), DecodeError> {
    let expected = match h.packet_type {
        0 => return Err(DecodeError::Malformed("reserved packet type 0")),
        15 if !protocol.is_v5() => {
            return Err(DecodeError::Malformed("reserved packet type 15"));
        }
        3 => {
            let qos = (h.flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::Malformed("PUBLISH with QoS 3"));
            }
            if qos == 0 && h.flags & 0b1000 != 0 {
                return Err(DecodeError::Malformed("PUBLISH with DUP set at QoS 0"));
            }
            return Ok(());
        }
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if h.flags == expected {
        Ok(())
    } else {
        Err(DecodeError::Malformed("reserved fixed header flags"))
    }
}

/// A packet identifier where zero is forbidden (QoS > 0, SUBSCRIBE,
/// UNSUBSCRIBE and every acknowledgement).
fn packet_id(r: &mut Reader<'_>) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

/// A topic name as PUBLISH and the will carry it: no wildcards. Emptiness
/// is checked by the caller, since v5 allows it with a topic alias.
fn check_topic_name(t: &str) -> Result<(), DecodeError> {
    if t.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::TopicNameInvalid);
    }
    Ok(())
}

/// A topic filter, shared (`$share/{group}/{filter}`) or not.
fn check_topic_filter(f: &str) -> Result<(), DecodeError> {
    let ok = match topic::parse_shared(f) {
        Some(shared) => shared.is_ok(),
        None => topic::valid_topic_filter(f),
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::TopicFilterInvalid)
    }
}

fn connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp", 3) => Protocol::V31,
        _ => return Err(DecodeError::UnsupportedProtocolVersion(level)),
    };
    let v5 = protocol.is_v5();
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = QoS::from_u8((flags >> 3) & 0b11).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain set without the will flag",
        ));
    }
    if !v5 && has_password && !has_username {
        return Err(DecodeError::Protocol("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = props::read_if_v5::<ConnectProperties>(r, v5)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = props::read_if_v5::<WillProperties>(r, v5)?;
        let topic = r.string()?;
        if topic.is_empty() {
            return Err(DecodeError::TopicNameInvalid);
        }
        check_topic_name(&topic)?;
        Some(LastWill {
            topic,
            payload: r.binary()?,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader<'_>, v5: bool) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let code = r.u8()?;
    let (reason_code, properties) = if v5 {
        (ReasonCode(code), props::read(r)?)
    } else {
        if code > 5 {
            return Err(DecodeError::Malformed("reserved CONNACK return code"));
        }
        (
            ReasonCode::from_v311_connack(code),
            ConnAckProperties::default(),
        )
    };
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        reason_code,
        properties,
    })
}

fn publish(r: &mut Reader<'_>, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    // check_flags has ruled out QoS 3.
    let qos =
        QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
    let topic = r.string()?;
    check_topic_name(&topic)?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        packet_id(r)?
    };
    let properties = props::read_if_v5::<PublishProperties>(r, v5)?;
    if topic.is_empty() {
        if !v5 {
            return Err(DecodeError::TopicNameInvalid);
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::Protocol(
                "empty topic name without topic alias",
            ));
        }
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. In v5 the reason code may be omitted
/// (remaining length 2: Success) and so may the properties (length 3).
fn ack(r: &mut Reader<'_>, v5: bool) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v5 {
        return Ok(Ack::new(packet_id));
    }
    let (reason_code, properties) = reason_and_properties(r)?;
    Ok(Ack {
        packet_id,
        reason_code,
        properties,
    })
}

/// The end of a v5 PUBACK & co., DISCONNECT or AUTH: a reason code, then
/// properties, each of which may be left out (Success, none).
fn reason_and_properties<P: props::PropertySet>(
    r: &mut Reader<'_>,
) -> Result<(ReasonCode, P), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, P::default()));
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        P::default()
    } else {
        props::read(r)?
    };
    Ok((reason_code, properties))
}

fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    if v5 {
        if byte & 0xC0 != 0 {
            return Err(DecodeError::Malformed(
                "subscription options reserved bits set",
            ));
        }
        let qos =
            QoS::from_u8(byte & 0b11).ok_or(DecodeError::Protocol("subscription with QoS 3"))?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    } else {
        if byte & 0xFC != 0 {
            return Err(DecodeError::Malformed(
                "requested QoS byte reserved bits set",
            ));
        }
        let qos = QoS::from_u8(byte).ok_or(DecodeError::Malformed("subscription with QoS 3"))?;
        Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        })
    }
}

fn subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props::read_if_v5::<SubscribeProperties>(r, v5)?;
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r.u8()?, v5)?;
        check_topic_filter(&filter)?;
        if options.no_local && filter.starts_with("$share/") {
            return Err(DecodeError::Protocol("no local on a shared subscription"));
        }
        subscriptions.push(Subscription { filter, options });
    }
    if subscriptions.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        subscriptions,
    })
}

/// The reason codes that fill the rest of SUBACK and v5 UNSUBACK; at least
/// one, since each answers one filter.
fn reason_codes(rest: Bytes, what: &'static str) -> Result<Vec<ReasonCode>, DecodeError> {
    if rest.is_empty() {
        return Err(DecodeError::Protocol(what));
    }
    Ok(rest.iter().map(|&c| ReasonCode(c)).collect())
}

/// The packet id, the properties (v5) and, if `codes`, the reason codes
/// (at least one) of SUBACK and UNSUBACK.
fn codes_ack(
    r: &mut Reader<'_>,
    v5: bool,
    codes: bool,
    missing: &'static str,
) -> Result<(u16, AckProperties, Vec<ReasonCode>), DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = props::read_if_v5::<AckProperties>(r, v5)?;
    let reason_codes = if codes {
        reason_codes(r.rest(), missing)?
    } else {
        Vec::new()
    };
    Ok((packet_id, properties, reason_codes))
}

fn suback(r: &mut Reader<'_>, v5: bool) -> Result<SubAck, DecodeError> {
    let (packet_id, properties, reason_codes) =
        codes_ack(r, v5, true, "SUBACK without reason codes")?;
    if !v5
        && reason_codes
            .iter()
            .any(|c| !matches!(c.0, 0x00 | 0x01 | 0x02 | 0x80))
    {
        return Err(DecodeError::Malformed("reserved SUBACK return code"));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

fn unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let user_properties = props::read_if_v5(r, v5)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        check_topic_filter(&filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        user_properties,
        filters,
    })
}

/// UNSUBACK: in v3.1.1 only the packet id.
fn unsuback(r: &mut Reader<'_>, v5: bool) -> Result<UnsubAck, DecodeError> {
    let (packet_id, properties, reason_codes) =
        codes_ack(r, v5, v5, "UNSUBACK without reason codes")?;
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

/// DISCONNECT: empty in v3.1.1; in v5 remaining length 0 means normal
/// disconnection, and 1 a reason code without properties.
fn disconnect(r: &mut Reader<'_>, v5: bool) -> Result<Disconnect, DecodeError> {
    if !v5 {
        return Ok(Disconnect::default());
    }
    let (reason_code, properties) = reason_and_properties(r)?;
    Ok(Disconnect {
        reason_code,
        properties,
    })
}

/// AUTH (v5 only): remaining length 0 means Success without properties.
fn auth(r: &mut Reader<'_>) -> Result<Auth, DecodeError> {
    let (reason_code, properties) = reason_and_properties(r)?;
    Ok(Auth {
        reason_code,
        properties,
    })
}
