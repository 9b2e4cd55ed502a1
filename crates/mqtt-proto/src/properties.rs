//! MQTT 5 properties (spec §2.2.2): decoding a property block into the
//! property struct of its packet, and describing a property struct into a
//! [`Sink`] for measuring or writing.
//!
//! Decoding checks what the spec asks of a receiver: an identifier not
//! valid for the packet is a malformed packet; a property that may appear
//! once appearing twice, a boolean other than 0 or 1, and zero where zero is
//! forbidden (Receive Maximum, Maximum Packet Size, Topic Alias,
//! Subscription Identifier) are protocol errors.

use bytes::Bytes;
use bytestring::ByteString;

use crate::packet::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperty, WillProperties,
};
use crate::wire::{Properties, Reader, Sink};
use crate::{topic, DecodeError, QoS};

/// Property identifiers (spec table 2-4).
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

/// A set of property identifiers (all are below 64).
#[derive(Clone, Copy)]
struct IdSet(u64);

impl IdSet {
    const fn of(mut ids: &[u8]) -> IdSet {
        let mut bits = 0u64;
        while let [id, rest @ ..] = ids {
            bits |= 1 << *id;
            ids = rest;
        }
        IdSet(bits)
    }

    #[inline]
    fn contains(self, id: u8) -> bool {
        id < 64 && self.0 & (1 << id) != 0
    }
}

const CONNECT_IDS: IdSet = IdSet::of(&[
    SESSION_EXPIRY_INTERVAL,
    RECEIVE_MAXIMUM,
    MAXIMUM_PACKET_SIZE,
    TOPIC_ALIAS_MAXIMUM,
    REQUEST_RESPONSE_INFORMATION,
    REQUEST_PROBLEM_INFORMATION,
    USER_PROPERTY,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
]);
const WILL_IDS: IdSet = IdSet::of(&[
    WILL_DELAY_INTERVAL,
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    USER_PROPERTY,
]);
const CONNACK_IDS: IdSet = IdSet::of(&[
    SESSION_EXPIRY_INTERVAL,
    RECEIVE_MAXIMUM,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    MAXIMUM_PACKET_SIZE,
    ASSIGNED_CLIENT_IDENTIFIER,
    TOPIC_ALIAS_MAXIMUM,
    REASON_STRING,
    USER_PROPERTY,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
    SERVER_KEEP_ALIVE,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
]);
const PUBLISH_IDS: IdSet = IdSet::of(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    TOPIC_ALIAS,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    USER_PROPERTY,
    SUBSCRIPTION_IDENTIFIER,
    CONTENT_TYPE,
]);
const ACK_IDS: IdSet = IdSet::of(&[REASON_STRING, USER_PROPERTY]);
const SUBSCRIBE_IDS: IdSet = IdSet::of(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]);
const USER_IDS: IdSet = IdSet::of(&[USER_PROPERTY]);
const DISCONNECT_IDS: IdSet = IdSet::of(&[
    SESSION_EXPIRY_INTERVAL,
    REASON_STRING,
    USER_PROPERTY,
    SERVER_REFERENCE,
]);
const AUTH_IDS: IdSet = IdSet::of(&[
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REASON_STRING,
    USER_PROPERTY,
]);

/// Properties that may appear more than once in their packet.
const REPEATABLE: IdSet = IdSet::of(&[USER_PROPERTY]);
const REPEATABLE_IN_PUBLISH: IdSet = IdSet::of(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]);

/// One decoded property value, already checked for its allowed range.
enum Value {
    Bool(bool),
    QoS(QoS),
    U16(u16),
    U32(u32),
    Str(ByteString),
    Bin(Bytes),
    Pair(ByteString, ByteString),
}

/// An identifier that is unknown or not valid for the packet (§2.2.2.2).
const NOT_ALLOWED: DecodeError = DecodeError::Malformed("property not allowed in this packet");

