//! What a client asks for in CONNECT, and the client-side limits.

use std::time::Duration;

use bytes::Bytes;
use mqtt_proto::{ByteString, LastWill, Protocol};

/// Options for CONNECT and for the client's own limits. Fields that v3.1.1
/// cannot express (session expiry, receive maximum, ...) are not sent when
/// `protocol` is not v5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// MQTT 3.1.1 or 5.0.
    pub protocol: Protocol,
    /// May be empty: the server then assigns one (v5) or, in v3.1.1, accepts
    /// it only with `clean_start`.
    pub client_id: ByteString,
    /// Clean Start (v5) / Clean Session (v3.1.1).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// Session Expiry Interval in seconds (v5).
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 publishes the server may have unacknowledged
    /// towards us (v5).
    pub receive_maximum: Option<u16>,
    /// The largest packet we accept (v5 property; the driver also enforces
    /// it when decoding).
    pub maximum_packet_size: Option<u32>,
    /// How many topic aliases the server may use towards us (v5).
    pub topic_alias_maximum: Option<u16>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub will: Option<LastWill>,
    /// How long to wait for CONNACK after sending CONNECT (and, in the
    /// driver, for the TCP handshake).
    pub connect_timeout: Duration,
    /// Our own cap on outgoing in-flight QoS 1/2 publishes, applied on top
    /// of the server's receive maximum.
    pub max_inflight: u16,
}

impl ConnectOptions {
    /// MQTT 3.1.1, clean session, keep alive 60 s, no credentials.
    pub fn new(client_id: impl Into<ByteString>) -> ConnectOptions {
        ConnectOptions {
            protocol: Protocol::V311,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            session_expiry_interval: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            username: None,
            password: None,
            will: None,
            connect_timeout: Duration::from_secs(10),
            max_inflight: u16::MAX,
        }
    }

    /// Sets the protocol level.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets Clean Start / Clean Session.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    /// Sets the keep alive in seconds (0 = off).
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    /// Sets the v5 Session Expiry Interval in seconds.
    pub fn session_expiry(mut self, secs: u32) -> Self {
        self.session_expiry_interval = Some(secs);
        self
    }

    /// Sets the v5 Receive Maximum we announce.
    pub fn receive_maximum(mut self, max: u16) -> Self {
        self.receive_maximum = Some(max);
        self
    }

    /// Sets user name and password.
    pub fn credentials(
        mut self,
        username: impl Into<ByteString>,
        password: impl Into<Bytes>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the will message.
    pub fn will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }

    /// Caps our outgoing in-flight QoS 1/2 publishes.
    pub fn max_inflight(mut self, max: u16) -> Self {
        self.max_inflight = max.max(1);
        self
    }
}
