//! The crate's error type.

use mqtt_proto::{DecodeError, EncodeError, QoS, ReasonCode};

use crate::DisconnectReason;

/// Everything that can go wrong in the client, from the state machine and
/// from the drivers.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The operation needs a connection (or a connection attempt) and there
    /// is none.
    #[error("not connected")]
    NotConnected,
    /// `connect` was called while connecting or connected.
    #[error("already connected or connecting")]
    AlreadyConnected,
    /// The server answered CONNECT with a failure reason.
    #[error("connection refused by the server: reason {0}")]
    ConnectionRefused(ReasonCode),
    /// The connection ended; the reason says why.
    #[error("disconnected: {0}")]
    Disconnected(DisconnectReason),
    /// The server broke the protocol; the connection is closed.
    #[error("protocol violation by the server: {0}")]
    ProtocolViolation(&'static str),
    /// All 65,535 packet identifiers are in use.
    #[error("no free packet identifier")]
    PacketIdsExhausted,
    /// The server does not accept this QoS (its CONNACK said so).
    #[error("the server does not support {0:?}")]
    QosNotSupported(QoS),
    /// The server does not accept retained messages.
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    /// The packet is larger than the server accepts.
    #[error("packet of {size} bytes exceeds the server's maximum of {max}")]
    PacketTooLarge { size: usize, max: usize },
    /// Not a valid topic name for PUBLISH.
    #[error("invalid topic name")]
    InvalidTopic,
    /// Not a valid topic filter for SUBSCRIBE or UNSUBSCRIBE.
    #[error("invalid topic filter")]
    InvalidFilter,
    /// SUBSCRIBE or UNSUBSCRIBE without any filter.
    #[error("no topic filter given")]
    NoFilters,
    /// The server acknowledged a publish with a failure reason.
    #[error("publish rejected by the server: reason {0}")]
    Rejected(ReasonCode),
    /// A time limit passed (TCP connect, CONNACK, flush on disconnect).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The bytes from the server could not be decoded.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded.
    #[error("encode error: {0}")]
    Encode(#[from] EncodeError),
    /// A socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
