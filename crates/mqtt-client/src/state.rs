//! The sans-io client state machine.
//!
//! One [`ClientState`] is one MQTT client identity: the session it keeps
//! across connections (packet ids, in-flight QoS 1/2 publishes, incoming
//! QoS 2 ids) and the state of the current connection (phase, server limits,
//! keep-alive timer, topic aliases). It never touches a socket or a clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use mqtt_proto::topic::{parse_shared, valid_topic_filter, valid_topic_name};
use mqtt_proto::{
    encoded_len, Ack, ByteString, ConnAck, Connect, ConnectProperties, Disconnect, Packet,
    Protocol, Publish, QoS, ReasonCode, Subscribe, SubscribeProperties, Subscription, Unsubscribe,
};

use crate::{ClientError, ConnectOptions, DisconnectReason, Event, Phase};

/// What a packet id is being used for.
#[derive(Debug)]
enum IdUse {
    /// A QoS 1/2 publish waiting for quota, not yet sent on this connection.
    Queued(Publish),
    /// Sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent {
        seq: u64,
        publish: Publish,
    },
    /// QoS 2 after PUBREC: PUBREL sent, waiting for PUBCOMP.
    Released {
        seq: u64,
    },
    Subscribe,
    Unsubscribe,
}

/// What the server told us in CONNACK (defaults when it said nothing).
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    receive_maximum: u16,
    maximum_qos: QoS,
    retain_available: bool,
    maximum_packet_size: Option<u32>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: None,
        }
    }
}

/// The client protocol state machine. See the crate documentation.
#[derive(Debug)]
pub struct ClientState {
    options: ConnectOptions,
    phase: Phase,
    connect_sent_at: Option<Instant>,
    closed_reason: Option<DisconnectReason>,
    connack: Option<ConnAck>,
    outbound: VecDeque<Packet>,
    events: VecDeque<Event>,

    // Session state, kept across connections.
    next_packet_id: u16,
    ids: HashMap<u16, IdUse>,
    /// Ids of `IdUse::Queued` publishes, in the order they go out.
    queued: VecDeque<u16>,
    /// Publishes in `Sent` or `Released` (they use receive-maximum quota).
    inflight: usize,
    next_seq: u64,
    incoming_qos2: HashSet<u16>,

    // Connection state.
    server: ServerLimits,
    keep_alive: u16,
    last_sent: Option<Instant>,
    ping_sent: Option<Instant>,
    topic_aliases: HashMap<u16, ByteString>,
    assigned_client_id: Option<ByteString>,
}

impl ClientState {
    /// A fresh client with an empty session, not connected.
    pub fn new(options: ConnectOptions) -> ClientState {
        ClientState {
            keep_alive: options.keep_alive,
            options,
            phase: Phase::Disconnected,
            connect_sent_at: None,
            closed_reason: None,
            connack: None,
            outbound: VecDeque::new(),
            events: VecDeque::new(),
            next_packet_id: 1,
            ids: HashMap::new(),
            queued: VecDeque::new(),
            inflight: 0,
            next_seq: 0,
            incoming_qos2: HashSet::new(),
            server: ServerLimits::default(),
            last_sent: None,
            ping_sent: None,
            topic_aliases: HashMap::new(),
            assigned_client_id: None,
        }
    }

    /// The options this client connects with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// The protocol level (for the codec).
    pub fn protocol(&self) -> Protocol {
        self.options.protocol
    }

    /// Where the current connection stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the last connection ended, once it has.
    pub fn closed_reason(&self) -> Option<&DisconnectReason> {
        self.closed_reason.as_ref()
    }

    /// The CONNACK of the current (or last) connection.
    pub fn connack(&self) -> Option<&ConnAck> {
        self.connack.as_ref()
    }

    /// The client id the server assigned (v5, empty client id).
    pub fn assigned_client_id(&self) -> Option<&ByteString> {
        self.assigned_client_id.as_ref()
    }

