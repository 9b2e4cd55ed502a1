//! An MQTT 5 QoS 1 publisher for the telemetry benchmark (std only): sends
//! the messages of a `data.mqtt` file (`device<TAB>values<TAB>json` lines,
//! written by the `tsbs_gen` example) to `devices/{device}/telemetry` over
//! C connections, each pipelining up to W unacknowledged PUBLISHes (W is
//! also bounded by the broker's Receive Maximum). A device's messages all go
//! through one connection, in file order. A message counts once its PUBACK
//! arrived with a success reason code; the rate is reported as JSON.
//!
//! `mqtt_load --addr 127.0.0.1:1883 --file data.mqtt [--connections 8]
//!  [--window 1000] [--deadline-secs 170] [--label NAME]`
//!
//! `mqtt_load --null-server 127.0.0.1:0` acknowledges everything without
//! looking (prints `listening <addr>`), to measure the publisher's ceiling.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    addr: String,
    file: String,
    connections: usize,
    window: usize,
    deadline: Duration,
    label: String,
    null_server: Option<String>,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        addr: String::new(),
        file: String::new(),
        connections: 8,
        window: 1000,
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
            "--addr" => a.addr = v.clone(),
            "--file" => a.file = v.clone(),
            "--connections" => a.connections = v.parse().map_err(bad)?,
            "--window" => a.window = v.parse().map_err(bad)?,
            "--deadline-secs" => a.deadline = Duration::from_secs(v.parse().map_err(bad)?),
            "--label" => a.label = v.clone(),
            "--null-server" => a.null_server = Some(v.clone()),
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    if a.null_server.is_none() && (a.addr.is_empty() || a.file.is_empty()) {
        return Err("--addr and --file are required".into());
    }
    a.window = a.window.clamp(1, 65_000);
    Ok(a)
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Reads one packet: (first byte, body).
fn read_packet(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    let first = b[0];
    let mut len = 0usize;
    let mut mult = 1usize;
    for _ in 0..4 {
        r.read_exact(&mut b)?;
        len += (b[0] & 0x7f) as usize * mult;
        mult *= 128;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((first, body))
}

fn varint_at(b: &[u8], i: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    let mut mult = 1usize;
    for _ in 0..4 {
        let x = *b.get(*i)?;
        *i += 1;
        n += (x & 0x7f) as usize * mult;
        mult *= 128;
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The Receive Maximum of a CONNACK body (65535 when absent).
fn receive_maximum(body: &[u8]) -> Option<u16> {
    let mut i = 2;
    let len = varint_at(body, &mut i)?;
    let end = i + len;
    while i < end {
        let id = *body.get(i)?;
        i += 1;
        let skip = match id {
            0x21 => return Some(u16::from_be_bytes([*body.get(i)?, *body.get(i + 1)?])),
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A | 0x01 | 0x17 | 0x19 => 1,
            0x13 | 0x22 | 0x23 => 2,
            0x11 | 0x27 | 0x02 | 0x18 => 4,
            0x12 | 0x1A | 0x1C | 0x15 | 0x16 | 0x1F | 0x03 | 0x08 | 0x09 => {
                2 + u16::from_be_bytes([*body.get(i)?, *body.get(i + 1)?]) as usize
            }
            0x26 => {
                let k = u16::from_be_bytes([*body.get(i)?, *body.get(i + 1)?]) as usize;
                let j = i + 2 + k;
                2 + k + 2 + u16::from_be_bytes([*body.get(j)?, *body.get(j + 1)?]) as usize
            }
            _ => return None,
        };
        i += skip;
    }
    Some(u16::MAX)
}

/// One connection's pre-encoded PUBLISH packets.
struct Plan {
    buf: Vec<u8>,
    /// Packet boundaries: packet k is buf[offs[k]..offs[k+1]].
    offs: Vec<usize>,
    values: Vec<u32>,
}

fn plan(file: &[u8], conns: usize) -> Result<Vec<Plan>, BoxError> {
    let mut plans: Vec<Plan> = (0..conns)
        .map(|_| Plan {
            buf: Vec::new(),
            offs: vec![0],
            values: Vec::new(),
        })
        .collect();
    let mut pid = vec![0u16; conns];
    let mut dev_conn: std::collections::HashMap<&[u8], usize> = Default::default();
    for line in file.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, |b| *b == b'\t');
        let (Some(dev), Some(n), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("bad line in the MQTT data file".into());
        };
        let n: u32 = std::str::from_utf8(n)?.parse()?;
        let next = dev_conn.len() % conns;
        let c = *dev_conn.entry(dev).or_insert(next);
        let p = &mut plans[c];
        pid[c] = if pid[c] == u16::MAX { 1 } else { pid[c] + 1 };
        let mut topic = Vec::with_capacity(dev.len() + 18);
        topic.extend_from_slice(b"devices/");
        topic.extend_from_slice(dev);
        topic.extend_from_slice(b"/telemetry");
        let rem = 2 + topic.len() + 2 + 1 + json.len();
        p.buf.push(0x32);
        put_varint(&mut p.buf, rem);
        put_str(&mut p.buf, &topic);
        p.buf.extend_from_slice(&pid[c].to_be_bytes());
        p.buf.push(0); // no properties
        p.buf.extend_from_slice(json);
        p.offs.push(p.buf.len());
        p.values.push(n);
    }
    Ok(plans)
}

#[derive(Default)]
struct Flight {
    inflight: usize,
    busy: Vec<bool>,
    /// Packet id -> index of the message in the plan.
    index: Vec<u32>,
    acked: usize,
    ok_msgs: usize,
    ok_values: u64,
    failed_msgs: usize,
    reasons: std::collections::BTreeMap<u8, usize>,
    error: Option<String>,
}

struct Report {
    ok_msgs: usize,
    ok_values: u64,
    failed_msgs: usize,
    sent: usize,
    reasons: std::collections::BTreeMap<u8, usize>,
    error: Option<String>,
    receive_maximum: u16,
}

fn connect(addr: &str, id: &str) -> Result<(TcpStream, u16), BoxError> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(5);
    body.push(0x02); // clean start
    body.extend_from_slice(&120u16.to_be_bytes());
    body.push(0); // no properties
    put_str(&mut body, id.as_bytes());
    let mut pkt = vec![0x10];
    put_varint(&mut pkt, body.len());
    pkt.extend_from_slice(&body);
    s.write_all(&pkt)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (first, body) = read_packet(&mut s)?;
    if first >> 4 != 2 || body.len() < 2 || body[1] >= 0x80 {
        return Err(format!("CONNACK refused: {first:#x} {body:?}").into());
    }
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok((s, receive_maximum(&body).unwrap_or(u16::MAX)))
}

