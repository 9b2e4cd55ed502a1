//! Routing a message to the sessions that subscribed to it, and delivering
//! it to each within its flow-control window.

use crate::fast::HashMap;
use std::sync::Arc;

use mqtt_proto::{encoded_len, ByteString, Packet, Publish, PublishProperties, QoS};

use crate::broker::{Broker, Output};
use crate::persist::{DeliveryState, PersistOp, StoredMessage};
use crate::session::{Delivery, Inflight};
use crate::trie::SessionIdx;
use crate::Time;

/// What happened to a routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteOutcome {
    /// Delivered or queued for this many sessions.
    Delivered(usize),
    /// A persistent session that must receive it has a full queue: nothing
    /// was delivered anywhere.
    QueueFull,
}

struct Target {
    session: SessionIdx,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
}

/// Up to this many matching subscriptions, duplicates are found by a scan.
const LINEAR_DEDUP: usize = 16;

impl Broker {
    /// Routes `msg` to every matching subscription. `publisher` is the client
    /// id of the sender, for No Local; `from` its connection, paused while a
    /// subscriber it feeds is over its queue limit (see `backpressure`).
    pub(crate) fn route(
        &mut self,
        msg: Arc<StoredMessage>,
        publisher: Option<&ByteString>,
        from: Option<crate::ConnId>,
        now: Time,
    ) -> RouteOutcome {
        let mut targets: Vec<Target> = Vec::new();
        let mut cursors: Vec<(ByteString, ByteString, usize)> = Vec::new();
        {
            let mut matched = Vec::new();
            self.trie.matches(&msg.topic, &mut matched);
            if matched.is_empty() {
                return RouteOutcome::Delivered(0);
            }
            // Sessions already targeted (a session matched by several
            // filters gets the message once): a scan of `targets` while
            // they are few, a map beyond (fan-out to thousands).
            let mut by_session: Option<HashMap<SessionIdx, usize>> =
                (matched.len() > LINEAR_DEDUP).then(HashMap::default);
            let mut shared: Vec<(&ByteString, &ByteString, Vec<usize>)> = Vec::new();
            // Per message: an ACL file with deny rules, or the devices' tree
            // reached through a wide filter (`#`, `+/+/telemetry`).
            let check_acl = self.access.has_acl() || crate::auth::in_device_tree(&msg.topic);
            for (i, e) in matched.iter().enumerate() {
                if check_acl && !self.may_read(e.session, &msg.topic) {
                    continue;
                }
                if let Some(group) = &e.group {
                    match shared
                        .iter_mut()
                        .find(|(g, f, _)| *g == group && *f == &e.filter)
                    {
                        Some((_, _, members)) => members.push(i),
                        None => shared.push((group, &e.filter, vec![i])),
                    }
                    continue;
                }
                if e.options.no_local {
                    if let Some(pubr) = publisher {
                        if self
                            .session(e.session)
                            .is_some_and(|s| s.client_id == *pubr)
                        {
                            continue;
                        }
                    }
                }
                let qos = e.options.qos.min(msg.qos);
                let retain = e.options.retain_as_published && msg.retain;
                let seen = match &by_session {
                    Some(map) => map.get(&e.session).copied(),
                    None => targets.iter().position(|t| t.session == e.session),
                };
                match seen {
                    Some(t) => {
                        let t = &mut targets[t];
                        t.qos = t.qos.max(qos);
                        t.retain |= retain;
                        t.subscription_ids.extend(e.subscription_id);
                    }
                    None => {
                        if let Some(map) = &mut by_session {
                            map.insert(e.session, targets.len());
                        }
                        targets.push(Target {
                            session: e.session,
                            qos,
                            retain,
                            subscription_ids: e.subscription_id.into_iter().collect(),
                        });
                    }
                }
            }
            // One member of each share group gets it: the next connected
            // member in round-robin order (any member if none is connected).
            for (group, filter, members) in shared {
                let start = self.trie.shared_cursor(group, filter);
                let n = members.len();
                let pick = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&k| {
                        self.session(matched[members[k]].session)
                            .is_some_and(|s| s.conn.is_some())
                    })
                    .unwrap_or(start % n);
                // Applied once `matched` (borrowed from the tree) is done.
                cursors.push((group.clone(), filter.clone(), pick + 1));
                let e = matched[members[pick]];
                targets.push(Target {
                    session: e.session,
                    qos: e.options.qos.min(msg.qos),
                    retain: e.options.retain_as_published && msg.retain,
                    subscription_ids: e.subscription_id.into_iter().collect(),
                });
            }
        }
        for (group, filter, next) in cursors {
            self.trie.set_shared_cursor(&group, &filter, next);
        }

