//! A real server on loopback and a tiny HTTP/1.1 client over `TcpStream`
//! (one request per connection), so the tests need no HTTP client crate.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use api::{ApiState, LiveSessions};
use registry::{Registry, RegistryConfig, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The server's fixed "now": 2023-11-14T22:13:20Z.
pub const NOW: i64 = 1_700_000_000_000;

/// A [`LiveSessions`] that records every disconnect and reports the
/// principals in `connected` as online.
#[derive(Default)]
pub struct Recorder {
    pub disconnects: Mutex<Vec<(String, u8)>>,
    pub connected: Mutex<HashSet<String>>,
}

impl Recorder {
    pub fn connect(&self, principal: &str) {
        self.connected.lock().unwrap().insert(principal.to_string());
    }

    /// The disconnects so far, emptied.
    pub fn take(&self) -> Vec<(String, u8)> {
        std::mem::take(&mut *self.disconnects.lock().unwrap())
    }
}

impl LiveSessions for Recorder {
    fn disconnect(&self, principal: &str, reason_code: u8) -> usize {
        self.disconnects
            .lock()
            .unwrap()
            .push((principal.to_string(), reason_code));
        usize::from(self.connected.lock().unwrap().remove(principal))
    }

    fn is_connected(&self, principal: &str) -> bool {
        self.connected.lock().unwrap().contains(principal)
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub tsdb: Arc<tsdb::Tsdb>,
    pub registry: Arc<Registry>,
    pub ca: Option<Arc<pki::CertificateAuthority>>,
    pub live: Arc<Recorder>,
    pub now: Arc<AtomicI64>,
    /// An admin API token, sent by every request that names no credential.
    pub admin: String,
    pub router: axum::Router,
    /// The fleet services over a real broker (with `Config::fleet`).
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// The broker's MQTT/TCP address (with `Config::fleet`).
    pub mqtt: Option<SocketAddr>,
    /// The limits in force and their counters.
    pub guards: Arc<api::Guards>,
    stop: Option<oneshot::Sender<()>>,
    broker_stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _registry_dir: tempfile::TempDir,
}

pub struct Config {
    pub max_body_bytes: usize,
    pub with_ca: bool,
    /// Run a real broker (devices authenticate with registry tokens) and
    /// the fleet services over it.
    pub fleet: bool,
    /// The live-stream source (`GET /api/stream`).
    pub stream: Option<Arc<dyn api::StreamSource>>,
    /// Messages queued per stream client.
    pub stream_queue: usize,
    /// Connection, login and stream limits.
    pub limits: api::Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body_bytes: 1 << 20,
            with_ca: true,
            fleet: false,
            stream: None,
            stream_queue: api::DEFAULT_STREAM_QUEUE,
            limits: api::Limits::default(),
        }
    }
}

/// A server with the fleet services over a real broker.
pub async fn start_fleet(dir: &Path) -> Server {
    start_with(
        dir,
        Config {
            fleet: true,
            ..Config::default()
        },
    )
    .await
}

/// A broker on loopback that authenticates devices against `registry`,
/// and the fleet over it, its event thread running. The fleet reads the
/// same clock as the API.
async fn start_broker(
    dir: &Path,
    registry: Arc<Registry>,
    now: Arc<AtomicI64>,
) -> (Arc<fleet::Fleet>, SocketAddr, oneshot::Sender<()>) {
    let clock: Arc<dyn Fn() -> u64 + Send + Sync> =
        Arc::new(move || u64::try_from(now.load(Ordering::Relaxed)).unwrap_or(0));
    let (event_tx, event_rx) = tokio::sync::mpsc::channel(4096);
    let (prov_tx, _prov_rx) = tokio::sync::mpsc::channel(16);
    let options = broker_net::ServerOptions {
        access: broker::AccessControl::new(true),
        authenticator: Some(Arc::new(identity::RegistryAuthenticator::new(
            registry.clone(),
            Arc::new(identity::Policy::default()),
            clock.clone(),
        ))),
        taps: fleet::TAPS.map(String::from).to_vec(),
        ack_taps: fleet::ACK_TAPS.map(String::from).to_vec(),
        events: Some(event_tx),
        ..Default::default()
    };
    let server = broker_net::Server::bind(
        broker_net::NetConfig {
            bind: "127.0.0.1".into(),
            port: 0,
            ws_port: None,
            sys_interval_secs: 0,
            ..Default::default()
        },
        broker::BrokerConfig::default(),
        Arc::new(kv::RedbSessionStore::open(&dir.join("b.redb")).expect("broker store")),
        options,
    )
    .await
    .expect("bind broker");
    let addr = server.local_addr().expect("broker addr");
    let store = Arc::new(twin::DeviceStateStore::open(&dir.join("devices.redb")).expect("store"));
    let fleet = fleet::Fleet::new(
        store,
        registry,
        server.handle(),
        fleet::FleetConfig {
            scan_interval_ms: 50,
            ..fleet::FleetConfig::default()
        },
        clock,
    );
    // The event thread ends when the broker (its event sender) is gone.
    fleet.spawn(event_rx, prov_tx).expect("fleet threads");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (fleet, addr, tx)
}

