//! What the broker asks the store to make durable, and what it gets back at
//! start-up. The broker emits [`PersistOp`]s in order through
//! [`crate::Output::Persist`]; the store applies them in that order (in
//! batches) and the network layer holds acknowledgements that depend on them
//! until they are durable. Only persistent sessions (expiry interval > 0)
//! and retained messages are ever persisted.

use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::{ByteString, QoS, SubscriptionOptions, UserProperty};

use crate::Time;

/// An application message as the broker routes and stores it. Immutable and
/// shared (`Arc`) by every session it is queued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: ByteString,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    pub payload_format_indicator: Option<bool>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    /// When it expires (from Message Expiry Interval), if ever.
    pub expires_at: Option<Time>,
}

impl StoredMessage {
    /// A JSON message the platform publishes itself (events, replies):
    /// QoS 1, not retained, marked as UTF-8 `application/json`.
    pub fn platform_json(topic: impl Into<ByteString>, body: Vec<u8>) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from(body),
            qos: QoS::AtLeastOnce,
            retain: false,
            payload_format_indicator: Some(true),
            content_type: Some("application/json".into()),
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            expires_at: None,
        }
    }

    /// A copy whose topic and payload own exactly their bytes. Decoded
    /// packets are slices of a connection's read buffer; a message kept for
    /// long (retained, queued) must not pin that whole buffer.
    pub fn compacted(&self) -> StoredMessage {
        StoredMessage {
            topic: own_str(&self.topic),
            payload: own_bytes(&self.payload),
            correlation_data: self.correlation_data.as_ref().map(own_bytes),
            response_topic: self.response_topic.as_ref().map(own_str),
            content_type: self.content_type.as_ref().map(own_str),
            user_properties: self
                .user_properties
                .iter()
                .map(|(k, v)| (own_str(k), own_str(v)))
                .collect(),
            ..self.clone()
        }
    }
}

/// A copy of `s` in its own allocation (not a slice of a read buffer).
pub(crate) fn own_str(s: &ByteString) -> ByteString {
    ByteString::from(&**s)
}

/// A copy of `b` in its own allocation.
pub(crate) fn own_bytes(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// One subscription of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter as the client sent it (with `$share/g/` for shared ones).
    pub filter: ByteString,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
}

/// Where a queued message stands toward its subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not sent yet.
    Queued,
    /// Sent with this packet id; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent(u16),
    /// PUBREC received for this packet id; waiting for PUBCOMP.
    Released(u16),
}

/// What the ingest stage made of a device's own telemetry payload, decided
/// outside the broker (the network layer runs the stage before handing the
/// PUBLISH in, outside the lock). The broker never parses telemetry: it
/// only routes the message or refuses it, and tells the network layer
/// whether the message was taken (see [`crate::Broker::handle_decoded`]);
/// the network layer then stores the decoded points in the same group
/// commit that the acknowledgement waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// The payload holds this many points to store.
    Accepted { points: usize },
    /// The payload is refused (PUBACK/PUBREC 0x99 in v5), for this reason.
    Refused(String),
}

/// A durable change.
#[derive(Debug, Clone, PartialEq)]
pub enum PersistOp {
    /// Create or replace a session's metadata and subscriptions.
    SessionPut {
        client_id: ByteString,
        protocol_level: u8,
        expiry_interval: u32,
        /// When a disconnected session expires; `None` while connected.
        expires_at: Option<Time>,
        subscriptions: Vec<StoredSubscription>,
        /// Who the client id belongs to (an owner key: `g:<principal>`,
        /// `u:<user>` or `anon`).
        owner: Option<ByteString>,
    },
    /// Remove a session with everything queued for it.
    SessionDelete { client_id: ByteString },
    /// Queue a message for a session, under a per-session sequence number.
    MessageAdd {
        client_id: ByteString,
        seq: u64,
        message: Arc<StoredMessage>,
        /// The QoS it is delivered with (min of publish and subscription).
        qos: QoS,
        /// The RETAIN flag it is delivered with.
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    /// A queued message changed state (sent with a packet id, or released).
    MessageState {
        client_id: ByteString,
        seq: u64,
        state: DeliveryState,
    },
    /// A queued message was completed, expired or dropped.
    MessageRemove { client_id: ByteString, seq: u64 },
    /// An incoming QoS 2 packet id awaiting PUBREL.
    IncomingAdd {
        client_id: ByteString,
        packet_id: u16,
    },
    /// PUBREL received for an incoming QoS 2 packet id.
    IncomingRemove {
        client_id: ByteString,
        packet_id: u16,
    },
    /// Set a retained message.
    RetainPut { message: Arc<StoredMessage> },
    /// Clear the retained message of a topic.
    RetainDelete { topic: ByteString },
}

/// A message queued for a session, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredMessage {
    pub seq: u64,
    pub message: Arc<StoredMessage>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    pub state: DeliveryState,
}

/// A persistent session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSession {
    pub client_id: ByteString,
    pub protocol_level: u8,
    pub expiry_interval: u32,
    pub expires_at: Option<Time>,
    pub subscriptions: Vec<StoredSubscription>,
    /// Who the client id belongs to; `None` in stores written before
    /// owners were kept.
    pub owner: Option<ByteString>,
    /// In sequence order.
    pub messages: Vec<RestoredMessage>,
    pub incoming_qos2: Vec<u16>,
}

/// Everything the store hands back at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoredState {
    pub sessions: Vec<RestoredSession>,
    pub retained: Vec<Arc<StoredMessage>>,
}
