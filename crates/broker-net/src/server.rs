//! Listeners, the shared core, timers and shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use broker::{AccessControl, Broker, BrokerConfig, ConnId, StoredMessage};
use kv::SessionStore;
use mqtt_proto::ReasonCode;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Guard, GuardLimits, Listener};
use crate::dispatch::Core;
use crate::persist::{Durable, PersistQueue};
use crate::tls::{self, TlsListeners};
use crate::{connection, sys, ws, Clock};

/// Network-level settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Address to bind, e.g. `0.0.0.0` or `127.0.0.1`.
    pub bind: String,
    /// MQTT over TCP port (0 = any free port).
    pub port: u16,
    /// MQTT over WebSocket port (path `/mqtt`); `None` = no WebSocket.
    pub ws_port: Option<u16>,
    /// Most simultaneous connections; more are closed at once.
    pub max_connections: usize,
    /// Packets queued toward one connection before QoS 0 messages are
    /// dropped (and, for other packets, the client is disconnected).
    pub outbound_queue: usize,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds between `$SYS` updates (0 = none).
    pub sys_interval_secs: u64,
    /// New connections per second accepted from one source address (0 =
    /// no limit); more are closed at once.
    pub max_conn_rate_per_ip: u32,
    /// Consecutive authentication failures of one (address, username)
    /// before it backs off (0 = never).
    pub auth_failure_threshold: u32,
    /// First back-off after the threshold, doubled per further failure.
    pub auth_backoff_base_ms: u64,
    pub auth_backoff_max_ms: u64,
    /// Live connections of one authenticated identity (0 = no limit).
    pub max_connections_per_identity: usize,
    /// Authenticator calls with a password running on the blocking pool
    /// at once; further CONNECTs wait their turn, so a fleet reconnecting
    /// at once cannot start hundreds of blocking threads (0 = twice the
    /// number of CPUs).
    pub auth_concurrency: usize,
}

impl NetConfig {
    /// [`NetConfig::auth_concurrency`] with 0 resolved.
    pub fn auth_slots(&self) -> usize {
        match self.auth_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            n => n,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bind: "0.0.0.0".into(),
            port: 1883,
            ws_port: Some(8083),
            max_connections: 100_000,
            outbound_queue: 1024,
            connect_timeout_secs: 10,
            sys_interval_secs: 10,
            max_conn_rate_per_ip: 0,
            auth_failure_threshold: 5,
            auth_backoff_base_ms: 1000,
            auth_backoff_max_ms: 60_000,
            max_connections_per_identity: 10,
            auth_concurrency: 0,
        }
    }
}

/// What the platform plugs into the server besides its settings.
#[derive(Default)]
pub struct ServerOptions {
    /// The plain broker's password and ACL files (used for clients the
    /// authenticator leaves to the core).
    pub access: AccessControl,
    /// Stores devices' own `devices/{id}/telemetry` messages (decoded
    /// outside the lock, written before they are acknowledged).
    pub telemetry: Option<Arc<dyn crate::IngestStage>>,
    /// Authenticates every CONNECT before the core sees it.
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// TLS and secure WebSocket listeners.
    pub tls: Option<TlsListeners>,
    /// Topic filters whose messages go to `events` (platform services).
    pub taps: Vec<String>,
    /// Topic filters whose acknowledgements by clients go to `events`.
    pub ack_taps: Vec<String>,
    /// Tapped messages, acknowledgements and presence changes of
    /// authenticated clients. Bounded: when full, events are dropped and
    /// counted (`taps_dropped`); clients are unaffected.
    pub events: Option<tokio::sync::mpsc::Sender<PlatformEvent>>,
    /// Messages matching the dynamic taps (the rules engine's inputs),
    /// straight from the broker. The sink drops (counted in
    /// `rules_dropped`) only what it may sample, and otherwise makes
    /// publishers wait: see [`crate::RuleSink`].
    pub rule_events: Option<Arc<dyn crate::RuleSink>>,
}

pub use broker::bus::PlatformEvent;

/// A snapshot of the broker's figures.
#[derive(Debug, Clone)]
pub struct BrokerFigures {
    pub uptime_s: u64,
    pub connected: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub retained: u64,
    pub stats: broker::Stats,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_refused: u64,
    pub qos0_dropped: u64,
    pub slow_consumers_dropped: u64,
    pub auth_refused: u64,
    pub tls_handshake_failures: u64,
    pub platform_events_dropped: u64,
    pub rules_dropped: u64,
    pub streams_dropped: u64,
}

/// Server failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the broker store: {0}")]
    Store(#[from] kv::KvError),
    #[error("cannot start the persistence thread: {0}")]
    Thread(std::io::Error),
}

