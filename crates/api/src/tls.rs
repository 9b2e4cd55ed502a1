//! HTTPS: the same router over TLS.
//!
//! An acceptor task takes TCP connections and runs each TLS handshake in a
//! task of its own, bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent
//! client never holds up the next `accept`. Finished handshakes go through
//! a channel to the same connection driver as plain HTTP
//! ([`HttpServer`]): the same limits, `ConnectInfo` and graceful shutdown.
//! Handshakes in progress are bounded apart ([`MAX_HANDSHAKES`], each at
//! most [`HANDSHAKE_TIMEOUT`]); they count toward the file descriptors the
//! HTTP side may hold (see `docs/configuration.md`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::limits::{Guards, Limits};
use crate::server::{Accept, HttpServer};

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; beyond that, accepting waits.
pub const MAX_HANDSHAKES: usize = 1024;

/// Serves `router` over TLS on `listener` under the default [`Limits`]
/// (see [`HttpServer::serve_tls`]).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    HttpServer::new(Arc::new(Guards::new(Limits::default())))
        .serve_tls(listener, tls, router, shutdown)
        .await
}

impl HttpServer {
    /// Serves `router` over TLS on `listener` until `shutdown` completes,
    /// then stops accepting (handshakes in progress are dropped), lets
    /// requests in progress finish and returns. Handlers see the client
    /// address as `ConnectInfo<SocketAddr>`, as with [`HttpServer::serve`];
    /// the same limits apply once the handshake is done.
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let local = listener.local_addr()?;
        tracing::info!(addr = %local, "HTTPS API listening");
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), tx));
        self.run(Handshaken { rx }, router, shutdown).await;
        // The receiver is gone, which ends the acceptor; abort in case it
        // is still in a backoff sleep.
        acceptor.abort();
        let _ = acceptor.await;
        Ok(())
    }
}

/// Accepts TCP connections and hands each to a handshake task, until the
/// receiving side of `tx` is gone.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = tx.closed() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, addr) = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin.
                    tracing::warn!(error = %e, "HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        // Owned by the acceptor in effect: it ends within the timeout.
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

/// Hands out connections whose TLS handshake has completed.
struct Handshaken {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl Accept for Handshaken {
    type Io = TlsStream<TcpStream>;

    async fn next(&mut self) -> Option<(Self::Io, SocketAddr)> {
        self.rx.recv().await
    }
}
