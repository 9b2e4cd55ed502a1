//! CONNECT: authentication, client identifiers, session take-over,
//! resumption and the CONNACK.

use crate::fast::HashMap;

use mqtt_proto::{
    Ack, ByteString, ConnAck, ConnAckProperties, Connect, Disconnect, Packet, ReasonCode,
};

use crate::auth::AuthFailure;
use crate::broker::{Broker, Conn, ConnId, ConnectInfo, Output, Timer};
use crate::persist::{own_bytes, own_str, DeliveryState, PersistOp};
use crate::session::{owner_key, Session};
use crate::trie::SessionIdx;
use crate::Time;

impl Broker {
    // ---------------------------------------------------------------- CONNECT

    /// Handles a CONNECT (the first packet of a connection).
    pub fn connect(&mut self, conn: ConnId, connect: Connect, info: &ConnectInfo, now: Time) {
        let mut connect = connect;
        let v5 = connect.protocol.is_v5();
        let checked = match &info.grant {
            // Authenticated by the network layer.
            Some(_) => Ok(()),
            None => self
                .access
                .authenticate(connect.username.as_deref(), connect.password.as_deref()),
        };
        if let Err(failure) = checked {
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

        // A client id belongs to one principal: another one may neither
        // resume, take over nor clean its session.
        let owner = owner_key(info.grant.as_deref(), connect.username.as_deref());
        let existing = self.by_client_id.get(&client_id).copied();
        if let Some(held_by) = existing
            .and_then(|idx| self.session(idx))
            .and_then(|s| s.owner.as_ref())
        {
            if *held_by != owner {
                tracing::warn!(peer = %info.peer, client_id = %client_id, principal = %owner, held_by = %held_by, "client id belongs to another principal; refused");
                self.stats.client_id_refused += 1;
                self.refuse(conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                return;
            }
        }
        // Persistent sessions are capped in total and per principal.
        if expiry > 0 {
            let mine = self.persistent.per_owner.get(&owner).copied().unwrap_or(0);
            let cap = &self.config;
            let full = self.persistent.total >= cap.max_persistent_sessions
                || mine as usize >= cap.max_persistent_sessions_per_principal;
            // Resuming, or cleanly replacing, the principal's own persistent
            // session of this client id takes no new slot.
            let replaced = existing
                .and_then(|idx| self.session(idx))
                .is_some_and(|s| s.persistent());
            if full && !replaced {
                tracing::warn!(peer = %info.peer, client_id = %client_id, principal = %owner, total = self.persistent.total, of_principal = mine, "too many persistent sessions; refused");
                self.stats.persistent_sessions_refused += 1;
                self.refuse(conn, ReasonCode::QUOTA_EXCEEDED);
                return;
            }
        }

        // Take over an existing connection of the same client id.
        if let Some(idx) = existing {
            if let Some(old_conn) = self.session(idx).and_then(|s| s.conn) {
                self.stats.takeovers += 1;
                let old_v5 = self
                    .conns
                    .get(&old_conn)
                    .is_some_and(|c| c.protocol.is_v5());
                if old_v5 {
                    self.send(
                        old_conn,
                        Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
                    );
                }
                self.outputs.push(Output::Close { conn: old_conn });
                let ends = connect.clean_start
                    || self.session(idx).is_some_and(|s| s.expiry_interval == 0);
                self.detach_reason = "session taken over";
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

        let was_persistent = {
            let Some(s) = self.session_mut(idx) else {
                return;
            };
            let was = s.persistent();
            let old_owner = s.owner.replace(owner.clone());
            s.protocol = connect.protocol;
            s.expiry_interval = expiry;
            if was {
                self.persistent.remove(old_owner.as_ref());
            }
            if expiry > 0 {
                self.persistent.add(Some(&owner));
            }
            let Some(s) = self.session_mut(idx) else {
                return;
            };
            s.conn = Some(conn);
            s.generation += 1;
            s.expires_at = None;
            s.will = connect.will.take().map(Box::new);
            s.will_due = None;
            s.username = connect.username.clone();
            s.grant = info.grant.clone();
            s.client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            s.client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
            was
        };
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
                aliases_in: HashMap::default(),
                rate: info
                    .grant
                    .as_ref()
                    .and_then(|g| crate::limits::RateBucket::new(g.limits, now))
                    .map(Box::new),
                paused_on: 0,
                held: Vec::new(),
                read_paused: false,
                held_by_platform: false,
            },
        );
        if timeout_ms > 0 {
            self.schedule(now.plus_ms(timeout_ms), Timer::Keepalive(conn));
        }
        if let Some(g) = &info.grant {
            self.outputs
                .push(Output::Presence(crate::broker::PresenceEvent {
                    principal: g.principal.clone(),
                    client_id: client_id.clone(),
                    connected: true,
                    peer: info.peer.clone(),
                    protocol: crate::handlers::protocol_name(connect.protocol),
                    reason: "",
                    subscriptions: self
                        .session(idx)
                        .map(|s| s.subscriptions.keys().map(|k| k.to_string()).collect())
                        .unwrap_or_default(),
                }));
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
}

/// Copies the CONNECT fields a session keeps into their own allocations so
/// they do not pin the connection's read buffer.
fn own_connect_fields(c: &mut Connect) {
    c.client_id = own_str(&c.client_id);
    c.username = c.username.as_ref().map(own_str);
    c.password = None;
    if let Some(w) = &mut c.will {
        w.topic = own_str(&w.topic);
        w.payload = own_bytes(&w.payload);
        let p = &mut w.properties;
        p.content_type = p.content_type.as_ref().map(own_str);
        p.response_topic = p.response_topic.as_ref().map(own_str);
        p.correlation_data = p.correlation_data.as_ref().map(own_bytes);
        for (k, v) in &mut p.user_properties {
            *k = own_str(k);
            *v = own_str(v);
        }
    }
}