/// Counters kept by the network layer.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// The persistence thread's group commits.
    pub commits: crate::persist::CommitMetrics,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub qos0_dropped: AtomicU64,
    pub slow_consumers_dropped: AtomicU64,
    /// Connections closed for exceeding `max_conn_rate_per_ip`.
    pub conn_rate_limited: AtomicU64,
    /// CONNECTs refused by the authenticator.
    pub auth_refused: AtomicU64,
    /// CONNECTs refused unchecked while their (address, user) backs off.
    pub auth_backoff_refused: AtomicU64,
    /// CONNECTs refused for `max_connections_per_identity`.
    pub principal_limit_refused: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Tapped messages dropped because the platform service lagged.
    pub taps_dropped: AtomicU64,
    /// Messages the rules engine could not take (its queue was full).
    pub rules_dropped: AtomicU64,
    /// Live-stream subscribers dropped for not keeping up.
    pub streams_dropped: AtomicU64,
    /// v3.1.1 connections closed instead of acknowledging a message the
    /// store did not keep.
    pub unacked_closes: AtomicU64,
}

pub(crate) struct Shared {
    core: Mutex<Core>,
    pub config: NetConfig,
    pub broker_config: BrokerConfig,
    pub metrics: Arc<NetMetrics>,
    pub clock: Clock,
    pub durable: watch::Receiver<Durable>,
    next_conn: AtomicU64,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    pub permits: Arc<Semaphore>,
    /// Bounds authenticator calls on the blocking pool
    /// ([`NetConfig::auth_concurrency`]).
    pub auth_slots: Arc<Semaphore>,
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// The telemetry ingest stage, if telemetry is stored.
    pub telemetry: Option<Arc<dyn crate::IngestStage>>,
    pub guard: Guard,
    pub guard_limits: GuardLimits,
}

impl Shared {
    /// Locks the core. A poisoned lock means a bug panicked while holding
    /// it; the state is still the best we have, so keep serving.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }
}

/// A bound, not yet running, server.
pub struct Server {
    shared: Arc<Shared>,
    tcp: TcpListener,
    ws: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
    wss: Option<(TcpListener, TlsAcceptor)>,
}

/// What a listener speaks.
#[derive(Clone)]
enum Kind {
    Tcp,
    Ws,
    Tls(TlsAcceptor),
    Wss(TlsAcceptor),
}

/// Lets a caller read metrics while the server runs.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    pub fn metrics(&self) -> &NetMetrics {
        &self.shared.metrics
    }

    /// Connected clients now.
    pub fn connected(&self) -> usize {
        self.shared.lock().broker.connected_count()
    }

    /// Disconnects every live connection authenticated as `principal` (a
    /// device disabled, deleted or whose credential was revoked), at once.
    pub fn disconnect_principal(&self, principal: &str, code: ReasonCode) -> usize {
        let mut core = self.shared.lock();
        let now = self.shared.clock.now();
        let n = core.broker.disconnect_principal(principal, code, now);
        core.dispatch(&self.shared.metrics, now);
        if n > 0 {
            tracing::info!(principal, reason = ?code, connections = n, "disconnected");
        }
        n
    }

    /// Publishes a message from the platform itself (replies of platform
    /// services), routed like any other.
    pub fn publish(&self, message: StoredMessage) {
        let mut core = self.shared.lock();
        let now = self.shared.clock.now();
        core.broker.publish_internal(message, now);
        core.dispatch(&self.shared.metrics, now);
    }

    /// Whether some live connection is authenticated as `principal`.
    pub fn is_connected(&self, principal: &str) -> bool {
        self.shared.guard.connections_of(principal) > 0
    }

    /// Subscribes a live stream to `filters` (any publish, the platform's
    /// own included) with a queue of `capacity` messages; a subscriber that
    /// falls behind by more is dropped (its receiver then ends).
    pub fn subscribe_stream(
        &self,
        filters: Vec<String>,
        capacity: usize,
    ) -> crate::stream::StreamSubscription {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let id = {
            let mut core = self.shared.lock();
            let id = core.streams.add(filters, tx);
            let all = core.streams.filters();
            core.broker.set_stream_taps(all);
            id
        };
        crate::stream::StreamSubscription::new(rx, id, self.shared.clone())
    }

    /// Replaces the dynamic taps (see [`broker::Broker::set_dynamic_taps`]).
    pub fn set_dynamic_taps(&self, filters: Vec<String>) {
        self.shared.lock().broker.set_dynamic_taps(filters);
    }

    /// Every live connection authenticated by a grant: (principal, Unix ms
    /// of its last packet).
    pub fn activity(&self) -> Vec<(String, u64)> {
        self.shared
            .lock()
            .broker
            .activity()
            .into_iter()
            .map(|(p, t)| (p, t.0))
            .collect()
    }

    /// Whether the broker can take work: not shutting down, and its last
    /// group commit (broker state and telemetry, fsynced) succeeded. `Err`
    /// says why not (a full disk makes commits fail until it has room).
    pub fn readiness(&self) -> Result<(), String> {
        if self.shared.shutdown.is_cancelled() {
            return Err("shutting down".into());
        }
        let d = self.shared.durable.borrow();
        if d.seq > 0 && d.failed(d.seq) {
            return Err("the last persistence commit failed (see the log)".into());
        }
        Ok(())
    }

    /// Every figure the broker and its network layer count, read at one
    /// instant.
    pub fn snapshot(&self) -> crate::figures::Snapshot {
        let now = self.shared.clock.now();
        let core = self.shared.lock();
        crate::figures::Snapshot::read(&core.broker, &self.shared.metrics, now)
    }

    /// The broker's figures for dashboards (`$SYS` as JSON).
    pub fn figures(&self) -> BrokerFigures {
        let s = self.snapshot();
        BrokerFigures {
            uptime_s: s.uptime_s,
            connected: s.connected,
            sessions: s.sessions,
            subscriptions: s.subscriptions,
            retained: s.retained,
            bytes_in: s.net.bytes_in,
            bytes_out: s.net.bytes_out,
            connections_refused: s.net.connections_refused,
            qos0_dropped: s.net.qos0_dropped,
            slow_consumers_dropped: s.net.slow_consumers_dropped,
            auth_refused: s.net.auth_refused,
            tls_handshake_failures: s.net.tls_handshake_failures,
            platform_events_dropped: s.net.taps_dropped,
            rules_dropped: s.net.rules_dropped,
            streams_dropped: s.net.streams_dropped,
            stats: s.stats,
        }
    }

    /// The broker core's counters.
    pub fn stats(&self) -> broker::Stats {
        self.shared.lock().broker.stats().clone()
    }
}