    /// The keep alive in force (the server may override ours in v5).
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// Outgoing QoS 1/2 publishes sent and not yet fully acknowledged.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Outgoing QoS 1/2 publishes waiting for quota.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// How many more QoS 1/2 publishes may go out now.
    pub fn send_quota(&self) -> usize {
        self.quota().saturating_sub(self.inflight)
    }

    /// Whether packets are waiting in [`ClientState::poll_transmit`].
    pub fn has_transmit(&self) -> bool {
        !self.outbound.is_empty()
    }

    /// Starts a connection: queues CONNECT. Publishes left in the session
    /// are resent once CONNACK arrives.
    pub fn connect(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.phase != Phase::Disconnected {
            return Err(ClientError::AlreadyConnected);
        }
        let o = &self.options;
        let v5 = o.protocol.is_v5();
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: o.session_expiry_interval,
                receive_maximum: o.receive_maximum,
                maximum_packet_size: o.maximum_packet_size,
                topic_alias_maximum: o.topic_alias_maximum,
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        let connect = Connect {
            protocol: o.protocol,
            clean_start: o.clean_start,
            keep_alive: o.keep_alive,
            client_id: o.client_id.clone(),
            will: o.will.clone(),
            username: o.username.clone(),
            password: o.password.clone(),
            properties,
        };
        self.outbound.clear();
        self.outbound.push_back(Packet::Connect(Box::new(connect)));
        self.phase = Phase::Connecting;
        self.connect_sent_at = Some(now);
        self.closed_reason = None;
        self.connack = None;
        self.server = ServerLimits::default();
        self.keep_alive = self.options.keep_alive;
        self.last_sent = None;
        self.ping_sent = None;
        self.topic_aliases.clear();
        Ok(())
    }

