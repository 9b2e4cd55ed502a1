//! Error types: why bytes could not become a packet, or a packet bytes.

use crate::ReasonCode;

/// Why bytes could not be decoded into a packet. Every variant is fatal for
/// the connection; [`DecodeError::reason_code`] is what a v5 server puts in
/// the DISCONNECT (or CONNACK) it sends before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    #[error("unsupported protocol name or level {0}")]
    UnsupportedProtocolVersion(u8),
    #[error("invalid topic name")]
    TopicNameInvalid,
    #[error("invalid topic filter")]
    TopicFilterInvalid,
}

impl DecodeError {
    /// The MQTT 5 reason code for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::TopicNameInvalid => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicFilterInvalid => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("packet too large to encode: {0} bytes")]
    PacketTooLarge(usize),
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    #[error("{0} cannot be sent with this protocol version")]
    NotInProtocol(&'static str),
    #[error("invalid field value: {0}")]
    InvalidValue(&'static str),
}
