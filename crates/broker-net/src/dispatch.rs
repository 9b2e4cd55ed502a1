//! Turning broker outputs into queued packets, closes and persistence
//! batches. Runs with the core lock held; never blocks.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::outq::{Full, OutQueue, Outgoing};
use crate::persist::{PersistQueue, Submission, TakenBatch, Verdict};
use crate::server::NetMetrics;
use crate::server::PlatformEvent;
use broker::{Broker, ConnId, Output, Time};
use mqtt_proto::{Packet, QoS};

/// The state behind the lock.
pub(crate) struct Core {
    pub broker: Broker,
    /// Every connection's queue (looked up once per packet sent: a fast
    /// seeded hasher, as in the broker core).
    pub conns: HashMap<ConnId, Arc<OutQueue>, foldhash::fast::RandomState>,
    pub persist: PersistQueue,
    /// Where platform events go (tapped messages, acknowledgements,
    /// presence).
    pub events: Option<tokio::sync::mpsc::Sender<PlatformEvent>>,
    /// Where the rules engine's inputs go.
    pub rule_events: Option<Arc<dyn crate::RuleSink>>,
    /// Live streams to API clients.
    pub streams: crate::stream::StreamHub,
    /// Verdicts of telemetry batches whose acknowledgement (connection,
    /// packet id) was not queued yet. At most a receive maximum per
    /// connection; dropped with the connection.
    pub verdicts: HashMap<(ConnId, u16), Arc<Verdict>>,
    /// The outputs being dispatched, kept between dispatches (one buffer
    /// for the whole broker, not one per call).
    pub scratch: Vec<Output>,
    /// Telemetry the broker took since the last dispatch
    /// ([`Core::take_telemetry`]); it joins the next dispatch round's
    /// group commit, which that round's acknowledgements wait for.
    pub taken: Vec<TakenBatch>,
}

/// Outputs whose room the dispatch buffer keeps between calls.
const SCRATCH_KEEP: usize = 1024;

impl Core {
    /// Keeps a device's decoded telemetry that the broker just took for
    /// storage (`Broker::handle_decoded` returned true), with the verdict
    /// the acknowledgement of `packet_id` (QoS 1/2) will read. Stored in
    /// the group commit of the next dispatch round, before any
    /// acknowledgement dispatched from then on.
    pub fn take_telemetry(
        &mut self,
        conn: ConnId,
        packet_id: Option<u16>,
        points: Vec<tsdb::WritePoint>,
    ) {
        let verdict = packet_id.map(|id| {
            let v = Arc::new(Verdict::default());
            self.verdicts.insert((conn, id), v.clone());
            v
        });
        self.taken.push((points, verdict));
    }

    /// Dispatches every pending broker output.
    pub fn dispatch(&mut self, metrics: &Arc<NetMetrics>, now: Time) {
        let mut outputs = std::mem::take(&mut self.scratch);
        loop {
            self.broker.take_outputs(&mut outputs);
            if outputs.is_empty() && self.taken.is_empty() {
                // Kept for the next dispatch unless a burst made it large.
                if outputs.capacity() <= SCRATCH_KEEP {
                    self.scratch = outputs;
                }
                return;
            }
            let mut ops = Vec::new();
            let telemetry = std::mem::take(&mut self.taken);
            let round_seq = self.persist.submitted + 1;
            let mut lost: Vec<ConnId> = Vec::new();
            for out in outputs.drain(..) {
                match out {
                    Output::Persist(op) => ops.push(op),
                    Output::Send {
                        conn,
                        packet,
                        durable,
                    } => {
                        let pending = ops.is_empty() && telemetry.is_empty();
                        let wait = match (durable, pending) {
                            (false, _) => 0,
                            (true, false) => round_seq,
                            (true, true) => self.persist.submitted,
                        };
                        // An acknowledgement of telemetry reads its batch's
                        // verdict (it may be sent in a later round when
                        // back-pressure held it).
                        let verdict = match &packet {
                            Packet::PubAck(a) | Packet::PubRec(a) if !self.verdicts.is_empty() => {
                                self.verdicts.remove(&(conn, a.packet_id))
                            }
                            _ => None,
                        };
                        let Some(h) = self.conns.get(&conn) else {
                            continue;
                        };
                        let qos0 =
                            matches!(&packet, Packet::Publish(p) if p.qos == QoS::AtMostOnce);
                        match h.push(Outgoing::Packet(packet, wait, verdict)) {
                            Ok(()) => {}
                            Err(Full::Full) if qos0 => {
                                metrics.qos0_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Full::Full) => {
                                // A client that does not read while its
                                // window is full: drop it rather than grow.
                                metrics
                                    .slow_consumers_dropped
                                    .fetch_add(1, Ordering::Relaxed);
                                tracing::info!(
                                    ?conn,
                                    "outbound queue full; disconnecting slow client"
                                );
                                lost.push(conn);
                            }
                            Err(Full::Closed) => lost.push(conn),
                        }
                    }
                    Output::Tap(t) => {
                        if t.for_streams
                            && self
                                .streams
                                .deliver(&t.message.topic, &t.message.payload, metrics)
                        {
                            let filters = self.streams.filters();
                            self.broker.set_stream_taps(filters);
                        }
                        if t.for_services {
                            if t.for_rules {
                                self.rule_event(t.clone(), metrics);
                            }
                            self.event(PlatformEvent::Tap(t), metrics);
                        } else if t.for_rules {
                            self.rule_event(t, metrics);
                        }
                    }
                    Output::Presence(p) => self.event(PlatformEvent::Presence(p), metrics),
                    Output::Subscribed {
                        principal, filters, ..
                    } => self.event(PlatformEvent::Subscribed { principal, filters }, metrics),
                    Output::Acked {
                        client_id,
                        principal,
                        topic,
                    } => self.event(
                        PlatformEvent::Acked {
                            client_id: client_id.to_string(),
                            principal,
                            topic: topic.to_string(),
                        },
                        metrics,
                    ),
                    Output::Reading { conn, paused } => {
                        if let Some(h) = self.conns.get(&conn) {
                            h.set_read_paused(paused);
                        }
                    }
                    Output::Close { conn } => {
                        if let Some(h) = self.conns.remove(&conn) {
                            h.close();
                        }
                        self.forget_verdicts(conn);
                    }
                }
            }
            if !ops.is_empty() || !telemetry.is_empty() {
                self.persist.submit(Submission { ops, telemetry });
            }
            for conn in lost {
                if let Some(h) = self.conns.remove(&conn) {
                    h.abort();
                }
                self.forget_verdicts(conn);
                self.broker.connection_lost(conn, now);
            }
        }
    }

    /// Drops the telemetry verdicts of a connection that is gone.
    pub fn forget_verdicts(&mut self, conn: ConnId) {
        if !self.verdicts.is_empty() {
            self.verdicts.retain(|k, _| k.0 != conn);
        }
    }

    /// Hands a message to the rules engine without blocking.
    fn rule_event(&self, t: broker::TapMessage, metrics: &Arc<NetMetrics>) {
        if let Some(sink) = &self.rule_events {
            if !sink.offer(t) {
                metrics.rules_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands an event to the platform services without blocking.
    fn event(&self, e: PlatformEvent, metrics: &Arc<NetMetrics>) {
        let sent = self
            .events
            .as_ref()
            .is_some_and(|tx| tx.try_send(e).is_ok());
        if !sent && self.events.is_some() {
            metrics.taps_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