    /// Queues a PUBLISH and returns its packet id (0 for QoS 0). QoS 1/2
    /// publishes may be queued while disconnected; they go out after the
    /// next CONNACK. They also wait while the server's receive maximum is
    /// used up. `packet_id` and `dup` are set here.
    pub fn publish(&mut self, mut publish: Publish) -> Result<u16, ClientError> {
        if !valid_topic_name(&publish.topic) {
            return Err(ClientError::InvalidTopic);
        }
        if self.phase == Phase::Connected {
            if publish.qos > self.server.maximum_qos {
                return Err(ClientError::QosNotSupported(publish.qos));
            }
            if publish.retain && !self.server.retain_available {
                return Err(ClientError::RetainNotSupported);
            }
        }
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            if self.phase == Phase::Disconnected {
                return Err(ClientError::NotConnected);
            }
            publish.packet_id = 0;
            let packet = Packet::Publish(publish);
            self.check_size(&packet)?;
            self.outbound.push_back(packet);
            return Ok(0);
        }
        let packet_id = self.allocate_id()?;
        publish.packet_id = packet_id;
        if let Some(max) = self.server.maximum_packet_size {
            check_size(
                &Packet::Publish(publish.clone()),
                self.options.protocol,
                max,
            )?;
        }
        self.ids.insert(packet_id, IdUse::Queued(publish));
        self.queued.push_back(packet_id);
        self.release_queued();
        Ok(packet_id)
    }

    /// Queues a SUBSCRIBE and returns its packet id.
    pub fn subscribe(&mut self, subscriptions: Vec<Subscription>) -> Result<u16, ClientError> {
        self.subscribe_with(subscriptions, SubscribeProperties::default())
    }

    /// Queues a SUBSCRIBE with properties (v5) and returns its packet id.
    pub fn subscribe_with(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: SubscribeProperties,
    ) -> Result<u16, ClientError> {
        if self.phase == Phase::Disconnected {
            return Err(ClientError::NotConnected);
        }
        if subscriptions.is_empty() {
            return Err(ClientError::NoFilters);
        }
        if !subscriptions.iter().all(|s| valid_filter(&s.filter)) {
            return Err(ClientError::InvalidFilter);
        }
        let packet_id = self.allocate_id()?;
        self.ids.insert(packet_id, IdUse::Subscribe);
        self.outbound.push_back(Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            subscriptions,
        }));
        Ok(packet_id)
    }

    /// Queues an UNSUBSCRIBE and returns its packet id.
    pub fn unsubscribe(&mut self, filters: Vec<ByteString>) -> Result<u16, ClientError> {
        if self.phase == Phase::Disconnected {
            return Err(ClientError::NotConnected);
        }
        if filters.is_empty() {
            return Err(ClientError::NoFilters);
        }
        if !filters.iter().all(|f| valid_filter(f)) {
            return Err(ClientError::InvalidFilter);
        }
        let packet_id = self.allocate_id()?;
        self.ids.insert(packet_id, IdUse::Unsubscribe);
        self.outbound.push_back(Packet::Unsubscribe(Unsubscribe {
            packet_id,
            user_properties: Vec::new(),
            filters,
        }));
        Ok(packet_id)
    }

    /// Queues DISCONNECT (normal disconnection) and ends the connection.
    /// The driver writes what is queued and then closes the socket.
    pub fn disconnect(&mut self) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))
    }

    /// Queues the given DISCONNECT (v5 reason and properties; v3.1.1 sends
    /// an empty one) and ends the connection.
    pub fn disconnect_with(&mut self, disconnect: Disconnect) -> Result<(), ClientError> {
        if self.phase == Phase::Disconnected {
            return Err(ClientError::NotConnected);
        }
        self.outbound.push_back(Packet::Disconnect(disconnect));
        self.end_connection(DisconnectReason::Local);
        Ok(())
    }

    /// The transport closed or failed. Unsent packets are dropped; the
    /// session stays for the next `connect`.
    pub fn connection_lost(&mut self) {
        if self.phase != Phase::Disconnected {
            self.outbound.clear();
            self.end_connection(DisconnectReason::ConnectionLost);
        }
    }

    /// The bytes from the server could not be decoded: ends the connection
    /// with a DISCONNECT carrying the matching reason (v5).
    pub fn handle_decode_error(&mut self, reason: ReasonCode) {
        self.protocol_error(reason, "undecodable packet from the server");
    }

    /// The next packet to send, if any. `now` is when it is handed to the
    /// transport (it restarts the keep-alive interval).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        let packet = self.outbound.pop_front()?;
        self.last_sent = Some(now);
        Some(packet)
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ClientState::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Disconnected => None,
            Phase::Connecting => self
                .connect_sent_at
                .map(|t| t + self.options.connect_timeout),
            Phase::Connected => {
                if self.keep_alive == 0 {
                    return None;
                }
                let interval = Duration::from_secs(u64::from(self.keep_alive));
                match (self.ping_sent, self.last_sent) {
                    (Some(ping), _) => Some(ping + interval),
                    (None, Some(sent)) => Some(sent + interval),
                    (None, None) => self.connect_sent_at.map(|t| t + interval),
                }
            }
        }
    }

    /// Fires whatever timer is due at `now`: the connect timeout, a
    /// keep-alive PINGREQ, or the PINGRESP timeout. Calling it early is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.phase {
            Phase::Disconnected => {}
            Phase::Connecting => {
                self.outbound.clear();
                self.end_connection(DisconnectReason::ConnectTimeout);
            }
            Phase::Connected => {
                if self.ping_sent.is_some() {
                    self.outbound.clear();
                    if self.options.protocol.is_v5() {
                        self.outbound.push_back(Packet::Disconnect(Disconnect::new(
                            ReasonCode::KEEP_ALIVE_TIMEOUT,
                        )));
                    }
                    self.end_connection(DisconnectReason::KeepAliveTimeout);
                } else {
                    self.outbound.push_back(Packet::PingReq);
                    self.ping_sent = Some(now);
                }
            }
        }
    }

    /// Handles one packet from the server. An error means the server broke
    /// the protocol: the connection has ended (a v5 DISCONNECT with the
    /// reason is queued) and the driver should write what is queued and
    /// close.
    pub fn handle_packet(&mut self, _now: Instant, packet: Packet) -> Result<(), ClientError> {
        match self.phase {
            Phase::Disconnected => return Ok(()),
            Phase::Connecting => {
                return match packet {
                    Packet::ConnAck(connack) => {
                        self.handle_connack(connack);
                        Ok(())
                    }
                    _ => Err(self.protocol_error(
                        ReasonCode::PROTOCOL_ERROR,
                        "first packet from the server is not CONNACK",
                    )),
                };
            }
            Phase::Connected => {}
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                self.handle_puback(ack);
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.handle_pubrec(ack);
                Ok(())
            }
            Packet::PubRel(ack) => {
                self.handle_pubrel(ack);
                Ok(())
            }
            Packet::PubComp(ack) => {
                self.handle_pubcomp(ack);
                Ok(())
            }
            Packet::SubAck(suback) => {
                if matches!(self.ids.get(&suback.packet_id), Some(IdUse::Subscribe)) {
                    self.ids.remove(&suback.packet_id);
                    self.events.push_back(Event::SubAck(suback));
                } else {
                    tracing::debug!(
                        packet_id = suback.packet_id,
                        "SUBACK for an unknown packet id"
                    );
                }
                Ok(())
            }
            Packet::UnsubAck(unsuback) => {
                if matches!(self.ids.get(&unsuback.packet_id), Some(IdUse::Unsubscribe)) {
                    self.ids.remove(&unsuback.packet_id);
                    self.events.push_back(Event::UnsubAck(unsuback));
                } else {
                    tracing::debug!(
                        packet_id = unsuback.packet_id,
                        "UNSUBACK for an unknown packet id"
                    );
                }
                Ok(())
            }
            Packet::PingResp => {
                self.ping_sent = None;
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                self.outbound.clear();
                self.end_connection(DisconnectReason::Server(Box::new(disconnect)));
                Ok(())
            }
            Packet::ConnAck(_) => {
                Err(self.protocol_error(ReasonCode::PROTOCOL_ERROR, "second CONNACK"))
            }
            Packet::Auth(_) => Err(self.protocol_error(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method",
            )),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => Err(self.protocol_error(
                ReasonCode::PROTOCOL_ERROR,
                "client-to-server packet sent by the server",
            )),
        }
    }

    fn handle_connack(&mut self, connack: ConnAck) {
        if connack.reason_code.is_error() {
            self.outbound.clear();
            self.end_connection(DisconnectReason::Refused(connack.reason_code));
            return;
        }
        let p = &connack.properties;
        self.server = ServerLimits {
            receive_maximum: p.receive_maximum.unwrap_or(u16::MAX).max(1),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            maximum_packet_size: p.maximum_packet_size,
        };
        if let Some(ka) = p.server_keep_alive {
            self.keep_alive = ka;
        }
        if let Some(id) = &p.assigned_client_identifier {
            self.assigned_client_id = Some(id.clone());
        }
        self.phase = Phase::Connected;
        let session_present = connack.session_present;

        // Publishes sent on an earlier connection, in the order they went out.
        let mut previous: Vec<(u64, u16)> = self
            .ids
            .iter()
            .filter_map(|(&id, used)| match used {
                IdUse::Sent { seq, .. } | IdUse::Released { seq } => Some((*seq, id)),
                _ => None,
            })
            .collect();
        previous.sort_unstable();
        if !session_present {
            self.incoming_qos2.clear();
        }
        self.inflight = 0;
        let mut requeue = Vec::new();
        for (seq, id) in previous {
            match self.ids.remove(&id) {
                Some(IdUse::Sent { mut publish, .. }) => {
                    // Resent in order ahead of anything queued later; DUP only
                    // if the server still holds the session that saw it.
                    publish.dup = session_present;
                    self.ids.insert(id, IdUse::Queued(publish));
                    requeue.push(id);
                }
                Some(IdUse::Released { .. }) if session_present => {
                    self.ids.insert(id, IdUse::Released { seq });
                    self.inflight += 1;
                    self.outbound.push_back(Packet::PubRel(Ack::new(id)));
                }
                Some(IdUse::Released { .. }) => {
                    // The server had taken the message (PUBREC) and then lost
                    // the session: delivery is done as far as we can know.
                    self.events.push_back(Event::PubComp {
                        packet_id: id,
                        reason_code: ReasonCode::SUCCESS,
                    });
                }
                Some(other) => {
                    self.ids.insert(id, other);
                }
                None => {}
            }
        }
        for id in requeue.into_iter().rev() {
            self.queued.push_front(id);
        }
        self.connack = Some(connack.clone());
        self.events.push_back(Event::Connected {
            session_present,
            connack,
        });
        self.release_queued();
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ClientError> {
        if let Some(alias) = publish.properties.topic_alias {
            let max = self.options.topic_alias_maximum.unwrap_or(0);
            if alias == 0 || alias > max {
                return Err(self
                    .protocol_error(ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range"));
            }
            if publish.topic.is_empty() {
                match self.topic_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return Err(self.protocol_error(
                            ReasonCode::TOPIC_ALIAS_INVALID,
                            "unknown topic alias",
                        ))
                    }
                }
            } else {
                self.topic_aliases.insert(alias, publish.topic.clone());
            }
        } else if publish.topic.is_empty() {
            return Err(self.protocol_error(
                ReasonCode::PROTOCOL_ERROR,
                "empty topic without a topic alias",
            ));
        }
        match publish.qos {
            QoS::AtMostOnce => self.events.push_back(Event::Message(publish)),
            QoS::AtLeastOnce => {
                self.outbound
                    .push_back(Packet::PubAck(Ack::new(publish.packet_id)));
                self.events.push_back(Event::Message(publish));
            }
            QoS::ExactlyOnce => {
                let id = publish.packet_id;
                if self.incoming_qos2.insert(id) {
                    let limit = self.options.receive_maximum.unwrap_or(u16::MAX);
                    if self.options.protocol.is_v5()
                        && self.incoming_qos2.len() > usize::from(limit)
                    {
                        self.incoming_qos2.remove(&id);
                        return Err(self.protocol_error(
                            ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                            "more unacknowledged QoS 2 publishes than our receive maximum",
                        ));
                    }
                    self.events.push_back(Event::Message(publish));
                }
                // A duplicate of a message not yet released is acknowledged
                // again but not delivered again.
                self.outbound.push_back(Packet::PubRec(Ack::new(id)));
            }
        }
        Ok(())
    }

    fn handle_puback(&mut self, ack: Ack) {
        match self.ids.get(&ack.packet_id) {
            Some(IdUse::Sent { publish, .. }) if publish.qos == QoS::AtLeastOnce => {
                self.ids.remove(&ack.packet_id);
                self.inflight -= 1;
                self.events.push_back(Event::PubAck {
                    packet_id: ack.packet_id,
                    reason_code: ack.reason_code,
                });
                self.release_queued();
            }
            _ => tracing::debug!(packet_id = ack.packet_id, "PUBACK for an unknown packet id"),
        }
    }

    fn handle_pubrec(&mut self, ack: Ack) {
        let id = ack.packet_id;
        match self.ids.get(&id) {
            Some(IdUse::Sent { publish, seq }) if publish.qos == QoS::ExactlyOnce => {
                if ack.reason_code.is_error() {
                    self.ids.remove(&id);
                    self.inflight -= 1;
                    self.events.push_back(Event::PubComp {
                        packet_id: id,
                        reason_code: ack.reason_code,
                    });
                    self.release_queued();
                } else {
                    let seq = *seq;
                    self.ids.insert(id, IdUse::Released { seq });
                    self.outbound.push_back(Packet::PubRel(Ack::new(id)));
                }
            }
            Some(IdUse::Released { .. }) => {
                self.outbound.push_back(Packet::PubRel(Ack::new(id)));
            }
            _ => {
                let reason = if self.options.protocol.is_v5() {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                } else {
                    ReasonCode::SUCCESS
                };
                self.outbound
                    .push_back(Packet::PubRel(Ack::with_reason(id, reason)));
            }
        }
    }

    fn handle_pubrel(&mut self, ack: Ack) {
        let id = ack.packet_id;
        let reason = if self.incoming_qos2.remove(&id) || !self.options.protocol.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.outbound
            .push_back(Packet::PubComp(Ack::with_reason(id, reason)));
    }

    fn handle_pubcomp(&mut self, ack: Ack) {
        if matches!(self.ids.get(&ack.packet_id), Some(IdUse::Released { .. })) {
            self.ids.remove(&ack.packet_id);
            self.inflight -= 1;
            self.events.push_back(Event::PubComp {
                packet_id: ack.packet_id,
                reason_code: ack.reason_code,
            });
            self.release_queued();
        } else {
            tracing::debug!(
                packet_id = ack.packet_id,
                "PUBCOMP for an unknown packet id"
            );
        }
    }

    /// Sends queued QoS 1/2 publishes while quota allows.
    fn release_queued(&mut self) {
        if self.phase != Phase::Connected {
            return;
        }
        let quota = self.quota();
        while self.inflight < quota {
            let Some(id) = self.queued.pop_front() else {
                break;
            };
            let Some(IdUse::Queued(publish)) = self.ids.remove(&id) else {
                continue;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            self.outbound.push_back(Packet::Publish(publish.clone()));
            self.ids.insert(id, IdUse::Sent { seq, publish });
            self.inflight += 1;
        }
    }

    fn quota(&self) -> usize {
        usize::from(self.server.receive_maximum.min(self.options.max_inflight))
    }

    fn allocate_id(&mut self) -> Result<u16, ClientError> {
        if self.ids.len() >= usize::from(u16::MAX) {
            return Err(ClientError::PacketIdsExhausted);
        }
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.ids.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    fn check_size(&self, packet: &Packet) -> Result<(), ClientError> {
        match self.server.maximum_packet_size {
            Some(max) => check_size(packet, self.options.protocol, max),
            None => Ok(()),
        }
    }

    /// Ends the connection because the server broke the protocol.
    fn protocol_error(&mut self, reason: ReasonCode, what: &'static str) -> ClientError {
        tracing::debug!(%reason, what, "protocol error, closing");
        self.outbound.clear();
        if self.options.protocol.is_v5() && self.phase == Phase::Connected {
            self.outbound
                .push_back(Packet::Disconnect(Disconnect::new(reason)));
        }
        self.end_connection(DisconnectReason::Protocol(reason, what));
        ClientError::ProtocolViolation(what)
    }

    fn end_connection(&mut self, reason: DisconnectReason) {
        if self.phase == Phase::Disconnected {
            return;
        }
        self.phase = Phase::Disconnected;
        self.ping_sent = None;
        // SUBSCRIBE and UNSUBSCRIBE are not resent on a new connection.
        self.ids
            .retain(|_, used| !matches!(used, IdUse::Subscribe | IdUse::Unsubscribe));
        self.closed_reason = Some(reason.clone());
        self.events.push_back(Event::Disconnected { reason });
    }
}

fn valid_filter(filter: &str) -> bool {
    match parse_shared(filter) {
        Some(parsed) => parsed.is_ok(),
        None => valid_topic_filter(filter),
    }
}

fn check_size(packet: &Packet, protocol: Protocol, max: u32) -> Result<(), ClientError> {
    let size = encoded_len(packet, protocol);
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if size > max {
        return Err(ClientError::PacketTooLarge { size, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
