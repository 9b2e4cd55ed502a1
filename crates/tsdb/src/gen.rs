//! A seeded data generator modelled on the TSBS "IoT" use case: a fleet of
//! trucks, each reporting `readings` (latitude, longitude, elevation,
//! velocity, heading, grade, fuel_consumption) and `diagnostics`
//! (fuel_state, current_load, status) every interval (10 s by default).
//!
//! Values follow TSBS's distributions: clamped random walks with uniform
//! steps, truncated to 5/5/0/0/0/0/1 decimals for readings; fuel that drains
//! and refuels, a load that changes with 5 % probability, and a status that
//! walks with normal steps (an integer). A small share of fields is missing
//! (no point) and a small share of entries arrives a few intervals late.
//! Trucks carry the tags `name` (the device id), `fleet`, `driver`, `model`
//! and `device_version`. Output as points for [`crate::Tsdb::write`] or as
//! line protocol text (nanosecond timestamps).

use std::fmt::Write as _;
use std::sync::Arc;

use crate::model::{SeriesKey, Value, WritePoint};

/// Field names of `readings`.
pub const READINGS_FIELDS: [&str; 7] = [
    "latitude",
    "longitude",
    "elevation",
    "velocity",
    "heading",
    "grade",
    "fuel_consumption",
];
/// Field names of `diagnostics`.
pub const DIAGNOSTICS_FIELDS: [&str; 3] = ["fuel_state", "current_load", "status"];

const FLEETS: [&str; 4] = ["East", "West", "North", "South"];
const DRIVERS: [&str; 6] = ["Derek", "Rodney", "Albert", "Andy", "Seth", "Trish"];
const MODELS: [&str; 3] = ["F-150", "G-2000", "H-2"];
const VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];

/// Generator settings.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Namespace of the points.
    pub namespace: String,
    /// Number of trucks.
    pub trucks: usize,
    /// Truck numbers start here (to split a fleet across generators).
    pub first_truck: usize,
    /// Timestamp of the first tick in milliseconds.
    pub start_ms: i64,
    /// Reporting interval in milliseconds.
    pub interval_ms: i64,
    /// PRNG seed.
    pub seed: u64,
    /// Probability that a field is missing from an entry.
    pub missing_field: f64,
    /// Probability that an entry is held back and sent 1 to 5 ticks late.
    pub late_entry: f64,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            namespace: "default".into(),
            trucks: 100,
            first_truck: 0,
            start_ms: 1_451_606_400_000,
            interval_ms: 10_000,
            seed: 1,
            missing_field: 0.01,
            late_entry: 0.005,
        }
    }
}

/// A small, fast, seeded PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.f64() * n as f64) as usize % n.max(1)
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(f64::MIN_POSITIVE);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Uniform(f64, f64),
    Normal,
}

/// A random walk clamped to `[min, max]`.
#[derive(Clone, Debug)]
struct Walk {
    step: Step,
    min: f64,
    max: f64,
    state: f64,
}

impl Walk {
    fn advance(&mut self, rng: &mut Rng) {
        let d = match self.step {
            Step::Uniform(a, b) => rng.uniform(a, b),
            Step::Normal => rng.normal(),
        };
        self.state = (self.state + d).clamp(self.min, self.max);
    }
}

fn truncate(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).trunc() / p
}

/// Which measurement an entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measurement {
    /// Position and motion, 7 float fields.
    Readings,
    /// Fuel, load (floats) and status (integer).
    Diagnostics,
}

/// One truck's entry for one tick; `None` fields are missing.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Index of the truck within the generator.
    pub truck: usize,
    /// Milliseconds.
    pub ts: i64,
    /// The measurement.
    pub measurement: Measurement,
    /// Values in field order (`diagnostics` uses the first three).
    pub values: [Option<f64>; 7],
}

struct Truck {
    name: String,
    tags: String,
    readings: [(Walk, i32); 7],
    fuel: Walk,
    load: f64,
    status: Walk,
    keys: Vec<Arc<SeriesKey>>,
}

/// The fleet generator.
pub struct Fleet {
    cfg: FleetConfig,
    rng: Rng,
    trucks: Vec<Truck>,
    tick: i64,
    late: Vec<(i64, Entry)>,
}

