//! The HTTP listeners: hyper's HTTP/1.1 connection driver under the limits
//! of [`Limits`], for plain TCP ([`HttpServer::serve`]) and TLS
//! ([`HttpServer::serve_tls`]).
//!
//! - **Header timeout**: hyper's own `header_read_timeout`. It runs from
//!   the start of the connection and again from the end of each response,
//!   so a client that sends its request head slowly (slowloris) or keeps
//!   an idle keep-alive connection is closed after
//!   [`Limits::header_timeout`].
//! - **Idle timeout**: a connection on which no byte has moved for
//!   [`Limits::idle_timeout`] while the server waits on the client (no
//!   handler running, or the handler waiting for request body bytes) is
//!   closed: a body trickled in, or a response the client does not read.
//!   A handler at work (a command waiting for its device) is not idle.
//! - **Connection cap**: at most [`Limits::max_connections`] connections
//!   (HTTP and HTTPS together). A new connection beyond it closes the
//!   oldest connection that has no request in progress (one waiting for a
//!   request head: where a slowloris client sits), so half-open
//!   connections can never lock out a client that sends its request; only
//!   when every connection has a request in progress is the new one
//!   closed at once. Counted in [`crate::HttpCounters`].
//!
//! Shutdown: stop accepting, ask every connection to finish (hyper's
//! graceful shutdown: idle ones close, requests in progress complete),
//! wait for all of them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::limits::{Guards, Limits};

/// Where connections come from: a TCP listener, or the TLS acceptor's
/// finished handshakes.
pub(crate) trait Accept: Send {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection; `None` when there will be no more.
    fn next(&mut self) -> impl Future<Output = Option<(Self::Io, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn next(&mut self) -> Option<(Self::Io, SocketAddr)> {
        loop {
            match self.accept().await {
                Ok((tcp, addr)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, addr));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Runs the API's listeners under one set of [`Limits`] (one connection
/// table for HTTP and HTTPS). Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpServer {
    guards: Arc<Guards>,
    table: Arc<Table>,
}

impl HttpServer {
    /// A server enforcing `guards`' limits and counting into them; give
    /// the router the same guards ([`crate::ApiState::guards`]) so that
    /// `GET /api/system` reports these counters.
    pub fn new(guards: Arc<Guards>) -> HttpServer {
        HttpServer {
            guards,
            table: Arc::new(Table::default()),
        }
    }

    /// Serves `router` on `listener` until `shutdown` completes, then
    /// stops accepting, lets requests in progress finish (a write in
    /// progress is still acknowledged) and returns. Handlers see the
    /// client address as `ConnectInfo<SocketAddr>`.
    pub async fn serve(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, max_connections = self.guards.limits().max_connections, "HTTP API listening");
        }
        self.run(listener, router, shutdown).await;
        Ok(())
    }

    /// Accepts from `incoming` until `shutdown`, then drains.
    pub(crate) async fn run<I: Accept>(
        &self,
        mut incoming: I,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let next = tokio::select! {
                () = &mut shutdown => break,
                c = incoming.next() => c,
            };
            let Some((io, addr)) = next else { break };
            self.connection(io, addr, router.clone(), stop_rx.clone());
        }
        drop(incoming);
        drop(stop_rx);
        let _ = stop_tx.send(true);
        // Every connection task holds a receiver; they are all gone once
        // the last connection finished.
        stop_tx.closed().await;
    }

    /// Admits a connection (making room if the table is full) and spawns
    /// its task.
    fn connection<Io>(&self, io: Io, addr: SocketAddr, router: Router, stop: watch::Receiver<bool>)
    where
        Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.guards.limits().clone();
        let counters = self.guards.counters();
        let Some(slot) = self.table.admit(limits.max_connections) else {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, "http.max_connections reached, every connection busy; connection closed");
            return;
        };
        counters
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        let guards = self.guards.clone();
        let table = self.table.clone();
        tokio::spawn(async move {
            let _open = OpenGuard {
                table,
                guards: guards.clone(),
                id: slot.id,
            };
            drive(io, addr, router, &limits, &guards, slot, stop).await;
        });
    }
}

/// Removes a connection from the table when its task ends.
struct OpenGuard {
    table: Arc<Table>,
    guards: Arc<Guards>,
    id: u64,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.table.remove(self.id);
        self.guards
            .counters()
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drives one connection until it ends, is evicted, times out or the
/// server shuts down.
async fn drive<Io>(
    io: Io,
    addr: SocketAddr,
    router: Router,
    limits: &Limits,
    guards: &Guards,
    slot: Arc<Slot>,
    mut stop: watch::Receiver<bool>,
) where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Tracked {
        inner: io,
        slot: slot.clone(),
    };
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut router = router.clone();
        let exchange = Exchange::start(svc_slot.clone());
        let slot = svc_slot.clone();
        async move {
            let mut req = req.map(|b| {
                Body::new(Watched {
                    inner: b,
                    watch: Waiting {
                        slot,
                        waiting: false,
                    },
                })
            });
            req.extensions_mut().insert(ConnectInfo(addr));
            let resp = match tower_service::Service::call(&mut router, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            exchange.handler_done();
            Ok::<_, Infallible>(resp.map(|b| {
                Body::new(Watched {
                    inner: b,
                    watch: exchange,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let idle = limits.idle_timeout;
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let quiet_since = slot.last_io();
        let deadline = tokio::time::Instant::from_std(quiet_since + idle);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        guards.counters().header_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%addr, "no request head within http.header_timeout_secs; closed");
                    } else {
                        tracing::debug!(%addr, error = %e, "HTTP connection ended with an error");
                    }
                }
                return;
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                // A closed sender also means stop.
                let _ = r;
                conn.as_mut().graceful_shutdown();
            }
            () = slot.evict.notified() => {
                if slot.exchanges.load(Ordering::Acquire) == 0 {
                    guards.counters().connections_evicted.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, "closed without a request in progress to make room (http.max_connections)");
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if slot.waits_on_client() && slot.last_io() + idle <= Instant::now() {
                    guards.counters().idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, "no byte moved within http.idle_timeout_secs; closed");
                    return;
                }
                if !slot.waits_on_client() {
                    // A handler at work: look again after another period.
                    slot.touch();
                }
            }
        }
    }
}

