//! `GET /api/stream` over a fake broker: filtering, formatting, the
//! unsubscription on disconnect and the overflow of a slow client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::{StreamGuard, StreamSink, StreamSource};
use bytes::Bytes;
use registry::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

type Taps = Arc<Mutex<Vec<(u64, Vec<String>, StreamSink)>>>;

/// A broker stand-in: taps that the test feeds by hand.
#[derive(Default)]
struct FakeBroker {
    taps: Taps,
    next: Mutex<u64>,
}

struct Untap(Taps, u64);

impl Drop for Untap {
    fn drop(&mut self) {
        self.0.lock().unwrap().retain(|(id, _, _)| *id != self.1);
    }
}

impl FakeBroker {
    /// Offers a message to every matching tap; false if one refused it.
    fn publish(&self, topic: &str, payload: &str) -> bool {
        let mut ok = true;
        for (_, filters, sink) in self.taps.lock().unwrap().iter() {
            if filters.iter().any(|f| mqtt_proto::topic::matches(f, topic)) {
                ok &= sink.offer(topic, Bytes::from(payload.to_owned()));
            }
        }
        ok
    }

    fn filters(&self) -> Vec<Vec<String>> {
        self.taps
            .lock()
            .unwrap()
            .iter()
            .map(|(_, f, _)| f.clone())
            .collect()
    }
}

impl StreamSource for FakeBroker {
    fn subscribe(&self, filters: Vec<String>, sink: StreamSink) -> StreamGuard {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        self.taps.lock().unwrap().push((*n, filters, sink));
        Box::new(Untap(self.taps.clone(), *n))
    }
}

async fn start_streaming(dir: &std::path::Path, queue: usize) -> (Server, Arc<FakeBroker>) {
    let broker = Arc::new(FakeBroker::default());
    let srv = start_with(
        dir,
        Config {
            stream: Some(broker.clone()),
            stream_queue: queue,
            ..Config::default()
        },
    )
    .await;
    (srv, broker)
}

/// Opens a stream and returns the socket once the head arrived.
async fn open(srv: &Server, token: &str, query: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "GET /api/stream{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let text = read_until(&mut s, ": connected").await;
    (s, text)
}

async fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(&got)));
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn events_are_filtered_and_formatted() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, broker) = start_streaming(dir.path(), 64).await;
    let viewer = srv.token(Role::Viewer);
    let (mut s, head) = open(
        &srv,
        &viewer,
        "?devices=d1&metrics=temp&events=telemetry,alarms",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert_eq!(
        broker.filters(),
        vec![vec![
            "$events/alarms/d1/#".to_string(),
            "devices/d1/telemetry".into()
        ]]
    );
    broker.publish("devices/d2/telemetry", r#"{"temp": 1}"#);
    broker.publish(
        "devices/d1/telemetry",
        r#"{"ts": 1700000000000, "values": {"temp": 20.5, "rpm": 3}}"#,
    );
    broker.publish("$events/alarms/d1/overheat", r#"{"state":"active"}"#);
    let text = read_until(&mut s, "event: alarm").await;
    assert!(
        text.contains(
            "event: telemetry\ndata: {\"device\":\"d1\",\"metric\":\"temp\",\"ts\":1700000000000,\"value\":20.5}\n\n"
        ),
        "{text}"
    );
    assert!(!text.contains("rpm") && !text.contains("d2"), "{text}");
    assert!(
        text.contains(r#""topic":"$events/alarms/d1/overheat""#),
        "{text}"
    );
    // The client leaves: the tap goes with it.
    drop(s);
    eventually("the tap is removed", || async {
        broker.publish("devices/d1/telemetry", r#"{"temp": 1}"#);
        broker.filters().is_empty()
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_cut_off_with_an_overflow_event() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, broker) = start_streaming(dir.path(), 4).await;
    let viewer = srv.token(Role::Viewer);
    let (mut s, _) = open(&srv, &viewer, "").await;
    // Offer without yielding: the queue of 4 fills up.
    let mut offered = 0;
    while broker.publish("devices/d1/telemetry", r#"{"temp": 1}"#) {
        offered += 1;
        assert!(offered < 1_000_000, "the queue never filled");
    }
    // The queued events, the overflow event, then the end of the body
    // (chunked encoding's last chunk).
    let text = read_until(&mut s, "0\r\n\r\n").await;
    assert!(text.contains("event: overflow\n"), "{text}");
    assert!(text.matches("event: telemetry").count() <= 4, "{text}");
    assert!(api::stream_overflows() >= 1);
    srv.stop().await;
}

#[tokio::test]
async fn bad_selections_are_400_and_no_broker_is_503() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, _) = start_streaming(dir.path(), 4).await;
    let r = srv.get("/api/stream?events=weather").await;
    let p = r.problem(400, "bad_parameter");
    assert_eq!(p["field"], "events");
    srv.anon("GET", "/api/stream", &[], b"")
        .await
        .problem(401, "unauthorized");
    srv.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.get("/api/stream").await.problem(503, "unavailable");
    srv.stop().await;
}
