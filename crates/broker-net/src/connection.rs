//! One client connection: a reader that decodes and feeds the broker, and a
//! writer that encodes, applies outbound topic aliases and writes in
//! batches.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use broker::{ConnectInfo, OutboundAliases};
use bytes::BytesMut;
use mqtt_proto::{ConnAck, ConnAckProperties, DecodeError, Packet, Protocol, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{ConnHandle, Outgoing};
use crate::server::Shared;

const READ_BUF: usize = 16 * 1024;

/// Serves one connection until it closes.
pub(crate) async fn serve<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max_packet = shared.broker_config.max_packet_size as usize;
    let mut buf = BytesMut::new();

    // The first packet must be CONNECT, within the connect timeout.
    let connect_timeout = Duration::from_secs(shared.config.connect_timeout_secs);
    let first = tokio::time::timeout(connect_timeout, async {
        loop {
            match mqtt_proto::decode(&mut buf, Protocol::V5, max_packet) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            buf.reserve(READ_BUF);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(n) => {
                    shared.metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
    })
    .await;
    let connect = match first {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Err(Some(DecodeError::UnsupportedProtocolVersion(level)))) => {
            tracing::debug!(%peer, level, "unsupported protocol version");
            let ack = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                properties: ConnAckProperties::default(),
            });
            let mut out = BytesMut::new();
            if mqtt_proto::encode(&ack, Protocol::V311, &mut out).is_ok() {
                let _ = wr.write_all(&out).await;
            }
            return;
        }
        Ok(Err(Some(e))) => {
            tracing::debug!(%peer, error = %e, "bad first packet");
            return;
        }
        Ok(Ok(other)) => {
            tracing::debug!(%peer, packet = other.name(), "first packet was not CONNECT");
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    let protocol = connect.protocol;
    let alias_max = connect
        .properties
        .topic_alias_maximum
        .unwrap_or(0)
        .min(shared.broker_config.outbound_topic_alias_maximum);

    let conn = shared.next_conn_id();
    let (tx, rx) = mpsc::channel(shared.config.outbound_queue + usize::from(shared.broker_config.max_inflight));
    let stop = CancellationToken::new();
    let force = CancellationToken::new();
    let span = tracing::debug_span!("conn", id = conn.0, %peer, client_id = %connect.client_id);
    let _enter = span.enter();
    {
        let mut core = shared.lock();
        core.conns.insert(
            conn,
            ConnHandle {
                tx,
                stop: stop.clone(),
                force: force.clone(),
            },
        );
        let now = shared.clock.now();
        let info = ConnectInfo { peer: peer.to_string() };
        core.broker.connect(conn, *connect, &info, now);
        core.dispatch(&shared.metrics, now);
    }
    drop(_enter);

    let writer_shared = shared.clone();
    let writer = tokio::spawn(write_loop(
        writer_shared,
        wr,
        rx,
        force.clone(),
        protocol,
        OutboundAliases::new(if protocol.is_v5() { alias_max } else { 0 }),
    ));

    // Reader.
    let reason = loop {
        // Decode every complete packet in the buffer, then handle the batch
        // under one lock.
        let mut batch = Vec::new();
        let mut error = None;
        loop {
            match mqtt_proto::decode(&mut buf, protocol, max_packet) {
                Ok(Some(p)) => batch.push(p),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() || error.is_some() {
            let mut core = shared.lock();
            let now = shared.clock.now();
            for p in batch {
                core.broker.handle(conn, p, now);
            }
            if let Some(e) = &error {
                core.broker
                    .protocol_violation(conn, e.reason_code(), &e.to_string(), now);
            }
            core.dispatch(&shared.metrics, now);
        }
        if error.is_some() {
            break "bad packet";
        }
        if buf.capacity() - buf.len() < READ_BUF / 2 {
            buf.reserve(READ_BUF);
        }
        tokio::select! {
            _ = stop.cancelled() => break "closed by broker",
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "closed by client",
                Ok(n) => { shared.metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed); }
                Err(_) => break "read error",
            }
        }
    };
    tracing::debug!(conn = conn.0, reason, "connection reader ended");
    {
        let mut core = shared.lock();
        let now = shared.clock.now();
        core.broker.connection_lost(conn, now);
        if let Some(h) = core.conns.remove(&conn) {
            let _ = h.tx.try_send(Outgoing::Close);
        }
        core.dispatch(&shared.metrics, now);
    }
    let _ = writer.await;
}

async fn write_loop<W>(
    shared: Arc<Shared>,
    mut wr: W,
    mut rx: mpsc::Receiver<Outgoing>,
    force: CancellationToken,
    protocol: Protocol,
    mut aliases: OutboundAliases,

) where
    W: AsyncWrite + Unpin,
{
    let mut durable = shared.durable.clone();
    let mut out = BytesMut::with_capacity(4096);
    let mut items = Vec::with_capacity(64);
    'outer: loop {
        items.clear();
        tokio::select! {
            _ = force.cancelled() => break,
            n = rx.recv_many(&mut items, 256) => if n == 0 { break },
        }
        let mut close = false;
        for item in items.drain(..) {
            match item {
                Outgoing::Close => {
                    close = true;
                    break;
                }
                Outgoing::Packet(mut packet, wait) => {
                    if wait > 0 && durable.borrow().seq < wait {
                        // Flush what we have, then wait for durability.
                        if !out.is_empty() {
                            if write(&shared, &mut wr, &mut out).await.is_err() {
                                break 'outer;
                            }
                        }
                        let ok = tokio::select! {
                            _ = force.cancelled() => break 'outer,
                            r = durable.wait_for(|d| d.seq >= wait) => r.is_ok(),
                        };
                        if !ok {
                            break 'outer;
                        }
                    }
                    if wait > 0 && durable.borrow().failed {
                        packet = failed_ack(packet, protocol);
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
        if !out.is_empty() && write(&shared, &mut wr, &mut out).await.is_err() {
            break;
        }
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn write<W: AsyncWrite + Unpin>(shared: &Shared, wr: &mut W, out: &mut BytesMut) -> std::io::Result<()> {
    let r = wr.write_all(out).await;
    shared.metrics.bytes_out.fetch_add(out.len() as u64, Ordering::Relaxed);
    out.clear();
    if out.capacity() > 1024 * 1024 {
        // Do not keep a huge buffer around for an idle connection.
        *out = BytesMut::with_capacity(4096);
    }
    r
}

/// When the store failed, an acknowledgement that depended on it becomes a
/// failure (v5) — the client must not believe it was kept.
fn failed_ack(packet: Packet, protocol: Protocol) -> Packet {
    if !protocol.is_v5() {
        return packet;
    }
    match packet {
        Packet::PubAck(mut a) => {
            a.reason_code = ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR;
            Packet::PubAck(a)
        }
        Packet::PubRec(mut a) => {
            a.reason_code = ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR;
            Packet::PubRec(a)
        }
        other => other,
    }
}