impl Fleet {
    /// A fleet as configured.
    pub fn new(cfg: FleetConfig) -> Fleet {
        let mut rng = Rng::new(cfg.seed.wrapping_add(cfg.first_truck as u64 * 7919));
        let ns: Arc<str> = Arc::from(cfg.namespace.as_str());
        let trucks = (0..cfg.trucks)
            .map(|i| {
                let n = cfg.first_truck + i;
                let name = format!("truck_{n}");
                let labels = [
                    ("fleet", FLEETS[rng.below(4)]),
                    ("driver", DRIVERS[rng.below(6)]),
                    ("model", MODELS[rng.below(3)]),
                    ("device_version", VERSIONS[rng.below(4)]),
                ];
                let mut tags = format!("name={name}");
                for (k, v) in labels {
                    let _ = write!(tags, ",{k}={v}");
                }
                let walk = |step, min, max, state| Walk {
                    step,
                    min,
                    max,
                    state,
                };
                let u = Step::Uniform;
                let readings = [
                    (walk(u(-0.005, 0.005), -90.0, 90.0, rng.f64() * 90.0), 5),
                    (walk(u(-0.005, 0.005), -180.0, 180.0, rng.f64() * 180.0), 5),
                    (walk(u(-10.0, 10.0), 0.0, 5000.0, rng.f64() * 500.0), 0),
                    (walk(u(-10.0, 10.0), 0.0, 100.0, 0.0), 0),
                    (walk(u(-5.0, 5.0), 0.0, 360.0, rng.f64() * 360.0), 0),
                    (walk(u(-5.0, 5.0), 0.0, 100.0, 0.0), 0),
                    (walk(u(-5.0, 5.0), 0.0, 50.0, 25.0), 1),
                ];
                let key_labels: Vec<(Arc<str>, Arc<str>)> = labels
                    .iter()
                    .map(|(k, v)| (Arc::from(*k), Arc::from(*v)))
                    .collect();
                let dev: Arc<str> = Arc::from(name.as_str());
                let keys = READINGS_FIELDS
                    .iter()
                    .map(|f| format!("readings.{f}"))
                    .chain(
                        DIAGNOSTICS_FIELDS
                            .iter()
                            .map(|f| format!("diagnostics.{f}")),
                    )
                    .map(|m| {
                        Arc::new(SeriesKey::from_parts(
                            ns.clone(),
                            dev.clone(),
                            Arc::from(m.as_str()),
                            key_labels.clone(),
                        ))
                    })
                    .collect();
                Truck {
                    name,
                    tags,
                    readings,
                    fuel: walk(u(-0.001, 0.0), 0.0, 1.0, 1.0),
                    load: 0.0,
                    status: walk(Step::Normal, 0.0, 5.0, 0.0),
                    keys,
                }
            })
            .collect();
        Fleet {
            cfg,
            rng,
            trucks,
            tick: 0,
            late: Vec::new(),
        }
    }

    /// Series the fleet writes (10 per truck).
    pub fn series_count(&self) -> usize {
        self.trucks.len() * 10
    }

    /// The device id of truck `i`.
    pub fn truck_name(&self, i: usize) -> &str {
        &self.trucks[i].name
    }

