//! Model-based property test: random writes (late, duplicate, out of
//! order), flushes, compactions and close+reopen against a `BTreeMap`
//! model; every raw, aggregate and latest query must equal the model's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use tsdb::{
    Agg, Filter, GroupBy, GroupKey, Options, RollupLevel, Selector, SeriesKey, Tsdb, Value,
    WritePoint,
};

const NS: &str = "ns";
const SERIES: [(&str, &str, &str); 5] = [
    ("a", "x", "f64"),
    ("a", "y", "i64"),
    ("b", "x", "f64"),
    ("b", "z", "bool"),
    ("b", "w", "str"),
];

fn key(i: usize) -> Arc<SeriesKey> {
    let (d, m, _) = SERIES[i];
    Arc::new(SeriesKey::new(NS, d, m).with_labels([("kind", SERIES[i].2)]))
}

fn value(i: usize, v: i64) -> Value {
    match SERIES[i].2 {
        "f64" => Value::F64(v as f64),
        "i64" => Value::I64(v),
        "bool" => Value::Bool(v % 2 == 0),
        _ => Value::Str(Arc::from(format!("s{v}"))),
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::F64(x) => Some(*x),
        Value::I64(x) => Some(*x as f64),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Str(_) => None,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<(usize, i64, i64)>),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let point = (0..SERIES.len(), -60i64..150, -20i64..20);
    prop_oneof![
        6 => prop::collection::vec(point, 1..25).prop_map(Op::Write),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> Options {
    Options {
        head_max_points: 40,
        partition_ms: 3_600_000,
        rollups: vec![
            RollupLevel {
                bucket_ms: 60_000,
                retention_ms: 1 << 50,
            },
            RollupLevel {
                bucket_ms: 600_000,
                retention_ms: 1 << 50,
            },
        ],
        default_retention_ms: 1 << 50,
        ..Options::default()
    }
}

type Model = BTreeMap<(usize, i64), Value>;

/// Per-bucket summary in the model: count, sum, min, max, (first_ts, first), (last_ts, last).
#[derive(Clone, Copy, Debug)]
struct S {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    first: (i64, f64),
    last: (i64, f64),
}

impl S {
    fn merge(&mut self, o: &S) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.first.0 < self.first.0 {
            self.first = o.first;
        }
        if o.last.0 >= self.last.0 {
            self.last = o.last;
        }
    }
    fn eval(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Avg => self.sum / self.count as f64,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Sum => self.sum,
            Agg::Count => self.count as f64,
            Agg::First => self.first.1,
            Agg::Last => self.last.1,
        }
    }
}

fn model_agg(
    m: &Model,
    start: i64,
    end: i64,
    bucket: i64,
    agg: Agg,
    group: &GroupBy,
) -> Vec<(GroupKey, Vec<(i64, f64)>)> {
    let mut order: Vec<usize> = (0..SERIES.len()).collect();
    order.sort_by_key(|&i| key(i));
    let mut groups: BTreeMap<GroupKey, BTreeMap<i64, S>> = BTreeMap::new();
    for i in order {
        if SERIES[i].2 == "str" && agg != Agg::Count {
            continue;
        }
        let mut per: BTreeMap<i64, S> = BTreeMap::new();
        for ((_, ts), v) in m.range((i, start)..(i, end)) {
            let x = num(v).unwrap_or(0.0);
            let s = S {
                count: 1,
                sum: x,
                min: x,
                max: x,
                first: (*ts, x),
                last: (*ts, x),
            };
            per.entry(ts.div_euclid(bucket) * bucket)
                .and_modify(|a| a.merge(&s))
                .or_insert(s);
        }
        if per.is_empty() {
            continue;
        }
        let k = key(i);
        let gk = match group {
            GroupBy::Series => GroupKey::Series((*k).clone()),
            GroupBy::Device => GroupKey::Device(k.device().to_string()),
            GroupBy::Label(l) => GroupKey::Label(k.label(l).map(str::to_string)),
            GroupBy::All => GroupKey::All,
        };
        let g = groups.entry(gk).or_default();
        for (b, s) in per {
            g.entry(b).and_modify(|a| a.merge(&s)).or_insert(s);
        }
    }
    groups
        .into_iter()
        .map(|(g, b)| (g, b.into_iter().map(|(t, s)| (t, s.eval(agg))).collect()))
        .collect()
}

