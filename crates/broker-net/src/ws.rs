//! MQTT over WebSocket (path `/mqtt`, subprotocol `mqtt`). The WebSocket is
//! bridged to an in-memory byte pipe so the same connection code serves it.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;

use crate::auth::Listener;
use crate::connection;
use crate::server::Shared;

const PIPE: usize = 64 * 1024;

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
    let ws = match tokio_tungstenite::accept_hdr_async(stream, check_request).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
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
    connection::serve(shared, broker_side, peer, listener, certificate).await;
    let _ = bridge.await;
}
