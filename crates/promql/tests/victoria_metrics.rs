//! Differential test against VictoriaMetrics: the same points go into a
//! `Tsdb` and into a `victoria-metrics` process (line protocol, which it
//! names `measurement_field` as this crate does), and a fixed list of
//! queries must give equal answers (within float rounding) from both.
//!
//! Ignored by default, it needs the binary (Debian: `apt-get install
//! victoria-metrics`). Run it with
//! `cargo test -p promql --test victoria_metrics -- --ignored`.
//!
//! What is compared is where VictoriaMetrics and Prometheus agree: the data
//! are regular (every 10 s) and the query times lie inside them, so the
//! lookback heuristics of VictoriaMetrics pick the same point as
//! Prometheus' 5 minutes; the counter has no reset and a constant slope, where
//! Prometheus' extrapolated `rate`/`increase` equal VictoriaMetrics'
//! unextrapolated ones (resets and extrapolation are checked by hand in
//! `eval.rs`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promql::{instant_query, range_query, EvalOptions, TsdbStorage};
use serde_json::Value as Json;
use tsdb::{LineProtocolOptions, Options, Tsdb};

/// 2023-11-14T22:13:20Z, in milliseconds.
const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

struct Vm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("victoria-metrics"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One HTTP/1.0 exchange (no chunked encoding to undo): status and body.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn start_vm() -> Vm {
    let Some(bin) = binary() else {
        panic!(
            "victoria-metrics is not on PATH: this differential test needs it \
             (Debian/Ubuntu: `apt-get install victoria-metrics`)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-retentionPeriod=100y")
        .arg("-search.disableCache")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start victoria-metrics");
    let mut vm = Vm {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http(port, "GET", "/health", "") {
            return vm;
        }
        // Exited: most likely the port was taken between probe and bind.
        if let Ok(Some(status)) = vm.child.try_wait() {
            panic!("victoria-metrics exited at start ({status}); port {port} taken?");
        }
        assert!(Instant::now() < deadline, "victoria-metrics did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An hour of points every 10 s: `readings.velocity` (a wave) and
/// `readings.count` (a counter, slope per device) on m1, m2 (line a) and
/// m3 (line b), and `env.temp` on s1 and s2 (site labels).
fn line_protocol() -> String {
    let mut out = String::new();
    for k in 0..360i64 {
        let ns = (T0 + k * 10_000) * 1_000_000;
        for (i, (dev, line)) in [("m1", "a"), ("m2", "a"), ("m3", "b")].iter().enumerate() {
            let i = i as i64;
            let velocity = ((k * 7 + i * 3) % 13) as f64 * 0.5 + i as f64;
            let count = k * (i + 1) * 4;
            out.push_str(&format!(
                "readings,device={dev},line={line} velocity={velocity},count={count}i {ns}\n"
            ));
        }
        for (i, site) in ["north", "south"].iter().enumerate() {
            let temp = 20.0 + ((k + i as i64 * 5) % 17) as f64 * 0.25;
            out.push_str(&format!(
                "env,device=s{},site={site} temp={temp} {ns}\n",
                i + 1
            ));
        }
    }
    out
}

/// Answers as series (labels as JSON text) to (ms, value) lists; a scalar
/// is a series without labels. With `drop_name`, `__name__` is left out.
fn normalise(data: &Json, drop_name: bool) -> BTreeMap<String, Vec<(i64, f64)>> {
    let pair = |p: &Json| -> (i64, f64) {
        let ts = (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
        let v = p[1].as_str().unwrap_or("").parse().unwrap_or(f64::NAN);
        (ts, v)
    };
    let mut out = BTreeMap::new();
    match data["resultType"].as_str() {
        Some("scalar") => {
            out.insert("{}".to_string(), vec![pair(&data["result"])]);
        }
        Some("vector") | Some("matrix") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let points = match s.get("value") {
                    Some(v) => vec![pair(v)],
                    None => s["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(pair)
                        .collect(),
                };
                let mut metric = s["metric"].clone();
                if let (true, Some(m)) = (drop_name, metric.as_object_mut()) {
                    m.remove("__name__");
                }
                out.insert(metric.to_string(), points);
            }
        }
        _ => {
            out.insert(format!("unexpected answer {data}"), Vec::new());
        }
    }
    out
}

fn same(a: &BTreeMap<String, Vec<(i64, f64)>>, b: &BTreeMap<String, Vec<(i64, f64)>>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && va.len() == vb.len()
                && va.iter().zip(vb).all(|(x, y)| {
                    x.0 == y.0
                        && ((x.1.is_nan() && y.1.is_nan())
                            || x.1 == y.1
                            || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs()))
                })
        })
}

const QUERIES: &[&str] = &[
    "readings_velocity",
    "readings_velocity{device=\"m1\"}",
    "readings_velocity{device=~\"m[12]\"}",
    "readings_velocity{device!=\"m1\", line=\"a\"}",
    "readings_velocity{line!~\"a\"}",
    "{__name__=~\"readings_.*\", device=\"m3\"}",
    "env_temp offset 5m",
    "avg_over_time(readings_velocity[5m])",
    "min_over_time(readings_velocity[5m])",
    "max_over_time(env_temp[10m])",
    "sum_over_time(readings_velocity[2m] offset 1m)",
    "count_over_time(env_temp[1m])",
    "last_over_time(readings_velocity[1m])",
    "rate(readings_count[5m])",
    "increase(readings_count[1m])",
    "sum(readings_velocity)",
    "avg(readings_velocity)",
    "min(env_temp)",
    "max(env_temp)",
    "count(readings_velocity)",
    "sum by (line) (readings_velocity)",
    "avg(readings_velocity) without (device)",
    "max without (device, line) (readings_velocity)",
    "count by (__name__) ({__name__=~\"readings_.*\"})",
    "sum(rate(readings_count[5m])) by (line)",
    "readings_velocity * 2 + 1",
    "100 - env_temp",
    "readings_velocity / 4",
    "-readings_velocity",
    "max_over_time(env_temp[10m]) / 2",
    "1 + 2 * 3",
    "readings_count",
    "count_over_time(readings_count[90s] offset 30s)",
    "sum without (line) (increase(readings_count[2m]))",
    "avg by (site) (env_temp) * 10",
    "min(readings_velocity) by (line) - 1",
    "sum(readings_velocity offset 10m) / 3",
    "env_temp[1m]",
];

type Normal = BTreeMap<String, Vec<(i64, f64)>>;

/// Both answers normalised; an error is a lone entry `error`, so that two
/// errors (a range query of a range vector) agree.
fn compare(ours: Result<Json, promql::Error>, theirs: &Json, q: &str) -> (Normal, Normal) {
    let drop_name = ["avg_over_time", "min_over_time", "max_over_time"]
        .iter()
        .any(|f| q.starts_with(f));
    let error = || BTreeMap::from([("error".to_string(), vec![(0, 0.0)])]);
    let theirs = if theirs["status"] == "error" {
        error()
    } else {
        normalise(&theirs["data"], drop_name)
    };
    match ours {
        Ok(ours) => (normalise(&ours, drop_name), theirs),
        Err(_) => (error(), theirs),
    }
}

#[test]
#[ignore = "needs victoria-metrics on PATH; run with --ignored"]
fn answers_equal_victoria_metrics() {
    let vm = start_vm();
    let lp = line_protocol();
    let (status, body) = http(vm.port, "POST", "/write", &lp).unwrap();
    assert!(status == 204 || status == 200, "write: {status} {body}");
    http(vm.port, "GET", "/internal/force_flush", "").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let points = tsdb::parse_line_protocol(&lp, &LineProtocolOptions::default(), 0).unwrap();
    db.write(&points).unwrap();
    let st = TsdbStorage::new(&db);
    let opts = EvalOptions::default();

    // Wait until VictoriaMetrics shows every series.
    let probe = format!(
        "/api/v1/query?query={}&time={}",
        encode("count({__name__=~\".+\"})"),
        (T0 + 30 * MIN) / 1000
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(vm.port, "GET", &probe, "").unwrap();
        if body.contains("\"8\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "data never became visible: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut diffs = Vec::new();
    let mut compared = 0;
    for q in QUERIES {
        for t in [T0 + 30 * MIN, T0 + 45 * MIN + 5_000, T0 + 59 * MIN] {
            let path = format!(
                "/api/v1/query?query={}&time={}",
                encode(q),
                t as f64 / 1000.0
            );
            let (_, body) = http(vm.port, "GET", &path, "").unwrap();
            let theirs: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
            let ours = instant_query(&st, q, t, &opts).map(|d| serde_json::to_value(d).unwrap());
            let (a, b) = compare(ours, &theirs, q);
            compared += 1;
            if a.values().all(|v| v.is_empty()) {
                diffs.push(format!("{q}: no data to compare"));
            } else if !same(&a, &b) {
                diffs.push(format!(
                    "instant {q} @ {t}:\n  ours   {a:?}\n  theirs {b:?}"
                ));
            }
        }
        // A range query of a range vector is an error in Prometheus (and
        // here); VictoriaMetrics answers it, so it is not compared.
        let range_vector = q.ends_with(']');
        for (start, end, step) in [
            (T0 + 10 * MIN, T0 + 50 * MIN, MIN),
            (T0 + 20 * MIN, T0 + 30 * MIN, 30_000),
        ] {
            if range_vector {
                continue;
            }
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                encode(q),
                start / 1000,
                end / 1000,
                step / 1000
            );
            let (_, body) = http(vm.port, "GET", &path, "").unwrap();
            let theirs: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
            let ours = range_query(&st, q, start, end, step, &opts)
                .map(|d| serde_json::to_value(d).unwrap());
            let (a, b) = compare(ours, &theirs, q);
            compared += 1;
            if a.values().all(|v| v.is_empty()) {
                diffs.push(format!("{q}: no data to compare"));
            } else if !same(&a, &b) {
                diffs.push(format!(
                    "range {q} [{start}, {end}] / {step}:\n  ours   {a:?}\n  theirs {b:?}"
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {compared} answers differ from VictoriaMetrics:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