fn nonzero_u16(r: &mut Reader<'_>, what: &'static str) -> Result<Value, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol(what)),
        v => Ok(Value::U16(v)),
    }
}

/// Reads the value of property `id`, validating its range.
fn read_value(id: u8, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    Ok(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => match r.u8()? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            _ => return Err(DecodeError::Protocol("boolean property not 0 or 1")),
        },
        MAXIMUM_QOS => match r.u8()? {
            0 => Value::QoS(QoS::AtMostOnce),
            1 => Value::QoS(QoS::AtLeastOnce),
            _ => return Err(DecodeError::Protocol("maximum QoS not 0 or 1")),
        },
        MESSAGE_EXPIRY_INTERVAL | SESSION_EXPIRY_INTERVAL | WILL_DELAY_INTERVAL => {
            Value::U32(r.u32()?)
        }
        MAXIMUM_PACKET_SIZE => match r.u32()? {
            0 => return Err(DecodeError::Protocol("maximum packet size of 0")),
            v => Value::U32(v),
        },
        SUBSCRIPTION_IDENTIFIER => match r.varint()? {
            0 => return Err(DecodeError::Protocol("subscription identifier of 0")),
            v => Value::U32(v),
        },
        SERVER_KEEP_ALIVE | TOPIC_ALIAS_MAXIMUM => Value::U16(r.u16()?),
        RECEIVE_MAXIMUM => nonzero_u16(r, "receive maximum of 0")?,
        TOPIC_ALIAS => nonzero_u16(r, "topic alias of 0")?,
        RESPONSE_TOPIC => {
            let t = r.string()?;
            if !topic::valid_topic_name(&t) {
                return Err(DecodeError::Protocol("invalid response topic"));
            }
            Value::Str(t)
        }
        CONTENT_TYPE
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Value::Str(r.string()?),
        CORRELATION_DATA | AUTHENTICATION_DATA => Value::Bin(r.binary()?),
        USER_PROPERTY => {
            let k = r.string()?;
            Value::Pair(k, r.string()?)
        }
        _ => return Err(DecodeError::Malformed("unknown property identifier")),
    })
}

/// Reads a property block (length, then properties) and hands each
/// property allowed by `allowed` to `set`.
fn read_block(
    r: &mut Reader<'_>,
    allowed: IdSet,
    repeatable: IdSet,
    mut set: impl FnMut(u8, Value) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.varint()? as usize;
    let mut block = r.sub(len)?;
    let mut seen = 0u64;
    while !block.is_empty() {
        // The identifier is a Variable Byte Integer, but every defined one
        // fits in one byte; a longer one is unknown, hence malformed.
        let id = block.u8()?;
        if !allowed.contains(id) {
            return Err(NOT_ALLOWED);
        }
        let bit = 1u64 << id;
        if seen & bit != 0 && !repeatable.contains(id) {
            return Err(DecodeError::Protocol("property appears more than once"));
        }
        seen |= bit;
        set(id, read_value(id, &mut block)?)?;
    }
    Ok(())
}

pub(crate) fn read_connect(r: &mut Reader<'_>) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    read_block(r, CONNECT_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => p.session_expiry_interval = Some(v),
            (RECEIVE_MAXIMUM, Value::U16(v)) => p.receive_maximum = Some(v),
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => p.maximum_packet_size = Some(v),
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => p.topic_alias_maximum = Some(v),
            (REQUEST_RESPONSE_INFORMATION, Value::Bool(v)) => {
                p.request_response_information = Some(v)
            }
            (REQUEST_PROBLEM_INFORMATION, Value::Bool(v)) => {
                p.request_problem_information = Some(v)
            }
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (AUTHENTICATION_METHOD, Value::Str(v)) => p.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Bin(v)) => p.authentication_data = Some(v),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::Protocol(
            "authentication data without authentication method",
        ));
    }
    Ok(p)
}

