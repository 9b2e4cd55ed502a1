//! Evaluation over a real `Tsdb` in a temporary directory, with answers
//! computed by hand.

use std::sync::Arc;

use promql::{instant_query, range_query, EvalOptions, QueryData, Response, TsdbStorage};
use serde_json::{json, Value as Json};
use tsdb::{Options, SeriesKey, Tsdb, Value, WritePoint};

/// 2023-11-14T22:13:20Z, in milliseconds.
const T0: i64 = 1_700_000_000_000;
const S: i64 = 1000;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Tsdb,
}

fn key(device: &str, metric: &str, labels: &[(&str, &str)]) -> Arc<SeriesKey> {
    Arc::new(SeriesKey::new("default", device, metric).with_labels(labels.iter().copied()))
}

fn put(points: &mut Vec<WritePoint>, k: &Arc<SeriesKey>, ts: i64, value: Value) {
    points.push(WritePoint {
        series: k.clone(),
        ts,
        value,
    });
}

/// The data every test reads:
/// - `g` (device m1): a gauge, 3 1 4 1 5 9 at T0+10s .. T0+60s;
/// - `c` (device k1): a counter 10 20 30 5 15 25 at T0+5s .. T0+55s (reset
///   after 30);
/// - `z` (device k1): a counter 1 11 21 31 at T0+30s .. T0+60s;
/// - `readings.temp` on m1 (line a) 10, m2 (line a) 20, m3 (line b) 60, at T0;
/// - `running` (bool) true at T0 on m1, `state` (string) at T0 on m1,
///   `count` (integer) 7 at T0 on m1;
/// - `readings.temp` in namespace `other`, never visible.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut p = Vec::new();
    let g = key("m1", "g", &[]);
    for (i, v) in [3.0, 1.0, 4.0, 1.0, 5.0, 9.0].into_iter().enumerate() {
        put(&mut p, &g, T0 + (i as i64 + 1) * 10 * S, Value::F64(v));
    }
    let c = key("k1", "c", &[]);
    for (i, v) in [10, 20, 30, 5, 15, 25].into_iter().enumerate() {
        put(&mut p, &c, T0 + 5 * S + i as i64 * 10 * S, Value::I64(v));
    }
    let z = key("k1", "z", &[]);
    for (i, v) in [1.0, 11.0, 21.0, 31.0].into_iter().enumerate() {
        put(&mut p, &z, T0 + 30 * S + i as i64 * 10 * S, Value::F64(v));
    }
    for (dev, line, v) in [("m1", "a", 10.0), ("m2", "a", 20.0), ("m3", "b", 60.0)] {
        put(
            &mut p,
            &key(dev, "readings.temp", &[("line", line)]),
            T0,
            Value::F64(v),
        );
    }
    put(&mut p, &key("m1", "running", &[]), T0, Value::Bool(true));
    put(
        &mut p,
        &key("m1", "state", &[]),
        T0,
        Value::Str("ok".into()),
    );
    put(&mut p, &key("m1", "count", &[]), T0, Value::I64(7));
    for (labels, v) in [
        (&[][..], 0.0),
        (&[("k", "1")][..], 1.0),
        (&[("k", "2")][..], 2.0),
    ] {
        put(&mut p, &key("m9", "multi", labels), T0, Value::F64(v));
    }
    put(
        &mut p,
        &key("m8", "multi", &[("k", "1")]),
        T0,
        Value::F64(8.0),
    );
    for (i, dev) in ["h1", "h2"].into_iter().enumerate() {
        put(
            &mut p,
            &key(dev, "huge", &[]),
            T0 + i as i64 * S,
            Value::F64(1.5e308),
        );
    }
    let other = Arc::new(SeriesKey::new("other", "m1", "readings.temp"));
    put(&mut p, &other, T0, Value::F64(99.0));
    db.write(&p).unwrap();
    Fixture { _dir: dir, db }
}

impl Fixture {
    fn instant(&self, q: &str, t: i64) -> Result<QueryData, promql::Error> {
        instant_query(&TsdbStorage::new(&self.db), q, t, &EvalOptions::default())
    }

