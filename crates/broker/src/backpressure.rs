//! Back-pressure from slow subscribers to the publishers feeding them.
//!
//! A QoS 1/2 message acknowledged to its publisher is delivered to every
//! matching subscriber that is online or persistent; it is never dropped
//! for a subscriber that falls behind. Instead:
//!
//! - A connected subscriber's queue may grow past its soft limit
//!   (`max_queued_messages` / `max_queued_bytes`). Every publisher that adds
//!   to a queue over the soft limit is *paused* on that session: its
//!   acknowledgements are held (not sent) until the queue drains to three
//!   quarters of the soft limit. A well-behaved client stops sending QoS
//!   1/2 once its in-flight window is full, so the queue stops growing: TCP
//!   flow control, one level up. The publisher's connection keeps being
//!   read (its own acknowledgements of messages it receives still drain its
//!   session), so two clients that publish to each other cannot deadlock.
//! - A paused publisher may hold at most `receive_maximum` acknowledgements;
//!   one more QoS 1/2 PUBLISH is a protocol violation for v5 (0x93, as the
//!   client ignored the Receive Maximum) and closes a v3.1.1 connection
//!   without its acknowledgement (so the client sends it again later).
//! - The hard limit is twice the soft limit: a message that would take a
//!   queue past it is refused whole (v5 0x97, v3.1.1 connection closed), as
//!   for a full persistent session that is offline. Nothing acknowledged is
//!   dropped.
//! - A subscriber over its soft limit for longer than
//!   `stuck_subscriber_secs` is disconnected (v5: DISCONNECT 0x97); a clean
//!   session then ends, and what was queued for it is lost as for any
//!   disconnected clean session, counted in `messages_dropped` and
//!   `slow_subscribers_disconnected`, and logged. A persistent session keeps
//!   its queue for the next connection.
//!
//! QoS 0 is not held back: it may be dropped under overload (counted).

use mqtt_proto::{Disconnect, Packet, ReasonCode};

use crate::broker::{Broker, ConnId, Output, Timer};
use crate::session::Session;
use crate::trie::SessionIdx;
use crate::Time;

impl Broker {
    /// Whether `s` is over its soft limit (with `extra` more payload bytes).
    pub(crate) fn over_soft(&self, s: &Session, extra: usize) -> bool {
        s.queue.len() >= self.config.max_queued_messages
            || s.queued_bytes + extra > self.config.max_queued_bytes
    }

    /// Whether one more message of `extra` bytes would take `s` past its
    /// hard limit (twice the soft one).
    pub(crate) fn over_hard(&self, s: &Session, extra: usize) -> bool {
        s.queue.len() >= self.config.max_queued_messages.saturating_mul(2)
            || s.queued_bytes + extra > self.config.max_queued_bytes.saturating_mul(2)
    }

    /// After routing a message from `publisher` into session `idx`: when
    /// that session's queue is over its soft limit, the publisher waits for
    /// it to drain (its acknowledgements are held meanwhile).
    pub(crate) fn note_backlog(&mut self, publisher: ConnId, idx: SessionIdx, now: Time) {
        let stuck_ms = u64::from(self.config.stuck_subscriber_secs) * 1000;
        let over = self
            .session(idx)
            .is_some_and(|s| s.conn.is_some() && self.over_soft(s, 0));
        if !over {
            return;
        }
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if s.over_since.is_none() {
            s.over_since = Some(now);
            let generation = s.generation;
            if stuck_ms > 0 {
                self.schedule(now.plus_ms(stuck_ms), Timer::Stuck(idx, generation));
            }
        }
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if s.waiters.contains(&publisher) {
            return;
        }
        s.waiters.push(publisher);
        let Some(c) = self.conns.get_mut(&publisher) else {
            return;
        };
        c.paused_on += 1;
        if c.paused_on > 1 {
            return;
        }
        self.stats.publishers_paused += 1;
        // A pure publisher (nothing of its own in flight or queued) is not
        // read any more: TCP flow control reaches it. One that also
        // receives keeps being read, for its acknowledgements drain the
        // queue others may wait on.
        let own = c.session;
        let idle_subscriber = self
            .session(own)
            .is_some_and(|s| s.inflight.is_empty() && s.queue.is_empty());
        if idle_subscriber {
            self.set_reading(publisher, true);
        }
    }

