use tsdb::gen::{Fleet, FleetConfig};
use tsdb::Value;
use pco::standalone::simple_compress;
use pco::{ChunkConfig, DeltaSpec};
use std::collections::{BTreeMap, HashMap};

fn to_dec(v: &[f64]) -> Option<Vec<i64>> {
    for d in 0..=9 {
        let p = 10f64.powi(d);
        let ints: Vec<i64> = v.iter().map(|x| (x * p).round() as i64).collect();
        if ints.iter().zip(v).all(|(i, x)| (*i as f64 / p) == *x) { return Some(ints); }
    }
    None
}
fn entropy(d: &[i64]) -> f64 {
    let mut h: HashMap<i64, usize> = HashMap::new();
    for x in d { *h.entry(*x).or_default() += 1; }
    let n = d.len() as f64;
    h.values().map(|&c| { let p = c as f64 / n; -p * p.log2() }).sum::<f64>() * n / 8.0
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut fleet = Fleet::new(FleetConfig { trucks: 20, ..FleetConfig::default() });
    let mut pts = Vec::new();
    for _ in 0..n { let e = fleet.tick(); fleet.to_points(&e, &mut pts); }
    let mut series: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for p in &pts {
        let v = match p.value { Value::F64(x) => x, Value::I64(x) => x as f64, _ => 0.0 };
        series.entry(format!("{}", p.series)).or_default().insert(p.ts, v);
    }
    let mut per: BTreeMap<String, [usize; 6]> = BTreeMap::new();
    for (k, s) in &series {
        let metric = k.split('/').nth(2).unwrap().split(',').next().unwrap().to_string();
        let vals: Vec<f64> = s.values().copied().collect();
        let ts: Vec<i64> = s.keys().copied().collect();
        let cfg = ChunkConfig::default();
        let a = simple_compress(&vals, &cfg).unwrap().len();
        let ints = to_dec(&vals).unwrap();
        let b = simple_compress(&ints, &cfg).unwrap().len();
        let c = simple_compress(&ints, &ChunkConfig::default().with_delta_spec(DeltaSpec::TryConsecutive(1))).unwrap().len();
        let deltas: Vec<i64> = ints.windows(2).map(|w| w[1]-w[0]).collect();
        let e = entropy(&deltas) as usize;
        let t = simple_compress(&ts, &ChunkConfig::default().with_delta_spec(DeltaSpec::TryConsecutive(std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1)))).unwrap().len();
        let e2 = entropy(&ts.windows(2).map(|w| w[1]-w[0]).collect::<Vec<_>>()) as usize;
        let x = per.entry(metric).or_default();
        x[0] += vals.len(); x[1] += a; x[2] += b; x[3] += c; x[4] += e; x[5] += t + 0*e2;
    }
    let mut tot = [0usize; 6];
    for (m, x) in &per {
        let n = x[0] as f64;
        println!("{m:28} f64 {:.3} dec-int {:.3} int-delta1 {:.3} entropy {:.3} | ts {:.3}", x[1] as f64/n, x[2] as f64/n, x[3] as f64/n, x[4] as f64/n, x[5] as f64/n);
        for i in 0..6 { tot[i] += x[i]; }
    }
    let n = tot[0] as f64;
    println!("TOTAL f64 {:.3} dec-int {:.3} int-delta1 {:.3} entropy {:.3} | ts {:.3}", tot[1] as f64/n, tot[2] as f64/n, tot[3] as f64/n, tot[4] as f64/n, tot[5] as f64/n);
    let reg: Vec<i64> = (0..n as i64 / 200).map(|i| i * 10_000).collect();
    println!("regular ts {} values: {} bytes", reg.len(), simple_compress(&reg, &ChunkConfig::default()).unwrap().len());
}
