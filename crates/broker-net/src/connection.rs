//! One client connection, served by one task: it decodes what arrives and
//! feeds the broker, and writes what the broker queued for it (applying
//! outbound topic aliases, holding durable acknowledgements until their
//! batch is committed, coalescing packets into one write).
//!
//! An idle connection holds no buffers: the read buffer is allocated when
//! the socket is readable and dropped once every byte in it is decoded; the
//! write buffer lives only during a flush. This is what keeps the broker's
//! memory per idle connection small.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use broker::{ConnectInfo, OutboundAliases};
use bytes::BytesMut;
use mqtt_proto::{ConnAck, ConnAckProperties, DecodeError, Packet, Protocol, QoS, ReasonCode};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;

use crate::auth::{AuthDecision, AuthRequest, Listener};
use crate::outq::{OutQueue, Outgoing};
use crate::server::Shared;

/// Read buffer sizes: a new connection starts small (a CONNECT is tiny and
/// thousands of connections arrive at once), then the size follows the
/// traffic: doubled when a read fills the buffer, halved when reads are
/// small.
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 * 1024;

/// Packets handled under one acquisition of the broker's lock.
const BATCH: usize = 64;

/// The next read size after a read of `n` bytes into `room` free bytes.
pub(crate) fn adapt(size: usize, n: usize, room: usize) -> usize {
    if n >= room {
        (size * 2).min(READ_MAX)
    } else if n < size / 4 {
        (size / 2).max(READ_MIN)
    } else {
        size
    }
}

/// A byte stream the connection can wait on without holding a buffer.
///
/// Polled, not awaited: an idle connection sleeps in a `poll_fn` that holds
/// no future state of its own, which keeps its task small.
pub(crate) trait Transport: AsyncWrite + Unpin + Send + 'static {
    /// Once data has arrived, reads it into `buf` (allocating only then,
    /// `size` bytes, adapted to the traffic). `Ok(0)` is end of stream.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        size: &mut usize,
    ) -> Poll<io::Result<usize>>;
}

impl Transport for TcpStream {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        size: &mut usize,
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.poll_read_ready(cx))?;
            if buf.capacity() - buf.len() < *size / 4 {
                buf.reserve(*size);
            }
            let room = buf.capacity() - buf.len();
            match self.try_read_buf(buf) {
                Ok(n) => {
                    *size = adapt(*size, n, room);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Transport for DuplexStream {
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        size: &mut usize,
    ) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < *size / 4 {
            buf.reserve(*size);
        }
        let room = buf.capacity() - buf.len();
        let n = std::task::ready!(tokio_util::io::poll_read_buf(
            std::pin::Pin::new(self),
            cx,
            buf
        ))?;
        *size = adapt(*size, n, room);
        Poll::Ready(Ok(n))
    }
}

/// What woke an idle connection.
enum Wake {
    Queued,
    Read(io::Result<usize>),
}