        // A session that must keep this message but cannot (an offline
        // persistent one at its limit, a connected one at its hard limit):
        // refuse the whole publish rather than acknowledge and drop.
        let len = msg.payload.len();
        let full = targets.iter().any(|t| {
            t.qos > QoS::AtMostOnce
                && self.session(t.session).is_some_and(|s| {
                    if s.conn.is_some() {
                        self.over_hard(s, len)
                    } else {
                        s.persistent() && self.over_soft(s, len)
                    }
                })
        });
        if full {
            self.stats.messages_dropped += 1;
            return RouteOutcome::QueueFull;
        }
        // Messages that will wait in a queue get their own allocation.
        let waits = targets.iter().any(|t| {
            t.qos > QoS::AtMostOnce && self.session(t.session).is_some_and(|s| !self.has_window(s))
        });
        let msg = if waits {
            Arc::new(msg.compacted())
        } else {
            msg
        };
        let n = targets.len();
        for t in targets {
            let (session, acked) = (t.session, t.qos > QoS::AtMostOnce);
            self.deliver(
                t.session,
                msg.clone(),
                t.qos,
                t.retain,
                t.subscription_ids,
                now,
            );
            if let (Some(from), true) = (from, acked) {
                self.note_backlog(from, session, now);
            }
        }
        RouteOutcome::Delivered(n)
    }

    /// The per-message read check (the subscribe-time check alone would let
    /// a wildcard subscription see topics a `deny` rule covers).
    pub(crate) fn may_read(&self, idx: SessionIdx, topic: &str) -> bool {
        self.allowed(idx, topic, crate::auth::Action::Read)
    }

    fn has_window(&self, s: &crate::session::Session) -> bool {
        s.conn.is_some() && s.queue.is_empty() && s.inflight.len() < self.window(s)
    }

    fn window(&self, s: &crate::session::Session) -> usize {
        usize::from(self.config.max_inflight.min(s.client_receive_maximum)).max(1)
    }

    /// Delivers one message to one session: sends it now if the session is
    /// connected and has room in its window, else queues it (QoS 1/2 only).
    pub(crate) fn deliver(
        &mut self,
        idx: SessionIdx,
        message: Arc<StoredMessage>,
        qos: QoS,
        retain: bool,
        subscription_ids: Vec<u32>,
        now: Time,
    ) {
        let max_queued = self.config.max_queued_messages;
        let max_bytes = self.config.max_queued_bytes;
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if qos == QoS::AtMostOnce {
            let Some(conn) = s.conn else {
                // QoS 0 is not queued for a disconnected session.
                return;
            };
            let max_packet = s.client_max_packet_size;
            let d = Delivery {
                seq: 0,
                message,
                qos,
                retain,
                subscription_ids,
            };
            let p = build_publish(&d, 0, now);
            self.send_publish(conn, p, max_packet);
            return;
        }
        // Past the hard limit (twice the soft one): only reached by
        // messages nobody acknowledged (retained ones at subscribe, the
        // platform's own): drop and count. `route` refuses a client's
        // publish before this.
        if s.queue.len() >= max_queued.saturating_mul(2)
            || s.queued_bytes + message.payload.len() > max_bytes.saturating_mul(2)
        {
            s.dropped += 1;
            self.stats.messages_dropped += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        let d = Delivery {
            seq,
            message,
            qos,
            retain,
            subscription_ids,
        };
        if s.persistent() {
            let op = PersistOp::MessageAdd {
                client_id: s.client_id.clone(),
                seq,
                message: d.message.clone(),
                qos,
                retain,
                subscription_ids: d.subscription_ids.clone(),
            };
            s.queued_bytes += d.message.payload.len();
            s.queue.push_back(d);
            self.persist(op);
        } else {
            s.queued_bytes += d.message.payload.len();
            s.queue.push_back(d);
        }
        self.pump(idx, now);
    }

    /// Moves queued messages into flight while the window allows, then
    /// releases the publishers waiting on this session if it drained.
    pub(crate) fn pump(&mut self, idx: SessionIdx, now: Time) {
        self.pump_queue(idx, now);
        if self
            .session(idx)
            .is_some_and(|s| !s.waiters.is_empty() || s.over_since.is_some())
        {
            self.release_waiters(idx, false);
        }
    }

    fn pump_queue(&mut self, idx: SessionIdx, now: Time) {
        loop {
            let Some(s) = self.session(idx) else { return };
            let Some(conn) = s.conn else { return };
            if s.inflight.len() >= self.window(s) {
                return;
            }
            let max_packet = s.client_max_packet_size;
            let Some(s) = self.session_mut(idx) else {
                return;
            };
            let Some(d) = s.queue.pop_front() else { return };
            s.queued_bytes = s.queued_bytes.saturating_sub(d.message.payload.len());
            let persistent = s.persistent();
            let client_id = s.client_id.clone();
            if d.message.expires_at.is_some_and(|e| e <= now) {
                self.stats.messages_expired += 1;
                if persistent {
                    self.persist(PersistOp::MessageRemove {
                        client_id,
                        seq: d.seq,
                    });
                }
                continue;
            }
            let packet_id = s.alloc_packet_id();
            let p = build_publish(&d, packet_id, now);
            if max_packet != u32::MAX
                && encoded_len(&Packet::Publish(p.clone()), s.protocol) > max_packet as usize
            {
                // Too large for this client: discarded as if delivered.
                self.stats.messages_dropped += 1;
                if persistent {
                    self.persist(PersistOp::MessageRemove {
                        client_id,
                        seq: d.seq,
                    });
                }
                continue;
            }
            let seq = d.seq;
            s.inflight.push_back(Inflight {
                delivery: d,
                packet_id,
                state: DeliveryState::Sent(packet_id),
            });
            if persistent {
                self.persist(PersistOp::MessageState {
                    client_id,
                    seq,
                    state: DeliveryState::Sent(packet_id),
                });
            }
            self.stats.messages_sent += 1;
            self.outputs.push(Output::Send {
                conn,
                packet: Packet::Publish(p),
                durable: false,
            });
            // Its acknowledgement must be read.
            self.reading_needed(conn);
        }
    }

    fn send_publish(&mut self, conn: crate::ConnId, p: Publish, max_packet: u32) {
        let protocol = match self.conns.get(&conn) {
            Some(c) => c.protocol,
            None => return,
        };
        let packet = Packet::Publish(p);
        if max_packet != u32::MAX && encoded_len(&packet, protocol) > max_packet as usize {
            self.stats.messages_dropped += 1;
            return;
        }
        self.stats.messages_sent += 1;
        self.outputs.push(Output::Send {
            conn,
            packet,
            durable: false,
        });
    }
}

/// The PUBLISH a delivery becomes on the wire (topic aliases are applied
/// later, by the connection's writer).
pub(crate) fn build_publish(d: &Delivery, packet_id: u16, now: Time) -> Publish {
    let m = &d.message;
    Publish {
        dup: false,
        qos: d.qos,
        retain: d.retain,
        topic: m.topic.clone(),
        packet_id,
        properties: PublishProperties {
            payload_format_indicator: m.payload_format_indicator,
            message_expiry_interval: m.expires_at.map(|e| now.secs_until(e).max(1) as u32),
            topic_alias: None,
            response_topic: m.response_topic.clone(),
            correlation_data: m.correlation_data.clone(),
            user_properties: m.user_properties.clone(),
            subscription_identifiers: d.subscription_ids.clone(),
            content_type: m.content_type.clone(),
        },
        payload: m.payload.clone(),
    }
}
