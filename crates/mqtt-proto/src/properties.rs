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
pub(crate) struct IdSet(u64);

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

/// Properties that may appear more than once in their packet.
const REPEATABLE: IdSet = IdSet::of(&[USER_PROPERTY]);
const REPEATABLE_IN_PUBLISH: IdSet = IdSet::of(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]);

/// An identifier that is unknown or not valid for the packet (§2.2.2.2).
const NOT_ALLOWED: DecodeError = DecodeError::Malformed("property not allowed in this packet");

/// A property value type: how a value of property `id` is read (with the
/// checks the spec asks of a receiver for that property) and written.
trait Value: Sized {
    fn read(id: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    fn write<S: Sink>(&self, id: u8, s: &mut S);
}

impl Value for bool {
    fn read(_: u8, r: &mut Reader<'_>) -> Result<bool, DecodeError> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Protocol("boolean property not 0 or 1")),
        }
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.u8(u8::from(*self));
    }
}

/// Maximum QoS, the one QoS property.
impl Value for QoS {
    fn read(_: u8, r: &mut Reader<'_>) -> Result<QoS, DecodeError> {
        match r.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::Protocol("maximum QoS not 0 or 1")),
        }
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.u8(*self as u8);
    }
}

impl Value for u16 {
    fn read(id: u8, r: &mut Reader<'_>) -> Result<u16, DecodeError> {
        match (id, r.u16()?) {
            (RECEIVE_MAXIMUM, 0) => Err(DecodeError::Protocol("receive maximum of 0")),
            (TOPIC_ALIAS, 0) => Err(DecodeError::Protocol("topic alias of 0")),
            (_, v) => Ok(v),
        }
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.u16(*self);
    }
}

/// Four-byte integers, and the Subscription Identifier (a Variable Byte
/// Integer).
impl Value for u32 {
    fn read(id: u8, r: &mut Reader<'_>) -> Result<u32, DecodeError> {
        match id {
            SUBSCRIPTION_IDENTIFIER => match r.varint()? {
                0 => Err(DecodeError::Protocol("subscription identifier of 0")),
                v => Ok(v),
            },
            MAXIMUM_PACKET_SIZE => match r.u32()? {
                0 => Err(DecodeError::Protocol("maximum packet size of 0")),
                v => Ok(v),
            },
            _ => r.u32(),
        }
    }

    #[inline]
    fn write<S: Sink>(&self, id: u8, s: &mut S) {
        if id == SUBSCRIPTION_IDENTIFIER {
            s.varint(*self);
        } else {
            s.u32(*self);
        }
    }
}

impl Value for ByteString {
    fn read(id: u8, r: &mut Reader<'_>) -> Result<ByteString, DecodeError> {
        let v = r.string()?;
        if id == RESPONSE_TOPIC && !topic::valid_topic_name(&v) {
            return Err(DecodeError::Protocol("invalid response topic"));
        }
        Ok(v)
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.string(self);
    }
}

impl Value for Bytes {
    fn read(_: u8, r: &mut Reader<'_>) -> Result<Bytes, DecodeError> {
        r.binary()
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.binary(self);
    }
}

/// A user property: a string pair.
impl Value for UserProperty {
    fn read(_: u8, r: &mut Reader<'_>) -> Result<UserProperty, DecodeError> {
        let k = r.string()?;
        Ok((k, r.string()?))
    }

    #[inline]
    fn write<S: Sink>(&self, _: u8, s: &mut S) {
        s.string(&self.0);
        s.string(&self.1);
    }
}

/// A field of a property struct: `Option<T>` for a property that appears
/// at most once, `Vec<T>` for a repeatable one.
trait Field {
    /// Reads one occurrence of property `id` into the field.
    fn read(&mut self, id: u8, r: &mut Reader<'_>) -> Result<(), DecodeError>;
    /// Writes the field's occurrences, each identifier first.
    fn write<S: Sink>(&self, id: u8, s: &mut S);
}

impl<T: Value> Field for Option<T> {
    fn read(&mut self, id: u8, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        *self = Some(T::read(id, r)?);
        Ok(())
    }