/// Serves one connection until it closes.
pub(crate) async fn serve<T: Transport>(
    shared: Arc<Shared>,
    mut io: T,
    peer: SocketAddr,
    listener: Listener,
    // Boxed: held for the life of the task, and most connections have none.
    certificate: Option<Box<pki::PeerCert>>,
) {
    let max_packet = shared.broker_config.max_packet_size as usize;
    let mut rbuf = BytesMut::new();
    let mut read_size = READ_MIN;

    let Some(connect) = Box::pin(read_connect(
        &shared,
        &mut io,
        &mut rbuf,
        &mut read_size,
        peer,
    ))
    .await
    else {
        return;
    };
    let protocol = connect.protocol;
    let grant = match Box::pin(authenticate(
        &shared,
        &connect,
        peer,
        listener,
        certificate.map(|c| *c),
    ))
    .await
    {
        Ok(grant) => grant,
        Err(code) => {
            // Boxed, like every await before the session starts: a task
            // is as large as its largest await.
            Box::pin(refuse(&shared, &mut io, protocol, code)).await;
            return;
        }
    };
    // Counted against the principal's connection limit until it closes.
    let principal = grant.as_ref().map(|g| g.principal.clone());
    if let Some(p) = &principal {
        if !shared.guard.enter(p, &shared.guard_limits) {
            shared
                .metrics
                .principal_limit_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, principal = %p, "too many connections for this identity; refused");
            Box::pin(refuse(
                &shared,
                &mut io,
                protocol,
                ReasonCode::QUOTA_EXCEEDED,
            ))
            .await;
            return;
        }
    }
    let _leave = principal.map(|p| LeaveOnDrop {
        shared: shared.clone(),
        principal: p,
    });
    let alias_max = if protocol.is_v5() {
        connect
            .properties
            .topic_alias_maximum
            .unwrap_or(0)
            .min(shared.broker_config.outbound_topic_alias_maximum)
    } else {
        0
    };
    let mut aliases = OutboundAliases::new(alias_max);

    // A registered device's own telemetry is decoded outside the lock.
    let device = grant
        .as_ref()
        .map(|g| g.principal.clone())
        .filter(|p| !p.starts_with("claim:"));
    let conn = shared.next_conn_id();
    let telemetry = shared.telemetry.clone();
    let mut telemetry_aliases = TelemetryAliases::default();
    let rule_sink;
    // Room for the outbound window, the queue proper, and the
    // acknowledgements back-pressure may have held and releases at once.
    let outq = Arc::new(OutQueue::new(
        shared.config.outbound_queue
            + usize::from(shared.broker_config.max_inflight)
            + usize::from(shared.broker_config.receive_maximum),
    ));
    {
        let mut core = shared.lock();
        core.conns.insert(conn, outq.clone());
        let now = shared.clock.now();
        let info = ConnectInfo {
            peer: peer.to_string(),
            grant,
        };
        core.broker.connect(conn, *connect, &info, now);
        core.dispatch(&shared.metrics, now);
        rule_sink = core.rule_events.clone();
    }
    // Set after a read batch when the rules engine's queues are over their
    // bound: nothing more is read until they have room (see `RuleSink`).
    let mut rules_wait: Option<crate::RoomWait> = None;
    // Whether the core was told this connection's reading is held.
    let mut held_for_rules = false;

    let reason = loop {
        // Decode the complete packets buffered, then handle them under one
        // lock, at most `BATCH` at a time (the batch is allocated once at
        // its size, never grown packet by packet).
        let mut bad = false;
        // Sized for the packets buffered (an acknowledgement is 4 bytes),
        // allocated once per read and reused batch after batch.
        let mut batch = Vec::new();
        if !rbuf.is_empty() {
            batch.reserve(BATCH.min(rbuf.len() / 4 + 1));
        }
        while !rbuf.is_empty() {
            let mut error = None;
            while batch.len() < BATCH {
                match mqtt_proto::decode(&mut rbuf, protocol, max_packet) {
                    Ok(Some(p)) => batch.push(p),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let full = batch.len() == BATCH;
            if batch.is_empty() && error.is_none() {
                break;
            }
            {
                // A device's own telemetry goes through the ingest stage
                // here, outside the broker's lock: one client's huge
                // payload costs its own task, not everybody's lock.
                // Built only when the batch holds the device's telemetry
                // (no allocation per read otherwise); one pass, so that a
                // topic alias re-mapped later in the batch is read in order.
                let mut decoded: Vec<Option<Result<Vec<tsdb::WritePoint>, String>>> = Vec::new();
                if let (Some(stage), Some(device)) = (&telemetry, &device) {
                    let mut now = None;
                    for (i, p) in batch.iter().enumerate() {
                        let Packet::Publish(pb) = p else { continue };
                        if telemetry_aliases.is_own_telemetry(pb, device) {
                            if decoded.is_empty() {
                                decoded.resize_with(batch.len(), || None);
                            }
                            let now = *now.get_or_insert_with(|| shared.clock.now());
                            decoded[i] = Some(stage.decode(device, &pb.payload, now));
                        }
                    }
                }
                // While the rules engine is over its bound, the topics
                // published decide whether this connection waits.
                let mut rule_topics: Option<Vec<mqtt_proto::ByteString>> = rule_sink
                    .as_ref()
                    .filter(|s| s.pressed())
                    .map(|_| Vec::new());
                {
                    let mut core = shared.lock();
                    let now = shared.clock.now();
                    let mut decoded = decoded.into_iter();
                    for p in batch.drain(..) {
                        if let (Some(t), Packet::Publish(pb)) = (&mut rule_topics, &p) {
                            t.push(pb.topic.clone());
                        }
                        // The broker gets the verdict; the points stay here
                        // until it says it took the message.
                        let (verdict, points, ack) = match (decoded.next().flatten(), &p) {
                            (Some(Ok(points)), Packet::Publish(pb)) => (
                                Some(broker::Ingest::Accepted {
                                    points: points.len(),
                                }),
                                Some(points),
                                (pb.qos > QoS::AtMostOnce).then_some(pb.packet_id),
                            ),
                            (Some(Err(why)), _) => (Some(broker::Ingest::Refused(why)), None, None),
                            _ => (None, None, None),
                        };
                        if core.broker.handle_decoded(conn, p, verdict, now) {
                            if let Some(points) = points {
                                core.take_telemetry(conn, ack, points);
                            }
                        }
                    }
                    if let Some(e) = &error {
                        core.broker
                            .protocol_violation(conn, e.reason_code(), &e.to_string(), now);
                    }
                    core.dispatch(&shared.metrics, now);
                }
                rules_wait = match (&rule_sink, &rule_topics) {
                    (Some(s), Some(t)) if !t.is_empty() => s.room(&mut t.iter().map(|x| &**x)),
                    _ => None,
                };
                if rules_wait.is_some() != held_for_rules {
                    // Not read while held: the keep-alive is not charged.
                    held_for_rules = rules_wait.is_some();
                    shared.lock().broker.hold_reading(conn, held_for_rules);
                }
                // Let the writers this batch fed run before reading more:
                // otherwise a fast publisher fills its subscribers' queues
                // for a whole scheduling budget and QoS 0 is dropped
                // instead of delivered.
                tokio::task::yield_now().await;
            }
            if error.is_some() {
                bad = true;
                break;
            }
            if !full {
                break;
            }
        }
        if bad {
            // Send the DISCONNECT queued for the violation, then stop.
            let _ = Box::pin(flush(&shared, &mut io, &outq, &mut aliases, protocol, conn)).await;
            break "bad packet";
        }
        if rbuf.is_empty() && rbuf.capacity() > 0 {
            rbuf = BytesMut::new();
        }
        match Box::pin(flush(&shared, &mut io, &outq, &mut aliases, protocol, conn)).await {
            Flushed::Open => {}
            Flushed::Closed => break "closed by broker",
            Flushed::Failed => break "write error",
        }
        let wake = std::future::poll_fn(|cx| {
            if outq.poll_queued(cx).is_ready() {
                return Poll::Ready(Wake::Queued);
            }
            if outq.read_paused() {
                // Back-pressure: not read until the broker says so (it
                // wakes the queue then). The keep-alive timer is not
                // charged for it: see `Broker::tick`.
                return Poll::Pending;
            }
            if let Some(w) = &mut rules_wait {
                // Back-pressure from the rules engine: its queues hold
                // more than their bound of messages it must not skip.
                if w.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                rules_wait = None;
            }
            io.poll_read_into(cx, &mut rbuf, &mut read_size)
                .map(Wake::Read)
        })
        .await;
        if held_for_rules && rules_wait.is_none() {
            held_for_rules = false;
            shared.lock().broker.hold_reading(conn, false);
        }
        match wake {
            Wake::Queued => {
                if outq.aborted() {
                    break "aborted by broker";
                }
            }
            Wake::Read(Ok(0)) => break "closed by client",
            Wake::Read(Ok(n)) => {
                shared
                    .metrics
                    .bytes_in
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Wake::Read(Err(_)) => break "read error",
        }
    };
    tracing::debug!(conn = conn.0, %peer, reason, "connection ended");
    {
        let mut core = shared.lock();
        let now = shared.clock.now();
        core.broker.connection_lost(conn, now);
        core.conns.remove(&conn);
        core.forget_verdicts(conn);
        core.dispatch(&shared.metrics, now);
    }
    let _ = Box::pin(io.shutdown()).await;
}

/// Releases a principal's connection slot when the connection ends.
struct LeaveOnDrop {
    shared: Arc<Shared>,
    principal: String,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.shared.guard.leave(&self.principal);
    }
}

/// Authenticates the CONNECT with the plugged-in authenticator, if any:
/// `Ok(Some(grant))` confines the client, `Ok(None)` leaves the decision
/// to the core's password/ACL files, `Err(code)` refuses it.
async fn authenticate(
    shared: &Arc<Shared>,
    connect: &mqtt_proto::Connect,
    peer: SocketAddr,
    listener: Listener,
    certificate: Option<pki::PeerCert>,
) -> Result<Option<Arc<broker::Grant>>, ReasonCode> {
    let Some(auth) = shared.authenticator.clone() else {
        return Ok(None);
    };
    let now_ms = shared.clock.now().0;
    let user = connect
        .username
        .as_deref()
        .map(str::to_string)
        .or_else(|| {
            certificate
                .as_ref()
                .and_then(|c| c.device_id().map(str::to_string))
        })
        .unwrap_or_default();
    if let Some(wait) = shared.guard.backing_off(peer.ip(), &user, now_ms) {
        shared
            .metrics
            .auth_backoff_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, user = %user, retry_in_ms = wait, "repeated authentication failures; refused without checking");
        return Err(ReasonCode::NOT_AUTHORIZED);
    }
    let request = AuthRequest {
        client_id: connect.client_id.to_string(),
        username: connect.username.as_deref().map(str::to_string),
        password: connect.password.as_ref().map(|p| p.to_vec()),
        peer,
        listener,
        certificate,
    };
    // Without a password there is nothing to hash: decide inline. With one,
    // the authenticator reads the registry and may run argon2 (a legacy
    // hash): off the workers, at most `auth_concurrency` at once so that a
    // fleet reconnecting together waits here instead of starting a blocking
    // thread each. The permit moves into the closure: it is held until the
    // call ends even if this connection is dropped meanwhile.
    let decision = if request.password.is_none() {
        auth.authenticate(&request)
    } else {
        match Arc::clone(&shared.auth_slots).acquire_owned().await {
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let _permit = permit;
                auth.authenticate(&request)
            })
            .await
            .unwrap_or(AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)),
            Err(_closed) => AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE),
        }
    };
    match decision {
        AuthDecision::Allow(grant) => {
            shared.guard.succeeded(peer.ip(), &user);
            Ok(Some(grant))
        }
        AuthDecision::Default => Ok(None),
        AuthDecision::Refuse(code) => {
            shared.metrics.auth_refused.fetch_add(1, Ordering::Relaxed);
            if code == ReasonCode::BAD_USER_NAME_OR_PASSWORD || code == ReasonCode::NOT_AUTHORIZED {
                let n = shared.guard.failed(
                    peer.ip(),
                    &user,
                    &shared.guard_limits,
                    shared.clock.now().0,
                );
                tracing::info!(%peer, user = %user, client_id = %connect.client_id, reason = ?code, consecutive_failures = n, "authentication failed");
            } else {
                tracing::info!(%peer, user = %user, client_id = %connect.client_id, reason = ?code, "connection refused");
            }
            Err(code)
        }
    }
}

