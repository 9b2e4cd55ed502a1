//! TLS connection rate: opens `--connections` MQTT-over-TLS connections,
//! `--concurrency` at a time, each a full TLS handshake (with a client
//! certificate when given) + CONNECT + CONNACK + DISCONNECT, and prints the
//! rate as JSON. Used by bench/tls/run.sh against Millwright and Mosquitto.
//!
//! cargo run --release -p bench --example tls_connect -- \
//!   --port 8883 --ca ca.pem --cert dev.pem --key dev.key --connections 5000

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use mqtt_proto::{Connect, ConnectProperties, Packet, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

#[derive(clap::Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    /// Server name checked against the server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[arg(long)]
    ca: std::path::PathBuf,
    #[arg(long)]
    cert: Option<std::path::PathBuf>,
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long, default_value_t = 5000)]
    connections: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: u64,
}

fn pem_certs(path: &std::path::Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn one(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
    args: &Args,
    id: u64,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let connect = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: 30,
        client_id: format!("tls-bench-{id}").into(),
        will: None,
        username: args.username.clone().map(Into::into),
        password: args.password.clone().map(|p| p.into_bytes().into()),
        properties: ConnectProperties::default(),
    }));
    let mut out = BytesMut::new();
    mqtt_proto::encode(&connect, Protocol::V311, &mut out).map_err(|e| e.to_string())?;
    tls.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf)
        .await
        .map_err(|e| format!("connack: {e}"))?;
    if buf[0] != 0x20 || buf[3] != 0 {
        return Err(format!("refused: {buf:?}"));
    }
    tls.write_all(&[0xE0, 0]).await.map_err(|e| e.to_string())?;
    let _ = tls.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Args = clap::Parser::parse();
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&args.ca) {
        roots.add(c).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let key_data = std::fs::read(k).expect("key file");
            let key = rustls_pemfile::private_key(&mut &key_data[..])
                .expect("key")
                .expect("a private key");
            builder
                .with_client_auth_cert(pem_certs(c), key)
                .expect("client certificate")
        }
        _ => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name =
        rustls::pki_types::ServerName::try_from(args.server_name.clone()).expect("server name");
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .expect("address");
    let args = Arc::new(args);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (args, next, failed, connector, name) = (
            args.clone(),
            next.clone(),
            failed.clone(),
            connector.clone(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.connections {
                    break;
                }
                if let Err(e) = one(addr, &connector, name.clone(), &args, i).await {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("connection {i}: {e}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    let ok = args.connections - failed;
    println!(
        "{{\"connections\": {ok}, \"failed\": {failed}, \"seconds\": {secs:.3}, \"per_second\": {:.0}}}",
        ok as f64 / secs
    );
}
