//! End-to-end tests against a real Mosquitto on loopback. Each test starts
//! its own broker on a free port and skips (with a message) when the
//! `mosquitto` binary is not installed.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use mqtt_client::{Client, ClientError, ConnectOptions, Connection, Event, Protocol, QoS};
use mqtt_proto::{Publish, ReasonCode};

const STEP: Duration = Duration::from_secs(5);

/// A Mosquitto process; killed when dropped.
struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
}

/// Starts Mosquitto on a free port, or returns `None` (after saying so)
/// when it is not installed.
fn start_mosquitto(test: &str) -> Option<Mosquitto> {
    let Some(binary) = mosquitto_binary() else {
        eprintln!("skipping {test}: the mosquitto binary is not installed");
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // Bind to port 0 to learn a free port, then hand it to Mosquitto.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"),
    )
    .expect("write config");
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mosquitto");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let broker = Mosquitto {
        child,
        addr,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some(broker);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not start listening on {addr}");
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn options(id: &str, protocol: Protocol) -> ConnectOptions {
    ConnectOptions::new(id).protocol(protocol)
}

#[tokio::test]
async fn connect_v311_and_v5() {
    let Some(broker) = start_mosquitto("connect_v311_and_v5") else {
        return;
    };
    for protocol in [Protocol::V311, Protocol::V5] {
        let client = within(
            "connect",
            Client::connect(broker.addr, options("c1", protocol)),
        )
        .await
        .unwrap();
        assert_eq!(client.connack().reason_code, ReasonCode::SUCCESS);
        assert!(!client.connack().session_present);
        within("disconnect", client.disconnect()).await.unwrap();
    }
}

#[tokio::test]
async fn v5_empty_client_id_is_assigned() {
    let Some(broker) = start_mosquitto("v5_empty_client_id_is_assigned") else {
        return;
    };
    let (conn, connack) = within(
        "connect",
        Connection::connect(broker.addr, options("", Protocol::V5)),
    )
    .await
    .unwrap();
    assert!(connack.properties.assigned_client_identifier.is_some());
    assert!(conn.state().assigned_client_id().is_some());
    within("disconnect", conn.disconnect()).await.unwrap();
}

#[tokio::test]
async fn qos_round_trips() {
    let Some(broker) = start_mosquitto("qos_round_trips") else {
        return;
    };
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut sub = within(
            "connect",
            Client::connect(broker.addr, options("sub", protocol)),
        )
        .await
        .unwrap();
        let publisher = within(
            "connect",
            Client::connect(broker.addr, options("pub", protocol)),
        )
        .await
        .unwrap();
        let suback = within("subscribe", sub.subscribe([("rt/#", QoS::ExactlyOnce)]))
            .await
            .unwrap();
        assert_eq!(suback.reason_codes, vec![ReasonCode::GRANTED_QOS_2]);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let topic = format!("rt/{qos:?}");
            let payload = Bytes::from(format!("{protocol:?} {qos:?}"));
            let reason = within(
                "publish",
                publisher.publish(topic.clone(), payload.clone(), qos, false),
            )
            .await
            .unwrap();
            assert!(!reason.is_error());
            let got = within("recv", sub.recv()).await.expect("a message");
            assert_eq!(&*got.topic, topic);
            assert_eq!(got.payload, payload);
            assert_eq!(got.qos, qos);
        }
        let unsuback = within("unsubscribe", sub.unsubscribe(["rt/#"]))
            .await
            .unwrap();
        assert_eq!(unsuback.packet_id, suback.packet_id + 1);
        within("disconnect", publisher.disconnect()).await.unwrap();
        within("disconnect", sub.disconnect()).await.unwrap();
    }
}

