//! The webhook client against real sockets on loopback: HTTPS with a
//! private CA (`rules.webhook_ca_file`), redirects not followed, and the
//! egress guard refusing loopback destinations, by address and by name,
//! unless allowed. Servers are tiny threads on ports chosen by the OS; no
//! test sleeps: each waits on a channel the server writes to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use automation::{Cidr, EgressPolicy, WebhookClient, WebhookError};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// One request as the test server saw it.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (headers, then a Content-Length body).
fn read_request(stream: &mut impl Read) -> std::io::Result<Seen> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Seen {
        path,
        headers,
        body,
    })
}

/// A plain HTTP server answering every request with `response`; each
/// request it reads is sent on the returned channel.
fn http_server(listener: TcpListener, response: String) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let Ok(seen) = read_request(&mut stream) else {
                continue;
            };
            if tx.send(seen).is_err() {
                return;
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    rx
}

fn loopback() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

fn client(policy: EgressPolicy, ca: Option<&std::path::Path>) -> WebhookClient {
    WebhookClient::new(Duration::from_secs(5), policy, ca).expect("client")
}

fn allow_all() -> EgressPolicy {
    EgressPolicy {
        allow_private: true,
        allowed: Vec::new(),
    }
}

/// Sends a request of our own, so the server's channel shows whether the
/// refused call ever reached it (it would be first).
fn probe(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("probe connect");
    s.write_all(b"POST /probe HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .expect("probe write");
}

#[test]
fn loopback_is_refused_by_address_and_by_name_unless_allowed() {
    let (l, port) = loopback();
    let seen = http_server(l, OK.into());
    let strict = client(EgressPolicy::default(), None);
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://0.0.0.0:{port}/hook"),
    ] {
        match strict.post(&url, &[], b"{}") {
            Err(WebhookError::Refused { addrs, .. }) => {
                assert!(!addrs.is_empty(), "{url}");
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    let msg = strict
        .post(&format!("http://localhost:{port}/hook"), &[], b"{}")
        .expect_err("refused")
        .to_string();
    assert!(
        msg.contains("webhook_allow_private") && msg.contains("localhost"),
        "{msg}"
    );
    // Nothing reached the server: the first request it sees is the probe.
    probe(port);
    let first = seen.recv().expect("the probe");
    assert_eq!(first.path, "/probe");

    // Allowed by a range, by name too (localhost may also resolve to ::1,
    // which stays refused: only 127.0.0.1 is tried).
    let ranged = client(
        EgressPolicy {
            allow_private: false,
            allowed: vec!["127.0.0.0/8".parse::<Cidr>().expect("cidr")],
        },
        None,
    );
    ranged
        .post(
            &format!("http://localhost:{port}/by-range"),
            &[("X-Key".into(), "k1".into())],
            b"{\"n\":1}",
        )
        .expect("allowed by rules.webhook_allowed_cidrs");
    let got = seen.recv().expect("the allowed call");
    assert_eq!(got.path, "/by-range");
    assert_eq!(got.body, b"{\"n\":1}");
    assert!(got.headers.contains(&("x-key".into(), "k1".into())));

    client(allow_all(), None)
        .post(&format!("http://127.0.0.1:{port}/open"), &[], b"{}")
        .expect("allowed by rules.webhook_allow_private");
    assert_eq!(seen.recv().expect("the open call").path, "/open");
}

#[test]
fn redirects_are_not_followed() {
    let (target, target_port) = loopback();
    let target_seen = http_server(target, OK.into());
    let (l, port) = loopback();
    let seen = http_server(
        l,
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target_port}/internal\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        ),
    );
    let c = client(allow_all(), None);
    match c.post(&format!("http://127.0.0.1:{port}/hook"), &[], b"{}") {
        Err(WebhookError::Redirect { status, location }) => {
            assert_eq!(status, 302);
            assert_eq!(location, format!("http://127.0.0.1:{target_port}/internal"));
        }
        other => panic!("expected a redirect failure, got {other:?}"),
    }
    let e = c
        .post(&format!("http://127.0.0.1:{port}/hook"), &[], b"{}")
        .expect_err("redirect")
        .to_string();
    assert!(e.contains("redirects are not followed"), "{e}");
    assert_eq!(seen.recv().expect("first call").path, "/hook");
    assert_eq!(seen.recv().expect("second call").path, "/hook");
    // The redirect target was never called: its first request is the probe.
    probe(target_port);
    assert_eq!(target_seen.recv().expect("probe").path, "/probe");
}

/// A private CA and a server certificate for `localhost` / 127.0.0.1.
fn private_pki() -> (String, rustls::pki_types::CertificateDer<'static>, KeyPair) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "webhook test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.der().clone(), key)
}

#[test]
fn https_webhook_reaches_a_server_behind_a_private_ca() {
    let (ca_pem, cert, key) = private_pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca file");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let server_config = Arc::new(server_config);
    let (l, port) = loopback();
    let (tx, seen) = mpsc::channel::<Result<Seen, String>>();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(stream) = stream else { return };
            let conn = match rustls::ServerConnection::new(server_config.clone()) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    continue;
                }
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let outcome = read_request(&mut tls).map_err(|e| e.to_string());
            let ok = outcome.is_ok();
            if tx.send(outcome).is_err() {
                return;
            }
            if ok {
                let _ = tls.write_all(OK.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });

    // Without the CA file the server's certificate is not trusted.
    let untrusting = client(allow_all(), None);
    match untrusting.post(&format!("https://localhost:{port}/hook"), &[], b"{}") {
        Err(WebhookError::Transport(msg)) => {
            assert!(msg.to_lowercase().contains("certificate"), "{msg}")
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(seen
        .recv()
        .expect("server side of the failed handshake")
        .is_err());

    // With it, the call arrives, by name and by address.
    let trusting = client(allow_all(), Some(&ca_file));
    for host in ["localhost", "127.0.0.1"] {
        trusting
            .post(
                &format!("https://{host}:{port}/secure"),
                &[("Authorization".into(), "Bearer t".into())],
                b"{\"tls\":true}",
            )
            .unwrap_or_else(|e| panic!("https to {host}: {e}"));
        let got = seen.recv().expect("the https call").expect("a request");
        assert_eq!(got.path, "/secure");
        assert_eq!(got.body, b"{\"tls\":true}");
        assert!(got
            .headers
            .contains(&("authorization".into(), "Bearer t".into())));
    }

    // The egress guard applies to HTTPS too.
    match client(EgressPolicy::default(), Some(&ca_file)).post(
        &format!("https://localhost:{port}/secure"),
        &[],
        b"{}",
    ) {
        Err(WebhookError::Refused { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_bad_ca_file_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let e = WebhookClient::new(Duration::from_secs(1), allow_all(), Some(&missing))
        .expect_err("missing file");
    assert!(matches!(e, WebhookError::CaFile { .. }), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not pem").expect("write");
    let e = WebhookClient::new(Duration::from_secs(1), allow_all(), Some(&empty))
        .expect_err("no certificate");
    assert!(e.to_string().contains("rules.webhook_ca_file"), "{e}");
}