fn run_conn(
    mut w: TcpStream,
    p: &Plan,
    window: usize,
    deadline: Instant,
    stop: &AtomicBool,
    recv_max: u16,
) -> Report {
    let window = window.min(recv_max as usize).max(1);
    let flight = Mutex::new(Flight {
        busy: vec![false; 65_536],
        index: vec![0; 65_536],
        ..Flight::default()
    });
    let cv = Condvar::new();
    let total = p.values.len();
    let mut sent = 0usize;
    let reader = match w.try_clone() {
        Ok(r) => r,
        Err(e) => {
            return Report {
                ok_msgs: 0,
                ok_values: 0,
                failed_msgs: 0,
                sent: 0,
                reasons: Default::default(),
                error: Some(e.to_string()),
                receive_maximum: recv_max,
            }
        }
    };
    let sent_final = std::sync::atomic::AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut r = BufReader::with_capacity(1 << 16, reader);
            loop {
                {
                    let g = flight.lock().unwrap_or_else(|e| e.into_inner());
                    if g.acked >= sent_final.load(Ordering::Acquire) || g.error.is_some() {
                        return;
                    }
                }
                let res = read_packet(&mut r);
                let mut g = flight.lock().unwrap_or_else(|e| e.into_inner());
                match res {
                    Ok((first, body)) if first >> 4 == 4 && body.len() >= 2 => {
                        let id = u16::from_be_bytes([body[0], body[1]]) as usize;
                        let reason = if body.len() >= 3 { body[2] } else { 0 };
                        if g.busy[id] {
                            g.busy[id] = false;
                            g.inflight -= 1;
                            g.acked += 1;
                            let k = g.index[id] as usize;
                            if reason < 0x80 {
                                g.ok_msgs += 1;
                                g.ok_values += u64::from(p.values[k]);
                            } else {
                                g.failed_msgs += 1;
                            }
                            *g.reasons.entry(reason).or_default() += 1;
                        }
                    }
                    Ok((first, body)) if first >> 4 == 14 => {
                        g.error = Some(format!("DISCONNECT from the broker: {body:?}"));
                    }
                    Ok(_) => {}
                    Err(_) if g.acked >= sent_final.load(Ordering::Acquire) => return,
                    Err(e) => g.error = Some(format!("read: {e}")),
                }
                drop(g);
                cv.notify_all();
            }
        });
        // Writer: take as many free slots as possible, write those packets
        // (contiguous in the plan) in one go.
        while sent < total {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut g = flight.lock().unwrap_or_else(|e| e.into_inner());
            while g.inflight >= window && g.error.is_none() {
                g = cv
                    .wait_timeout(g, Duration::from_millis(200))
                    .map(|x| x.0)
                    .unwrap_or_else(|e| e.into_inner().0);
                if Instant::now() > deadline {
                    break;
                }
            }
            if g.error.is_some() {
                break;
            }
            if g.inflight >= window {
                continue;
            }
            let mut n = 0;
            while sent + n < total && g.inflight < window {
                let k = sent + n;
                let off = p.offs[k];
                // The packet id follows the topic.
                let mut i = off + 1;
                let _ = varint_at(&p.buf, &mut i);
                let tlen = u16::from_be_bytes([p.buf[i], p.buf[i + 1]]) as usize;
                let at = i + 2 + tlen;
                let id = u16::from_be_bytes([p.buf[at], p.buf[at + 1]]) as usize;
                if g.busy[id] {
                    break;
                }
                g.busy[id] = true;
                g.index[id] = k as u32;
                g.inflight += 1;
                n += 1;
            }
            drop(g);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let bytes = &p.buf[p.offs[sent]..p.offs[sent + n]];
            if let Err(e) = w.write_all(bytes) {
                let mut g = flight.lock().unwrap_or_else(|e| e.into_inner());
                g.error = Some(format!("write: {e}"));
                break;
            }
            sent += n;
        }
        sent_final.store(sent, Ordering::Release);
        // Wait for the last acknowledgements (bounded).
        let until = Instant::now() + Duration::from_secs(60);
        let mut g = flight.lock().unwrap_or_else(|e| e.into_inner());
        while g.acked < sent && g.error.is_none() && Instant::now() < until {
            g = cv
                .wait_timeout(g, Duration::from_millis(200))
                .map(|x| x.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        if g.acked < sent && g.error.is_none() {
            g.error = Some(format!("{} PUBACKs missing", sent - g.acked));
        }
        drop(g);
        // Unblock the reader.
        let _ = w.write_all(&[0xE0, 0x00]);
        let _ = w.shutdown(std::net::Shutdown::Both);
    });
    let g = flight.into_inner().unwrap_or_else(|e| e.into_inner());
    Report {
        ok_msgs: g.ok_msgs,
        ok_values: g.ok_values,
        failed_msgs: g.failed_msgs,
        sent,
        reasons: g.reasons,
        error: g.error,
        receive_maximum: recv_max,
    }
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
            let mut r = BufReader::with_capacity(1 << 16, s);
            let mut out = Vec::new();
            loop {
                let (first, body) = read_packet(&mut r)?;
                match first >> 4 {
                    1 => out.extend_from_slice(&[0x20, 0x03, 0x00, 0x00, 0x00]),
                    3 => {
                        let qos = (first >> 1) & 3;
                        if qos > 0 && body.len() >= 2 {
                            let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
                            let id = &body[2 + tlen..4 + tlen];
                            out.extend_from_slice(&[0x40, 0x02, id[0], id[1]]);
                        }
                    }
                    14 => return Ok(()),
                    _ => {}
                }
                if r.buffer().is_empty() && !out.is_empty() {
                    w.write_all(&out)?;
                    out.clear();
                }
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
    let file = std::fs::read(&a.file)?;
    let plans = plan(&file, a.connections.max(1))?;
    drop(file);
    let file_msgs: usize = plans.iter().map(|p| p.values.len()).sum();
    let file_values: u64 = plans
        .iter()
        .flat_map(|p| &p.values)
        .map(|v| u64::from(*v))
        .sum();
    let mut conns = Vec::new();
    let pid = std::process::id();
    for i in 0..plans.len() {
        conns.push(connect(&a.addr, &format!("mwload-{pid}-{i}"))?);
    }
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let deadline = started + a.deadline;
    let reports: Vec<Report> = std::thread::scope(|s| {
        let hs: Vec<_> = conns
            .into_iter()
            .zip(&plans)
            .map(|((c, rm), p)| {
                let stop = &stop;
                let window = a.window;
                s.spawn(move || run_conn(c, p, window, deadline, stop, rm))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or(Report {
                    ok_msgs: 0,
                    ok_values: 0,
                    failed_msgs: 0,
                    sent: 0,
                    reasons: Default::default(),
                    error: Some("connection thread panicked".into()),
                    receive_maximum: 0,
                })
            })
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let ok_msgs: usize = reports.iter().map(|r| r.ok_msgs).sum();
    let ok_values: u64 = reports.iter().map(|r| r.ok_values).sum();
    let failed: usize = reports.iter().map(|r| r.failed_msgs).sum();
    let sent: usize = reports.iter().map(|r| r.sent).sum();
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for r in &reports {
        for (k, v) in &r.reasons {
            *reasons.entry(format!("{k:#04x}")).or_default() += v;
        }
    }
    let errors: Vec<String> = reports.iter().filter_map(|r| r.error.clone()).collect();
    let report = serde_json::json!({
        "label": a.label,
        "addr": a.addr,
        "file": a.file,
        "connections": plans.len(),
        "window": a.window,
        "receive_maximum": reports.iter().map(|r| r.receive_maximum).min(),
        "file_messages": file_msgs,
        "file_values": file_values,
        "sent_messages": sent,
        "ok_messages": ok_msgs,
        "ok_values": ok_values,
        "failed_messages": failed,
        "puback_reasons": reasons,
        "deadline_hit": stop.load(Ordering::Relaxed),
        "seconds": secs,
        "messages_per_s": ok_msgs as f64 / secs,
        "values_per_s": ok_values as f64 / secs,
        "errors": errors,
    });
    println!("{report}");
    Ok(())
}