#[tokio::test]
async fn pipelined_publishes_are_all_acknowledged() {
    let Some(broker) = start_mosquitto("pipelined_publishes_are_all_acknowledged") else {
        return;
    };
    let opts = options("pipe", Protocol::V5).max_inflight(100);
    let (mut conn, _) = within("connect", Connection::connect(broker.addr, opts))
        .await
        .unwrap();
    let total = 2_000;
    for i in 0..total {
        conn.publish(Publish {
            qos: if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            },
            topic: "pipe/x".into(),
            payload: Bytes::from_static(b"0123456789"),
            ..Publish::default()
        })
        .unwrap();
    }
    let mut acked = 0;
    within("acks", async {
        while acked < total {
            match conn.next_event().await.unwrap() {
                Event::PubAck { reason_code, .. } | Event::PubComp { reason_code, .. } => {
                    assert!(!reason_code.is_error());
                    acked += 1;
                }
                Event::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(conn.state().inflight(), 0);
    within("disconnect", conn.disconnect()).await.unwrap();
}

#[tokio::test]
async fn server_keeps_a_persistent_session() {
    let Some(broker) = start_mosquitto("server_keeps_a_persistent_session") else {
        return;
    };
    for protocol in [Protocol::V311, Protocol::V5] {
        let id = format!("persist-{protocol:?}");
        let opts = options(&id, protocol)
            .clean_start(false)
            .session_expiry(300);
        let sub = within("connect", Client::connect(broker.addr, opts.clone()))
            .await
            .unwrap();
        within("subscribe", sub.subscribe([("ps/t", QoS::AtLeastOnce)]))
            .await
            .unwrap();
        within("disconnect", sub.disconnect()).await.unwrap();

        let publisher = within(
            "connect",
            Client::connect(broker.addr, options("p", protocol)),
        )
        .await
        .unwrap();
        for i in 0..3u8 {
            within(
                "publish",
                publisher.publish("ps/t", vec![i], QoS::AtLeastOnce, false),
            )
            .await
            .unwrap();
        }
        within("disconnect", publisher.disconnect()).await.unwrap();

        let mut sub = within("reconnect", Client::connect(broker.addr, opts))
            .await
            .unwrap();
        assert!(sub.connack().session_present);
        for i in 0..3u8 {
            let got = within("queued message", sub.recv()).await.expect("message");
            assert_eq!(got.payload.as_ref(), &[i]);
        }
        within("disconnect", sub.disconnect()).await.unwrap();
    }
}

#[tokio::test]
async fn client_resends_unacknowledged_after_reconnect() {
    let Some(broker) = start_mosquitto("client_resends_unacknowledged_after_reconnect") else {
        return;
    };
    let mut sub = within(
        "connect",
        Client::connect(broker.addr, options("watch", Protocol::V5)),
    )
    .await
    .unwrap();
    within("subscribe", sub.subscribe([("resend/#", QoS::ExactlyOnce)]))
        .await
        .unwrap();

    let opts = options("resender", Protocol::V5)
        .clean_start(false)
        .session_expiry(300);
    let (mut conn, _) = within("connect", Connection::connect(broker.addr, opts))
        .await
        .unwrap();
    let q1 = conn
        .publish(Publish {
            qos: QoS::AtLeastOnce,
            topic: "resend/q1".into(),
            payload: Bytes::from_static(b"one"),
            ..Publish::default()
        })
        .unwrap();
    let q2 = conn
        .publish(Publish {
            qos: QoS::ExactlyOnce,
            topic: "resend/q2".into(),
            payload: Bytes::from_static(b"two"),
            ..Publish::default()
        })
        .unwrap();
    within("flush", conn.flush()).await.unwrap();
    // Drop the connection without waiting for acknowledgements (flushing
    // may have read some; the rest are resent).
    let state = conn.abort();

    let (mut conn, connack) = within("resume", Connection::resume(broker.addr, state))
        .await
        .unwrap();
    assert!(connack.session_present);
    let mut done = Vec::new();
    within("acks after resume", async {
        while done.len() < 2 {
            match conn.next_event().await.unwrap() {
                Event::PubAck { packet_id, .. } | Event::PubComp { packet_id, .. } => {
                    done.push(packet_id)
                }
                // Left in the queue from the aborted connection and the new one.
                Event::Disconnected { .. } | Event::Connected { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    done.sort_unstable();
    assert_eq!(done, vec![q1, q2]);

    // QoS 1 may arrive twice; QoS 2 exactly once.
    let mut q1_seen = 0;
    let mut q2_seen = 0;
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
        match &*got.topic {
            "resend/q1" => q1_seen += 1,
            "resend/q2" => q2_seen += 1,
            other => panic!("unexpected topic {other}"),
        }
    }
    assert!(q1_seen >= 1);
    assert_eq!(q2_seen, 1);
    within("disconnect", conn.disconnect()).await.unwrap();
}

#[tokio::test]
async fn keep_alive_pings_keep_the_connection_open() {
    let Some(broker) = start_mosquitto("keep_alive_pings_keep_the_connection_open") else {
        return;
    };
    let opts = options("pinger", Protocol::V311).keep_alive(1);
    let (mut conn, _) = within("connect", Connection::connect(broker.addr, opts))
        .await
        .unwrap();
    // Mosquitto drops a client silent for 1.5 keep-alive intervals; drive
    // for 3 s with no traffic but pings.
    let run = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Err(e) = conn.drive().await {
                return e;
            }
        }
    })
    .await;
    assert!(run.is_err(), "connection ended early: {:?}", run.ok());
    within("disconnect", conn.disconnect()).await.unwrap();
}

#[tokio::test]
async fn refused_connect_is_an_error() {
    let Some(broker) = start_mosquitto("refused_connect_is_an_error") else {
        return;
    };
    // v3.1.1 requires clean session for an empty client id.
    let opts = options("", Protocol::V311).clean_start(false);
    let err = within("connect", Connection::connect(broker.addr, opts))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::ConnectionRefused(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID)
        ),
        "{err:?}"
    );
}