    #[inline]
    fn write<S: Sink>(&self, id: u8, s: &mut S) {
        if let Some(v) = self {
            s.u8(id);
            v.write(id, s);
        }
    }
}

impl<T: Value> Field for Vec<T> {
    fn read(&mut self, id: u8, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        self.push(T::read(id, r)?);
        Ok(())
    }

    #[inline]
    fn write<S: Sink>(&self, id: u8, s: &mut S) {
        write_each(self, id, s);
    }
}

/// Writes each of `values` as property `id`.
#[inline]
fn write_each<T: Value, S: Sink>(values: &[T], id: u8, s: &mut S) {
    for v in values {
        s.u8(id);
        v.write(id, s);
    }
}

/// A packet's property struct, as decoded: which properties it holds.
/// (Encoding is [`Properties::describe`], which lists them in wire order.)
pub(crate) trait PropertySet: Default {
    /// Properties that may appear more than once.
    const REPEATABLE: IdSet = REPEATABLE;

    /// The field property `id` is read into, `None` if the packet may not
    /// carry it.
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField>;

    /// Checks across properties, once all are read.
    fn check(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// [`Field::read`] without the generic writer, so that a property set can
/// hand out its fields as trait objects.
pub(crate) trait ReadField {
    fn read_into(&mut self, id: u8, r: &mut Reader<'_>) -> Result<(), DecodeError>;
}

impl<F: Field> ReadField for F {
    fn read_into(&mut self, id: u8, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        self.read(id, r)
    }
}

/// The properties of a packet: read from a v5 packet's property block
/// ([`read`]), none (the default) in v3.1.1.
pub(crate) fn read_if_v5<P: PropertySet>(r: &mut Reader<'_>, v5: bool) -> Result<P, DecodeError> {
    if v5 {
        read(r)
    } else {
        Ok(P::default())
    }
}

/// Reads a property block (length, then properties) into `P`: an
/// identifier `P` does not hold is malformed, a non-repeatable property
/// twice is a protocol error, and each value is range-checked.
pub(crate) fn read<P: PropertySet>(r: &mut Reader<'_>) -> Result<P, DecodeError> {
    let len = r.varint()? as usize;
    let mut block = r.sub(len)?;
    let mut p = P::default();
    let mut seen = 0u64;
    while !block.is_empty() {
        // The identifier is a Variable Byte Integer, but every defined one
        // fits in one byte; a longer one is unknown, hence malformed.
        let id = block.u8()?;
        let field = p.field(id).ok_or(NOT_ALLOWED)?;
        // Every identifier a packet holds is below 64.
        let bit = 1u64 << id;
        if seen & bit != 0 && !P::REPEATABLE.contains(id) {
            return Err(DecodeError::Protocol("property appears more than once"));
        }
        seen |= bit;
        field.read_into(id, &mut block)?;
    }
    p.check()?;
    Ok(p)
}

// Each struct twice: the fields by identifier (decoding), then the present
// properties in wire order (encoding).

impl PropertySet for ConnectProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            SESSION_EXPIRY_INTERVAL => &mut self.session_expiry_interval,
            RECEIVE_MAXIMUM => &mut self.receive_maximum,
            MAXIMUM_PACKET_SIZE => &mut self.maximum_packet_size,
            TOPIC_ALIAS_MAXIMUM => &mut self.topic_alias_maximum,
            REQUEST_RESPONSE_INFORMATION => &mut self.request_response_information,
            REQUEST_PROBLEM_INFORMATION => &mut self.request_problem_information,
            USER_PROPERTY => &mut self.user_properties,
            AUTHENTICATION_METHOD => &mut self.authentication_method,
            AUTHENTICATION_DATA => &mut self.authentication_data,
            _ => return None,
        })
    }

    fn check(&self) -> Result<(), DecodeError> {
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "authentication data without authentication method",
            ));
        }
        Ok(())
    }
}

impl Properties for ConnectProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.session_expiry_interval
            .write(SESSION_EXPIRY_INTERVAL, s);
        self.receive_maximum.write(RECEIVE_MAXIMUM, s);
        self.maximum_packet_size.write(MAXIMUM_PACKET_SIZE, s);
        self.topic_alias_maximum.write(TOPIC_ALIAS_MAXIMUM, s);
        self.request_response_information
            .write(REQUEST_RESPONSE_INFORMATION, s);
        self.request_problem_information
            .write(REQUEST_PROBLEM_INFORMATION, s);
        self.user_properties.write(USER_PROPERTY, s);
        self.authentication_method.write(AUTHENTICATION_METHOD, s);
        self.authentication_data.write(AUTHENTICATION_DATA, s);
    }
}