/// Answers a refused CONNECT and closes.
async fn refuse<T: Transport>(shared: &Shared, io: &mut T, protocol: Protocol, code: ReasonCode) {
    let ack = Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code: code,
        properties: ConnAckProperties::default(),
    });
    let mut out = BytesMut::new();
    if mqtt_proto::encode(&ack, protocol, &mut out).is_ok() && io.write_all(&out).await.is_ok() {
        shared
            .metrics
            .bytes_out
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
    let _ = io.shutdown().await;
}

/// Reads the first packet, which must be CONNECT, within the connect
/// timeout. Answers an unsupported protocol version with CONNACK 0x84.
async fn read_connect<T: Transport>(
    shared: &Shared,
    io: &mut T,
    rbuf: &mut BytesMut,
    read_size: &mut usize,
    peer: SocketAddr,
) -> Option<Box<mqtt_proto::Connect>> {
    let max_packet = shared.broker_config.max_packet_size as usize;
    // The first packet must be CONNECT, within the connect timeout.
    let connect_timeout = Duration::from_secs(shared.config.connect_timeout_secs);
    let first = tokio::time::timeout(connect_timeout, async {
        loop {
            match mqtt_proto::decode(rbuf, Protocol::V5, max_packet) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            match std::future::poll_fn(|cx| io.poll_read_into(cx, rbuf, read_size)).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => {
                    shared
                        .metrics
                        .bytes_in
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    match first {
        Ok(Ok(Packet::Connect(c))) => Some(c),
        Ok(Err(Some(DecodeError::UnsupportedProtocolVersion(level)))) => {
            tracing::debug!(%peer, level, "unsupported protocol version");
            let ack = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                properties: ConnAckProperties::default(),
            });
            let mut out = BytesMut::new();
            if mqtt_proto::encode(&ack, Protocol::V311, &mut out).is_ok() {
                let _ = io.write_all(&out).await;
            }
            None
        }
        Ok(Err(Some(e))) => {
            tracing::debug!(%peer, error = %e, "bad first packet");
            None
        }
        Ok(Ok(other)) => {
            tracing::debug!(%peer, packet = other.name(), "first packet was not CONNECT");
            None
        }
        Ok(Err(None)) | Err(_) => None,
    }
}

enum Flushed {
    Open,
    Closed,
    Failed,
}

/// Writes everything queued for the connection.
async fn flush<T: Transport>(
    shared: &Shared,
    io: &mut T,
    outq: &OutQueue,
    aliases: &mut OutboundAliases,
    protocol: Protocol,
    conn: broker::ConnId,
) -> Flushed {
    let mut out = BytesMut::new();
    loop {
        let items = outq.take();
        if items.is_empty() {
            break;
        }
        // Room for the usual small packets at once (a larger one grows it).
        out.reserve(items.len() * 96);
        for item in items {
            match item {
                Outgoing::Close => {
                    if !out.is_empty() && write(shared, io, outq, &out).await.is_err() {
                        return Flushed::Failed;
                    }
                    return Flushed::Closed;
                }
                Outgoing::Packet(mut packet, wait, verdict) => {
                    if wait > 0 {
                        let mut durable = shared.durable.clone();
                        if durable.borrow().seq < wait {
                            // Write what precedes it, then wait for the
                            // batch holding its state to be committed.
                            if !out.is_empty() {
                                if write(shared, io, outq, &out).await.is_err() {
                                    return Flushed::Failed;
                                }
                                out.clear();
                            }
                            if durable.wait_for(|d| d.seq >= wait).await.is_err() {
                                return Flushed::Failed;
                            }
                        }
                        let failure = if durable.borrow().failed(wait) {
                            Some(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR)
                        } else if verdict.is_some_and(|v| v.refused()) {
                            Some(ReasonCode::PAYLOAD_FORMAT_INVALID)
                        } else {
                            None
                        };
                        if let Some(code) = failure {
                            match failed_ack(packet, protocol, code) {
                                Failed::Send(p, forget) => {
                                    packet = p;
                                    if let Some(packet_id) = forget {
                                        forget_publish(shared, conn, packet_id);
                                    }
                                }
                                Failed::Close(packet_id) => {
                                    // v3.1.1 has no failure acknowledgement:
                                    // close instead, so that the client
                                    // sends the message again.
                                    tracing::info!(conn = conn.0, packet_id, "publish not stored; closing the v3.1.1 connection without its acknowledgement");
                                    shared
                                        .metrics
                                        .unacked_closes
                                        .fetch_add(1, Ordering::Relaxed);
                                    forget_publish(shared, conn, packet_id);
                                    if !out.is_empty() {
                                        let _ = write(shared, io, outq, &out).await;
                                    }
                                    return Flushed::Closed;
                                }
                            }
                        }
                    }
                    if let Packet::Publish(p) = &mut packet {
                        aliases.apply(p);
                    }
                    if let Err(e) = mqtt_proto::encode(&packet, protocol, &mut out) {
                        tracing::warn!(error = %e, packet = packet.name(), "cannot encode packet; skipped");
                    }
                }
            }
        }
        if out.len() > 64 * 1024 {
            if write(shared, io, outq, &out).await.is_err() {
                return Flushed::Failed;
            }
            out.clear();
        }
    }
    if !out.is_empty() && write(shared, io, outq, &out).await.is_err() {
        return Flushed::Failed;
    }
    if outq.aborted() {
        return Flushed::Failed;
    }
    Flushed::Open
}

/// Writes `out` unless the broker aborts the connection meanwhile (a client
/// that does not read must not pin its task forever).
async fn write<T: Transport>(
    shared: &Shared,
    io: &mut T,
    outq: &OutQueue,
    out: &[u8],
) -> io::Result<()> {
    // Watching for an abort consumes the queue's "something was queued"
    // flag; remember it and set it again afterwards, or a packet queued
    // during this write would wait for the next wake-up.
    let saw_queued = std::sync::atomic::AtomicBool::new(false);
    let aborted = std::future::poll_fn(|cx| loop {
        std::task::ready!(outq.poll_queued(cx));
        saw_queued.store(true, Ordering::Relaxed);
        if outq.aborted() {
            return Poll::Ready(());
        }
    });
    let r = tokio::select! {
        r = io.write_all(out) => {
            shared.metrics.bytes_out.fetch_add(out.len() as u64, Ordering::Relaxed);
            r
        }
        _ = aborted => Err(io::Error::other("aborted")),
    };
    if saw_queued.load(Ordering::Relaxed) {
        outq.mark_queued();
    }
    r
}

/// What becomes of an acknowledgement whose data was not stored.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per failed acknowledgement and consumed at once; boxing would only add an allocation"
)]
enum Failed {
    /// Send this instead (a v5 failure acknowledgement, or a packet that
    /// acknowledges nothing the client sent), and forget the QoS 2 packet
    /// id, if any, whose exchange ends here.
    Send(Packet, Option<u16>),
    /// v3.1.1 PUBACK/PUBREC: close the connection instead of sending it.
    Close(u16),
}

