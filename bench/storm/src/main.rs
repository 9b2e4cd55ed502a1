//! A reconnect storm: every device of a credentials file (`id,token` lines)
//! connects to one MQTT broker at once (user name = client id = device id,
//! password = token), `--concurrency` handshakes in flight, through the
//! shared client state machine (`mqtt-client`). Once all are up (or
//! refused) they stay idle `--hold` seconds, then all send DISCONNECT and
//! close. Writes `--ready-file` when all are up and `--left-file` when all
//! have left, so that a script can read the broker's memory at those
//! moments. Prints one JSON line.
//!
//! ```text
//! reconnect-storm --addr 127.0.0.1:1883 --credentials creds.csv \
//!     [--concurrency 256] [--hold 5] [--protocol 5] \
//!     [--source-addrs 127.0.0.1,127.0.0.2] [--ready-file F] [--left-file F]
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_client::{ConnectOptions, Connection, Protocol, TcpTarget};
use tokio::sync::Semaphore;

struct Args {
    addr: SocketAddr,
    credentials: String,
    concurrency: usize,
    hold: Duration,
    protocol: Protocol,
    sources: Vec<IpAddr>,
    ready_file: Option<String>,
    left_file: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
        credentials: String::new(),
        concurrency: 256,
        hold: Duration::from_secs(5),
        protocol: Protocol::V5,
        sources: Vec::new(),
        ready_file: None,
        left_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--credentials" => a.credentials = value()?,
            "--concurrency" => {
                a.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?;
            }
            "--hold" => {
                let secs: u64 = value()?.parse().map_err(|e| format!("--hold: {e}"))?;
                a.hold = Duration::from_secs(secs);
            }
            "--protocol" => {
                a.protocol = match value()?.as_str() {
                    "3" => Protocol::V311,
                    "5" => Protocol::V5,
                    other => return Err(format!("--protocol: 3 or 5, not {other}")),
                }
            }
            "--source-addrs" => {
                for s in value()?.split(',') {
                    a.sources.push(s.parse().map_err(|e| format!("--source-addrs: {e}"))?);
                }
            }
            "--ready-file" => a.ready_file = Some(value()?),
            "--left-file" => a.left_file = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.credentials.is_empty() {
        return Err("--credentials FILE is required".into());
    }
    a.concurrency = a.concurrency.max(1);
    Ok(a)
}

fn read_credentials(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("id,") {
            continue;
        }
        let mut parts = line.split(',');
        match (parts.next(), parts.next()) {
            (Some(id), Some(token)) if !id.is_empty() && !token.is_empty() => {
                out.push((id.to_string(), token.to_string()));
            }
            _ => return Err(format!("{path}:{}: expected id,token", n + 1)),
        }
    }
    Ok(out)
}

fn touch(path: &Option<String>) {
    if let Some(p) = path {
        if let Err(e) = std::fs::write(p, b"") {
            eprintln!("reconnect-storm: {p}: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("reconnect-storm: {e}");
            return ExitCode::from(2);
        }
    };
    let creds = match read_credentials(&args.credentials) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reconnect-storm: {e}");
            return ExitCode::from(2);
        }
    };
    let devices = creds.len();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(devices);
    for (i, (id, token)) in creds.into_iter().enumerate() {
        let target = match args.sources.get(i % args.sources.len().max(1)) {
            Some(ip) => TcpTarget::from_local(args.addr, *ip),
            None => TcpTarget::from(args.addr),
        };
        let options = ConnectOptions::new(id.clone())
            .protocol(args.protocol)
            .keep_alive(0)
            .credentials(id, token.into_bytes());
        let options = ConnectOptions {
            connect_timeout: Duration::from_secs(60),
            ..options
        };
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = Connection::connect(target, options).await;
            (result, started.elapsed())
        }));
    }
    let mut conns = Vec::with_capacity(devices);
    let mut refused = 0usize;
    let mut first_error = None;
    let mut last_up = Duration::ZERO;
    for t in tasks {
        match t.await {
            Ok((Ok((conn, _connack)), at)) => {
                last_up = last_up.max(at);
                conns.push(conn);
            }
            Ok((Err(e), _)) => {
                refused += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                refused += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let connected = conns.len();
    let secs = last_up.as_secs_f64().max(1e-9);
    touch(&args.ready_file);
    tokio::time::sleep(args.hold).await;
    let leaving = Instant::now();
    let mut closes = Vec::with_capacity(connected);
    for conn in conns {
        let permits = permits.clone();
        closes.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            conn.disconnect().await.is_ok()
        }));
    }
    let mut close_failures = 0usize;
    for c in closes {
        if !matches!(c.await, Ok(true)) {
            close_failures += 1;
        }
    }
    let left_secs = leaving.elapsed().as_secs_f64();
    touch(&args.left_file);
    println!(
        "{{\"devices\":{devices},\"connected\":{connected},\"refused\":{refused},\
         \"connect_secs\":{secs:.3},\"connections_per_sec\":{:.0},\
         \"concurrency\":{},\"leave_secs\":{left_secs:.3},\"close_failures\":{close_failures},\
         \"first_error\":{}}}",
        connected as f64 / secs,
        args.concurrency,
        match first_error {
            Some(e) => format!("{e:?}"),
            None => "null".into(),
        }
    );
    if refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