/// One open connection as the table sees it.
#[derive(Debug)]
struct Slot {
    id: u64,
    /// When the table started, for `last_io_ms`.
    epoch: Instant,
    /// Milliseconds after `epoch` when a byte last moved (or a handler
    /// finished).
    last_io_ms: AtomicU64,
    /// Requests whose handler runs (until the response head).
    handlers: AtomicU32,
    /// Requests in progress: from the request head until the response
    /// body is done.
    exchanges: AtomicU32,
    /// Handlers waiting for request body bytes.
    body_waits: AtomicU32,
    /// Asks the connection to close (if it still has no request).
    evict: Notify,
}

impl Slot {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    fn last_io(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }

    /// Whether the server waits on the client: no handler at work, or a
    /// handler waiting for the request body.
    fn waits_on_client(&self) -> bool {
        self.handlers.load(Ordering::Acquire) == 0 || self.body_waits.load(Ordering::Acquire) > 0
    }
}

/// The open connections, oldest first.
#[derive(Debug)]
struct Table {
    epoch: Instant,
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    next_id: u64,
    open: BTreeMap<u64, Arc<Slot>>,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            epoch: Instant::now(),
            inner: Mutex::new(TableInner::default()),
        }
    }
}

impl Table {
    // Held only for map updates, never across an `.await`.
    fn lock(&self) -> MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection; when `max` are open, the oldest one
    /// without a request in progress is asked to close and leaves the
    /// table at once. `None`: full and every connection busy.
    fn admit(&self, max: usize) -> Option<Arc<Slot>> {
        let mut t = self.lock();
        if t.open.len() >= max.max(1) {
            let victim = t
                .open
                .iter()
                .find(|(_, s)| s.exchanges.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(v) = t.open.remove(&victim) {
                v.evict.notify_one();
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let slot = Arc::new(Slot {
            id,
            epoch: self.epoch,
            last_io_ms: AtomicU64::new(0),
            handlers: AtomicU32::new(0),
            exchanges: AtomicU32::new(0),
            body_waits: AtomicU32::new(0),
            evict: Notify::new(),
        });
        slot.touch();
        t.open.insert(id, slot.clone());
        Some(slot)
    }

    fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }
}

/// The connection's I/O, noting when bytes move.
struct Tracked<Io> {
    inner: Io,
    slot: Arc<Slot>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Tracked<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.slot.touch();
        }
        r
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Tracked<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One request in progress: counted from its head until its response
/// body is done (or dropped).
struct Exchange {
    slot: Arc<Slot>,
    handler_running: std::sync::atomic::AtomicBool,
}

impl Exchange {
    fn start(slot: Arc<Slot>) -> Exchange {
        slot.exchanges.fetch_add(1, Ordering::AcqRel);
        slot.handlers.fetch_add(1, Ordering::AcqRel);
        Exchange {
            slot,
            handler_running: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn handler_done(&self) {
        if self.handler_running.swap(false, Ordering::AcqRel) {
            self.slot.handlers.fetch_sub(1, Ordering::AcqRel);
            // The idle clock starts when the server starts waiting again.
            self.slot.touch();
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.handler_done();
        self.slot.exchanges.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body that tells `watch` whether each poll found it waiting, and
/// drops `watch` with it.
struct Watched<B, W: Watch> {
    inner: B,
    watch: W,
}

/// What a [`Watched`] body reports to.
trait Watch: Unpin {
    /// After each poll: whether the body is waiting for data.
    fn polled(&mut self, _pending: bool) {}
}

/// A response body ends its [`Exchange`] when done or dropped.
impl Watch for Exchange {}

/// A request body marks its handler as waiting on the client while no
/// bytes are there to read.
struct Waiting {
    slot: Arc<Slot>,
    waiting: bool,
}

impl Watch for Waiting {
    fn polled(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.slot.body_waits.fetch_add(1, Ordering::AcqRel);
            } else {
                self.slot.body_waits.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.polled(false);
    }
}

impl<B, W> http_body::Body for Watched<B, W>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    W: Watch,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        self.watch.polled(r.is_pending());
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_table_makes_room_from_the_oldest_idle_connection() {
        let t = Table::default();
        let a = t.admit(2).expect("room");
        let b = t.admit(2).expect("room");
        // `a` has a request in progress: `b` is the one to go.
        let ex = Exchange::start(a.clone());
        let c = t.admit(2).expect("room made");
        assert_eq!(
            t.lock().open.keys().copied().collect::<Vec<_>>(),
            vec![a.id, c.id]
        );
        // The eviction is waiting for `b` (a stored permit).
        tokio::time::timeout(Duration::from_secs(5), b.evict.notified())
            .await
            .expect("b was asked to close");
        // Both busy: refused.
        let ex2 = Exchange::start(c.clone());
        assert!(t.admit(2).is_none());
        drop(ex);
        drop(ex2);
        assert!(t.admit(2).is_some());
    }
}