/// When the store failed, an acknowledgement that depended on it becomes a
/// failure: the client must not believe it was kept (v5: the reason code;
/// v3.1.1, which has none: no acknowledgement, the connection closes).
fn failed_ack(packet: Packet, protocol: Protocol, code: ReasonCode) -> Failed {
    match packet {
        Packet::PubAck(a) | Packet::PubRec(a) if !protocol.is_v5() => Failed::Close(a.packet_id),
        Packet::PubAck(mut a) => {
            if !a.reason_code.is_error() {
                a.reason_code = code;
            }
            Failed::Send(Packet::PubAck(a), None)
        }
        Packet::PubRec(mut a) => {
            if !a.reason_code.is_error() {
                a.reason_code = code;
            }
            let id = a.packet_id;
            Failed::Send(Packet::PubRec(a), Some(id))
        }
        other => Failed::Send(other, None),
    }
}

/// Tells the broker that the publish with `packet_id` was not kept (so a
/// QoS 2 packet id does not stay open).
fn forget_publish(shared: &Shared, conn: broker::ConnId, packet_id: u16) {
    let mut core = shared.lock();
    let now = shared.clock.now();
    core.broker.publish_refused(conn, packet_id);
    core.dispatch(&shared.metrics, now);
}

/// Which inbound topic aliases (MQTT 5) of one connection stand for the
/// device's own telemetry topic: enough to send an alias-only PUBLISH of
/// telemetry through the ingest stage outside the lock. The broker core
/// keeps the connection's real alias table and refuses bad aliases; this
/// follows the same rule (a PUBLISH with a topic name and an alias maps
/// the alias), and holds at most the aliases the client mapped to that one
/// topic (bounded by the topic alias maximum the broker grants).
#[derive(Default)]
struct TelemetryAliases(Vec<u16>);