pub(crate) fn read_will(r: &mut Reader<'_>) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    read_block(r, WILL_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (WILL_DELAY_INTERVAL, Value::U32(v)) => p.will_delay_interval = Some(v),
            (PAYLOAD_FORMAT_INDICATOR, Value::Bool(v)) => p.payload_format_indicator = Some(v),
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => p.message_expiry_interval = Some(v),
            (CONTENT_TYPE, Value::Str(v)) => p.content_type = Some(v),
            (RESPONSE_TOPIC, Value::Str(v)) => p.response_topic = Some(v),
            (CORRELATION_DATA, Value::Bin(v)) => p.correlation_data = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn read_connack(r: &mut Reader<'_>) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    read_block(r, CONNACK_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => p.session_expiry_interval = Some(v),
            (RECEIVE_MAXIMUM, Value::U16(v)) => p.receive_maximum = Some(v),
            (MAXIMUM_QOS, Value::QoS(v)) => p.maximum_qos = Some(v),
            (RETAIN_AVAILABLE, Value::Bool(v)) => p.retain_available = Some(v),
            (MAXIMUM_PACKET_SIZE, Value::U32(v)) => p.maximum_packet_size = Some(v),
            (ASSIGNED_CLIENT_IDENTIFIER, Value::Str(v)) => p.assigned_client_identifier = Some(v),
            (TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => p.topic_alias_maximum = Some(v),
            (REASON_STRING, Value::Str(v)) => p.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Bool(v)) => {
                p.wildcard_subscription_available = Some(v)
            }
            (SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Bool(v)) => {
                p.subscription_identifiers_available = Some(v)
            }
            (SHARED_SUBSCRIPTION_AVAILABLE, Value::Bool(v)) => {
                p.shared_subscription_available = Some(v)
            }
            (SERVER_KEEP_ALIVE, Value::U16(v)) => p.server_keep_alive = Some(v),
            (RESPONSE_INFORMATION, Value::Str(v)) => p.response_information = Some(v),
            (SERVER_REFERENCE, Value::Str(v)) => p.server_reference = Some(v),
            (AUTHENTICATION_METHOD, Value::Str(v)) => p.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Bin(v)) => p.authentication_data = Some(v),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn read_publish(r: &mut Reader<'_>) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    read_block(r, PUBLISH_IDS, REPEATABLE_IN_PUBLISH, |id, v| {
        match (id, v) {
            (PAYLOAD_FORMAT_INDICATOR, Value::Bool(v)) => p.payload_format_indicator = Some(v),
            (MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => p.message_expiry_interval = Some(v),
            (TOPIC_ALIAS, Value::U16(v)) => p.topic_alias = Some(v),
            (RESPONSE_TOPIC, Value::Str(v)) => p.response_topic = Some(v),
            (CORRELATION_DATA, Value::Bin(v)) => p.correlation_data = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (SUBSCRIPTION_IDENTIFIER, Value::U32(v)) => p.subscription_identifiers.push(v),
            (CONTENT_TYPE, Value::Str(v)) => p.content_type = Some(v),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) fn read_ack(r: &mut Reader<'_>) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    read_block(r, ACK_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (REASON_STRING, Value::Str(v)) => p.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn read_subscribe(r: &mut Reader<'_>) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    read_block(r, SUBSCRIBE_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (SUBSCRIPTION_IDENTIFIER, Value::U32(v)) => p.subscription_identifier = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

/// UNSUBSCRIBE carries only user properties.
pub(crate) fn read_user_only(r: &mut Reader<'_>) -> Result<Vec<UserProperty>, DecodeError> {
    let mut out = Vec::new();
    read_block(r, USER_IDS, REPEATABLE, |id, v| match (id, v) {
        (USER_PROPERTY, Value::Pair(k, v)) => {
            out.push((k, v));
            Ok(())
        }
        _ => Err(NOT_ALLOWED),
    })?;
    Ok(out)
}

pub(crate) fn read_disconnect(r: &mut Reader<'_>) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    read_block(r, DISCONNECT_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (SESSION_EXPIRY_INTERVAL, Value::U32(v)) => p.session_expiry_interval = Some(v),
            (REASON_STRING, Value::Str(v)) => p.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            (SERVER_REFERENCE, Value::Str(v)) => p.server_reference = Some(v),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

pub(crate) fn read_auth(r: &mut Reader<'_>) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    read_block(r, AUTH_IDS, REPEATABLE, |id, v| {
        match (id, v) {
            (AUTHENTICATION_METHOD, Value::Str(v)) => p.authentication_method = Some(v),
            (AUTHENTICATION_DATA, Value::Bin(v)) => p.authentication_data = Some(v),
            (REASON_STRING, Value::Str(v)) => p.reason_string = Some(v),
            (USER_PROPERTY, Value::Pair(k, v)) => p.user_properties.push((k, v)),
            _ => return Err(NOT_ALLOWED),
        }
        Ok(())
    })?;
    Ok(p)
}

// Encoding: each struct lists its present properties, identifier first.

#[inline]
fn byte<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(id);
        s.u8(v);
    }
}

#[inline]
fn flag<S: Sink>(s: &mut S, id: u8, v: Option<bool>) {
    byte(s, id, v.map(u8::from));
}

#[inline]
fn two<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(id);
        s.u16(v);
    }
}

