//! Packet handlers after CONNECT (PUBLISH and its acknowledgements,
//! SUBSCRIBE, UNSUBSCRIBE, DISCONNECT), how a connection ends (wills,
//! session end) and the timers.

use iot_types::device_topics;
use std::cmp::Reverse;
use std::sync::Arc;

use mqtt_proto::{
    topic, Ack, AckProperties, Disconnect, Packet, Publish, QoS, ReasonCode, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};

use crate::auth::Action;
use crate::broker::{split_shared, Broker, ConnId, Output, Timer};
use crate::persist::{DeliveryState, Ingest, PersistOp, StoredMessage, StoredSubscription};
use crate::trie::SessionIdx;
use crate::Time;

impl Broker {
    /// Handles one packet (other than the first CONNECT) from a connection.
    pub fn handle(&mut self, conn: ConnId, packet: Packet, now: Time) {
        // Without a verdict nothing is taken for storage.
        let _ = self.handle_decoded(conn, packet, None, now);
    }

    /// [`Broker::handle`] with the ingest stage's verdict on a PUBLISH's
    /// payload (`ingest`), for a device's own `devices/{id}/telemetry`. The
    /// broker never parses telemetry: a refused payload is answered 0x99
    /// (v5) or not acknowledged (v3.1.1) and goes nowhere; an accepted one
    /// is routed like any message. Returns true when the PUBLISH was taken
    /// for storage: the caller then stores its points in the group commit
    /// that this round's outputs belong to, so that its durable
    /// acknowledgement is sent only once they are stored. A verdict on any
    /// other PUBLISH (not the sender's own telemetry) is ignored.
    #[must_use = "taken telemetry must be stored before its acknowledgement is sent"]
    pub fn handle_decoded(
        &mut self,
        conn: ConnId,
        packet: Packet,
        ingest: Option<Ingest>,
        now: Time,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.last_seen = now;
        let idx = c.session;
        match packet {
            Packet::Publish(p) => return self.handle_publish(conn, p, ingest, now),
            Packet::PubAck(ack) => self.handle_puback(idx, ack, now),
            Packet::PubRec(ack) => self.handle_pubrec(conn, idx, ack, now),
            Packet::PubRel(ack) => self.handle_pubrel(conn, idx, ack),
            Packet::PubComp(ack) => self.handle_pubcomp(idx, ack, now),
            Packet::Subscribe(s) => self.handle_subscribe(conn, s, now),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(conn, u),
            Packet::PingReq => self.send(conn, Packet::PingResp),
            Packet::Disconnect(d) => self.handle_disconnect(conn, d, now),
            Packet::Connect(_) => {
                self.protocol_violation(conn, ReasonCode::PROTOCOL_ERROR, "second CONNECT", now)
            }
            Packet::Auth(_) => self.protocol_violation(
                conn,
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method",
                now,
            ),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => self
                .protocol_violation(
                    conn,
                    ReasonCode::PROTOCOL_ERROR,
                    "server-to-client packet from a client",
                    now,
                ),
        }
        false
    }