impl TelemetryAliases {
    /// Whether `p` is published on `device`'s own telemetry topic, by name
    /// or by an alias mapped to it; notes the mapping `p` makes.
    fn is_own_telemetry(&mut self, p: &mqtt_proto::Publish, device: &str) -> bool {
        let alias = p.properties.topic_alias;
        if p.topic.is_empty() {
            return alias.is_some_and(|a| self.0.contains(&a));
        }
        let own = broker::telemetry_device(&p.topic) == Some(device);
        if let Some(a) = alias {
            self.0.retain(|x| *x != a);
            if own {
                self.0.push(a);
            }
        }
        own
    }
}

#[cfg(test)]
mod telemetry_alias_tests {
    use super::TelemetryAliases;
    use mqtt_proto::{Publish, PublishProperties};

    fn publish(topic: &str, alias: Option<u16>) -> Publish {
        Publish {
            topic: topic.into(),
            properties: PublishProperties {
                topic_alias: alias,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn alias_only_telemetry_is_recognised_until_the_alias_is_remapped() {
        let mut a = TelemetryAliases::default();
        assert!(!a.is_own_telemetry(&publish("", Some(1)), "d1"));
        assert!(a.is_own_telemetry(&publish("devices/d1/telemetry", Some(1)), "d1"));
        assert!(a.is_own_telemetry(&publish("", Some(1)), "d1"));
        assert!(!a.is_own_telemetry(&publish("", Some(2)), "d1"));
        // Another device's telemetry topic is not this device's.
        assert!(!a.is_own_telemetry(&publish("devices/d2/telemetry", Some(2)), "d1"));
        assert!(!a.is_own_telemetry(&publish("", Some(2)), "d1"));
        // Re-mapped to another topic: no longer telemetry.
        assert!(!a.is_own_telemetry(&publish("plant/x", Some(1)), "d1"));
        assert!(!a.is_own_telemetry(&publish("", Some(1)), "d1"));
        assert!(a.0.is_empty());
    }
}