    fn json(&self, q: &str, t: i64) -> Json {
        serde_json::to_value(self.instant(q, t).unwrap()).unwrap()
    }

    fn range_json(&self, q: &str, start: i64, end: i64, step: i64) -> Json {
        let r = range_query(
            &TsdbStorage::new(&self.db),
            q,
            start,
            end,
            step,
            &EvalOptions::default(),
        );
        serde_json::to_value(r.unwrap()).unwrap()
    }

    /// The single value of an instant query answering one series.
    fn one(&self, q: &str, t: i64) -> f64 {
        match self.instant(q, t).unwrap() {
            QueryData::Vector(v) if v.len() == 1 => v[0].value.value,
            QueryData::Scalar(s) => s.value,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn empty(&self, q: &str, t: i64) -> bool {
        match self.instant(q, t).unwrap() {
            QueryData::Vector(v) => v.is_empty(),
            other => panic!("{q}: {other:?}"),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[track_caller]
fn assert_close(got: f64, want: f64) {
    assert!(close(got, want), "got {got}, want {want}");
}

#[test]
fn naming_and_instant_vector_shape() {
    let f = fixture();
    assert_eq!(
        f.json("readings_temp{device=\"m1\"}", T0 + 500),
        json!({"resultType":"vector","result":[
            {"metric":{"__name__":"readings_temp","device":"m1","line":"a"},
             "value":[1_700_000_000.5,"10"]}]})
    );
    // Namespace `other` is not visible: three series, not four.
    assert_eq!(
        f.json("count(readings_temp)", T0),
        json!({"resultType":"vector","result":[
        {"metric":{},"value":[1_700_000_000,"3"]}]})
    );
}

#[test]
fn matchers() {
    let f = fixture();
    let devices = |q: &str| -> Vec<String> {
        match f.instant(q, T0).unwrap() {
            QueryData::Vector(v) => v.iter().map(|s| s.metric["device"].clone()).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(devices("readings_temp{device=~\"m[12]\"}"), ["m1", "m2"]);
    assert_eq!(devices("readings_temp{device!~\"m1\"}"), ["m2", "m3"]);
    assert_eq!(
        devices("readings_temp{device=~\"m\"}"),
        Vec::<String>::new()
    );
    assert_eq!(devices("readings_temp{line!=\"a\"}"), ["m3"]);
    assert_eq!(
        devices("{__name__=~\"readings_.*\", device=\"m3\"}"),
        ["m3"]
    );
    assert_eq!(
        devices("{__name__!=\"g\", device=\"m1\", line=\"\"}"),
        ["m1", "m1"]
    );
    assert_eq!(devices("readings_temp{nope=\"\"}"), ["m1", "m2", "m3"]);
}

#[test]
fn label_sets_of_one_device_and_metric_stay_apart() {
    let f = fixture();
    assert_eq!(f.one("multi{device=\"m9\", k=\"1\"}", T0), 1.0);
    assert_eq!(f.one("multi{device=\"m9\", k=\"\"}", T0), 0.0);
    assert_eq!(
        f.json("sum by (device, k) (multi)", T0)["result"],
        json!([
            {"metric":{"device":"m8","k":"1"},"value":[1_700_000_000,"8"]},
            {"metric":{"device":"m9"},"value":[1_700_000_000,"0"]},
            {"metric":{"device":"m9","k":"1"},"value":[1_700_000_000,"1"]},
            {"metric":{"device":"m9","k":"2"},"value":[1_700_000_000,"2"]}])
    );
    assert_eq!(f.one("sum(multi{k=\"1\"})", T0), 9.0);
}

#[test]
fn value_types() {
    let f = fixture();
    assert_eq!(f.one("running", T0), 1.0);
    assert_eq!(f.one("count", T0), 7.0);
    assert!(f.empty("state", T0), "strings are skipped");
    assert_eq!(f.one("c", T0 + 5 * S), 10.0, "integers read as numbers");
}

#[test]
fn lookback_and_staleness() {
    let f = fixture();
    let q = "readings_temp{device=\"m1\"}";
    assert!(f.empty(q, T0 - 1), "nothing before the first point");
    assert_eq!(f.one(q, T0), 10.0);
    assert_eq!(f.one(q, T0 + 5 * 60 * S - 1), 10.0);
    assert!(
        f.empty(q, T0 + 5 * 60 * S),
        "(t - 5m, t] leaves out a point exactly 5m old"
    );
    // A shorter lookback, as a setting.
    let opts = EvalOptions {
        lookback_ms: 30 * S,
        ..EvalOptions::default()
    };
    let st = TsdbStorage::new(&f.db);
    let got = instant_query(&st, q, T0 + 31 * S, &opts).unwrap();
    assert!(matches!(got, QueryData::Vector(v) if v.is_empty()));
    // The latest point within the lookback wins.
    assert_eq!(f.one("g", T0 + 45 * S), 1.0);
    assert_eq!(f.one("g", T0 + 50 * S), 5.0);
}

#[test]
fn offset() {
    let f = fixture();
    assert_eq!(f.one("g offset 10s", T0 + 60 * S), 5.0);
    assert_eq!(f.one("g offset -10s", T0 + 50 * S), 9.0);
    assert!(f.empty("g offset 1h", T0 + 60 * S));
    assert_eq!(
        f.one("sum_over_time(g[20s] offset 20s)", T0 + 60 * S),
        4.0 + 1.0
    );
}

#[test]
fn over_time_functions() {
    let f = fixture();
    let t = T0 + 60 * S;
    // (T0, T0+60s]: 3 1 4 1 5 9.
    assert_close(f.one("avg_over_time(g[1m])", t), 23.0 / 6.0);
    assert_eq!(f.one("min_over_time(g[1m])", t), 1.0);
    assert_eq!(f.one("max_over_time(g[1m])", t), 9.0);
    assert_eq!(f.one("sum_over_time(g[1m])", t), 23.0);
    assert_eq!(f.one("count_over_time(g[1m])", t), 6.0);
    assert_eq!(f.one("last_over_time(g[1m])", t), 9.0);
    // (T0+30s, T0+60s]: 1 5 9; the point at T0+30s is left out.
    assert_eq!(f.one("avg_over_time(g[30s])", t), 5.0);
    assert_eq!(f.one("min_over_time(g[30s])", t), 1.0);
    assert_eq!(f.one("sum_over_time(g[30s])", t), 15.0);
    assert_eq!(f.one("count_over_time(g[30s])", t), 3.0);
    // An empty window gives no series.
    assert!(f.empty("count_over_time(g[5s])", T0 + 65 * S));
    // The metric name is dropped, except by last_over_time.
    assert_eq!(
        f.json("max_over_time(g[1m])", t),
        json!({"resultType":"vector","result":[{"metric":{"device":"m1"},"value":[1_700_000_060,"9"]}]})
    );
    assert_eq!(
        f.json("last_over_time(g[1m])", t),
        json!({"resultType":"vector","result":[{"metric":{"__name__":"g","device":"m1"},"value":[1_700_000_060,"9"]}]})
    );
}

#[test]
fn rate_and_increase_with_reset_and_extrapolation() {
    let f = fixture();
    // c over (T0, T0+60s]: 10 20 30 5 15 25 at 5s..55s. Raw increase
    // 25 - 10 + 30 (the reset) = 45 over a sampled 50s; both edges are 5s
    // away (< 1.1 x the 10s average interval), so it extrapolates to 60s:
    // 45 x 60 / 50 = 54.
    let t = T0 + 60 * S;
    assert_close(f.one("increase(c[1m])", t), 54.0);
    assert_close(f.one("rate(c[1m])", t), 0.9);
    // (T0+20s, T0+80s]: 30 5 15 25 at 25s..55s: 25 - 30 + 30 = 25 over 30s;
    // the start is 5s away (extrapolated), the end 25s away (> 11s: only
    // half an interval, 5s): 25 x 40 / 30.
    let t = T0 + 80 * S;
    assert_close(f.one("increase(c[1m])", t), 25.0 * 40.0 / 30.0);
    assert_close(f.one("rate(c[1m])", t), 25.0 * 40.0 / 30.0 / 60.0);
    // z over (T0, T0+60s]: 1 11 21 31 at 30s..60s: 30 over 30s. The start
    // is 30s away, so it would go 5s back, but the counter reaches zero
    // 1s before the first point: 30 x 31 / 30 = 31.
    let t = T0 + 60 * S;
    assert_close(f.one("increase(z[1m])", t), 31.0);
    assert_close(f.one("rate(z[1m])", t), 31.0 / 60.0);
    // One point is not enough.
    assert!(f.empty("rate(z[10s])", t));
    // Both counters on one device: once their names are dropped their
    // labels are the same, which Prometheus refuses.
    let e = f.instant("rate({__name__=~\"c|z\"}[1m])", t).unwrap_err();
    assert_eq!(e.error_type(), "execution");
    assert!(e.to_string().contains("same labelset"), "{e}");
}

#[test]
fn aggregations() {
    let f = fixture();
    let t = T0 + S;
    assert_eq!(f.one("sum(readings_temp)", t), 90.0);
    assert_eq!(f.one("avg(readings_temp)", t), 30.0);
    assert_eq!(f.one("min(readings_temp)", t), 10.0);
    assert_eq!(f.one("max(readings_temp)", t), 60.0);
    assert_eq!(f.one("count(readings_temp)", t), 3.0);
    let by_line = json!({"resultType":"vector","result":[
        {"metric":{"line":"a"},"value":[1_700_000_001,"30"]},
        {"metric":{"line":"b"},"value":[1_700_000_001,"60"]}]});
    assert_eq!(f.json("sum by (line) (readings_temp)", t), by_line);
    assert_eq!(f.json("sum(readings_temp) by (line)", t), by_line);
    assert_eq!(f.json("sum without (device) (readings_temp)", t), by_line);
    assert_eq!(
        f.json("avg without (line, device) (readings_temp)", t),
        json!({"resultType":"vector","result":[{"metric":{},"value":[1_700_000_001,"30"]}]})
    );
    assert_eq!(
        f.json("max by (line, __name__) (readings_temp)", t),
        json!({"resultType":"vector","result":[
            {"metric":{"__name__":"readings_temp","line":"a"},"value":[1_700_000_001,"20"]},
            {"metric":{"__name__":"readings_temp","line":"b"},"value":[1_700_000_001,"60"]}]})
    );
    assert_eq!(
        f.json("count without (line) (readings_temp)", t),
        json!({"resultType":"vector","result":[
            {"metric":{"device":"m1"},"value":[1_700_000_001,"1"]},
            {"metric":{"device":"m2"},"value":[1_700_000_001,"1"]},
            {"metric":{"device":"m3"},"value":[1_700_000_001,"1"]}]})
    );
    assert_eq!(f.one("min by (nope) (readings_temp)", t), 10.0);
    assert_close(f.one("sum(rate(c[1m])) / 2", T0 + 60 * S), 0.45);
    // A sum that overflows gives +Inf, but the mean stays finite.
    assert_eq!(f.one("sum(huge)", t), f64::INFINITY);
    assert_eq!(f.one("avg(huge)", t), 1.5e308);
    assert_eq!(f.one("avg_over_time(huge{device=\"h1\"}[1m])", t), 1.5e308);
    // Nothing selected, nothing aggregated.
    assert!(f.empty("sum(nothing)", t));
}

#[test]
fn arithmetic() {
    let f = fixture();
    let t = T0 + S;
    assert_eq!(
        f.json("readings_temp{line=\"b\"} * 2 + 1", t),
        json!({"resultType":"vector","result":[{"metric":{"device":"m3","line":"b"},"value":[1_700_000_001,"121"]}]})
    );
    assert_eq!(f.one("100 - readings_temp{device=\"m2\"}", t), 80.0);
    assert_eq!(f.one("readings_temp{device=\"m1\"} / 4", t), 2.5);
    assert_eq!(f.one("-readings_temp{device=\"m1\"}", t), -10.0);
    assert_eq!(f.one("1 / readings_temp{device=\"m1\"} * 0", t), 0.0);
    assert_eq!(
        f.json("readings_temp{device=\"m1\"} / 0", t)["result"][0]["value"][1],
        json!("+Inf")
    );
    assert_eq!(
        f.json("1 + 2 * 3", t),
        json!({"resultType":"scalar","result":[1_700_000_001,"7"]})
    );
    assert_eq!(
        f.json("0 / 0", t),
        json!({"resultType":"scalar","result":[1_700_000_001,"NaN"]})
    );
    assert_eq!(
        f.json("-1 / 0", t),
        json!({"resultType":"scalar","result":[1_700_000_001,"-Inf"]})
    );
    assert_eq!(f.one("(3 - 1) / 4", t), 0.5);
}

#[test]
fn instant_query_of_a_range_selector_gives_raw_points() {
    let f = fixture();
    assert_eq!(
        f.json("g[30s]", T0 + 60 * S),
        json!({"resultType":"matrix","result":[{"metric":{"__name__":"g","device":"m1"},
            "values":[[1_700_000_040,"1"],[1_700_000_050,"5"],[1_700_000_060,"9"]]}]})
    );
}

#[test]
fn range_queries_step_from_start_to_end_inclusive() {
    let f = fixture();
    // At T0 g has no point yet; then 1 (at 20s), 1 (at 40s), 9 (at 60s).
    assert_eq!(
        f.range_json("g", T0, T0 + 60 * S, 20 * S),
        json!({"resultType":"matrix","result":[{"metric":{"__name__":"g","device":"m1"},
            "values":[[1_700_000_020,"1"],[1_700_000_040,"1"],[1_700_000_060,"9"]]}]})
    );
    // An end between steps is not evaluated.
    assert_eq!(
        f.range_json("g", T0, T0 + 59 * S, 20 * S)["result"][0]["values"],
        json!([[1_700_000_020, "1"], [1_700_000_040, "1"]])
    );
    // A scalar is a series without labels at every step.
    assert_eq!(
        f.range_json("2 * 3", T0, T0 + 20 * S, 10 * S),
        json!({"resultType":"matrix","result":[{"metric":{},
            "values":[[1_700_000_000,"6"],[1_700_000_010,"6"],[1_700_000_020,"6"]]}]})
    );
    // Windows slide with the steps: (t-30s, t] at 30s, 45s, 60s.
    assert_eq!(
        f.range_json("sum_over_time(g[30s])", T0 + 30 * S, T0 + 60 * S, 15 * S)["result"][0]
            ["values"],
        json!([
            [1_700_000_030, "8"],
            [1_700_000_045, "6"],
            [1_700_000_060, "15"]
        ])
    );
    // A point goes stale 5 minutes after it was written.
    assert_eq!(
        f.range_json(
            "readings_temp{device=\"m1\"}",
            T0,
            T0 + 10 * 60 * S,
            150 * S
        )["result"][0]["values"],
        json!([[1_700_000_000, "10"], [1_700_000_150, "10"]])
    );
    // Series without any value in the range are left out; aggregations
    // per step.
    assert_eq!(
        f.range_json("count(readings_temp)", T0 - 60 * S, T0, 60 * S),
        json!({"resultType":"matrix","result":[{"metric":{},"values":[[1_700_000_000,"3"]]}]})
    );
    assert_eq!(
        f.range_json("rate(c[1m])", T0 + 60 * S, T0 + 60 * S, 60 * S)["result"][0]["metric"],
        json!({"device":"k1"})
    );
}

#[test]
fn range_query_errors() {
    let f = fixture();
    let st = TsdbStorage::new(&f.db);
    let o = EvalOptions::default();
    let e = range_query(&st, "g[5m]", T0, T0, S, &o).unwrap_err();
    assert!(e.to_string().contains("range vector"), "{e}");
    assert!(range_query(&st, "g", T0, T0, 0, &o).is_err());
    assert!(range_query(&st, "g", T0, T0 - 1, S, &o).is_err());
    let e = range_query(&st, "g", 0, 11_000 * 1000, 1000, &o).unwrap_err();
    assert!(e.to_string().contains("11000 points"), "{e}");
    // The sample limit counts points read and points in every window.
    let small = EvalOptions {
        max_samples: 20,
        ..EvalOptions::default()
    };
    assert!(instant_query(&st, "g", T0 + 60 * S, &small).is_ok());
    let e = range_query(
        &st,
        "count_over_time(g[1m])",
        T0,
        T0 + 60 * S,
        5 * S,
        &small,
    )
    .unwrap_err();
    assert_eq!(e.error_type(), "execution");
    assert!(e.to_string().contains("too many samples"), "{e}");
    // Extreme times do not overflow.
    range_query(
        &st,
        "rate(g[1y] offset -1y)",
        i64::MIN,
        i64::MAX,
        i64::MAX,
        &o,
    )
    .unwrap();
    assert!(instant_query(&st, "g offset -1y", i64::MAX, &o).is_ok());
    assert!(instant_query(&st, "rate(g[1y] offset 1y)", i64::MIN, &o).is_ok());
}

#[test]
fn error_body() {
    let f = fixture();
    let body: Response = f.instant("topk(2, g)", T0).into();
    assert_eq!(
        serde_json::to_value(body).unwrap(),
        json!({"status":"error","errorType":"bad_data","error":"aggregation \"topk\" is not supported"})
    );
    let body: Response = f.instant("g", T0 + 10 * S).into();
    assert_eq!(
        serde_json::to_value(body).unwrap()["status"],
        json!("success")
    );
}

#[test]
fn metadata_for_grafanas_metric_browser() {
    let f = fixture();
    let st = TsdbStorage::new(&f.db);
    let sel = promql::parse_selector("readings_temp{line=\"a\"}").unwrap();
    let found = promql::series(&st, &[sel]).unwrap();
    assert_eq!(
        serde_json::to_value(Response::from(Ok::<_, promql::Error>(found))).unwrap(),
        json!({"status":"success","data":[
            {"__name__":"readings_temp","device":"m1","line":"a"},
            {"__name__":"readings_temp","device":"m2","line":"a"}]})
    );
    assert_eq!(
        promql::label_names(&st, &[]).unwrap(),
        ["__name__", "device", "k", "line"]
    );
    assert_eq!(
        promql::label_values(&st, "__name__", &[]).unwrap(),
        [
            "c",
            "count",
            "g",
            "huge",
            "multi",
            "readings_temp",
            "running",
            "state",
            "z"
        ]
    );
    let m1 = promql::parse_selector("{device=\"m1\"}").unwrap();
    let m3 = promql::parse_selector("{device=\"m3\"}").unwrap();
    assert_eq!(
        promql::label_values(&st, "line", &[m1, m3]).unwrap(),
        ["a", "b"]
    );
    assert!(promql::parse_selector("rate(g[5m])").is_err());
    assert!(promql::parse_selector("g offset 1m").is_err());
    assert!(promql::parse_selector("{}").is_err());
}

#[test]
fn same_answers_from_chunks_and_after_reopening() {
    let f = fixture();
    let queries = [
        ("g", T0 + 60 * S),
        ("sum_over_time(g[1m])", T0 + 60 * S),
        ("rate(c[1m])", T0 + 80 * S),
        ("sum by (line) (readings_temp)", T0 + S),
        ("running", T0),
        ("state", T0),
    ];
    let answers = |db: &Tsdb| -> Vec<Json> {
        let st = TsdbStorage::new(db);
        queries
            .iter()
            .map(|(q, t)| {
                serde_json::to_value(instant_query(&st, q, *t, &EvalOptions::default()).unwrap())
                    .unwrap()
            })
            .collect()
    };
    let before = answers(&f.db);
    f.db.flush(T0 + 3_600 * S).unwrap();
    assert_eq!(answers(&f.db), before, "from chunk files");
    f.db.close().unwrap();
    let reopened = Tsdb::open(f._dir.path(), Options::default()).unwrap();
    assert_eq!(answers(&reopened), before, "after reopening");
}
