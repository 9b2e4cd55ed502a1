//! Limits against hostile load: login back-off and its counters instead
//! of audit entries, bodies of unauthenticated routes checked before they
//! are read, live-stream caps, and the listener's header and idle
//! timeouts and connection cap (a slowloris of 5,000 half-open
//! connections must not stop devices or other clients).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use registry::Role;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

async fn login(srv: &Server, user: &str, password: &str) -> Resp {
    let body = json!({"username": user, "password": password}).to_string();
    srv.anon("POST", "/api/auth/login", &[], body.as_bytes())
        .await
}

async fn system(srv: &Server) -> serde_json::Value {
    let r = srv.get("/api/system").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["http"].clone()
}

/// Reads until the server closes the connection; panics if it has not
/// within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server did not close within {within:?}");
}

fn limits() -> api::Limits {
    api::Limits {
        login_backoff_after: 3,
        login_backoff_base: Duration::from_secs(2),
        login_backoff_max: Duration::from_secs(60),
        ..api::Limits::default()
    }
}

#[tokio::test]
async fn failed_logins_back_off_per_user_and_address_and_are_counted_not_audited() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            limits: limits(),
            ..Config::default()
        },
    )
    .await;
    for (user, password) in [("alice", "correct horse"), ("bob", "battery staple")] {
        let r = srv
            .json(
                "POST",
                "/api/users",
                &json!({"username": user, "password": password, "role": "viewer"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for _ in 0..3 {
        login(&srv, "alice", "wrong password")
            .await
            .problem(401, "unauthorized");
    }
    // Backing off: refused unchecked, even with the right password, and
    // for every user from this address.
    let r = login(&srv, "alice", "correct horse").await;
    r.problem(429, "too_many_requests");
    assert_eq!(r.header("retry-after"), Some("2"));
    login(&srv, "bob", "battery staple")
        .await
        .problem(429, "too_many_requests");
    // After the back-off, one more failure doubles it.
    srv.now.store(NOW + 2_000, Ordering::Relaxed);
    login(&srv, "alice", "wrong again")
        .await
        .problem(401, "unauthorized");
    let r = login(&srv, "alice", "correct horse").await;
    r.problem(429, "too_many_requests");
    assert_eq!(r.header("retry-after"), Some("4"));
    // A success clears it.
    srv.now.store(NOW + 6_000, Ordering::Relaxed);
    let r = login(&srv, "alice", "correct horse").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(login(&srv, "bob", "battery staple").await.status, 200);

    // 401s and 429s are counted, not written to the audit log.
    let http = system(&srv).await;
    assert_eq!(http["login"]["failures"], 4, "{http}");
    assert_eq!(http["login"]["throttled"], 3, "{http}");
    assert!(http["unauthorized"].as_u64().unwrap() >= 4, "{http}");
    let audit = srv.get("/api/audit?action=auth.").await.json();
    let statuses: Vec<i64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200], "{audit}");
    srv.stop().await;
}

#[tokio::test]
async fn the_provisioning_claim_is_checked_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    // A body announced but never sent: the answer must not wait for it.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"POST /api/provision HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer mwc_nope\r\n\
          Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n{\"device_id\"",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without an answer");
            raw.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("answered before the body arrived");
    assert!(
        raw.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // With a valid claim the body is small-capped (64 KiB), whatever
    // `max_body_bytes` allows.
    let r = srv
        .json(
            "POST",
            "/api/claims",
            &json!({"name": "line", "max_uses": 5}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let claim = r.json()["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {claim}");
    let big = json!({"device_id": "p1", "csr": "x".repeat(100_000)}).to_string();
    srv.anon(
        "POST",
        "/api/provision",
        &[("Authorization", &auth)],
        big.as_bytes(),
    )
    .await
    .problem(413, "body_too_large");
    srv.stop().await;
}

#[tokio::test]
async fn streams_are_capped_in_number_and_filters() {
    use api::{StreamGuard, StreamSink, StreamSource};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Source(Mutex<Vec<Vec<String>>>, Mutex<Vec<StreamSink>>);
    impl StreamSource for Source {
        fn subscribe(&self, filters: Vec<String>, sink: StreamSink) -> StreamGuard {
            self.0.lock().unwrap().push(filters);
            self.1.lock().unwrap().push(sink);
            Box::new(())
        }
    }
    let source = Arc::new(Source::default());
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            stream: Some(source.clone()),
            limits: api::Limits {
                max_streams: 2,
                max_stream_filters: 5,
                ..api::Limits::default()
            },
            ..Config::default()
        },
    )
    .await;
    let viewer = srv.token(Role::Viewer);
    let open = |query: &'static str| {
        let viewer = viewer.clone();
        let addr = srv.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET /api/stream{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {viewer}\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            tokio::time::timeout(Duration::from_secs(10), async {
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
            })
            .await
            .expect("a response head");
            (s, String::from_utf8_lossy(&got).into_owned())
        }
    };
    // Duplicates tap once: d1 four times with every event kind is 5
    // filters, within the cap.
    let (first, head) = open("?devices=d1,d1,%20d1,d1").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(source.0.lock().unwrap()[0].len(), 5);
    // Two devices with every kind: 10 filters, over the cap.
    let p = srv
        .get("/api/stream?devices=d1,d2")
        .await
        .problem(400, "bad_parameter");
    assert_eq!(p["field"], "devices");
    assert!(
        p["detail"].as_str().unwrap().contains("max_stream_filters"),
        "{p}"
    );
    let (_second, head) = open("?devices=d2&events=telemetry").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The third at once is refused.
    let r = srv.get("/api/stream?events=alarms").await;
    r.problem(429, "too_many_requests");
    assert!(r.header("retry-after").is_some());
    let http = system(&srv).await;
    assert_eq!(http["streams"]["open"], 2, "{http}");
    assert_eq!(http["streams"]["refused"], 1, "{http}");
    assert_eq!(http["streams"]["filters_refused"], 1, "{http}");
    // One leaves: there is room again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The place is given back once the server notices the client left
        // (its next write fails): offer it something to write.
        for sink in source.1.lock().unwrap().iter() {
            sink.offer(
                "devices/d1/telemetry",
                bytes::Bytes::from_static(b"{\"t\":1}"),
            );
        }
        if srv.guards.counters().streams_open.load(Ordering::Relaxed) < 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_third, head) = open("?events=alarms").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn slow_heads_and_stalled_bodies_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            limits: api::Limits {
                header_timeout: Duration::from_secs(1),
                // Longer than the header timeout, so that each closes what
                // it is for.
                idle_timeout: Duration::from_secs(3),
                ..api::Limits::default()
            },
            ..Config::default()
        },
    )
    .await;
    // Half a request head, then nothing.
    let mut slow_head = TcpStream::connect(srv.addr).await.unwrap();
    slow_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // A body that stops halfway.
    let mut stalled = TcpStream::connect(srv.addr).await.unwrap();
    let head = format!(
        "POST /api/telemetry/d1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"temp\"",
        srv.admin
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    closed_within(&mut slow_head, Duration::from_secs(10)).await;
    closed_within(&mut silent, Duration::from_secs(10)).await;
    closed_within(&mut stalled, Duration::from_secs(10)).await;
    let http = system(&srv).await;
    assert!(
        http["connections"]["header_timeouts"].as_u64().unwrap() >= 2,
        "{http}"
    );
    assert!(
        http["connections"]["idle_timeouts"].as_u64().unwrap() >= 1,
        "{http}"
    );
    srv.stop().await;
}