pub async fn start(dir: &Path) -> Server {
    start_with(dir, Config::default()).await
}

/// A registry with cheap argon2 parameters.
pub fn open_registry(dir: &Path) -> Registry {
    Registry::open(
        &dir.join("registry.redb"),
        RegistryConfig {
            argon2_memory_kib: 64,
            ..RegistryConfig::default()
        },
    )
    .expect("open registry")
}

pub async fn start_with(dir: &Path, cfg: Config) -> Server {
    let tsdb = Arc::new(tsdb::Tsdb::open(dir, tsdb::Options::default()).expect("open tsdb"));
    let registry_dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(open_registry(registry_dir.path()));
    let ca = cfg.with_ca.then(|| {
        Arc::new(
            pki::CertificateAuthority::load_or_create(&registry_dir.path().join("ca"), NOW as u64)
                .expect("CA"),
        )
    });
    let (_, admin) = registry
        .create_api_token("admin", None, Role::Admin, None, NOW as u64)
        .expect("admin token");
    let live = Arc::new(Recorder::default());
    let now = Arc::new(AtomicI64::new(NOW));
    let clock_now = now.clone();
    let (fleet, mqtt, broker_stop) = if cfg.fleet {
        let (f, a, s) = start_broker(registry_dir.path(), registry.clone(), now.clone()).await;
        (Some(f), Some(a), Some(s))
    } else {
        (None, None, None)
    };
    let guards = Arc::new(api::Guards::new(cfg.limits.clone()));
    let state = ApiState {
        tsdb: tsdb.clone(),
        devices: registry.clone(),
        operators: registry.clone(),
        audit: Arc::new(registry.audit().clone()),
        ca: ca.clone(),
        live: live.clone(),
        namespace: "default".into(),
        device_cert_days: 90,
        session_ttl_ms: 3_600_000,
        max_body_bytes: cfg.max_body_bytes,
        clock: Arc::new(move || u64::try_from(clock_now.load(Ordering::Relaxed)).unwrap_or(0)),
        fleet: fleet.clone(),
        automation: None,
        stream: cfg.stream.clone(),
        stream_queue: cfg.stream_queue,
        system: None,
        guards: guards.clone(),
        ingest_limits: Arc::new(tsdb::ParseLimits::at),
        device_tags: tsdb::LineProtocolOptions::default().device_tags,
        metrics: Vec::new(),
        ready: Vec::new(),
        http_metrics: Default::default(),
    };
    let router = api::router(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let http = api::HttpServer::new(guards.clone());
    let r = router.clone();
    let task = tokio::spawn(async move {
        http.serve(listener, r, async move {
            let _ = rx.await;
        })
        .await
    });
    Server {
        addr,
        tsdb,
        registry,
        ca,
        live,
        now,
        admin,
        router,
        fleet,
        mqtt,
        guards,
        stop: Some(tx),
        broker_stop,
        task,
        _registry_dir: registry_dir,
    }
}

impl Server {
    /// Graceful shutdown; returns the store handle (the last one once the
    /// router is gone).
    pub async fn stop(mut self) -> Arc<tsdb::Tsdb> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.broker_stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .expect("server task")
            .expect("serve result");
        drop(self.router);
        self.tsdb.clone()
    }

    /// A new API token with `role`.
    pub fn token(&self, role: Role) -> String {
        self.registry
            .create_api_token(role.as_str(), None, role, None, NOW as u64)
            .expect("token")
            .1
    }

    /// Creates a device (type `type_`) and returns a token for it.
    pub async fn device_with_token(&self, id: &str, type_: &str) -> String {
        let r = self
            .json(
                "POST",
                "/api/devices",
                &serde_json::json!({"id": id, "type": type_}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().expect("token").to_string()
    }

    /// An MQTT v5 client authenticated as device `id`.
    pub async fn mqtt_device(&self, id: &str, token: &str, clean: bool) -> mqtt_client::Client {
        let mut opts = mqtt_client::ConnectOptions::new(id)
            .protocol(mqtt_client::Protocol::V5)
            .clean_start(clean)
            .credentials(id, token.to_string().into_bytes());
        if !clean {
            opts = opts.session_expiry(3600);
        }
        mqtt_client::Client::connect(self.mqtt.expect("a fleet server"), opts)
            .await
            .expect("device connects")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"").await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.req("GET", path, headers, b"").await
    }

    pub async fn post(&self, path: &str, body: &[u8]) -> Resp {
        self.req("POST", path, &[], body).await
    }

    /// A JSON request as admin.
    pub async fn json(&self, method: &str, path: &str, body: &serde_json::Value) -> Resp {
        self.req(method, path, &[], body.to_string().as_bytes())
            .await
    }

    /// A request with `token` as bearer credential.
    pub async fn as_(&self, token: &str, method: &str, path: &str, body: &[u8]) -> Resp {
        let auth = format!("Bearer {token}");
        self.req(method, path, &[("Authorization", &auth)], body)
            .await
    }

    /// A request as admin unless `headers` carry an `Authorization`.
    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        let auth = format!("Bearer {}", self.admin);
        let mut h = headers.to_vec();
        if !h
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            h.push(("Authorization", &auth));
        }
        request(self.addr, method, path, &h, Body::Sized(body)).await
    }

    /// A request with no credential at all.
    pub async fn anon(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        request(self.addr, method, path, headers, Body::Sized(body)).await
    }

    /// Sends the body with `Transfer-Encoding: chunked` (no length up front).
    pub async fn post_chunked(&self, path: &str, body: &[u8]) -> Resp {
        let auth = format!("Bearer {}", self.admin);
        request(
            self.addr,
            "POST",
            path,
            &[("Authorization", &auth)],
            Body::Chunked(body),
        )
        .await
    }
}