async fn bind(addr: &str) -> Result<TcpListener, NetError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NetError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl Server {
    /// Restores the stored state and binds the listeners.
    pub async fn bind(
        config: NetConfig,
        broker_config: BrokerConfig,
        store: Arc<dyn SessionStore>,
        options: ServerOptions,
    ) -> Result<Server, NetError> {
        let ServerOptions {
            access,
            telemetry,
            authenticator,
            tls,
            taps,
            ack_taps,
            events,
            rule_events,
        } = options;
        let tcp = bind(&format!("{}:{}", config.bind, config.port)).await?;
        let ws = match config.ws_port {
            Some(p) => Some(bind(&format!("{}:{}", config.bind, p)).await?),
            None => None,
        };
        let (tls, wss) = match tls {
            Some(t) => {
                let acceptor = TlsAcceptor::from(t.config);
                let tls = match t.port {
                    Some(p) => Some((
                        bind(&format!("{}:{}", config.bind, p)).await?,
                        acceptor.clone(),
                    )),
                    None => None,
                };
                let wss = match t.wss_port {
                    Some(p) => Some((bind(&format!("{}:{}", config.bind, p)).await?, acceptor)),
                    None => None,
                };
                (tls, wss)
            }
            None => (None, None),
        };
        let clock = Clock::new();
        let now = clock.now();
        let restored = store.load()?;
        let sessions = restored.sessions.len();
        let retained = restored.retained.len();
        let queued: usize = restored.sessions.iter().map(|s| s.messages.len()).sum();
        let mut broker = Broker::new(broker_config.clone(), access, now);
        broker.restore(restored, now);
        tracing::info!(sessions, retained, queued, "restored broker state");
        let (durable_tx, durable_rx) = watch::channel(Durable::default());
        for t in &taps {
            broker.add_tap(t);
        }
        for t in &ack_taps {
            broker.add_ack_tap(t);
        }
        let commits = crate::persist::CommitMetrics::default();
        let persist = PersistQueue::start(store, telemetry.clone(), durable_tx, commits.clone())
            .map_err(NetError::Thread)?;
        let guard_limits = GuardLimits {
            conn_rate_per_ip: config.max_conn_rate_per_ip,
            failure_threshold: config.auth_failure_threshold,
            backoff_base_ms: config.auth_backoff_base_ms,
            backoff_max_ms: config.auth_backoff_max_ms,
            max_per_principal: config.max_connections_per_identity,
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                broker,
                conns: HashMap::default(),
                persist,
                events,
                rule_events,
                streams: Default::default(),
                verdicts: HashMap::new(),
                scratch: Vec::new(),
                taken: Vec::new(),
            }),
            telemetry,
            authenticator,
            guard: Guard::default(),
            guard_limits,
            permits: Arc::new(Semaphore::new(config.max_connections)),
            auth_slots: Arc::new(Semaphore::new(config.auth_slots())),
            config,
            broker_config,
            metrics: Arc::new(NetMetrics {
                commits,
                ..NetMetrics::default()
            }),
            clock,
            durable: durable_rx,
            next_conn: AtomicU64::new(1),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        Ok(Server {
            shared,
            tcp,
            ws,
            tls,
            wss,
        })
    }

    /// The MQTT/TCP address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The MQTT/WebSocket address actually bound.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The MQTT/TLS address actually bound.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The MQTT/secure WebSocket address actually bound.
    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` completes, then stops gracefully: stop
    /// accepting, send every v5 client DISCONNECT 0x8B, flush, make every
    /// pending state change durable.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let shared = self.shared.clone();
        let mut accept_tasks = vec![tokio::spawn(accept_loop(
            shared.clone(),
            self.tcp,
            Kind::Tcp,
        ))];
        if let Some(l) = self.ws {
            accept_tasks.push(tokio::spawn(accept_loop(shared.clone(), l, Kind::Ws)));
        }
        if let Some((l, a)) = self.tls {
            accept_tasks.push(tokio::spawn(accept_loop(shared.clone(), l, Kind::Tls(a))));
        }
        if let Some((l, a)) = self.wss {
            accept_tasks.push(tokio::spawn(accept_loop(shared.clone(), l, Kind::Wss(a))));
        }
        let timer_task = tokio::spawn(timers(shared.clone()));

        shutdown.await;
        tracing::info!("shutting down");
        shared.shutdown.cancel();
        for t in accept_tasks {
            t.abort();
        }
        timer_task.abort();
        {
            let mut core = shared.lock();
            let now = shared.clock.now();
            core.broker.shutdown(ReasonCode::SERVER_SHUTTING_DOWN, now);
            core.dispatch(&shared.metrics, now);
        }
        shared.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        let thread = {
            let mut core = shared.lock();
            // Closes the platform event channel: services end their loops.
            core.events = None;
            core.rule_events = None;
            // Ends every live stream.
            core.streams = Default::default();
            core.persist.close()
        };
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        tracing::info!("broker stopped; state saved");
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, kind: Kind) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !shared
            .guard
            .admit(peer.ip(), &shared.guard_limits, shared.clock.now().0)
        {
            shared
                .metrics
                .conn_rate_limited
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "connection rate per address exceeded; closed");
            drop(stream);
            continue;
        }
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "max_connections reached; connection refused");
            drop(stream);
            continue;
        };
        shared
            .metrics
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let s = shared.clone();
        let kind = kind.clone();
        shared.tracker.spawn(async move {
            // Boxed: handshakes and the WebSocket bridge are large, and a
            // task is as large as its largest branch.
            match kind {
                Kind::Tcp => connection::serve(s, stream, peer, Listener::Tcp, None).await,
                Kind::Ws => Box::pin(ws::serve(s, stream, peer, Listener::WebSocket, None)).await,
                Kind::Tls(acceptor) => {
                    Box::pin(async move {
                        if let Some((tls, cert)) = tls::accept(&s, &acceptor, stream, peer).await {
                            connection::serve(s, tls, peer, Listener::Tls, cert.map(Box::new))
                                .await;
                        }
                    })
                    .await
                }
                Kind::Wss(acceptor) => {
                    Box::pin(async move {
                        if let Some((tls, cert)) = tls::accept(&s, &acceptor, stream, peer).await {
                            ws::serve(s, tls, peer, Listener::SecureWebSocket, cert).await;
                        }
                    })
                    .await
                }
            }
            drop(permit);
        });
    }
}

async fn timers(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sys_every = shared.config.sys_interval_secs * 1000;
    let mut next_sys = 0u64;
    loop {
        tick.tick().await;
        let now = shared.clock.now();
        let mut core = shared.lock();
        if core.broker.poll_timeout().is_some_and(|t| t <= now) {
            core.broker.tick(now);
        }
        if sys_every > 0 && now.0 >= next_sys {
            next_sys = now.0 + sys_every;
            sys::publish(&mut core.broker, &shared.metrics, now);
        }
        core.dispatch(&shared.metrics, now);
    }
}

/// The broker's figures and the persistence histograms, for `/metrics`.
impl metrics::Source for ServerHandle {
    fn collect(&self, out: &mut metrics::Exposition) {
        crate::figures::collect(&self.snapshot(), &self.shared.metrics.commits, out);
    }
}
