//! The MQTT-over-WebSocket listener's limits before authentication: the
//! upgrade must complete within `connect_timeout_secs`, and a frame
//! larger than the MQTT maximum packet size is refused from its header,
//! without waiting for (or buffering) its payload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::{AccessControl, BrokerConfig};
use broker_net::{NetConfig, Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(
    dir: &std::path::Path,
    connect_timeout_secs: u64,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store = Arc::new(kv::RedbSessionStore::open(&dir.join("b.redb")).unwrap());
    let config = NetConfig {
        bind: "127.0.0.1".into(),
        port: 0,
        ws_port: Some(0),
        sys_interval_secs: 0,
        connect_timeout_secs,
        ..Default::default()
    };
    let broker = BrokerConfig {
        max_packet_size: 4096,
        ..BrokerConfig::default()
    };
    let options = ServerOptions {
        access: AccessControl::new(true),
        ..Default::default()
    };
    let server = Server::bind(config, broker, store, options).await.unwrap();
    let ws = server.ws_addr().expect("a WebSocket listener");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (ws, tx)
}

/// Reads until the server closes; panics if it has not within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "not closed within {within:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

const UPGRADE: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

#[tokio::test]
async fn an_upgrade_that_never_completes_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _stop) = server(dir.path(), 1).await;
    let mut silent = TcpStream::connect(ws).await.unwrap();
    let mut half = TcpStream::connect(ws).await.unwrap();
    half.write_all(&UPGRADE[..40]).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(10)).await;
    closed_within(&mut half, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_frame_above_the_packet_size_is_refused_before_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    // Long: the close must come from the frame check, not the CONNECT
    // timeout.
    let (ws, _stop) = server(dir.path(), 60).await;
    let mut s = TcpStream::connect(ws).await.unwrap();
    s.write_all(UPGRADE).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an upgrade answer")
            .unwrap();
        assert!(n > 0, "closed during the upgrade");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked binary frame announcing 1 MiB (the maximum packet size is
    // 4 KiB), and only its first bytes.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 100]);
    s.write_all(&frame).await.unwrap();
    // Closed at once (a close frame may come first), not after a megabyte.
    closed_within(&mut s, Duration::from_secs(5)).await;
}
