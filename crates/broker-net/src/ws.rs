//! MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`). The WebSocket is
//! bridged to an in-memory byte pipe so the same connection code serves it.
//!
//! Limits before anything reaches the MQTT code: the upgrade (the HTTP
//! request and the handshake) must complete within `connect_timeout_secs`
//! (the same budget a TCP client has for its CONNECT; the CONNECT then
//! gets its own), and a WebSocket message or frame may be at most the
//! MQTT maximum packet size (`max_packet_size`) plus the few bytes of a
//! frame header, so an unauthenticated client cannot make the server
//! buffer tungstenite's default 64 MiB message. Refusals are counted
//! ([`ws_refusals`]) and logged at debug level.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::Listener;
use crate::connection;
use crate::server::Shared;

const PIPE: usize = 64 * 1024;

/// Upgrades that did not complete in time, and connections closed for a
/// message or frame above the MQTT maximum packet size, since start.
static UPGRADE_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static OVERSIZED: AtomicU64 = AtomicU64::new(0);

/// (upgrades timed out, connections closed for an oversized message),
/// since the process started.
pub(crate) fn ws_refusals() -> (u64, u64) {
    (
        UPGRADE_TIMEOUTS.load(Ordering::Relaxed),
        OVERSIZED.load(Ordering::Relaxed),
    )
}

/// The WebSocket limits for an MQTT maximum packet size: one MQTT packet
/// per message as clients send them, plus slack for clients that put two
/// small packets in one message.
fn ws_config(max_packet_size: usize) -> WebSocketConfig {
    let max = max_packet_size.saturating_add(1024);
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

#[allow(clippy::result_large_err)]
fn check_request(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    if req.uri().path() != "/mqtt" {
        let mut r = ErrorResponse::new(Some("MQTT is served at /mqtt".into()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Err(r);
    }
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| *p == "mqtt" || *p == "mqttv3.1");
    if let Some(p) = offered {
        if let Ok(v) = HeaderValue::from_str(p) {
            resp.headers_mut().insert("sec-websocket-protocol", v);
        }
    }
    Ok(resp)
}

pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    listener: Listener,
    certificate: Option<pki::PeerCert>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade_timeout = Duration::from_secs(shared.config.connect_timeout_secs.max(1));
    let config = ws_config(shared.broker_config.max_packet_size as usize);
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_request, Some(config));
    let ws = match tokio::time::timeout(upgrade_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            UPGRADE_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "WebSocket upgrade not done within connect_timeout_secs; closed");
            return;
        }
    };
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (broker_side, bridge_side) = tokio::io::duplex(PIPE);
    // The broker side is served like a TCP stream.
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(bridge_side);

    // WebSocket -> pipe.
    let inbound = async move {
        while let Some(msg) = ws_rx.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    if pipe_wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Err(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
                    OVERSIZED.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "WebSocket message above max_packet_size; closed");
                    break;
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = pipe_wr.shutdown().await;
    };
    // Pipe -> WebSocket.
    let outbound = async move {
        let mut buf = vec![0u8; PIPE];
        loop {
            match pipe_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    let bridge = tokio::spawn(async move {
        tokio::join!(inbound, outbound);
    });
    connection::serve(
        shared,
        broker_side,
        peer,
        listener,
        certificate.map(Box::new),
    )
    .await;
    let _ = bridge.await;
}
