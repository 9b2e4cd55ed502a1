//! The broker state machine: connections, sessions and the packet handlers.
//! Routing and delivery toward sessions live in `delivery.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::fast::HashMap;

use mqtt_proto::{topic, ByteString, Packet, Protocol};

use crate::auth::AccessControl;
use crate::persist::{DeliveryState, PersistOp, RestoredState, StoredSubscription};
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
    /// Set when the network layer authenticated the client itself (device
    /// registry, client certificate, claim credential): the core then
    /// skips its password check and confines the client to these rules.
    pub grant: Option<std::sync::Arc<crate::auth::Grant>>,
}

/// Something the broker wants done. Drained in order with
/// [`Broker::drain_outputs`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a packet on a connection. When `durable` is true it must not be
    /// sent before every [`Output::Persist`] drained before it is durable,
    /// and every telemetry batch taken before it (see
    /// [`Broker::handle_decoded`]) is stored: it acknowledges something the
    /// client must not lose.
    Send {
        conn: ConnId,
        packet: Packet,
        durable: bool,
    },
    /// Close a connection after sending what was queued for it. The broker
    /// has already forgotten it.
    Close { conn: ConnId },
    /// Make a change durable.
    Persist(PersistOp),
    /// A message on a topic a platform service taps (see
    /// [`Broker::add_tap`]), after it was authorised and routed.
    Tap(TapMessage),
    /// A client authenticated by a grant connected or its connection
    /// ended (presence).
    Presence(PresenceEvent),
    /// A client authenticated by a grant subscribed (the filters granted).
    Subscribed {
        principal: String,
        client_id: ByteString,
        filters: Vec<String>,
    },
    /// A client acknowledged (PUBACK / PUBCOMP) a message on a topic a
    /// platform service asked to hear about ([`Broker::add_ack_tap`]).
    Acked {
        client_id: ByteString,
        principal: Option<String>,
        topic: ByteString,
    },
    /// Stop (`paused`) or resume reading a connection: a publisher that
    /// feeds a subscriber over its queue limit and has no deliveries of its
    /// own to acknowledge is not read until the subscriber drains (TCP flow
    /// control then reaches it). See `backpressure`.
    Reading { conn: ConnId, paused: bool },
}

/// A connection of a granted client began or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    pub principal: String,
    pub client_id: ByteString,
    pub connected: bool,
    pub peer: String,
    /// `mqtt3.1.1` or `mqtt5`.
    pub protocol: &'static str,
    /// On connect: the subscriptions the resumed session already has.
    pub subscriptions: Vec<String>,
    /// Why a connection ended (`client disconnected`, `connection lost`,
    /// `keep-alive timeout`, `session taken over`, `protocol error`,
    /// `disconnected by the platform`, `server shutting down`).
    pub reason: &'static str,
}

/// A published message handed to a platform service.
#[derive(Debug, Clone, PartialEq)]
pub struct TapMessage {
    pub client_id: ByteString,
    /// The grant's principal when the client was authenticated outside
    /// the core.
    pub principal: Option<String>,
    pub message: std::sync::Arc<crate::persist::StoredMessage>,
    /// Matched a static tap (platform services).
    pub for_services: bool,
    /// Matched a dynamic tap (the rules engine).
    pub for_rules: bool,
    /// Matched a stream tap (live streams to API clients).
    pub for_streams: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    Keepalive(ConnId),
    Will(SessionIdx, u64),
    Expiry(SessionIdx, u64),
    /// A subscriber went over its soft queue limit (see `backpressure`).
    Stuck(SessionIdx, u64),
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub session: SessionIdx,
    pub protocol: Protocol,
    /// Disconnect after this much silence (1.5 x keep alive); 0 = never.
    pub timeout_ms: u64,
    pub last_seen: Time,
    pub aliases_in: HashMap<u16, ByteString>,
    /// Publish budget when the client's grant sets limits.
    pub rate: Option<Box<crate::limits::RateBucket>>,
    /// Sessions over their soft queue limit this publisher fed and waits
    /// for (see `backpressure`); while > 0 its acknowledgements are held.
    pub paused_on: u32,
    /// Acknowledgements held while paused, in order.
    pub held: Vec<Packet>,
    /// Whether the network layer was told to stop reading it.
    pub read_paused: bool,
    /// Whether the network layer holds its reading for a platform service
    /// (the rules engine's queues, see `Broker::hold_reading`).
    pub held_by_platform: bool,
}