#[inline]
fn four<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(id);
        s.u32(v);
    }
}

#[inline]
fn string<S: Sink>(s: &mut S, id: u8, v: &Option<ByteString>) {
    if let Some(v) = v {
        s.u8(id);
        s.string(v);
    }
}

#[inline]
fn binary<S: Sink>(s: &mut S, id: u8, v: &Option<Bytes>) {
    if let Some(v) = v {
        s.u8(id);
        s.binary(v);
    }
}

#[inline]
fn users<S: Sink>(s: &mut S, v: &[UserProperty]) {
    for (k, v) in v {
        s.u8(USER_PROPERTY);
        s.string(k);
        s.string(v);
    }
}

impl Properties for ConnectProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        flag(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        flag(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        users(s, &self.user_properties);
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Properties for WillProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        four(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        flag(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        string(s, CONTENT_TYPE, &self.content_type);
        string(s, RESPONSE_TOPIC, &self.response_topic);
        binary(s, CORRELATION_DATA, &self.correlation_data);
        users(s, &self.user_properties);
    }
}

impl Properties for ConnAckProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        // Absent Maximum QoS means QoS 2, and only 0 or 1 may be sent.
        let max_qos = self.maximum_qos.filter(|q| *q != QoS::ExactlyOnce);
        byte(s, MAXIMUM_QOS, max_qos.map(|q| q as u8));
        flag(s, RETAIN_AVAILABLE, self.retain_available);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        string(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
        flag(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        flag(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        flag(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        two(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        string(s, RESPONSE_INFORMATION, &self.response_information);
        string(s, SERVER_REFERENCE, &self.server_reference);
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl Properties for PublishProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        flag(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        two(s, TOPIC_ALIAS, self.topic_alias);
        string(s, RESPONSE_TOPIC, &self.response_topic);
        binary(s, CORRELATION_DATA, &self.correlation_data);
        users(s, &self.user_properties);
        for &v in &self.subscription_identifiers {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(v);
        }
        string(s, CONTENT_TYPE, &self.content_type);
    }
}

impl Properties for AckProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

impl Properties for SubscribeProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        if let Some(v) = self.subscription_identifier {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(v);
        }
        users(s, &self.user_properties);
    }
}

/// The property list of UNSUBSCRIBE: user properties only.
pub(crate) struct UserOnly<'a>(pub(crate) &'a [UserProperty]);

impl Properties for UserOnly<'_> {
    fn describe<S: Sink>(&self, s: &mut S) {
        users(s, self.0);
    }
}

impl Properties for DisconnectProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
        string(s, SERVER_REFERENCE, &self.server_reference);
    }
}

impl Properties for AuthProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}
