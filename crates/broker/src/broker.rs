//! The broker state machine: connections, sessions and the packet handlers.
//! Routing and delivery toward sessions live in `delivery.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use mqtt_proto::{
    topic, Ack, AckProperties, ByteString, ConnAck, ConnAckProperties, Connect, Disconnect, Packet, Protocol, Publish,
    QoS, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::auth::{AccessControl, Action, AuthFailure};
use crate::persist::{DeliveryState, PersistOp, RestoredState, StoredMessage, StoredSubscription};
use crate::retained::Retained;
use crate::session::{Delivery, Inflight, Session};
use crate::stats::Stats;
use crate::trie::{SessionIdx, SubEntry, SubTree};
use crate::{BrokerConfig, Time};

/// Identifies one network connection. Chosen by the network layer, never
/// reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the network layer knows about a new connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    /// Peer address, for logs and events.
    pub peer: String,
}

/// Something the broker wants done. Drained in order with
/// [`Broker::drain_outputs`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a packet on a connection. When `durable` is true it must not be
    /// sent before every [`Output::Persist`] drained before it is durable
    /// (it acknowledges something the client must not lose).
    Send { conn: ConnId, packet: Packet, durable: bool },
    /// Close a connection after sending what was queued for it. The broker
    /// has already forgotten it.
    Close { conn: ConnId },
    /// Make a change durable.
    Persist(PersistOp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Keepalive(ConnId),
    Will(SessionIdx, u64),
    Expiry(SessionIdx, u64),
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub session: SessionIdx,
    pub protocol: Protocol,
    /// Disconnect after this much silence (1.5 x keep alive); 0 = never.
    pub timeout_ms: u64,
    pub last_seen: Time,
    pub aliases_in: HashMap<u16, ByteString>,
    pub username: Option<ByteString>,
}

/// The broker core. See the crate documentation.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) access: AccessControl,
    pub(crate) sessions: Vec<Option<Session>>,
    free_sessions: Vec<SessionIdx>,
    pub(crate) by_client_id: HashMap<ByteString, SessionIdx>,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) trie: SubTree,
    pub(crate) retained: Retained,
    /// Round-robin position per (share group, filter).
    pub(crate) shared_next: HashMap<(ByteString, ByteString), usize>,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) stats: Stats,
    next_assigned_id: u64,
    started: Time,
}

impl Broker {
    /// A broker with no sessions, started at `now`.
    pub fn new(config: BrokerConfig, access: AccessControl, now: Time) -> Broker {
        Broker {
            retained: Retained::new(config.max_retained_messages, config.max_retained_bytes),
            config,
            access,
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            by_client_id: HashMap::new(),
            conns: HashMap::new(),
            trie: SubTree::default(),
            shared_next: HashMap::new(),
            timers: BinaryHeap::new(),
            outputs: Vec::new(),
            stats: Stats::default(),
            next_assigned_id: now.0,
            started: now,
        }
    }

    /// Replaces the access rules (on configuration reload).
    pub fn set_access_control(&mut self, access: AccessControl) {
        self.access = access;
    }

    /// Loads what the store kept: persistent sessions (all disconnected now)
    /// and retained messages. Call once, before any connection.
    pub fn restore(&mut self, state: RestoredState, now: Time) {
        for msg in state.retained {
            self.retained.restore(msg);
        }
        for rs in state.sessions {
            let protocol = match rs.protocol_level {
                5 => Protocol::V5,
                3 => Protocol::V31,
                _ => Protocol::V311,
            };
            let mut s = Session::new(rs.client_id.clone(), protocol);
            s.expiry_interval = rs.expiry_interval;
            let expires_at = rs.expires_at.unwrap_or_else(|| now.plus_secs(u64::from(rs.expiry_interval)));
            s.expires_at = Some(expires_at);
            s.incoming_qos2 = rs.incoming_qos2.into_iter().collect();
            for m in rs.messages {
                s.next_seq = s.next_seq.max(m.seq + 1);
                let d = Delivery {
                    seq: m.seq,
                    message: m.message,
                    qos: m.qos,
                    retain: m.retain,
                    subscription_ids: m.subscription_ids,
                };
                match m.state {
                    DeliveryState::Queued => {
                        s.queued_bytes += d.message.payload.len();
                        s.queue.push_back(d);
                    }
                    DeliveryState::Sent(packet_id) | DeliveryState::Released(packet_id) => {
                        s.inflight.push_back(Inflight {
                            delivery: d,
                            packet_id,
                            state: m.state,
                        })
                    }
                }
            }
            let subs = rs.subscriptions;
            let idx = self.insert_session(s);
            for sub in subs {
                self.add_subscription(idx, sub);
            }
            self.schedule(expires_at, Timer::Expiry(idx, 0));
        }
    }