fn check(db: &Tsdb, m: &Model) {
    let all = Selector::namespace(NS);
    // Raw queries, whole range and a window with a limit.
    for (start, end, limit) in [(i64::MIN, i64::MAX, usize::MAX), (-1_000_000, 2_000_000, 7)] {
        let got = db.query_raw(&all, start, end, limit).unwrap();
        let mut expect = Vec::new();
        let mut order: Vec<usize> = (0..SERIES.len()).collect();
        order.sort_by_key(|&i| key(i));
        for i in order {
            let pts: Vec<(i64, Value)> = m
                .range((i, start)..(i, end))
                .map(|((_, t), v)| (*t, v.clone()))
                .take(limit)
                .collect();
            if !pts.is_empty() {
                expect.push(((*key(i)).clone(), pts));
            }
        }
        let got: Vec<(SeriesKey, Vec<(i64, Value)>)> = got
            .into_iter()
            .map(|s| {
                (
                    s.series,
                    s.points.into_iter().map(|p| (p.ts, p.value)).collect(),
                )
            })
            .collect();
        assert_eq!(got, expect, "raw [{start}, {end}) limit {limit}");
    }
    // Aggregates: rollup-aligned ranges and buckets, and raw-only ones.
    let ranges = [
        (-3_600_000, 10_800_000, 60_000),
        (-3_600_000, 10_800_000, 120_000),
        (-3_600_000, 10_800_000, 600_000),
        (-3_600_000, 10_800_000, 3_600_000),
        (0, 1_200_000, 600_000),
        (-1_000_000, 3_000_000, 7_000),
        (-1_799_999, 4_500_001, 600_000),
        (-7_200_000, 7_200_000, 14_400_000),
    ];
    let groups = [
        GroupBy::Series,
        GroupBy::Device,
        GroupBy::All,
        GroupBy::Label("kind".into()),
    ];
    for (start, end, bucket) in ranges {
        for agg in [
            Agg::Avg,
            Agg::Min,
            Agg::Max,
            Agg::Sum,
            Agg::Count,
            Agg::First,
            Agg::Last,
        ] {
            for g in &groups {
                let got = db
                    .query_agg(&all, start, end, bucket, agg, g.clone())
                    .unwrap();
                let got: Vec<(GroupKey, Vec<(i64, f64)>)> = got
                    .into_iter()
                    .map(|s| {
                        (
                            s.group,
                            s.points.into_iter().map(|p| (p.ts, p.value)).collect(),
                        )
                    })
                    .collect();
                let expect = model_agg(m, start, end, bucket, agg, g);
                assert_eq!(got, expect, "agg {agg:?} {g:?} [{start}, {end}) / {bucket}");
            }
        }
    }
    // Latest.
    let got = db.latest(NS, &Filter::All, &Filter::All);
    let mut expect: Vec<(SeriesKey, i64, Value)> = Vec::new();
    let mut order: Vec<usize> = (0..SERIES.len()).collect();
    order.sort_by_key(|&i| key(i));
    for i in order {
        if let Some(((_, t), v)) = m.range((i, i64::MIN)..(i, i64::MAX)).next_back() {
            expect.push(((*key(i)).clone(), *t, v.clone()));
        }
    }
    let got: Vec<(SeriesKey, i64, Value)> =
        got.into_iter().map(|(k, p)| (k, p.ts, p.value)).collect();
    assert_eq!(got, expect, "latest");
}

fn run(ops: Vec<Op>, dir: &Path) {
    let mut db = Tsdb::open(dir, options()).unwrap();
    let mut m: Model = BTreeMap::new();
    let keys: Vec<Arc<SeriesKey>> = (0..SERIES.len()).map(key).collect();
    for op in ops {
        match op {
            Op::Write(pts) => {
                let batch: Vec<WritePoint> = pts
                    .iter()
                    .map(|&(i, k, v)| WritePoint {
                        series: keys[i].clone(),
                        ts: k * 30_000 + (k % 3),
                        value: value(i, v),
                    })
                    .collect();
                db.write(&batch).unwrap();
                for p in &batch {
                    let i = keys.iter().position(|k| Arc::ptr_eq(k, &p.series)).unwrap();
                    m.insert((i, p.ts), p.value.clone());
                }
            }
            Op::Flush => {
                db.flush(0).unwrap();
            }
            Op::Compact => {
                db.compact().unwrap();
            }
            Op::Reopen => {
                db.close().unwrap();
                drop(db);
                db = Tsdb::open(dir, options()).unwrap();
                assert!(!db.recovery_report().wal_truncated());
                check(&db, &m);
            }
        }
    }
    check(&db, &m);
    db.flush(0).unwrap();
    check(&db, &m);
    db.compact().unwrap();
    check(&db, &m);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, dir.path());
    }
}

#[test]
fn fixed_sequence_with_late_and_duplicate_points() {
    let dir = tempfile::tempdir().unwrap();
    let ops = vec![
        Op::Write((0..60).map(|k| (k % 5, k as i64, k as i64 % 7)).collect()),
        Op::Flush,
        Op::Write(vec![(0, 3, 100), (0, 3, 101), (2, -50, 4), (1, 10, -3)]),
        Op::Flush,
        Op::Write(vec![(0, 4, 9), (3, 140, 1), (4, 2, 5)]),
        Op::Reopen,
        Op::Write(vec![(0, 3, -7)]),
        Op::Compact,
        Op::Write(vec![(0, 5, 1), (1, 10, 8)]),
    ];
    run(ops, dir.path());
}