/// The broker core. See the crate documentation.
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) access: AccessControl,
    /// Boxed: the table grows by doubling, and empty slots should cost a
    /// pointer, not a whole session.
    pub(crate) sessions: Vec<Option<Box<Session>>>,
    free_sessions: Vec<SessionIdx>,
    pub(crate) by_client_id: HashMap<ByteString, SessionIdx>,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) trie: SubTree,
    pub(crate) retained: Retained,
    pub(crate) timers: BinaryHeap<Reverse<(Time, Timer)>>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) stats: Stats,
    pub(crate) next_assigned_id: u64,
    /// Sequence numbers of queued messages: unique across all sessions and
    /// restarts, so a stored (client id, seq) key is never reused.
    pub(crate) next_seq: u64,
    /// The taps, as internal subscriptions: filters of platform services
    /// (`Output::Tap`), of the rules engine and of live streams (any
    /// publish, the platform's own included; replaced as a whole), and of
    /// acknowledgement reports (`Output::Acked`).
    pub(crate) taps: crate::taps::Taps,
    /// Why the connection being detached ends (for presence events).
    pub(crate) detach_reason: &'static str,
    /// Rate limiting of "access denied" log lines.
    pub(crate) denial_log_next: u64,
    pub(crate) denials_suppressed: u64,
    /// Persistent sessions, in total and per owner (for their caps).
    pub(crate) persistent: PersistentCount,
    started: Time,
}

/// How many persistent sessions exist, in total and per owner key.
#[derive(Debug, Default)]
pub(crate) struct PersistentCount {
    pub total: usize,
    pub per_owner: HashMap<ByteString, u32>,
}

impl PersistentCount {
    /// Sessions restored without an owner are counted under this key.
    const UNKNOWN: &'static str = "?";

    pub fn add(&mut self, owner: Option<&ByteString>) {
        self.total += 1;
        let key = owner
            .cloned()
            .unwrap_or_else(|| ByteString::from_static(Self::UNKNOWN));
        *self.per_owner.entry(key).or_insert(0) += 1;
    }

