//! A line-protocol HTTP loader for the telemetry benchmark: sends a file in
//! batches of N lines as `POST` requests from K concurrent clients, each on
//! its own keep-alive HTTP/1.1 connection (std `TcpStream` only), and
//! reports the rate as JSON on stdout. The file is read into memory before
//! the clock starts; batches go out in file order (the next free client
//! takes the next batch). A request counts once its 2xx response arrived.
//!
//! `lp_load --url http://127.0.0.1:8086/write?db=bench&precision=ms
//!  --file data.lp [--batch-lines 5000] [--clients 8] [--header 'K: V']...
//!  [--deadline-secs 170] [--label NAME]`
//!
//! `lp_load --null-server 127.0.0.1:0` answers every request with 204
//! without looking at it (prints `listening <addr>` and serves until
//! killed), to measure the loader's own ceiling.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    url: String,
    file: String,
    batch_lines: usize,
    clients: usize,
    headers: Vec<String>,
    deadline: Duration,
    label: String,
    null_server: Option<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        url: String::new(),
        file: String::new(),
        batch_lines: 5000,
        clients: 8,
        headers: Vec::new(),
        deadline: Duration::from_secs(170),
        label: String::new(),
        null_server: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let v = argv
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?
            .clone();
        let bad = |_| format!("{flag}: bad number {v:?}");
        match flag {
            "--url" => a.url = v.clone(),
            "--file" => a.file = v.clone(),
            "--batch-lines" => a.batch_lines = v.parse().map_err(bad)?,
            "--clients" => a.clients = v.parse().map_err(bad)?,
            "--header" => a.headers.push(v.clone()),
            "--deadline-secs" => a.deadline = Duration::from_secs(v.parse().map_err(bad)?),
            "--label" => a.label = v.clone(),
            "--null-server" => a.null_server = Some(v.clone()),
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    if a.null_server.is_none() && (a.url.is_empty() || a.file.is_empty()) {
        return Err("--url and --file are required".into());
    }
    Ok(a)
}

/// `http://host:port/path?query` -> (host:port, /path?query).
fn split_url(url: &str) -> Result<(String, String), BoxError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

/// Values (fields) in a line-protocol line: the commas of the field set
/// plus one. Good for the generated data (no quoted strings, no escapes).
fn fields_in(line: &[u8]) -> usize {
    let mut spaces = line.iter().enumerate().filter(|(_, b)| **b == b' ');
    let (Some((a, _)), Some((b, _))) = (spaces.next(), spaces.next()) else {
        return 0;
    };
    1 + line[a + 1..b].iter().filter(|c| **c == b',').count()
}

struct Batch {
    start: usize,
    end: usize,
    values: usize,
}

fn batches(data: &[u8], per: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut n = 0;
    let mut values = 0;
    let mut line_start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            values += fields_in(&data[line_start..i]);
            line_start = i + 1;
            n += 1;
            if n == per {
                out.push(Batch {
                    start,
                    end: i + 1,
                    values,
                });
                start = i + 1;
                n = 0;
                values = 0;
            }
        }
    }
    if line_start < data.len() {
        values += fields_in(&data[line_start..]);
    }
    if start < data.len() {
        out.push(Batch {
            start,
            end: data.len(),
            values,
        });
    }
    out
}

