//! The broker core's settings. The settings crate reads them from the
//! `[mqtt]` section of the settings tree under these field names (which
//! are therefore configuration keys, documented in docs/configuration.md);
//! defaults here are the documented defaults.

/// Limits and feature switches of the broker core.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// Highest keep-alive a client may use, seconds; a larger (or zero)
    /// request is replaced and announced as Server Keep Alive (v5).
    pub max_keepalive: u16,
    /// How many unacknowledged QoS 1/2 PUBLISHes we accept from one client.
    pub receive_maximum: u16,
    /// How many topic aliases a client may use toward us.
    pub topic_alias_maximum: u16,
    /// Largest packet we accept, bytes.
    pub max_packet_size: u32,
    /// Most QoS 1/2 messages in flight toward one client at a time.
    pub max_inflight: u16,
    /// Most messages queued for one session beyond those in flight.
    pub max_queued_messages: usize,
    /// Most payload bytes queued for one session.
    pub max_queued_bytes: usize,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Most retained messages kept; new topics beyond are refused.
    pub max_retained_messages: usize,
    /// Most retained payload bytes kept.
    pub max_retained_bytes: usize,
    /// Highest session expiry interval granted, seconds. v3.1.1 persistent
    /// sessions (clean session 0) get this value.
    pub session_expiry_max: u32,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// Most subscriptions one session may hold.
    pub max_subscriptions_per_client: usize,
    /// Most topic aliases the broker assigns toward a client (capped by the
    /// client's own Topic Alias Maximum). Not a key of its own: the
    /// settings set it to `topic_alias_maximum`.
    #[serde(skip)]
    pub outbound_topic_alias_maximum: u16,
    /// Longest share group name in `$share/{group}/{filter}`, bytes; a
    /// longer one is refused (SUBACK 0x8F Topic Filter invalid, v3.1.1
    /// 0x80). Group names key the broker's share-group bookkeeping.
    pub max_share_group_bytes: usize,
    /// Most persistent sessions (session expiry > 0) kept in total; a
    /// CONNECT that would create one more is refused with 0x97 (v3.1.1:
    /// return code 3).
    pub max_persistent_sessions: usize,
    /// Most persistent sessions of one principal (a device, a password-file
    /// user, or all anonymous clients together).
    pub max_persistent_sessions_per_principal: usize,
    /// Seconds a connected subscriber may stay over its soft queue limit
    /// (`max_queued_messages` / `max_queued_bytes`) before it is
    /// disconnected; 0 = never. Meanwhile the publishers feeding it are
    /// paused (their acknowledgements held); see `backpressure`.
    pub stuck_subscriber_secs: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_keepalive: 600,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_packet_size: 1024 * 1024,
            max_inflight: 64,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            retain_available: true,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 512 * 1024 * 1024,
            session_expiry_max: 7 * 24 * 3600,
            max_topic_levels: 32,
            max_subscriptions_per_client: 1_000,
            outbound_topic_alias_maximum: 64,
            max_share_group_bytes: 128,
            max_persistent_sessions: 1_000_000,
            max_persistent_sessions_per_principal: 1_000,
            stuck_subscriber_secs: 30,
        }
    }
}