pub enum Body<'a> {
    Sized(&'a [u8]),
    Chunked(&'a [u8]),
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts a problem document and returns it.
    pub fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["code"], code, "{p}");
        assert!(p["title"].is_string() && p["detail"].is_string() && p["type"].is_string());
        p
    }
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut out = Vec::new();
    match body {
        Body::Sized(b) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b);
        }
        Body::Chunked(b) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(head.as_bytes());
            for c in b.chunks(4096) {
                let _ = write!(out, "{:x}\r\n", c.len());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    // The server may answer (413, 401) and close before reading it all.
    let _ = s.write_all(&out).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The points of a raw query answer as `(device, metric, ts, value)`.
pub fn raw_points(v: &serde_json::Value) -> Vec<(String, String, i64, serde_json::Value)> {
    let mut out = Vec::new();
    for s in v["series"].as_array().expect("series") {
        for p in s["points"].as_array().expect("points") {
            out.push((
                s["device"].as_str().expect("device").to_string(),
                s["metric"].as_str().expect("metric").to_string(),
                p["ts"].as_i64().expect("ts"),
                p["value"].clone(),
            ));
        }
    }
    out
}

/// Polls `check` every 20 ms until it holds; panics after 5 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The next message `client` receives on `topic` (others are skipped), as
/// JSON; panics after 5 s.
pub async fn recv_on(client: &mut mqtt_client::Client, topic: &str) -> serde_json::Value {
    let wait = async {
        loop {
            let p = client.recv().await.expect("connection open");
            if &*p.topic == topic {
                return serde_json::from_slice(&p.payload).expect("JSON payload");
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("no message on {topic}"))
}