/// Reads one HTTP/1.1 response; returns (status, body).
fn read_response(r: &mut BufReader<TcpStream>) -> Result<(u16, Vec<u8>), BoxError> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err("connection closed".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut len = 0usize;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err("connection closed in headers".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim();
            match k.as_str() {
                "content-length" => len = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if status != 204 && status != 304 && !(100..200).contains(&status) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    if close {
        return Err(format!("server closed the connection after status {status}").into());
    }
    Ok((status, body))
}

#[derive(Default)]
struct Totals {
    ok_requests: usize,
    ok_values: usize,
    ok_bytes: usize,
    failed_requests: usize,
    failed_values: usize,
    errors: Vec<String>,
    latencies_ms: Vec<f64>,
}

fn null_server(addr: &str) -> Result<(), BoxError> {
    let l = TcpListener::bind(addr)?;
    println!("listening {}", l.local_addr()?);
    std::io::stdout().flush()?;
    for s in l.incoming() {
        let s = s?;
        std::thread::spawn(move || -> Result<(), BoxError> {
            s.set_nodelay(true)?;
            let mut w = s.try_clone()?;
            let mut r = BufReader::with_capacity(1 << 20, s);
            let mut line = String::new();
            let mut sink = vec![0u8; 1 << 20];
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let mut len = 0usize;
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.trim().eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                while len > 0 {
                    let n = len.min(sink.len());
                    r.read_exact(&mut sink[..n])?;
                    len -= n;
                }
                w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
            }
        });
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    if let Some(addr) = &a.null_server {
        return null_server(addr);
    }
    let (host, path) = split_url(&a.url)?;
    let data = std::fs::read(&a.file)?;
    let all = batches(&data, a.batch_lines.max(1));
    let total_values: usize = all.iter().map(|b| b.values).sum();
    let mut extra = String::new();
    for h in &a.headers {
        extra.push_str(h);
        extra.push_str("\r\n");
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    let data = Arc::new(data);
    std::thread::scope(|s| {
        for _ in 0..a.clients.max(1) {
            s.spawn(|| {
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                let mut local = Totals::default();
                loop {
                    if started.elapsed() > a.deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(b) = all.get(i) else { break };
                    let body = &data[b.start..b.end];
                    let t0 = Instant::now();
                    let res = (|| -> Result<(u16, Vec<u8>), BoxError> {
                        if conn.is_none() {
                            let c = TcpStream::connect(&host)?;
                            c.set_nodelay(true)?;
                            c.set_read_timeout(Some(Duration::from_secs(120)))?;
                            let r = BufReader::new(c.try_clone()?);
                            conn = Some((c, r));
                        }
                        let Some((w, r)) = conn.as_mut() else {
                            return Err("no connection".into());
                        };
                        let head = format!(
                            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}\r\n",
                            body.len()
                        );
                        w.write_all(head.as_bytes())?;
                        w.write_all(body)?;
                        read_response(r)
                    })();
                    let t = t0.elapsed();
                    match res {
                        Ok((st, _)) if (200..300).contains(&st) => {
                            local.ok_requests += 1;
                            local.ok_values += b.values;
                            local.ok_bytes += body.len();
                        }
                        Ok((st, body)) => {
                            local.failed_requests += 1;
                            local.failed_values += b.values;
                            if local.errors.len() < 5 {
                                local.errors.push(format!(
                                    "HTTP {st}: {}",
                                    String::from_utf8_lossy(&body[..body.len().min(300)])
                                ));
                            }
                        }
                        Err(e) => {
                            conn = None;
                            local.failed_requests += 1;
                            local.failed_values += b.values;
                            if local.errors.len() < 5 {
                                local.errors.push(e.to_string());
                            }
                        }
                    }
                    local.latencies_ms.push(t.as_secs_f64() * 1000.0);
                }
                let mut g = totals.lock().unwrap_or_else(|e| e.into_inner());
                g.ok_requests += local.ok_requests;
                g.ok_values += local.ok_values;
                g.ok_bytes += local.ok_bytes;
                g.failed_requests += local.failed_requests;
                g.failed_values += local.failed_values;
                g.errors.extend(local.errors);
                g.latencies_ms.extend(local.latencies_ms);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let mut t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    t.latencies_ms.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if t.latencies_ms.is_empty() {
            return 0.0;
        }
        let i = ((t.latencies_ms.len() - 1) as f64 * q).round() as usize;
        t.latencies_ms[i]
    };
    let (p50, p99, max) = (pct(0.5), pct(0.99), pct(1.0));
    let report = serde_json::json!({
        "label": a.label,
        "url": a.url,
        "file": a.file,
        "clients": a.clients,
        "batch_lines": a.batch_lines,
        "batches": all.len(),
        "file_values": total_values,
        "ok_requests": t.ok_requests,
        "ok_values": t.ok_values,
        "ok_bytes": t.ok_bytes,
        "failed_requests": t.failed_requests,
        "failed_values": t.failed_values,
        "deadline_hit": stop.load(Ordering::Relaxed),
        "seconds": secs,
        "values_per_s": t.ok_values as f64 / secs,
        "mb_per_s": t.ok_bytes as f64 / secs / 1e6,
        "request_ms_p50": p50,
        "request_ms_p99": p99,
        "request_ms_max": max,
        "errors": t.errors,
    });
    println!("{report}");
    Ok(())
}