impl PropertySet for WillProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            WILL_DELAY_INTERVAL => &mut self.will_delay_interval,
            PAYLOAD_FORMAT_INDICATOR => &mut self.payload_format_indicator,
            MESSAGE_EXPIRY_INTERVAL => &mut self.message_expiry_interval,
            CONTENT_TYPE => &mut self.content_type,
            RESPONSE_TOPIC => &mut self.response_topic,
            CORRELATION_DATA => &mut self.correlation_data,
            USER_PROPERTY => &mut self.user_properties,
            _ => return None,
        })
    }
}

impl Properties for WillProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.will_delay_interval.write(WILL_DELAY_INTERVAL, s);
        self.payload_format_indicator
            .write(PAYLOAD_FORMAT_INDICATOR, s);
        self.message_expiry_interval
            .write(MESSAGE_EXPIRY_INTERVAL, s);
        self.content_type.write(CONTENT_TYPE, s);
        self.response_topic.write(RESPONSE_TOPIC, s);
        self.correlation_data.write(CORRELATION_DATA, s);
        self.user_properties.write(USER_PROPERTY, s);
    }
}

impl PropertySet for ConnAckProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            SESSION_EXPIRY_INTERVAL => &mut self.session_expiry_interval,
            RECEIVE_MAXIMUM => &mut self.receive_maximum,
            MAXIMUM_QOS => &mut self.maximum_qos,
            RETAIN_AVAILABLE => &mut self.retain_available,
            MAXIMUM_PACKET_SIZE => &mut self.maximum_packet_size,
            ASSIGNED_CLIENT_IDENTIFIER => &mut self.assigned_client_identifier,
            TOPIC_ALIAS_MAXIMUM => &mut self.topic_alias_maximum,
            REASON_STRING => &mut self.reason_string,
            USER_PROPERTY => &mut self.user_properties,
            WILDCARD_SUBSCRIPTION_AVAILABLE => &mut self.wildcard_subscription_available,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => &mut self.subscription_identifiers_available,
            SHARED_SUBSCRIPTION_AVAILABLE => &mut self.shared_subscription_available,
            SERVER_KEEP_ALIVE => &mut self.server_keep_alive,
            RESPONSE_INFORMATION => &mut self.response_information,
            SERVER_REFERENCE => &mut self.server_reference,
            AUTHENTICATION_METHOD => &mut self.authentication_method,
            AUTHENTICATION_DATA => &mut self.authentication_data,
            _ => return None,
        })
    }
}

impl Properties for ConnAckProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.session_expiry_interval
            .write(SESSION_EXPIRY_INTERVAL, s);
        self.receive_maximum.write(RECEIVE_MAXIMUM, s);
        // Absent Maximum QoS means QoS 2, and only 0 or 1 may be sent.
        let max_qos = self.maximum_qos.filter(|q| *q != QoS::ExactlyOnce);
        max_qos.write(MAXIMUM_QOS, s);
        self.retain_available.write(RETAIN_AVAILABLE, s);
        self.maximum_packet_size.write(MAXIMUM_PACKET_SIZE, s);
        self.assigned_client_identifier
            .write(ASSIGNED_CLIENT_IDENTIFIER, s);
        self.topic_alias_maximum.write(TOPIC_ALIAS_MAXIMUM, s);
        self.reason_string.write(REASON_STRING, s);
        self.user_properties.write(USER_PROPERTY, s);
        self.wildcard_subscription_available
            .write(WILDCARD_SUBSCRIPTION_AVAILABLE, s);
        self.subscription_identifiers_available
            .write(SUBSCRIPTION_IDENTIFIER_AVAILABLE, s);
        self.shared_subscription_available
            .write(SHARED_SUBSCRIPTION_AVAILABLE, s);
        self.server_keep_alive.write(SERVER_KEEP_ALIVE, s);
        self.response_information.write(RESPONSE_INFORMATION, s);
        self.server_reference.write(SERVER_REFERENCE, s);
        self.authentication_method.write(AUTHENTICATION_METHOD, s);
        self.authentication_data.write(AUTHENTICATION_DATA, s);
    }
}