    /// Closes a connection for a protocol violation: DISCONNECT with the
    /// reason (v5), then close; the will is published.
    pub fn protocol_violation(&mut self, conn: ConnId, code: ReasonCode, why: &str, now: Time) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        tracing::info!(?conn, reason = %code, why, "closing connection");
        self.stats.protocol_errors += 1;
        if c.protocol.is_v5() {
            self.send(conn, Packet::Disconnect(Disconnect::new(code)));
        }
        self.outputs.push(Output::Close { conn });
        self.detach_reason = "protocol error";
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
            self.detach_reason = "server shutting down";
            self.detach(conn, now, false, false);
        }
    }

    /// Forgets a connection and leaves its session disconnected (or ends
    /// it). `will`: whether the will is due; `end`: end the session now
    /// regardless of its expiry.
    pub(crate) fn detach(&mut self, conn: ConnId, now: Time, will: bool, end: bool) {
        let reason = std::mem::replace(&mut self.detach_reason, "connection lost");
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let idx = c.session;
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if s.conn != Some(conn) {
            return;
        }
        if let Some(g) = &s.grant {
            let event = crate::broker::PresenceEvent {
                principal: g.principal.clone(),
                client_id: s.client_id.clone(),
                connected: false,
                peer: String::new(),
                protocol: protocol_name(c.protocol),
                reason,
                subscriptions: Vec::new(),
            };
            self.outputs.push(Output::Presence(event));
        }
        // Publishers waiting for this subscriber to drain go on: it will
        // not drain while offline (an offline persistent session refuses
        // what it cannot keep instead).
        self.release_waiters(idx, true);
        let Some(s) = self.session_mut(idx) else {
            return;
        };
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
        let will_delay = s
            .will
            .as_ref()
            .map(|w| w.properties.will_delay_interval.unwrap_or(0));
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
    pub(crate) fn end_session(&mut self, idx: SessionIdx, now: Time) {
        self.publish_will(idx, now);
        self.remove_session(idx);
    }

    pub(crate) fn publish_will(&mut self, idx: SessionIdx, now: Time) {
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        let Some(will) = s.will.take() else { return };
        s.will_due = None;
        if will.topic.starts_with('$') || !self.allowed(idx, &will.topic, Action::Write) {
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
            expires_at: p
                .message_expiry_interval
                .map(|e| now.plus_secs(u64::from(e))),
        };
        self.stats.wills_published += 1;
        let msg = Arc::new(msg);
        if msg.retain {
            self.set_retained(msg.clone());
        }
        self.route(msg, None, None, now);
    }

    fn handle_disconnect(&mut self, conn: ConnId, d: Disconnect, now: Time) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let idx = c.session;
        if let Some(new_expiry) = d.properties.session_expiry_interval {
            let current = self.session(idx).map_or(0, |s| s.expiry_interval);
            if current == 0 && new_expiry > 0 {
                self.protocol_violation(
                    conn,
                    ReasonCode::PROTOCOL_ERROR,
                    "session expiry set on DISCONNECT after 0",
                    now,
                );
                return;
            }
            let capped = new_expiry.min(self.config.session_expiry_max);
            let mut ended_owner = None;
            if let Some(s) = self.session_mut(idx) {
                s.expiry_interval = capped;
                if capped == 0 && current > 0 {
                    ended_owner = Some(s.owner.clone());
                }
            }
            if let Some(owner) = ended_owner {
                self.persistent.remove(owner.as_ref());
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
        self.detach_reason = "client disconnected";
        self.detach(conn, now, with_will, false);
    }

    fn handle_puback(&mut self, idx: SessionIdx, ack: Ack, now: Time) {
        self.complete_inflight(
            idx,
            ack.packet_id,
            |st| matches!(st, DeliveryState::Sent(_)),
            QoS::AtLeastOnce,
        );
        self.pump(idx, now);
    }

    fn handle_pubcomp(&mut self, idx: SessionIdx, ack: Ack, now: Time) {
        self.complete_inflight(
            idx,
            ack.packet_id,
            |st| matches!(st, DeliveryState::Released(_)),
            QoS::ExactlyOnce,
        );
        self.pump(idx, now);
    }

    fn complete_inflight(
        &mut self,
        idx: SessionIdx,
        packet_id: u16,
        state_ok: impl Fn(DeliveryState) -> bool,
        qos: QoS,
    ) {
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        let Some(pos) = s
            .inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.delivery.qos == qos && state_ok(i.state))
        else {
            return;
        };
        let Some(done) = s.inflight.remove(pos) else {
            return;
        };
        if !self.taps.is_empty(crate::taps::TapKind::Acks)
            && self.taps.hits(&done.delivery.message.topic).acks
        {
            let s = self.session(idx);
            let event = Output::Acked {
                client_id: s.map(|s| s.client_id.clone()).unwrap_or_default(),
                principal: s
                    .and_then(|s| s.grant.as_ref())
                    .map(|g| g.principal.clone()),
                topic: done.delivery.message.topic.clone(),
            };
            self.outputs.push(event);
        }
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if s.persistent() {
            let client_id = s.client_id.clone();
            self.persist(PersistOp::MessageRemove {
                client_id,
                seq: done.delivery.seq,
            });
        }
    }

    fn handle_pubrec(&mut self, conn: ConnId, idx: SessionIdx, ack: Ack, now: Time) {
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        let pos = s.inflight.iter().position(|i| {
            i.packet_id == ack.packet_id
                && i.delivery.qos == QoS::ExactlyOnce
                && i.state != DeliveryState::Queued
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
        let Some(s) = self.session_mut(idx) else {
            return;
        };
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

    fn handle_publish(
        &mut self,
        conn: ConnId,
        mut p: Publish,
        ingest: Option<Ingest>,
        now: Time,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        self.stats.messages_received += 1;
        self.stats.publish_bytes_received += p.payload.len() as u64;

        // Topic alias (v5).
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                self.protocol_violation(
                    conn,
                    ReasonCode::TOPIC_ALIAS_INVALID,
                    "topic alias out of range",
                    now,
                );
                return false;
            }
            if p.topic.is_empty() {
                match c.aliases_in.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        self.protocol_violation(
                            conn,
                            ReasonCode::PROTOCOL_ERROR,
                            "unknown topic alias",
                            now,
                        );
                        return false;
                    }
                }
            } else {
                c.aliases_in.insert(alias, p.topic.clone());
            }
        }
        if p.topic.is_empty() || !topic::valid_topic_name(&p.topic) {
            self.protocol_violation(
                conn,
                ReasonCode::TOPIC_NAME_INVALID,
                "invalid topic name",
                now,
            );
            return false;
        }
        if p.retain && !self.config.retain_available {
            self.protocol_violation(
                conn,
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "retain not available",
                now,
            );
            return false;
        }
        // Exactly-once: a repeated QoS 2 packet id is acknowledged again,
        // never routed twice.
        if p.qos == QoS::ExactlyOnce {
            let Some(s) = self.session(idx) else {
                return false;
            };
            if s.incoming_qos2.contains(&p.packet_id) {
                self.send(conn, Packet::PubRec(Ack::new(p.packet_id)));
                return false;
            }
            if s.incoming_qos2.len() >= usize::from(self.config.receive_maximum) {
                self.protocol_violation(
                    conn,
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "receive maximum exceeded",
                    now,
                );
                return false;
            }
        }
        // A paused publisher holding a full window of acknowledgements
        // sends one more: it ignored the Receive Maximum (v5), or (v3.1.1,
        // which has none) it is closed without this one's acknowledgement.
        if p.qos > QoS::AtMostOnce && self.holds_full_window(conn) {
            if v5 {
                self.protocol_violation(
                    conn,
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "receive maximum exceeded while acknowledgements are held",
                    now,
                );
            } else {
                self.stats.unacked_closes += 1;
                self.outputs.push(Output::Close { conn });
                self.detach_reason = "too many unacknowledged publishes";
                self.detach(conn, now, true, false);
            }
            return false;
        }

        let client_id = self
            .session(idx)
            .map(|s| s.client_id.clone())
            .unwrap_or_default();
        let reason = if topic::level_count(&p.topic) > self.config.max_topic_levels {
            Some(ReasonCode::TOPIC_NAME_INVALID)
        } else if (p.topic.starts_with('$')
            && !p.topic.starts_with(device_topics::PROVISION_PREFIX))
            || !self.allowed(idx, &p.topic, Action::Write)
        {
            self.stats.publish_denied += 1;
            self.log_denial(idx, &p.topic, "publish", now);
            Some(ReasonCode::NOT_AUTHORIZED)
        } else if !self.take_rate(conn, p.payload.len(), now) {
            self.stats.publish_rate_limited += 1;
            Some(ReasonCode::QUOTA_EXCEEDED)
        } else {
            None
        };
        if let Some(code) = reason {
            self.stats.messages_dropped += 1;
            self.ack_publish(conn, idx, &p, code, v5, now);
            return false;
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
            expires_at: pp
                .message_expiry_interval
                .map(|e| now.plus_secs(u64::from(e))),
        });
        let ack_info = Publish {
            qos: p.qos,
            packet_id: p.packet_id,
            ..Publish::default()
        };

        // The platform acts on `devices/{id}/...` only when device {id}
        // itself published it (others may at most reach subscribers that
        // an explicit ACL rule lets read it).
        let principal = self
            .session(idx)
            .and_then(|s| s.grant.as_ref())
            .map(|g| g.principal.clone());
        let from_device = match device_topics::device_of(&msg.topic) {
            Some(id) => principal.as_deref() == Some(id),
            None => true,
        };
        if !from_device {
            self.stats.not_from_device += 1;
        }
        // The ingest stage's verdict counts only for the sender's own
        // telemetry topic.
        let ingest =
            ingest.filter(|_| from_device && device_topics::telemetry_device(&msg.topic).is_some());
        let stored = matches!(ingest, Some(Ingest::Accepted { .. }));
        match ingest {
            Some(Ingest::Accepted { points }) => {
                self.stats.telemetry_messages += 1;
                self.stats.telemetry_points += points as u64;
            }
            Some(Ingest::Refused(why)) => {
                self.stats.telemetry_rejected += 1;
                tracing::debug!(client_id = %client_id, topic = %msg.topic, why, "telemetry refused");
                self.ack_publish(
                    conn,
                    idx,
                    &ack_info,
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    v5,
                    now,
                );
                return false;
            }
            None => {}
        }
        if msg.retain {
            msg = Arc::new(msg.compacted());
        }
        if msg.retain && !self.set_retained(msg.clone()) {
            self.stats.messages_dropped += 1;
            self.ack_publish(conn, idx, &ack_info, ReasonCode::QUOTA_EXCEEDED, v5, now);
            return false;
        }
        let hits = if from_device {
            self.taps.hits(&msg.topic)
        } else {
            crate::taps::TapHits::default()
        };
        let (for_services, for_rules, for_streams) = (hits.services, hits.rules, hits.streams);
        if hits.any_message() {
            self.outputs.push(Output::Tap(crate::broker::TapMessage {
                client_id: client_id.clone(),
                principal,
                message: msg.clone(),
                for_services,
                for_rules,
                for_streams,
            }));
        }
        let outcome = self.route(msg, Some(&client_id), Some(conn), now);
        let code = match outcome {
            crate::delivery::RouteOutcome::QueueFull => {
                if !v5 && p.qos > QoS::AtMostOnce {
                    // v3.1.1 has no failure acknowledgement: not acking and
                    // closing makes the client send it again later.
                    tracing::warn!(client_id = %client_id, "a persistent subscriber's queue is full; closing v3.1.1 publisher");
                    self.outputs.push(Output::Close { conn });
                    self.detach_reason = "subscriber queue full";
                    self.detach(conn, now, true, false);
                    return false;
                }
                ReasonCode::QUOTA_EXCEEDED
            }
            crate::delivery::RouteOutcome::Delivered(0) if !stored => {
                ReasonCode::NO_MATCHING_SUBSCRIBERS
            }
            crate::delivery::RouteOutcome::Delivered(0) => ReasonCode::SUCCESS,
            crate::delivery::RouteOutcome::Delivered(_) => ReasonCode::SUCCESS,
        };
        self.ack_publish(conn, idx, &ack_info, code, v5, now);
        stored
    }

    /// Sends PUBACK / PUBREC for a received PUBLISH (nothing for QoS 0).
    fn ack_publish(
        &mut self,
        conn: ConnId,
        idx: SessionIdx,
        p: &Publish,
        code: ReasonCode,
        v5: bool,
        now: Time,
    ) {
        if !v5 && code.is_error() && code != ReasonCode::NOT_AUTHORIZED && p.qos > QoS::AtMostOnce {
            // v3.1.1 has no failure acknowledgement: a message that was not
            // kept (bad payload, retained store full, over a quota) is not
            // acknowledged; the connection closes and the client sends it
            // again later. (A denied publish is acknowledged and dropped,
            // as MQTT 3.1.1 allows and other brokers do.)
            tracing::info!(conn = conn.0, reason = %code, "v3.1.1 publish not kept; closing without PUBACK");
            self.stats.unacked_closes += 1;
            self.outputs.push(Output::Close { conn });
            self.detach_reason = "publish not kept";
            self.detach(conn, now, true, false);
            return;
        }
        let code = if v5 { code } else { ReasonCode::SUCCESS };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.ack_or_hold(conn, Packet::PubAck(Ack::with_reason(p.packet_id, code)));
            }
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
                self.ack_or_hold(conn, Packet::PubRec(Ack::with_reason(p.packet_id, code)));
            }
        }
    }

    /// The network layer turned the acknowledgement of `packet_id` into a
    /// failure (its batch was not stored): a QoS 2 exchange must not stay
    /// open, or the client's next PUBLISH with that packet id would be
    /// taken for a duplicate and never stored.
    pub fn publish_refused(&mut self, conn: ConnId, packet_id: u16) {
        let Some(idx) = self.conns.get(&conn).map(|c| c.session) else {
            return;
        };
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if s.incoming_qos2.remove(&packet_id) && s.persistent() {
            let client_id = s.client_id.clone();
            self.persist(PersistOp::IncomingRemove {
                client_id,
                packet_id,
            });
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
        let hits = self.taps.hits(&msg.topic);
        let (for_rules, for_streams) = (hits.rules, hits.streams);
        if for_rules || for_streams {
            self.outputs.push(Output::Tap(crate::broker::TapMessage {
                client_id: mqtt_proto::ByteString::default(),
                principal: None,
                message: msg.clone(),
                for_services: false,
                for_rules,
                for_streams,
            }));
        }
        self.route(msg, None, None, now);
    }

    // ------------------------------------------------------------- SUBSCRIBE

    fn handle_subscribe(&mut self, conn: ConnId, sub: Subscribe, now: Time) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        if self.session(idx).is_none() {
            return;
        }
        let mut codes = Vec::with_capacity(sub.subscriptions.len());
        let mut retained_to_send = Vec::new();
        let mut granted: Vec<String> = Vec::new();
        for s in sub.subscriptions {
            let (group, filter) = match topic::parse_shared(&s.filter) {
                Some(Ok((g, _))) if g.len() > self.config.max_share_group_bytes => {
                    codes.push(fail(v5, ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
                Some(Ok((g, f))) => (Some(g), f),
                Some(Err(())) => {
                    codes.push(fail(v5, ReasonCode::TOPIC_FILTER_INVALID));
                    continue;
                }
                None => (None, &*s.filter),
            };
            if group.is_some() && s.options.no_local {
                self.protocol_violation(
                    conn,
                    ReasonCode::PROTOCOL_ERROR,
                    "no local on a shared subscription",
                    now,
                );
                return;
            }
            if !topic::valid_topic_filter(filter)
                || topic::level_count(filter) > self.config.max_topic_levels
            {
                codes.push(fail(v5, ReasonCode::TOPIC_FILTER_INVALID));
                continue;
            }
            if !self.allowed(idx, filter, Action::Read) {
                self.stats.subscribe_denied += 1;
                self.log_denial(idx, filter, "subscribe", now);
                codes.push(fail(v5, ReasonCode::NOT_AUTHORIZED));
                continue;
            }
            let count = self.session(idx).map_or(0, |s| s.subscriptions.len());
            let already = self
                .session(idx)
                .is_some_and(|ss| ss.subscriptions.contains_key(&s.filter));
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
            granted.push(s.filter.to_string());
            let send_retained = group.is_none()
                && match s.options.retain_handling {
                    mqtt_proto::RetainHandling::SendAtSubscribe => true,
                    mqtt_proto::RetainHandling::SendIfNew => !existed,
                    mqtt_proto::RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for msg in self.retained.matching(filter) {
                    if (self.access.has_acl() || crate::auth::in_device_tree(&msg.topic))
                        && !self.may_read(idx, &msg.topic)
                    {
                        continue;
                    }
                    retained_to_send.push((
                        msg,
                        s.options.qos,
                        sub.properties.subscription_identifier,
                    ));
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
        if !granted.is_empty() {
            if let Some(s) = self.session(idx) {
                if let Some(g) = &s.grant {
                    let event = Output::Subscribed {
                        principal: g.principal.clone(),
                        client_id: s.client_id.clone(),
                        filters: granted,
                    };
                    self.outputs.push(event);
                }
            }
        }
        for (msg, qos, sub_id) in retained_to_send {
            if msg.expires_at.is_some_and(|e| e <= now) {
                continue;
            }
            let qos = qos.min(msg.qos);
            self.deliver(idx, msg, qos, true, sub_id.into_iter().collect(), now);
        }
    }

    fn handle_unsubscribe(&mut self, conn: ConnId, u: Unsubscribe) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let v5 = c.protocol.is_v5();
        let idx = c.session;
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in u.filters {
            let removed = self
                .session_mut(idx)
                .and_then(|s| s.subscriptions.remove(&f))
                .is_some();
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
                    let Some(c) = self.conns.get(&conn) else {
                        continue;
                    };
                    // A connection the broker (or the network layer, for
                    // a platform service) stopped reading is not silent by
                    // its own doing.
                    let deadline = if c.read_paused || c.held_by_platform {
                        now.plus_ms(c.timeout_ms)
                    } else {
                        c.last_seen.plus_ms(c.timeout_ms)
                    };
                    if deadline > now {
                        self.schedule(deadline, Timer::Keepalive(conn));
                        continue;
                    }
                    self.stats.keepalive_timeouts += 1;
                    self.protocol_violation(
                        conn,
                        ReasonCode::KEEP_ALIVE_TIMEOUT,
                        "keep alive timeout",
                        now,
                    );
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
                        s.conn.is_none()
                            && s.generation == generation
                            && s.expires_at.is_some_and(|e| e <= now)
                    });
                    if expired {
                        self.stats.sessions_expired += 1;
                        self.end_session(idx, now);
                    }
                }
                Timer::Stuck(idx, generation) => self.stuck_timer(idx, generation, now),
            }
        }
    }
}

