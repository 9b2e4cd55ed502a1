//! Writes a TSBS-IoT-like data set (from `tsdb::gen`) to files, for the
//! telemetry benchmark in `bench/tsdb/run.sh`:
//!
//! - `data.lp`: InfluxDB line protocol with **millisecond** timestamps
//!   (`precision=ms`), one line per truck, measurement and tick. The truck's
//!   id is the `device` tag (TSBS calls it `name`; Millwright takes the
//!   device from `device`), the other tags are `fleet`, `driver`, `model`,
//!   `device_version`. Every system loads this same file.
//! - `data.mqtt`: one MQTT message per line, `device<TAB>values<TAB>json`,
//!   the JSON being `{"ts":<ms>,"values":{"readings.latitude":..,...}}`
//!   (a truck's readings and diagnostics of one tick in one message, the
//!   same metric names the line protocol gives), for
//!   `devices/{device}/telemetry`.
//! - `meta.json`: sizes, exact value counts, the time range, each truck's
//!   fleet, and ground-truth answers of the benchmark's queries computed
//!   from the generated points.
//!
//! `cargo run --release -p tsdb --example tsbs_gen -j2 -- --out DIR
//! [--trucks 200] [--hours 24] [--seed 1] [--interval-ms 10000]
//! [--start-ms MS] [--stationary-below 1] [--no-mqtt]`

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tsdb::gen::{Fleet, FleetConfig};
use tsdb::{Value, WritePoint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    out: PathBuf,
    trucks: usize,
    hours: u64,
    seed: u64,
    interval_ms: i64,
    start_ms: i64,
    mqtt: bool,
    stationary_below: f64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        out: PathBuf::from("tsbs-data"),
        trucks: 200,
        hours: 24,
        seed: 1,
        interval_ms: 10_000,
        start_ms: 1_451_606_400_000,
        mqtt: true,
        stationary_below: 1.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        if flag == "--no-mqtt" {
            a.mqtt = false;
            i += 1;
            continue;
        }
        let v = argv
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("{flag}: bad number {v:?}");
        match flag {
            "--out" => a.out = v.into(),
            "--trucks" => a.trucks = v.parse().map_err(bad)?,
            "--hours" => a.hours = v.parse().map_err(bad)?,
            "--seed" => a.seed = v.parse().map_err(bad)?,
            "--interval-ms" => a.interval_ms = v.parse().map_err(bad)?,
            "--start-ms" => a.start_ms = v.parse().map_err(bad)?,
            "--stationary-below" => {
                a.stationary_below = v.parse().map_err(|_| format!("{flag}: bad number {v:?}"))?
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    if a.trucks == 0 || a.hours == 0 || a.interval_ms <= 0 {
        return Err("--trucks, --hours and --interval-ms must be positive".into());
    }
    Ok(a)
}

const TEN_MIN: i64 = 600_000;

/// Ground truth of the benchmark queries, accumulated over all points.
struct Truth {
    start: i64,
    day_end: i64,
    /// Start of the one 10-minute window of the "stationary trucks" query.
    window: i64,
    /// The velocity under which a truck counts as stationary.
    below: f64,
    /// (device, metric) -> (ts, value) of the newest point (last write wins).
    last: BTreeMap<(String, &'static str), (i64, f64)>,
    /// fleet -> max fuel_consumption.
    max_fuel: BTreeMap<String, f64>,
    /// (device, bucket) -> (sum, count) of velocity in 10-minute buckets of
    /// the first day.
    velocity: BTreeMap<(String, i64), (f64, u64)>,
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

impl Truth {
    fn add(&mut self, p: &WritePoint) {
        let metric = p.series.metric();
        let dev = p.series.device();
        match metric {
            "readings.latitude" | "readings.longitude" => {
                let m: &'static str = if metric.ends_with("latitude") {
                    "latitude"
                } else {
                    "longitude"
                };
                let e = self
                    .last
                    .entry((dev.to_string(), m))
                    .or_insert((i64::MIN, 0.0));
                if p.ts >= e.0 {
                    *e = (p.ts, num(&p.value));
                }
            }
            "readings.fuel_consumption" => {
                let fleet = p.series.label("fleet").unwrap_or("").to_string();
                let e = self.max_fuel.entry(fleet).or_insert(f64::MIN);
                *e = e.max(num(&p.value));
            }
            "readings.velocity" if p.ts >= self.start && p.ts < self.day_end => {
                let b = p.ts.div_euclid(TEN_MIN) * TEN_MIN;
                let e = self
                    .velocity
                    .entry((dev.to_string(), b))
                    .or_insert((0.0, 0));
                e.0 += num(&p.value);
                e.1 += 1;
            }
            _ => {}
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut last = BTreeMap::<String, serde_json::Value>::new();
        for ((dev, m), (ts, v)) in &self.last {
            let e = last.entry(dev.clone()).or_insert_with(|| json!({}));
            e[*m] = json!(v);
            e[format!("{m}_ts")] = json!(ts);
        }
        let mut sum_avg = 0.0;
        // The stationary-trucks window: the 10-minute bucket of the first
        // day with the most trucks averaging under 1 (the earliest on ties;
        // the middle of the day when there is none), so that the query's
        // answer is worth checking.
        let mut per_bucket: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        let mut min_avg = f64::MAX;
        for ((dev, b), (s, c)) in &self.velocity {
            let avg = s / *c as f64;
            sum_avg += avg;
            min_avg = min_avg.min(avg);
            if avg < self.below {
                per_bucket.entry(*b).or_default().insert(dev.clone());
            }
        }
        let mut window = self.window;
        let mut best = 0;
        for (b, set) in &per_bucket {
            if set.len() > best {
                best = set.len();
                window = *b;
            }
        }
        let stationary = per_bucket.remove(&window).unwrap_or_default();
        json!({
            "last_location": last,
            "max_fuel_consumption_per_fleet": self.max_fuel,
            "avg_velocity_10m_day": {
                "start": self.start, "end": self.day_end,
                "buckets": self.velocity.len(), "sum_of_averages": sum_avg,
                "min_average": min_avg,
            },
            "stationary_window": {
                "start": window, "end": window + TEN_MIN, "below": self.below,
                "trucks": stationary,
            },
        })
    }
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    std::fs::create_dir_all(&a.out)?;
    let t0 = Instant::now();
    let ticks = (a.hours as i64 * 3_600_000) / a.interval_ms;
    let end = a.start_ms + ticks * a.interval_ms;
    let day_end = end.min(a.start_ms + 86_400_000);
    // The stationary-trucks window: the 10-minute bucket in the middle of
    // the first day.
    let mid = a.start_ms + (day_end - a.start_ms) / 2;
    let window = mid.div_euclid(TEN_MIN) * TEN_MIN;
    let mut fleet = Fleet::new(FleetConfig {
        trucks: a.trucks,
        seed: a.seed,
        start_ms: a.start_ms,
        interval_ms: a.interval_ms,
        ..FleetConfig::default()
    });
    let mut truth = Truth {
        start: a.start_ms,
        day_end,
        window,
        below: a.stationary_below,
        last: BTreeMap::new(),
        max_fuel: BTreeMap::new(),
        velocity: BTreeMap::new(),
    };
    let mut lp = BufWriter::with_capacity(1 << 20, std::fs::File::create(a.out.join("data.lp"))?);
    let mut mq = if a.mqtt {
        Some(BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(a.out.join("data.mqtt"))?,
        ))
    } else {
        None
    };
    let (mut lines, mut values, mut lp_bytes, mut messages, mut mqtt_bytes) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut min_ts = i64::MAX;
    let mut max_ts = i64::MIN;
    let mut trucks_fleet = BTreeMap::<String, String>::new();
    let mut text = String::new();
    let mut out = String::new();
    let mut points = Vec::new();
    for _ in 0..ticks {
        let entries = fleet.tick();
        // Line protocol: the generator's text with `name` renamed `device`
        // and nanoseconds cut to milliseconds (they are whole milliseconds).
        text.clear();
        fleet.to_line_protocol(&entries, &mut text);
        out.clear();
        for line in text.lines() {
            let (head, ts_ns) = line
                .rsplit_once(' ')
                .ok_or("generator line without a timestamp")?;
            let ts_ms = ts_ns
                .strip_suffix("000000")
                .ok_or("timestamp is not whole milliseconds")?;
            let head = head.replacen(",name=", ",device=", 1);
            out.push_str(&head);
            out.push(' ');
            out.push_str(ts_ms);
            out.push('\n');
            lines += 1;
        }
        lp.write_all(out.as_bytes())?;
        lp_bytes += out.len() as u64;

        // Points: counts, truth, and the MQTT messages (a truck's readings
        // and diagnostics of the same timestamp share a message).
        points.clear();
        fleet.to_points(&entries, &mut points);
        values += points.len() as u64;
        let mut msgs: BTreeMap<(String, i64), Vec<&WritePoint>> = BTreeMap::new();
        for p in &points {
            min_ts = min_ts.min(p.ts);
            max_ts = max_ts.max(p.ts);
            truth.add(p);
            if !trucks_fleet.contains_key(p.series.device()) {
                trucks_fleet.insert(
                    p.series.device().to_string(),
                    p.series.label("fleet").unwrap_or("").to_string(),
                );
            }
            if mq.is_some() {
                msgs.entry((p.series.device().to_string(), p.ts))
                    .or_default()
                    .push(p);
            }
        }
        if let Some(mq) = mq.as_mut() {
            out.clear();
            for ((dev, ts), pts) in &msgs {
                let _ = write!(out, "{dev}\t{}\t{{\"ts\":{ts},\"values\":{{", pts.len());
                for (i, p) in pts.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    match &p.value {
                        Value::I64(v) => {
                            let _ = write!(out, "{sep}\"{}\":{v}", p.series.metric());
                        }
                        v => {
                            let _ = write!(out, "{sep}\"{}\":{}", p.series.metric(), num(v));
                        }
                    }
                }
                out.push_str("}}\n");
                messages += 1;
            }
            mq.write_all(out.as_bytes())?;
            mqtt_bytes += out.len() as u64;
        }
    }
    lp.flush()?;
    if let Some(mut mq) = mq {
        mq.flush()?;
    }
    let meta = json!({
        "generator": "tsdb::gen (TSBS IoT-like), crates/tsdb/examples/tsbs_gen.rs",
        "trucks": a.trucks,
        "hours": a.hours,
        "seed": a.seed,
        "interval_ms": a.interval_ms,
        "start_ms": a.start_ms,
        "end_ms": end,
        "min_ts": min_ts,
        "max_ts": max_ts,
        "ticks": ticks,
        "lines": lines,
        "values": values,
        "lp_bytes": lp_bytes,
        "mqtt_messages": messages,
        "mqtt_bytes": mqtt_bytes,
        "series": a.trucks * 10,
        "fleets": trucks_fleet,
        "truth": truth.to_json(),
    });
    std::fs::write(a.out.join("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    eprintln!(
        "tsbs_gen: {} trucks x {} h every {} ms: {lines} lines, {values} values, {lp_bytes} bytes of line protocol, {messages} MQTT messages in {:.1} s -> {}",
        a.trucks,
        a.hours,
        a.interval_ms,
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