impl PropertySet for PublishProperties {
    const REPEATABLE: IdSet = REPEATABLE_IN_PUBLISH;

    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            PAYLOAD_FORMAT_INDICATOR => &mut self.payload_format_indicator,
            MESSAGE_EXPIRY_INTERVAL => &mut self.message_expiry_interval,
            TOPIC_ALIAS => &mut self.topic_alias,
            RESPONSE_TOPIC => &mut self.response_topic,
            CORRELATION_DATA => &mut self.correlation_data,
            USER_PROPERTY => &mut self.user_properties,
            SUBSCRIPTION_IDENTIFIER => &mut self.subscription_identifiers,
            CONTENT_TYPE => &mut self.content_type,
            _ => return None,
        })
    }
}

impl Properties for PublishProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.payload_format_indicator
            .write(PAYLOAD_FORMAT_INDICATOR, s);
        self.message_expiry_interval
            .write(MESSAGE_EXPIRY_INTERVAL, s);
        self.topic_alias.write(TOPIC_ALIAS, s);
        self.response_topic.write(RESPONSE_TOPIC, s);
        self.correlation_data.write(CORRELATION_DATA, s);
        self.user_properties.write(USER_PROPERTY, s);
        self.subscription_identifiers
            .write(SUBSCRIPTION_IDENTIFIER, s);
        self.content_type.write(CONTENT_TYPE, s);
    }
}

impl PropertySet for AckProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            REASON_STRING => &mut self.reason_string,
            USER_PROPERTY => &mut self.user_properties,
            _ => return None,
        })
    }
}

impl Properties for AckProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.reason_string.write(REASON_STRING, s);
        self.user_properties.write(USER_PROPERTY, s);
    }
}

impl PropertySet for SubscribeProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            SUBSCRIPTION_IDENTIFIER => &mut self.subscription_identifier,
            USER_PROPERTY => &mut self.user_properties,
            _ => return None,
        })
    }
}

impl Properties for SubscribeProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.subscription_identifier
            .write(SUBSCRIPTION_IDENTIFIER, s);
        self.user_properties.write(USER_PROPERTY, s);
    }
}

/// The property list of UNSUBSCRIBE: user properties only.
impl PropertySet for Vec<UserProperty> {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        (id == USER_PROPERTY).then_some(self as &mut dyn ReadField)
    }
}

/// The property list of UNSUBSCRIBE, for encoding.
pub(crate) struct UserOnly<'a>(pub(crate) &'a [UserProperty]);

impl Properties for UserOnly<'_> {
    fn describe<S: Sink>(&self, s: &mut S) {
        write_each(self.0, USER_PROPERTY, s);
    }
}

impl PropertySet for DisconnectProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            SESSION_EXPIRY_INTERVAL => &mut self.session_expiry_interval,
            REASON_STRING => &mut self.reason_string,
            USER_PROPERTY => &mut self.user_properties,
            SERVER_REFERENCE => &mut self.server_reference,
            _ => return None,
        })
    }
}

impl Properties for DisconnectProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.session_expiry_interval
            .write(SESSION_EXPIRY_INTERVAL, s);
        self.reason_string.write(REASON_STRING, s);
        self.user_properties.write(USER_PROPERTY, s);
        self.server_reference.write(SERVER_REFERENCE, s);
    }
}

impl PropertySet for AuthProperties {
    fn field(&mut self, id: u8) -> Option<&mut dyn ReadField> {
        Some(match id {
            AUTHENTICATION_METHOD => &mut self.authentication_method,
            AUTHENTICATION_DATA => &mut self.authentication_data,
            REASON_STRING => &mut self.reason_string,
            USER_PROPERTY => &mut self.user_properties,
            _ => return None,
        })
    }
}

impl Properties for AuthProperties {
    fn describe<S: Sink>(&self, s: &mut S) {
        self.authentication_method.write(AUTHENTICATION_METHOD, s);
        self.authentication_data.write(AUTHENTICATION_DATA, s);
        self.reason_string.write(REASON_STRING, s);
        self.user_properties.write(USER_PROPERTY, s);
    }
}