    /// Tells the network layer to stop or resume reading `conn`.
    pub(crate) fn set_reading(&mut self, conn: ConnId, paused: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.read_paused == paused {
            return;
        }
        c.read_paused = paused;
        self.outputs.push(Output::Reading { conn, paused });
    }

    /// The network layer stops (or resumes) reading `conn` for a platform
    /// service that pushes back (the rules engine's full queues). Like
    /// the broker's own pausing, the keep-alive timer is not charged
    /// meanwhile: the client is not silent by its own doing.
    pub fn hold_reading(&mut self, conn: ConnId, held: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.held_by_platform = held;
        }
    }

    /// A delivery goes to `conn` while it is not read: read it again so
    /// that its acknowledgement comes back (it stays paused otherwise).
    pub(crate) fn reading_needed(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_some_and(|c| c.read_paused) {
            self.set_reading(conn, false);
        }
    }

    /// Releases the publishers waiting on session `idx` once its queue is
    /// down to three quarters of the soft limit (or at once with `all`: the
    /// session went away).
    pub(crate) fn release_waiters(&mut self, idx: SessionIdx, all: bool) {
        let low_msgs = self.config.max_queued_messages / 4 * 3;
        let low_bytes = self.config.max_queued_bytes / 4 * 3;
        let Some(s) = self.session_mut(idx) else {
            return;
        };
        if !all && (s.queue.len() > low_msgs || s.queued_bytes > low_bytes) {
            return;
        }
        s.over_since = None;
        if s.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut s.waiters);
        for conn in waiters {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.paused_on = c.paused_on.saturating_sub(1);
            if c.paused_on == 0 {
                let held = std::mem::take(&mut c.held);
                for packet in held {
                    self.send_durable(conn, packet);
                }
                self.set_reading(conn, false);
            }
        }
    }

    /// Sends an acknowledgement of a received PUBLISH, or holds it while the
    /// publisher is paused. `false`: the publisher already holds as many as
    /// its receive maximum allows and this PUBLISH must be refused.
    pub(crate) fn ack_or_hold(&mut self, conn: ConnId, packet: Packet) -> bool {
        let max = usize::from(self.config.receive_maximum);
        let Some(c) = self.conns.get_mut(&conn) else {
            return true;
        };
        if c.paused_on == 0 {
            self.send_durable(conn, packet);
            return true;
        }
        if c.held.len() >= max {
            return false;
        }
        c.held.push(packet);
        self.stats.acks_held += 1;
        true
    }

    /// Whether `conn` is paused and holds as many acknowledgements as its
    /// receive maximum allows (checked before a QoS 1/2 PUBLISH is routed).
    pub(crate) fn holds_full_window(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            c.paused_on > 0 && c.held.len() >= usize::from(self.config.receive_maximum)
        })
    }

    /// Timer: session `idx` has been over its soft limit since the timer
    /// was set; if it still is, disconnect its client.
    pub(crate) fn stuck_timer(&mut self, idx: SessionIdx, generation: u64, now: Time) {
        let stuck_ms = u64::from(self.config.stuck_subscriber_secs) * 1000;
        let Some(s) = self.session(idx) else { return };
        if s.generation != generation {
            return;
        }
        let (Some(since), Some(conn)) = (s.over_since, s.conn) else {
            return;
        };
        if now.0 < since.0.saturating_add(stuck_ms) {
            let at = since.plus_ms(stuck_ms);
            self.schedule(at, Timer::Stuck(idx, generation));
            return;
        }
        let queued = s.queue.len() + s.inflight.len();
        let persistent = s.persistent();
        let client_id = s.client_id.clone();
        tracing::warn!(client_id = %client_id, queued, persistent, stuck_secs = self.config.stuck_subscriber_secs, "subscriber stuck over its queue limit; disconnecting it");
        self.stats.slow_subscribers_disconnected += 1;
        if !persistent {
            // What a clean session had queued ends with it.
            self.stats.messages_dropped += queued as u64;
        }
        if self.conns.get(&conn).is_some_and(|c| c.protocol.is_v5()) {
            self.send(
                conn,
                Packet::Disconnect(Disconnect::new(ReasonCode::QUOTA_EXCEEDED)),
            );
        }
        self.outputs.push(Output::Close { conn });
        self.detach_reason = "subscriber stuck over its queue limit";
        self.detach(conn, now, true, false);
    }
}