fn fail(v5: bool, code: ReasonCode) -> ReasonCode {
    if v5 {
        code
    } else {
        ReasonCode::UNSPECIFIED_ERROR
    }
}

impl Broker {
    /// Takes one message from the connection's rate budget (always granted
    /// when it has none).
    fn take_rate(&mut self, conn: ConnId, len: usize, now: Time) -> bool {
        match self.conns.get_mut(&conn).and_then(|c| c.rate.as_mut()) {
            Some(bucket) => bucket.take(len, now),
            None => true,
        }
    }

    /// Logs a refused publish or subscribe at info level, at most one line
    /// per second (the rest are counted in the stats and summed in the
    /// next line).
    fn log_denial(&mut self, idx: SessionIdx, topic: &str, what: &'static str, now: Time) {
        if now.0 >= self.denial_log_next {
            self.denial_log_next = now.0 + 1000;
            let suppressed = std::mem::take(&mut self.denials_suppressed);
            let (client_id, device, username) = match self.session(idx) {
                Some(s) => (
                    s.client_id.to_string(),
                    s.grant.as_ref().map(|g| g.principal.clone()),
                    s.username.as_deref().map(str::to_string),
                ),
                None => (String::new(), None, None),
            };
            tracing::info!(
                client_id,
                device = device.as_deref().unwrap_or("-"),
                username = username.as_deref().unwrap_or("-"),
                topic,
                what,
                suppressed,
                "access denied"
            );
        } else {
            self.denials_suppressed += 1;
        }
    }
}

/// The protocol's name in presence events.
pub(crate) fn protocol_name(p: mqtt_proto::Protocol) -> &'static str {
    if p.is_v5() {
        "mqtt5"
    } else {
        "mqtt3.1.1"
    }
}
