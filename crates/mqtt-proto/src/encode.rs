//! Encoding: packets -> bytes.
//!
//! Each packet body is described once ([`body`]) into a [`Sink`]. Encoding
//! runs that description twice: a [`Counter`] measures the body and finds
//! fields that cannot be encoded, then, after one `reserve`, a [`Writer`]
//! appends it. Nothing is allocated besides the output buffer, and an
//! error leaves the buffer untouched. [`encoded_len`] is the counting pass
//! alone.
//!
//! For v3.1.1 (and 3.1) properties are dropped and v5-only fields are
//! mapped to their closest v3.1.1 form. For v5 the short forms are used
//! where the spec allows them.

use bytes::{BufMut, BytesMut};

use crate::packet::*;
use crate::properties::UserOnly;
use crate::wire::{put_varint, varint_len, Counter, Properties, Sink, Writer, MAX_VARINT};
use crate::{EncodeError, ReasonCode};

/// Appends the encoding of `packet` for `protocol` to `buf`.
///
/// CONNECT is encoded for the version it names in [`Connect::protocol`];
/// every other packet for `protocol`. On error nothing is appended.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let mut counter = Counter::default();
    let first = body(packet, protocol, &mut counter)?;
    if let Some(e) = counter.error {
        return Err(e);
    }
    let remaining = counter.len;
    if remaining > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge(1 + 4 + remaining));
    }
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first);
    put_varint(buf, remaining as u32);
    body(packet, protocol, &mut Writer { buf })?;
    Ok(())
}

/// The total number of bytes `encode` would append (fixed header included).
/// For a packet that `encode` would refuse the value is meaningless.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let mut counter = Counter::default();
    // An error only means encode would refuse the packet; the length is
    // then of no use to anyone, so it is ignored here.
    let _ = body(packet, protocol, &mut counter);
    1 + varint_len(counter.len) + counter.len
}

/// Describes the body of `packet` into `s` and returns the first byte of
/// the fixed header.
fn body<S: Sink>(packet: &Packet, protocol: Protocol, s: &mut S) -> Result<u8, EncodeError> {
    let v5 = protocol.is_v5();
    Ok(match packet {
        Packet::Connect(c) => {
            connect(c, s)?;
            0x10
        }
        Packet::ConnAck(c) => {
            s.u8(u8::from(c.session_present));
            if v5 {
                s.u8(c.reason_code.0);
                s.properties(&c.properties);
            } else {
                s.u8(c.reason_code.to_v311_connack());
            }
            0x20
        }
        Packet::Publish(p) => {
            publish(p, v5, s);
            // DUP must be 0 at QoS 0 [MQTT-3.3.1-2].
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | u8::from(dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            ack(a, v5, s);
            // PUBREL's reserved flags are 0b0010 [MQTT-3.6.1-1].
            let flags = if matches!(packet, Packet::PubRel(_)) {
                0x02
            } else {
                0
            };
            packet.packet_type() << 4 | flags
        }
        Packet::Subscribe(sub) => {
            subscribe(sub, v5, s);
            0x82
        }
        Packet::SubAck(a) => {
            s.u16(a.packet_id);
            if v5 {
                s.properties(&a.properties);
            }
            for code in &a.reason_codes {
                // v3.1.1 knows only the granted QoS and 0x80 Failure.
                let byte = if !v5 && code.is_error() { 0x80 } else { code.0 };
                s.u8(byte);
            }
            0x90
        }
        Packet::Unsubscribe(u) => {
            s.u16(u.packet_id);
            if v5 {
                s.properties(&UserOnly(&u.user_properties));
            }
            for f in &u.filters {
                s.string(f);
            }
            0xA2
        }
        Packet::UnsubAck(a) => {
            s.u16(a.packet_id);
            if v5 {
                s.properties(&a.properties);
                for code in &a.reason_codes {
                    s.u8(code.0);
                }
            }
            0xB0
        }
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(d) => {
            // v5 short forms: nothing for a normal disconnection without
            // properties, the reason code alone without properties.
            if v5 && (d.reason_code != ReasonCode::NORMAL_DISCONNECTION || !is_empty(&d.properties))
            {
                s.u8(d.reason_code.0);
                if !is_empty(&d.properties) {
                    s.properties(&d.properties);
                }
            }
            0xE0
        }
        Packet::Auth(a) => {
            if !v5 {
                return Err(EncodeError::NotInProtocol("AUTH"));
            }
            if a.reason_code != ReasonCode::SUCCESS || !is_empty(&a.properties) {
                s.u8(a.reason_code.0);
                s.properties(&a.properties);
            }
            0xF0
        }
    })
}

#[inline]
fn is_empty<P: Properties>(p: &P) -> bool {
    p.content_len() == 0
}

fn connect<S: Sink>(c: &Connect, s: &mut S) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    if !v5 && c.password.is_some() && c.username.is_none() {
        return Err(EncodeError::NotInProtocol("a password without a user name"));
    }
    s.string(if c.protocol == Protocol::V31 {
        "MQIsdp"
    } else {
        "MQTT"
    });
    s.u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        s.properties(&c.properties);
    }
    s.string(&c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            s.properties(&w.properties);
        }
        s.string(&w.topic);
        s.binary(&w.payload);
    }
    if let Some(u) = &c.username {
        s.string(u);
    }
    if let Some(p) = &c.password {
        s.binary(p);
    }
    Ok(())
}

#[inline]
fn publish<S: Sink>(p: &Publish, v5: bool, s: &mut S) {
    s.string(&p.topic);
    if p.qos != QoS::AtMostOnce {
        s.u16(p.packet_id);
    }
    if v5 {
        s.properties(&p.properties);
    }
    s.raw(&p.payload);
}

/// PUBACK & co. In v5, Success without properties is the two-byte form and
/// another reason without properties omits the property length.
#[inline]
fn ack<S: Sink>(a: &Ack, v5: bool, s: &mut S) {
    s.u16(a.packet_id);
    if !v5 {
        return;
    }
    let no_properties = is_empty(&a.properties);
    if a.reason_code == ReasonCode::SUCCESS && no_properties {
        return;
    }
    s.u8(a.reason_code.0);
    if !no_properties {
        s.properties(&a.properties);
    }
}

fn subscribe<S: Sink>(sub: &Subscribe, v5: bool, s: &mut S) {
    s.u16(sub.packet_id);
    if v5 {
        s.properties(&sub.properties);
    }
    for Subscription { filter, options } in &sub.subscriptions {
        s.string(filter);
        let mut byte = options.qos as u8;
        if v5 {
            byte |= u8::from(options.no_local) << 2
                | u8::from(options.retain_as_published) << 3
                | (options.retain_handling as u8) << 4;
        }
        s.u8(byte);
    }
}
