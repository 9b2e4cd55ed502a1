//! MQTT over TLS (8883) and over secure WebSocket: the TLS handshake with
//! rustls, the verified client certificate, and the transport the
//! connection code reads from.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::connection::{adapt, Transport};
use crate::server::Shared;

impl Transport for TlsStream<TcpStream> {
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
        let n = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(self), cx, buf))?;
        *size = adapt(*size, n, room);
        Poll::Ready(Ok(n))
    }
}

/// Runs the TLS handshake (bounded by the connect timeout). Failures are
/// logged with the peer and rustls' reason (expired, unknown issuer,
/// revoked, ...) and counted.
pub(crate) async fn accept(
    shared: &Shared,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, Option<pki::PeerCert>)> {
    let timeout = Duration::from_secs(shared.config.connect_timeout_secs);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            shared
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            if e.kind() == io::ErrorKind::UnexpectedEof {
                // A port probe or a client that gave up: nothing to report.
                tracing::debug!(%peer, error = %e, "TLS handshake abandoned");
            } else {
                tracing::warn!(%peer, error = %e, "TLS handshake failed");
            }
            return None;
        }
        Err(_) => {
            shared
                .metrics
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| match pki::peer_cert(der) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "client certificate unreadable; ignored");
                None
            }
        });
    Some((tls, cert))
}

/// The rustls configuration of the TLS listeners.
#[derive(Clone)]
pub struct TlsListeners {
    pub config: Arc<rustls::ServerConfig>,
    /// MQTT over TLS port (0 = any free port); `None` = no such listener.
    pub port: Option<u16>,
    /// MQTT over secure WebSocket port; `None` = none.
    pub wss_port: Option<u16>,
}