    pub fn remove(&mut self, owner: Option<&ByteString>) {
        self.total = self.total.saturating_sub(1);
        let key: &str = owner.map_or(Self::UNKNOWN, |o| o);
        if let Some(n) = self.per_owner.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_owner.remove(key);
            }
        }
    }
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
            by_client_id: HashMap::default(),
            conns: HashMap::default(),
            trie: SubTree::default(),
            timers: BinaryHeap::new(),
            outputs: Vec::new(),
            stats: Stats::default(),
            next_assigned_id: now.0,
            next_seq: 1,
            taps: crate::taps::Taps::default(),
            detach_reason: "connection lost",
            denial_log_next: 0,
            denials_suppressed: 0,
            persistent: PersistentCount::default(),
            started: now,
        }
    }

    /// Hands every accepted PUBLISH whose topic matches `filter` to the
    /// network layer as [`Output::Tap`] too (platform services such as
    /// provisioning listen this way). Topics under `$provision/` are only
    /// accepted from clients whose grant allows them.
    pub fn add_tap(&mut self, filter: &str) {
        self.taps.add(crate::taps::TapKind::Services, filter);
    }

    /// Replaces the dynamic taps: messages on matching topics, published
    /// by clients or by the platform itself, are handed over as
    /// [`Output::Tap`] (the rules engine's inputs). Duplicates are removed.
    pub fn set_dynamic_taps(&mut self, filters: Vec<String>) {
        self.taps.replace(crate::taps::TapKind::Rules, filters);
    }

    /// Replaces the live-stream taps (see [`TapMessage::for_streams`]).
    pub fn set_stream_taps(&mut self, filters: Vec<String>) {
        self.taps.replace(crate::taps::TapKind::Streams, filters);
    }

    /// Reports acknowledgements of messages on topics matching `filter`
    /// as [`Output::Acked`] (command delivery).
    pub fn add_ack_tap(&mut self, filter: &str) {
        self.taps.add(crate::taps::TapKind::Acks, filter);
    }

    /// Every live connection authenticated by a grant: (principal, last
    /// packet received).
    pub fn activity(&self) -> Vec<(String, Time)> {
        self.conns
            .values()
            .filter_map(|c| {
                self.session(c.session)
                    .and_then(|s| s.grant.as_ref())
                    .map(|g| (g.principal.clone(), c.last_seen))
            })
            .collect()
    }

    /// Disconnects every connection authenticated as `principal` (a
    /// revoked or disabled device): v5 clients get DISCONNECT with `code`.
    /// Returns how many were closed.
    pub fn disconnect_principal(
        &mut self,
        principal: &str,
        code: mqtt_proto::ReasonCode,
        now: Time,
    ) -> usize {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                self.session(c.session)
                    .and_then(|s| s.grant.as_ref())
                    .is_some_and(|g| g.principal == principal)
            })
            .map(|(id, _)| *id)
            .collect();
        for &conn in &conns {
            if self.conns.get(&conn).is_some_and(|c| c.protocol.is_v5()) {
                self.send(conn, Packet::Disconnect(mqtt_proto::Disconnect::new(code)));
            }
            self.outputs.push(Output::Close { conn });
            self.detach_reason = "disconnected by the platform";
            self.detach_reason = "keep-alive timeout";
            self.detach(conn, now, true, false);
        }
        conns.len()
    }

    /// Whether the session may read or write `topic`: by its grant when it
    /// has one, else by the ACL file.
    pub(crate) fn allowed(
        &self,
        idx: SessionIdx,
        topic: &str,
        action: crate::auth::Action,
    ) -> bool {
        let Some(s) = self.session(idx) else {
            return false;
        };
        if let Some(rest) = topic.strip_prefix(iot_types::device_topics::PROVISION_PREFIX) {
            // Only a client's own exchange, and only with a grant for it.
            let own = rest
                .split('/')
                .next()
                .is_some_and(|level| level == &*s.client_id);
            return own && s.grant.as_ref().is_some_and(|g| g.allows(topic, action));
        }
        match &s.grant {
            Some(g) => g.allows(topic, action),
            None => self
                .access
                .allowed(s.username.as_deref(), &s.client_id, topic, action),
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
            s.owner = rs.owner;
            self.persistent.add(s.owner.as_ref());
            let expires_at = rs
                .expires_at
                .unwrap_or_else(|| now.plus_secs(u64::from(rs.expiry_interval)));
            s.expires_at = Some(expires_at);
            s.incoming_qos2 = rs.incoming_qos2.into_iter().collect();
            for m in rs.messages {
                self.next_seq = self.next_seq.max(m.seq + 1);
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

    /// Number of persistent sessions (session expiry > 0).
    pub fn persistent_session_count(&self) -> usize {
        self.persistent.total
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.trie.len()
    }

    /// Number of (share group, filter) pairs with members: the shared
    /// subscription bookkeeping, freed when a group empties.
    pub fn shared_group_count(&self) -> usize {
        self.trie.shared_group_count()
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

    /// Moves every pending output into `out` (empty): the two vectors are
    /// swapped, so no output is copied and both keep their capacity.
    pub fn take_outputs(&mut self, out: &mut Vec<Output>) {
        if out.is_empty() {
            std::mem::swap(&mut self.outputs, out);
        } else {
            out.append(&mut self.outputs);
        }
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

    pub(crate) fn schedule(&mut self, at: Time, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    pub(crate) fn session(&self, idx: SessionIdx) -> Option<&Session> {
        self.sessions.get(idx as usize).and_then(|s| s.as_deref())
    }

    pub(crate) fn session_mut(&mut self, idx: SessionIdx) -> Option<&mut Session> {
        self.sessions
            .get_mut(idx as usize)
            .and_then(|s| s.as_deref_mut())
    }

    pub(crate) fn insert_session(&mut self, s: Session) -> SessionIdx {
        let id = s.client_id.clone();
        let idx = match self.free_sessions.pop() {
            Some(i) => {
                self.sessions[i as usize] = Some(Box::new(s));
                i
            }
            None => {
                self.sessions.push(Some(Box::new(s)));
                (self.sessions.len() - 1) as SessionIdx
            }
        };
        self.by_client_id.insert(id, idx);
        idx
    }

    /// Ends a session: drops its subscriptions and queue, and the stored copy.
    pub(crate) fn remove_session(&mut self, idx: SessionIdx) {
        self.release_waiters(idx, true);
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
            self.persistent.remove(s.owner.as_ref());
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
            owner: s.owner.clone(),
        };
        self.persist(op);
    }

    pub(crate) fn add_subscription(&mut self, idx: SessionIdx, sub: StoredSubscription) -> bool {
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
}

/// Splits a stored filter into (share group, filter).
pub(crate) fn split_shared(full: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(full) {
        Some(Ok((g, f))) => (Some(g), f),
        _ => (None, full),
    }
}