    /// Counters for `$SYS` and metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of connected clients.
    pub fn connected_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of sessions, connected or not.
    pub fn session_count(&self) -> usize {
        self.by_client_id.len()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.trie.len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Time the broker started.
    pub fn started(&self) -> Time {
        self.started
    }

    /// Takes everything the broker wants done since the last call.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// The earliest time [`Broker::tick`] has work to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub(crate) fn send(&mut self, conn: ConnId, packet: Packet) {
        self.outputs.push(Output::Send {
            conn,
            packet,
            durable: false,
        });
    }

    pub(crate) fn send_durable(&mut self, conn: ConnId, packet: Packet) {
        self.outputs.push(Output::Send {
            conn,
            packet,
            durable: true,
        });
    }

    pub(crate) fn persist(&mut self, op: PersistOp) {
        self.outputs.push(Output::Persist(op));
    }

    fn schedule(&mut self, at: Time, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    pub(crate) fn session(&self, idx: SessionIdx) -> Option<&Session> {
        self.sessions.get(idx as usize).and_then(Option::as_ref)
    }

    pub(crate) fn session_mut(&mut self, idx: SessionIdx) -> Option<&mut Session> {
        self.sessions.get_mut(idx as usize).and_then(Option::as_mut)
    }

    fn insert_session(&mut self, s: Session) -> SessionIdx {
        let id = s.client_id.clone();
        let idx = match self.free_sessions.pop() {
            Some(i) => {
                self.sessions[i as usize] = Some(s);
                i
            }
            None => {
                self.sessions.push(Some(s));
                (self.sessions.len() - 1) as SessionIdx
            }
        };
        self.by_client_id.insert(id, idx);
        idx
    }

    /// Ends a session: drops its subscriptions and queue, and the stored copy.
    fn remove_session(&mut self, idx: SessionIdx) {
        let Some(s) = self.sessions.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        for sub in s.subscriptions.values() {
            let (group, filter) = split_shared(&sub.filter);
            self.trie.remove(idx, filter, group);
        }
        self.by_client_id.remove(&s.client_id);
        self.free_sessions.push(idx);
        if s.persistent() {
            self.persist(PersistOp::SessionDelete {
                client_id: s.client_id,
            });
        }
    }

    pub(crate) fn persist_session_meta(&mut self, idx: SessionIdx) {
        let Some(s) = self.session(idx) else { return };
        if !s.persistent() {
            return;
        }
        let op = PersistOp::SessionPut {
            client_id: s.client_id.clone(),
            protocol_level: s.protocol.level(),
            expiry_interval: s.expiry_interval,
            expires_at: if s.conn.is_some() { None } else { s.expires_at },
            subscriptions: s.subscriptions_vec(),
        };
        self.persist(op);
    }

    fn add_subscription(&mut self, idx: SessionIdx, sub: StoredSubscription) -> bool {
        let (group, filter) = split_shared(&sub.filter);
        let entry = SubEntry {
            session: idx,
            options: sub.options,
            subscription_id: sub.subscription_id,
            group: group.map(ByteString::from),
            filter: ByteString::from(filter),
        };
        let existed = self.trie.insert(entry);
        if let Some(s) = self.session_mut(idx) {
            s.subscriptions.insert(sub.filter.clone(), sub);
        }
        existed
    }

    // ---------------------------------------------------------------- CONNECT

    /// Handles a CONNECT (the first packet of a connection).
    pub fn connect(&mut self, conn: ConnId, connect: Connect, info: &ConnectInfo, now: Time) {
        let mut connect = connect;
        let v5 = connect.protocol.is_v5();
        if let Err(failure) = self.access.authenticate(connect.username.as_deref(), connect.password.as_deref()) {
            let code = match failure {
                AuthFailure::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
                AuthFailure::BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            };
            tracing::info!(peer = %info.peer, client_id = %connect.client_id, ?failure, "connection refused");
            self.stats.auth_failures += 1;
            self.refuse(conn, code);
            return;
        }
        own_connect_fields(&mut connect);

        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                self.refuse(conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                return;
            }
            self.next_assigned_id += 1;
            let id = ByteString::from(format!("auto-{:x}", self.next_assigned_id));
            assigned = Some(id.clone());
            id
        } else {
            connect.client_id.clone()
        };

        let requested_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested_expiry.min(self.config.session_expiry_max);

        // Take over an existing connection of the same client id.
        let existing = self.by_client_id.get(&client_id).copied();
        if let Some(idx) = existing {
            if let Some(old_conn) = self.session(idx).and_then(|s| s.conn) {
                self.stats.takeovers += 1;
                let old_v5 = self.conns.get(&old_conn).is_some_and(|c| c.protocol.is_v5());
                if old_v5 {
                    self.send(old_conn, Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)));
                }
                self.outputs.push(Output::Close { conn: old_conn });
                let ends = connect.clean_start || self.session(idx).is_some_and(|s| s.expiry_interval == 0);
                self.detach(old_conn, now, true, ends);
            }
        }

        // Resume or start the session.
        let mut session_present = false;
        let idx = match self.by_client_id.get(&client_id).copied() {
            Some(idx) if !connect.clean_start => {
                session_present = true;
                idx
            }
            Some(idx) => {
                // Clean start: discard the old session (its pending will, if
                // any, is sent now as the session ends).
                self.end_session(idx, now);
                self.insert_session(Session::new(client_id.clone(), connect.protocol))
            }
            None => self.insert_session(Session::new(client_id.clone(), connect.protocol)),
        };

        let (was_persistent, generation) = {
            let Some(s) = self.session_mut(idx) else { return };
            let was = s.persistent();
            s.protocol = connect.protocol;
            s.expiry_interval = expiry;
            s.conn = Some(conn);
            s.generation += 1;
            s.expires_at = None;
            s.will = connect.will.clone();
            s.will_due = None;
            s.username = connect.username.clone();
            s.client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            s.client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
            (was, s.generation)
        };
        let _ = generation;
        if was_persistent && expiry == 0 {
            self.persist(PersistOp::SessionDelete {
                client_id: client_id.clone(),
            });
        } else if expiry > 0 {
            self.persist_session_meta(idx);
        }

        let max_ka = self.config.max_keepalive;
        let keep_alive = if connect.keep_alive == 0 || connect.keep_alive > max_ka {
            if v5 || connect.keep_alive > max_ka {
                max_ka
            } else {
                0
            }
        } else {
            connect.keep_alive
        };
        let timeout_ms = u64::from(keep_alive) * 1500;
        self.conns.insert(
            conn,
            Conn {
                session: idx,
                protocol: connect.protocol,
                timeout_ms,
                last_seen: now,
                aliases_in: HashMap::new(),
                username: connect.username.clone(),
            },
        );
        if timeout_ms > 0 {
            self.schedule(now.plus_ms(timeout_ms), Timer::Keepalive(conn));
        }

        let mut props = ConnAckProperties::default();
        if v5 {
            if expiry != requested_expiry {
                props.session_expiry_interval = Some(expiry);
            }
            props.receive_maximum = Some(self.config.receive_maximum);
            props.maximum_packet_size = Some(self.config.max_packet_size);
            props.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            props.retain_available = Some(self.config.retain_available);
            props.maximum_qos = None;
            props.wildcard_subscription_available = Some(true);
            props.subscription_identifiers_available = Some(true);
            props.shared_subscription_available = Some(true);
            if keep_alive != connect.keep_alive {
                props.server_keep_alive = Some(keep_alive);
            }
            props.assigned_client_identifier = assigned;
        }
        self.stats.connects += 1;
        tracing::debug!(peer = %info.peer, client_id = %client_id, session_present, "client connected");
        let ack = Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: props,
        });
        self.send_durable(conn, ack);
        self.resume_deliveries(idx, now);
    }

    fn refuse(&mut self, conn: ConnId, code: ReasonCode) {
        self.send(
            conn,
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: code,
                properties: ConnAckProperties::default(),
            }),
        );
        self.outputs.push(Output::Close { conn });
    }

    /// After (re)connecting: resend what was in flight, then send queued.
    fn resume_deliveries(&mut self, idx: SessionIdx, now: Time) {
        let Some(s) = self.session(idx) else { return };
        let Some(conn) = s.conn else { return };
        let resend: Vec<Packet> = s
            .inflight
            .iter()
            .map(|i| match i.state {
                DeliveryState::Released(pid) => Packet::PubRel(Ack::new(pid)),
                _ => {
                    let mut p = crate::delivery::build_publish(&i.delivery, i.packet_id, now);
                    p.dup = true;
                    Packet::Publish(p)
                }
            })
            .collect();
        for p in resend {
            self.stats.messages_sent += 1;
            self.send(conn, p);
        }
        self.pump(idx, now);
    }

    // --------------------------------------------------------------- packets

    /// Handles one packet (other than the first CONNECT) from a connection.
    pub fn handle(&mut self, conn: ConnId, packet: Packet, now: Time) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_seen = now;
        let idx = c.session;
        match packet {
            Packet::Publish(p) => self.handle_publish(conn, p, now),
            Packet::PubAck(ack) => self.handle_puback(idx, ack, now),
            Packet::PubRec(ack) => self.handle_pubrec(conn, idx, ack, now),
            Packet::PubRel(ack) => self.handle_pubrel(conn, idx, ack),
            Packet::PubComp(ack) => self.handle_pubcomp(idx, ack, now),
            Packet::Subscribe(s) => self.handle_subscribe(conn, s, now),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(conn, u),
            Packet::PingReq => self.send(conn, Packet::PingResp),
            Packet::Disconnect(d) => self.handle_disconnect(conn, d, now),
            Packet::Connect(_) => self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "second CONNECT", now),
            Packet::Auth(_) => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "AUTH without an authentication method", now)
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "server-to-client packet from a client", now)
            }
        }
    }

    /// Closes a connection for a protocol violation: DISCONNECT with the
    /// reason (v5), then close; the will is published.
    pub fn protocol_violation(&mut self, conn: ConnId, code: ReasonCode, why: &str, now: Time) {
        let Some(c) = self.conns.get(&conn) else { return };
        tracing::info!(?conn, reason = %code, why, "closing connection");
        self.stats.protocol_errors += 1;
        if c.protocol.is_v5() {
            self.send(conn, Packet::Disconnect(Disconnect::new(code)));
        }
        self.outputs.push(Output::Close { conn });
        self.detach(conn, now, true, false);
    }

    /// The network connection ended without a DISCONNECT (or the network
    /// layer closed it). Publishes the will per its delay.
    pub fn connection_lost(&mut self, conn: ConnId, now: Time) {
        self.detach(conn, now, true, false);
    }

    /// Shuts down: every v5 client gets DISCONNECT with `code`, every
    /// connection is closed. Wills are not published (the clients did not
    /// fail); persistent sessions stay.
    pub fn shutdown(&mut self, code: ReasonCode, now: Time) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            if self.conns.get(&conn).is_some_and(|c| c.protocol.is_v5()) {
                self.send(conn, Packet::Disconnect(Disconnect::new(code)));
            }
            self.outputs.push(Output::Close { conn });
            self.detach(conn, now, false, false);
        }
    }

    /// Forgets a connection and leaves its session disconnected (or ends
    /// it). `will`: whether the will is due; `end`: end the session now
    /// regardless of its expiry.
    fn detach(&mut self, conn: ConnId, now: Time, will: bool, end: bool) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let idx = c.session;
        let Some(s) = self.session_mut(idx) else { return };
        if s.conn != Some(conn) {
            return;
        }
        s.conn = None;
        if !will {
            s.will = None;
        }
        let expiry = s.expiry_interval;
        let generation = s.generation;
        if end || expiry == 0 {
            self.end_session(idx, now);
            return;
        }
        let expires_at = now.plus_secs(u64::from(expiry));
        let will_delay = s.will.as_ref().map(|w| w.properties.will_delay_interval.unwrap_or(0));
        s.expires_at = Some(expires_at);
        self.persist_session_meta(idx);
        self.schedule(expires_at, Timer::Expiry(idx, generation));
        if let Some(delay) = will_delay {
            if delay == 0 {
                self.publish_will(idx, now);
            } else {
                let due = now.plus_secs(u64::from(delay)).min(expires_at);
                if let Some(s) = self.session_mut(idx) {
                    s.will_due = Some(due);
                }
                self.schedule(due, Timer::Will(idx, generation));
            }
        }
    }

    /// Ends a session now, publishing its pending will first.
    fn end_session(&mut self, idx: SessionIdx, now: Time) {
        self.publish_will(idx, now);
        self.remove_session(idx);
    }

    fn publish_will(&mut self, idx: SessionIdx, now: Time) {
        let Some(s) = self.session_mut(idx) else { return };
        let Some(will) = s.will.take() else { return };
        s.will_due = None;
        let client_id = s.client_id.clone();
        let username = s.username.clone();
        if !self.access.allowed(username.as_deref(), &client_id, &will.topic, Action::Write) {
            return;
        }
        let p = will.properties;
        let msg = StoredMessage {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain && self.config.retain_available,
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            expires_at: p.message_expiry_interval.map(|e| now.plus_secs(u64::from(e))),
        };
        self.stats.wills_published += 1;
        let msg = Arc::new(msg);
        if msg.retain {
            self.set_retained(msg.clone());
        }
        self.route(msg, None, now);
    }

    fn handle_disconnect(&mut self, conn: ConnId, d: Disconnect, now: Time) {
        let Some(c) = self.conns.get(&conn) else { return };
        let idx = c.session;
        if let Some(new_expiry) = d.properties.session_expiry_interval {
            let current = self.session(idx).map_or(0, |s| s.expiry_interval);
            if current == 0 && new_expiry > 0 {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "session expiry set on DISCONNECT after 0", now);
                return;
            }
            let capped = new_expiry.min(self.config.session_expiry_max);
            if let Some(s) = self.session_mut(idx) {
                s.expiry_interval = capped;
            }
            if capped == 0 && current > 0 {
                if let Some(s) = self.session(idx) {
                    let client_id = s.client_id.clone();
                    self.persist(PersistOp::SessionDelete { client_id });
                }
            }
        }
        self.outputs.push(Output::Close { conn });
        let with_will = d.reason_code == ReasonCode::DISCONNECT_WITH_WILL;
        self.detach(conn, now, with_will, false);
    }

    fn handle_puback(&mut self, idx: SessionIdx, ack: Ack, now: Time) {
        self.complete_inflight(idx, ack.packet_id, |st| matches!(st, DeliveryState::Sent(_)), QoS::AtLeastOnce);
        self.pump(idx, now);
    }

    fn handle_pubcomp(&mut self, idx: SessionIdx, ack: Ack, now: Time) {
        self.complete_inflight(idx, ack.packet_id, |st| matches!(st, DeliveryState::Released(_)), QoS::ExactlyOnce);
        self.pump(idx, now);
    }

    fn complete_inflight(
        &mut self,
        idx: SessionIdx,
        packet_id: u16,
        state_ok: impl Fn(DeliveryState) -> bool,
        qos: QoS,
    ) {
        let Some(s) = self.session_mut(idx) else { return };
        let Some(pos) = s
            .inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.delivery.qos == qos && state_ok(i.state))
        else {
            return;
        };
        let Some(done) = s.inflight.remove(pos) else { return };
        if s.persistent() {
            let client_id = s.client_id.clone();
            self.persist(PersistOp::MessageRemove {
                client_id,
                seq: done.delivery.seq,
            });
        }
    }

    fn handle_pubrec(&mut self, conn: ConnId, idx: SessionIdx, ack: Ack, now: Time) {
        let Some(s) = self.session_mut(idx) else { return };
        let pos = s.inflight.iter().position(|i| {
            i.packet_id == ack.packet_id && i.delivery.qos == QoS::ExactlyOnce && i.state != DeliveryState::Queued
        });
        let Some(pos) = pos else {
            let code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            self.send(conn, Packet::PubRel(Ack::with_reason(ack.packet_id, code)));
            return;
        };
        if ack.reason_code.is_error() {
            // The receiver refused it: the delivery is over.
            self.complete_inflight(idx, ack.packet_id, |_| true, QoS::ExactlyOnce);
            self.pump(idx, now);
            return;
        }
        let persistent = s.persistent();
        let client_id = s.client_id.clone();
        let inflight = &mut s.inflight[pos];
        inflight.state = DeliveryState::Released(ack.packet_id);
        let seq = inflight.delivery.seq;
        if persistent {
            self.persist(PersistOp::MessageState {
                client_id,
                seq,
                state: DeliveryState::Released(ack.packet_id),
            });
        }
        self.send_durable(conn, Packet::PubRel(Ack::new(ack.packet_id)));
    }

    fn handle_pubrel(&mut self, conn: ConnId, idx: SessionIdx, ack: Ack) {
        let Some(s) = self.session_mut(idx) else { return };
        let known = s.incoming_qos2.remove(&ack.packet_id);
        let v5 = s.protocol.is_v5();
        if known && s.persistent() {
            let client_id = s.client_id.clone();
            self.persist(PersistOp::IncomingRemove {
                client_id,
                packet_id: ack.packet_id,
            });
        }
        let code = if known || !v5 {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send_durable(conn, Packet::PubComp(Ack::with_reason(ack.packet_id, code)));
    }

    // --------------------------------------------------------------- PUBLISH

    fn handle_publish(&mut self, conn: ConnId, mut p: Publish, now: Time) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        self.stats.messages_received += 1;
        self.stats.publish_bytes_received += p.payload.len() as u64;

        // Topic alias (v5).
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                self.protocol_violation(conn, ReasonCode::TOPIC_ALIAS_INVALID, "topic alias out of range", now);
                return;
            }
            if p.topic.is_empty() {
                match c.aliases_in.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "unknown topic alias", now);
                        return;
                    }
                }
            } else {
                c.aliases_in.insert(alias, p.topic.clone());
            }
        }
        if p.topic.is_empty() || !topic::valid_topic_name(&p.topic) {
            self.protocol_violation(conn, ReasonCode::TOPIC_NAME_INVALID, "invalid topic name", now);
            return;
        }
        if p.retain && !self.config.retain_available {
            self.protocol_violation(conn, ReasonCode::RETAIN_NOT_SUPPORTED, "retain not available", now);
            return;
        }
        let username = c.username.clone();

        // Exactly-once: a repeated QoS 2 packet id is acknowledged again,
        // never routed twice.
        if p.qos == QoS::ExactlyOnce {
            let Some(s) = self.session(idx) else { return };
            if s.incoming_qos2.contains(&p.packet_id) {
                self.send(conn, Packet::PubRec(Ack::new(p.packet_id)));
                return;
            }
            if s.incoming_qos2.len() >= usize::from(self.config.receive_maximum) {
                self.protocol_violation(conn, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded", now);
                return;
            }
        }

        let client_id = self.session(idx).map(|s| s.client_id.clone()).unwrap_or_default();
        let reason = if topic::level_count(&p.topic) > self.config.max_topic_levels {
            Some(ReasonCode::TOPIC_NAME_INVALID)
        } else if p.topic.starts_with('$')
            || !self.access.allowed(username.as_deref(), &client_id, &p.topic, Action::Write)
        {
            self.stats.publish_denied += 1;
            tracing::debug!(client_id = %client_id, topic = %p.topic, "publish denied");
            Some(ReasonCode::NOT_AUTHORIZED)
        } else {
            None
        };
        if let Some(code) = reason {
            self.stats.messages_dropped += 1;
            self.ack_publish(conn, idx, &p, code, v5);
            return;
        }

        let pp = p.properties;
        let mut msg = Arc::new(StoredMessage {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            payload_format_indicator: pp.payload_format_indicator,
            content_type: pp.content_type,
            response_topic: pp.response_topic,
            correlation_data: pp.correlation_data,
            user_properties: pp.user_properties,
            expires_at: pp.message_expiry_interval.map(|e| now.plus_secs(u64::from(e))),
        });
        let ack_info = Publish {
            qos: p.qos,
            packet_id: p.packet_id,
            ..Publish::default()
        };

        if msg.retain {
            msg = Arc::new(msg.compacted());
        }
        if msg.retain && !self.set_retained(msg.clone()) {
            self.stats.messages_dropped += 1;
            self.ack_publish(conn, idx, &ack_info, ReasonCode::QUOTA_EXCEEDED, v5);
            return;
        }
        let outcome = self.route(msg, Some(&client_id), now);
        let code = match outcome {
            crate::delivery::RouteOutcome::QueueFull => {
                if !v5 && p.qos > QoS::AtMostOnce {
                    // v3.1.1 has no failure acknowledgement: not acking and
                    // closing makes the client send it again later.
                    tracing::warn!(client_id = %client_id, "a persistent subscriber's queue is full; closing v3.1.1 publisher");
                    self.outputs.push(Output::Close { conn });
                    self.detach(conn, now, true, false);
                    return;
                }
                ReasonCode::QUOTA_EXCEEDED
            }
            crate::delivery::RouteOutcome::Delivered(0) => ReasonCode::NO_MATCHING_SUBSCRIBERS,
            crate::delivery::RouteOutcome::Delivered(_) => ReasonCode::SUCCESS,
        };
        self.ack_publish(conn, idx, &ack_info, code, v5);
    }

    /// Sends PUBACK / PUBREC for a received PUBLISH (nothing for QoS 0).
    fn ack_publish(&mut self, conn: ConnId, idx: SessionIdx, p: &Publish, code: ReasonCode, v5: bool) {
        let code = if v5 { code } else { ReasonCode::SUCCESS };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_durable(conn, Packet::PubAck(Ack::with_reason(p.packet_id, code))),
            QoS::ExactlyOnce => {
                if !code.is_error() {
                    if let Some(s) = self.session_mut(idx) {
                        s.incoming_qos2.insert(p.packet_id);
                        if s.persistent() {
                            let client_id = s.client_id.clone();
                            self.persist(PersistOp::IncomingAdd {
                                client_id,
                                packet_id: p.packet_id,
                            });
                        }
                    }
                }
                self.send_durable(conn, Packet::PubRec(Ack::with_reason(p.packet_id, code)));
            }
        }
    }

    /// Sets or clears a retained message. False when over the limits.
    pub(crate) fn set_retained(&mut self, msg: Arc<StoredMessage>) -> bool {
        if msg.payload.is_empty() {
            if self.retained.remove(&msg.topic) && !msg.topic.starts_with('$') {
                self.persist(PersistOp::RetainDelete {
                    topic: msg.topic.clone(),
                });
            }
            return true;
        }
        if !self.retained.insert(msg.clone()) {
            return false;
        }
        if !msg.topic.starts_with('$') {
            self.persist(PersistOp::RetainPut { message: msg });
        }
        true
    }

    /// Publishes a message from the platform itself (e.g. `$SYS`, events).
    /// Not subject to ACLs; retained messages under `$` are not persisted.
    pub fn publish_internal(&mut self, msg: StoredMessage, now: Time) {
        let msg = Arc::new(msg);
        if msg.retain {
            self.set_retained(msg.clone());
        }
        self.route(msg, None, now);
    }

    // ------------------------------------------------------------- SUBSCRIBE

    fn handle_subscribe(&mut self, conn: ConnId, sub: Subscribe, now: Time) {
        let Some(c) = self.conns.get(&conn) else { return };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        let username = c.username.clone();
        let Some(client_id) = self.session(idx).map(|s| s.client_id.clone()) else { return };
        let mut codes = Vec::with_capacity(sub.subscriptions.len());
        let mut retained_to_send = Vec::new();
        for s in sub.subscriptions {
            let (group, filter) = match topic::parse_shared(&s.filter) {
                Some(Ok((g, f))) => (Some(g), f),
                Some(Err(())) => {
                    codes.push(fail(v5, ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
                None => (None, &*s.filter),
            };
            if group.is_some() && s.options.no_local {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "no local on a shared subscription", now);
                return;
            }
            if !topic::valid_topic_filter(filter) || topic::level_count(filter) > self.config.max_topic_levels {
                codes.push(fail(v5, ReasonCode::TOPIC_FILTER_INVALID));
                continue;
            }
            if !self.access.allowed(username.as_deref(), &client_id, filter, Action::Read) {
                self.stats.subscribe_denied += 1;
                tracing::debug!(client_id = %client_id, filter, "subscribe denied");
                codes.push(fail(v5, ReasonCode::NOT_AUTHORIZED));
                continue;
            }
            let count = self.session(idx).map_or(0, |s| s.subscriptions.len());
            let exists = self.session(idx).is_some_and(|s| s.subscriptions.contains_key(&s.client_id));
            let _ = exists;
            let already = self.session(idx).is_some_and(|ss| ss.subscriptions.contains_key(&s.filter));
            if !already && count >= self.config.max_subscriptions_per_client {
                codes.push(fail(v5, ReasonCode::QUOTA_EXCEEDED));
                continue;
            }
            let stored = StoredSubscription {
                filter: s.filter.clone(),
                options: s.options,
                subscription_id: sub.properties.subscription_identifier,
            };
            let existed = self.add_subscription(idx, stored);
            codes.push(ReasonCode(s.options.qos as u8));
            let send_retained = group.is_none()
                && match s.options.retain_handling {
                    mqtt_proto::RetainHandling::SendAtSubscribe => true,
                    mqtt_proto::RetainHandling::SendIfNew => !existed,
                    mqtt_proto::RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for msg in self.retained.matching(filter) {
                    retained_to_send.push((msg, s.options.qos, sub.properties.subscription_identifier));
                }
            }
        }
        self.persist_session_meta(idx);
        self.send_durable(
            conn,
            Packet::SubAck(SubAck {
                packet_id: sub.packet_id,
                properties: AckProperties::default(),
                reason_codes: codes,
            }),
        );
        for (msg, qos, sub_id) in retained_to_send {
            if msg.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            let qos = qos.min(msg.qos);
            self.deliver(idx, msg, qos, true, sub_id.into_iter().collect(), now);
        }
    }

    fn handle_unsubscribe(&mut self, conn: ConnId, u: Unsubscribe) {
        let Some(c) = self.conns.get(&conn) else { return };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in u.filters {
            let removed = self.session_mut(idx).and_then(|s| s.subscriptions.remove(&f)).is_some();
            if removed {
                let (group, filter) = split_shared(&f);
                self.trie.remove(idx, filter, group);
            }
            codes.push(if removed || !v5 {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        self.persist_session_meta(idx);
        self.send_durable(
            conn,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: AckProperties::default(),
                reason_codes: codes,
            }),
        );
    }

    // ----------------------------------------------------------------- timers

    /// Runs every timer due at `now`: keep-alive timeouts, delayed wills,
    /// session expiry.
    pub fn tick(&mut self, now: Time) {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Keepalive(conn) => {
                    let Some(c) = self.conns.get(&conn) else { continue };
                    let deadline = c.last_seen.plus_ms(c.timeout_ms);
                    if deadline > now {
                        self.schedule(deadline, Timer::Keepalive(conn));
                        continue;
                    }
                    self.stats.keepalive_timeouts += 1;
                    self.protocol_violation(conn, ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout", now);
                }
                Timer::Will(idx, generation) => {
                    let due = self
                        .session(idx)
                        .filter(|s| s.conn.is_none() && s.generation == generation)
                        .and_then(|s| s.will_due);
                    if due.is_some_and(|d| d <= now) {
                        self.publish_will(idx, now);
                    }
                }
                Timer::Expiry(idx, generation) => {
                    let expired = self.session(idx).is_some_and(|s| {
                        s.conn.is_none() && s.generation == generation && s.expires_at.is_some_and(|e| e <= now)
                    });
                    if expired {
                        self.stats.sessions_expired += 1;
                        self.end_session(idx, now);
                    }
                }
            }
        }
    }
}

/// Copies the CONNECT fields a session keeps into their own allocations so
/// they do not pin the connection's read buffer.
fn own_connect_fields(c: &mut Connect) {
    c.client_id = ByteString::from(&*c.client_id);
    c.username = c.username.as_deref().map(ByteString::from);
    c.password = None;
    if let Some(w) = &mut c.will {
        let m = StoredMessage {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
            payload_format_indicator: None,
            content_type: w.properties.content_type.clone(),
            response_topic: w.properties.response_topic.clone(),
            correlation_data: w.properties.correlation_data.clone(),
            user_properties: std::mem::take(&mut w.properties.user_properties),
            expires_at: None,
        }
        .compacted();
        w.topic = m.topic;
        w.payload = m.payload;
        w.properties.content_type = m.content_type;
        w.properties.response_topic = m.response_topic;
        w.properties.correlation_data = m.correlation_data;
        w.properties.user_properties = m.user_properties;
    }
}

fn fail(v5: bool, code: ReasonCode) -> ReasonCode {
    if v5 {
        code
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    }
}

/// Splits a stored filter into (share group, filter).
fn split_shared(full: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(full) {
        Some(Ok((g, f))) => (Some(g), f),
        _ => (None, full),
    }
}