/// Raises the soft open-file limit toward `want` (up to the hard limit);
/// returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 0;
        }
        if l.rlim_cur < want {
            let new = libc::rlimit {
                rlim_cur: want.min(l.rlim_max),
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return new.rlim_cur;
            }
        }
        l.rlim_cur
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_of_5000_half_open_connections_stops_neither_devices_nor_clients() {
    const HALF_OPEN: usize = 5_000;
    const CAP: usize = 256;
    // The attacker's sockets, the server's (at most CAP + a few being
    // closed) and the broker's live in this one process.
    let nofile = raise_nofile(16_384);
    assert!(
        nofile >= (HALF_OPEN + CAP + 512) as u64,
        "this test needs `ulimit -n` of at least {}; it is {nofile}",
        HALF_OPEN + CAP + 512
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            fleet: true,
            limits: api::Limits {
                max_connections: CAP,
                // Long enough that no attacker connection times out during
                // the test: only the cap's eviction keeps the server free.
                header_timeout: Duration::from_secs(600),
                ..api::Limits::default()
            },
            ..Config::default()
        },
    )
    .await;
    let token = srv.device_with_token("press-1", "press").await;

    let started = Instant::now();
    let mut held = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        s.write_all(b"GET /api/devices HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        held.push(s);
    }
    let opened = started.elapsed();

    // Another HTTP client is served.
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), srv.get("/api/devices"))
        .await
        .expect("an HTTP client is served during the slowloris");
    assert_eq!(r.status, 200, "{}", r.text());
    let http_latency = t.elapsed();
    // A device connects over MQTT.
    let t = Instant::now();
    let device = tokio::time::timeout(
        Duration::from_secs(10),
        srv.mqtt_device("press-1", &token, true),
    )
    .await
    .expect("a device connects during the slowloris");
    let mqtt_latency = t.elapsed();
    drop(device);

    let http = system(&srv).await;
    let c = &http["connections"];
    assert!(c["open"].as_u64().unwrap() <= CAP as u64, "{http}");
    assert!(
        c["evicted"].as_u64().unwrap() >= (HALF_OPEN - CAP) as u64,
        "{http}"
    );
    assert_eq!(c["refused"], 0, "{http}");
    eprintln!(
        "slowloris: {HALF_OPEN} half-open connections opened in {opened:?}; \
         HTTP request served in {http_latency:?}, MQTT CONNECT in {mqtt_latency:?}; {c}"
    );
    drop(held);
    srv.stop().await;
}
