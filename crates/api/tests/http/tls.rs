//! HTTPS: the router over TLS with a server certificate from the CA; a
//! client that never completes its handshake does not hold up others.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use crate::harness::{parse_response, start, Resp};

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn https_get(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
    path: &str,
    token: &str,
) -> Resp {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // A peer closing without close_notify is an error after the data.
    let _ = tls.read_to_end(&mut raw).await;
    parse_response(&raw)
}

#[tokio::test]
async fn serves_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let ca = srv.ca.clone().expect("CA");
    let issued = ca
        .issue_server_cert(
            &["localhost".to_string(), "127.0.0.1".to_string()],
            30,
            // The client checks validity against the real clock.
            wall_clock_ms(),
        )
        .expect("server cert");
    let config = pki::server_config(
        pki::load_cert_chain(&issued.cert_pem).expect("chain"),
        pki::load_private_key(issued.key_pem.as_deref().expect("key")).expect("key"),
        None,
        &[b"http/1.1"],
    )
    .expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve_tls(
        listener,
        config,
        srv.router.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.cert_der().to_vec(),
        ))
        .expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client));

    // A client that connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.expect("connect");

    let r = tokio::time::timeout(
        Duration::from_secs(5),
        https_get(addr, &connector, "/api/auth/me", &srv.admin),
    )
    .await
    .expect("not held up by the silent client");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "token:admin");
    let r = https_get(addr, &connector, "/api/auth/me", "wrong").await;
    assert_eq!(r.status, 401);

    // Still mid-handshake at shutdown: dropped, not waited for.
    let _ = silent.write_all(b"\x16").await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops")
        .expect("task")
        .expect("serve_tls result");
    // No longer accepting.
    let refused = match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(tcp) => connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .is_err(),
    };
    assert!(refused);
}