    /// Advances one tick and returns its entries (two per truck, minus the
    /// ones held back, plus late ones now due).
    pub fn tick(&mut self) -> Vec<Entry> {
        let ts = self.cfg.start_ms + self.tick * self.cfg.interval_ms;
        let mut out = Vec::with_capacity(self.trucks.len() * 2);
        let mut due = Vec::new();
        self.late.retain(|(at, e)| {
            if *at <= ts {
                due.push(e.clone());
                false
            } else {
                true
            }
        });
        for i in 0..self.trucks.len() {
            let rng = &mut self.rng;
            let t = &mut self.trucks[i];
            let mut r = [None; 7];
            for (slot, (w, d)) in r.iter_mut().zip(t.readings.iter_mut()) {
                w.advance(rng);
                *slot = Some(truncate(w.state, *d));
            }
            t.fuel.advance(rng);
            if t.fuel.state <= t.fuel.min {
                t.fuel.state = t.fuel.max;
            }
            if rng.f64() > 0.95 {
                t.load = rng.uniform(0.0, 5000.0);
            }
            t.status.advance(rng);
            let mut d = [None; 7];
            d[0] = Some(truncate(t.fuel.state, 1));
            d[1] = Some(truncate(t.load, 0));
            d[2] = Some(truncate(t.status.state, 0));
            for (measurement, mut values) in
                [(Measurement::Readings, r), (Measurement::Diagnostics, d)]
            {
                for v in values.iter_mut() {
                    if v.is_some() && self.rng.f64() < self.cfg.missing_field {
                        *v = None;
                    }
                }
                let e = Entry {
                    truck: i,
                    ts,
                    measurement,
                    values,
                };
                if self.rng.f64() < self.cfg.late_entry {
                    let delay = 1 + self.rng.below(5) as i64;
                    self.late.push((ts + delay * self.cfg.interval_ms, e));
                } else {
                    out.push(e);
                }
            }
        }
        out.extend(due);
        self.tick += 1;
        out
    }

    /// Appends the points of `entries` (keys shared per series).
    pub fn to_points(&self, entries: &[Entry], out: &mut Vec<WritePoint>) {
        for e in entries {
            let keys = &self.trucks[e.truck].keys;
            let (base, n) = match e.measurement {
                Measurement::Readings => (0, 7),
                Measurement::Diagnostics => (7, 3),
            };
            for (f, v) in e.values.iter().take(n).enumerate() {
                let Some(v) = *v else { continue };
                let value = if base + f == 9 {
                    Value::I64(v as i64)
                } else {
                    Value::F64(v)
                };
                out.push(WritePoint {
                    series: keys[base + f].clone(),
                    ts: e.ts,
                    value,
                });
            }
        }
    }

    /// Appends `entries` as line protocol with nanosecond timestamps.
    pub fn to_line_protocol(&self, entries: &[Entry], out: &mut String) {
        for e in entries {
            let (name, fields, n): (&str, &[&str], usize) = match e.measurement {
                Measurement::Readings => ("readings", &READINGS_FIELDS, 7),
                Measurement::Diagnostics => ("diagnostics", &DIAGNOSTICS_FIELDS, 3),
            };
            if e.values.iter().take(n).all(Option::is_none) {
                continue;
            }
            let _ = write!(out, "{name},{}", self.trucks[e.truck].tags);
            let mut sep = ' ';
            for (f, v) in e.values.iter().take(n).enumerate() {
                let Some(v) = *v else { continue };
                if e.measurement == Measurement::Diagnostics && f == 2 {
                    let _ = write!(out, "{sep}{}={}i", fields[f], v as i64);
                } else {
                    let _ = write!(out, "{sep}{}={v}", fields[f]);
                }
                sep = ',';
            }
            let _ = writeln!(out, " {}", e.ts.saturating_mul(1_000_000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_line_protocol, LineProtocolOptions};

    #[test]
    fn seeded_and_consistent_with_line_protocol() {
        let cfg = FleetConfig {
            trucks: 5,
            ..FleetConfig::default()
        };
        let mut a = Fleet::new(cfg.clone());
        let mut b = Fleet::new(cfg);
        let mut pts = Vec::new();
        let mut text = String::new();
        for _ in 0..50 {
            let ea = a.tick();
            assert_eq!(ea, b.tick());
            a.to_points(&ea, &mut pts);
            a.to_line_protocol(&ea, &mut text);
        }
        let opts = LineProtocolOptions {
            device_tags: vec!["name".into()],
            ..LineProtocolOptions::default()
        };
        let parsed = parse_line_protocol(&text, &opts, 0).unwrap();
        assert_eq!(parsed.len(), pts.len());
        for (p, q) in parsed.iter().zip(&pts) {
            assert_eq!(*p.series, *q.series);
            assert_eq!((p.ts, &p.value), (q.ts, &q.value));
        }
        // Some fields are missing, some entries late.
        assert!(pts.len() < 5 * 50 * 10);
        assert!(pts.windows(2).any(|w| w[1].ts < w[0].ts));
    }
}
