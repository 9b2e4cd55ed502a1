//! Queries over a real `Tsdb` in a temporary directory, with answers
//! computed by hand.

use std::sync::Arc;

use influxql::{query, Epoch, QueryOptions};
use serde_json::{json, Value as Json};
use tsdb::{Options, SeriesKey, Tsdb, Value, WritePoint};

/// 2023-11-14T22:13:00Z, in ms (a whole minute).
const T0: i64 = 1_699_999_980_000;
const S: i64 = 1000;

struct Fixture {
    _dir: tempfile::TempDir,
    db: Tsdb,
}

fn key(device: &str, metric: &str, labels: &[(&str, &str)]) -> Arc<SeriesKey> {
    Arc::new(SeriesKey::new("default", device, metric).with_labels(labels.iter().copied()))
}

/// - `cpu.usage` on d1 (region eu): 1 2 3 at T0, +10s, +20s and 10 at +70s;
/// - `cpu.usage` on d2 (region us): 5 at T0, 7 at +30s;
/// - `cpu.count` (integer) on d1: 4 at T0, 6 at +10s;
/// - `mem.free` on d1: 100 at T0; `temp` (no field part) on d3: 20.5 at T0;
/// - `cpu.usage` in namespace `other`, never visible.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut p = Vec::new();
    let mut put = |k: &Arc<SeriesKey>, ts: i64, value: Value| {
        p.push(WritePoint {
            series: k.clone(),
            ts,
            value,
        })
    };
    let u1 = key("d1", "cpu.usage", &[("region", "eu")]);
    for (t, v) in [(0, 1.0), (10, 2.0), (20, 3.0), (70, 10.0)] {
        put(&u1, T0 + t * S, Value::F64(v));
    }
    let u2 = key("d2", "cpu.usage", &[("region", "us")]);
    for (t, v) in [(0, 5.0), (30, 7.0)] {
        put(&u2, T0 + t * S, Value::F64(v));
    }
    let c1 = key("d1", "cpu.count", &[("region", "eu")]);
    for (t, v) in [(0, 4), (10, 6)] {
        put(&c1, T0 + t * S, Value::I64(v));
    }
    put(&key("d1", "mem.free", &[]), T0, Value::F64(100.0));
    put(&key("d3", "temp", &[]), T0, Value::F64(20.5));
    put(
        &Arc::new(SeriesKey::new("other", "d1", "cpu.usage")),
        T0,
        Value::F64(99.0),
    );
    db.write(&p).unwrap();
    Fixture { _dir: dir, db }
}

fn opts(epoch: Epoch) -> QueryOptions {
    QueryOptions {
        now_ms: T0 + 100 * S,
        epoch,
        database: "mw".into(),
    }
}

fn run(f: &Fixture, q: &str, epoch: Epoch) -> Json {
    serde_json::to_value(query(&f.db, q, &opts(epoch))).unwrap()
}

/// The values of the only series of the only statement.
fn values(f: &Fixture, q: &str) -> Json {
    let r = run(f, q, Epoch::Ms);
    r["results"][0]["series"][0]["values"].clone()
}

fn error_of(f: &Fixture, q: &str) -> String {
    let r = run(f, q, Epoch::Ms);
    r["error"]
        .as_str()
        .or(r["results"][0]["error"].as_str())
        .unwrap_or_else(|| panic!("no error for {q}: {r}"))
        .to_string()
}

#[test]
fn every_aggregate() {
    let f = fixture();
    let q = "SELECT mean(usage), min(usage), max(usage), sum(usage), count(usage), first(usage), last(usage) \
             FROM cpu WHERE device = 'd1' AND time >= '2023-11-14T22:13:00Z' AND time < '2023-11-14T22:14:00Z'";
    assert_eq!(
        run(&f, q, Epoch::Rfc3339),
        json!({"results":[{"statement_id":0,"series":[{
            "name":"cpu",
            "columns":["time","mean","min","max","sum","count","first","last"],
            "values":[["2023-11-14T22:13:00Z",2,1,3,6,3,1,3]]}]}]})
    );
    // A lone selector reports its point's time; the integer field keeps its type.
    assert_eq!(
        values(&f, "SELECT max(usage) FROM cpu WHERE device = 'd1'"),
        json!([[T0 + 70 * S, 10]])
    );
    assert_eq!(
        values(&f, "SELECT sum(count) AS total FROM cpu"),
        json!([[0, 10]])
    );
    assert_eq!(
        values(&f, "SELECT min(usage), min(usage) FROM cpu"),
        json!([[T0, 1, 1]])
    );
    let r = run(&f, "SELECT min(usage), min(usage) FROM cpu", Epoch::Ms);
    assert_eq!(
        r["results"][0]["series"][0]["columns"],
        json!(["time", "min", "min_1"])
    );
    assert_eq!(values(&f, "SELECT last(free) FROM mem"), json!([[T0, 100]]));
    assert_eq!(
        values(&f, "SELECT mean(value) FROM temp"),
        json!([[0, 20.5]])
    );
}

const RANGE: &str = "time >= 1699999980000ms AND time <= 1700000159999ms";

#[test]
fn group_by_time_and_tag_with_each_fill() {
    let f = fixture();
    let (a, b, c) = (T0, T0 + 60 * S, T0 + 120 * S);
    let q = |fill: &str| {
        run(
            &f,
            &format!("SELECT mean(usage) FROM cpu WHERE {RANGE} GROUP BY time(1m), device {fill}"),
            Epoch::Ms,
        )
    };
    let series = |d1: Json, d2: Json| {
        json!({"results":[{"statement_id":0,"series":[
            {"name":"cpu","tags":{"device":"d1"},"columns":["time","mean"],"values":d1},
            {"name":"cpu","tags":{"device":"d2"},"columns":["time","mean"],"values":d2}]}]})
    };
    let null = series(
        json!([[a, 2], [b, 10], [c, null]]),
        json!([[a, 6], [b, null], [c, null]]),
    );
    // count is 0 in an empty interval (fill(null) only).
    let r = run(
        &f,
        &format!("SELECT count(usage) FROM cpu WHERE {RANGE} GROUP BY time(1m), device"),
        Epoch::Ms,
    );
    assert_eq!(
        r["results"][0]["series"][1]["values"],
        json!([[a, 2], [b, 0], [c, 0]])
    );
    assert_eq!(q(""), null);
    assert_eq!(q("fill(null)"), null);
    assert_eq!(
        q("fill(none)"),
        series(json!([[a, 2], [b, 10]]), json!([[a, 6]]))
    );
    assert_eq!(
        q("fill(0)"),
        series(
            json!([[a, 2], [b, 10], [c, 0]]),
            json!([[a, 6], [b, 0], [c, 0]])
        )
    );
    assert_eq!(
        q("fill(-1.5)"),
        series(
            json!([[a, 2], [b, 10], [c, -1.5]]),
            json!([[a, 6], [b, -1.5], [c, -1.5]])
        )
    );
    assert_eq!(
        q("fill(previous)"),
        series(
            json!([[a, 2], [b, 10], [c, 10]]),
            json!([[a, 6], [b, 6], [c, 6]])
        )
    );
    // Intervals start at multiples of the interval: a range starting at
    // +30s still has its first row at T0 (holding only d2's 7).
    assert_eq!(
        values(
            &f,
            "SELECT count(usage) FROM cpu WHERE time >= 1700000010000ms AND time < 1700000100000ms GROUP BY time(1m)"
        ),
        json!([[a, 1], [b, 1]])
    );
    // Grouping by a label and by nothing but time, count and sum together.
    let r = run(
        &f,
        &format!("SELECT count(usage), sum(usage) FROM cpu WHERE {RANGE} GROUP BY time(2m), region fill(none)"),
        Epoch::S,
    );
    assert_eq!(
        r["results"][0]["series"],
        json!([
            {"name":"cpu","tags":{"region":"eu"},"columns":["time","count","sum"],"values":[[1_699_999_920, 3, 6], [1_700_000_040, 1, 10]]},
            {"name":"cpu","tags":{"region":"us"},"columns":["time","count","sum"],"values":[[1_699_999_920, 2, 12]]}
        ])
    );
}

#[test]
fn where_on_tags_and_regexes() {
    let f = fixture();
    let sum = |w: &str| values(&f, &format!("SELECT sum(usage) FROM cpu {w}"));
    assert_eq!(sum(""), json!([[0, 28]]));
    assert_eq!(sum("WHERE region =~ /^e/"), json!([[0, 16]]));
    assert_eq!(sum("WHERE \"region\" !~ /^e/"), json!([[0, 12]]));
    assert_eq!(sum("WHERE region != 'eu'"), json!([[0, 12]]));
    assert_eq!(sum("WHERE region <> 'eu' AND device = 'd1'"), json!(null));
    assert_eq!(
        sum("WHERE (\"device\" =~ /^(d1|d2)$/) AND (region = 'us')"),
        json!([[0, 12]])
    );
    assert_eq!(sum("WHERE nosuch = ''"), json!([[0, 28]]));
    assert_eq!(sum("WHERE nosuch = 'x'"), json!(null));
    // A statement with nothing to show has no series.
    assert_eq!(
        run(
            &f,
            "SELECT sum(usage) FROM cpu WHERE device = 'd9'",
            Epoch::Ms
        ),
        json!({"results":[{"statement_id":0}]})
    );
    // Another namespace is never read.
    assert_eq!(
        values(&f, "SELECT count(usage) FROM cpu WHERE device = 'd1'"),
        json!([[0, 4]])
    );
}

#[test]
fn time_ranges() {
    let f = fixture();
    let count = |w: &str| values(&f, &format!("SELECT count(usage) FROM cpu WHERE {w}"));
    // now is T0 + 100s.
    assert_eq!(count("time >= now() - 40s"), json!([[T0 + 60 * S, 1]]));
    assert_eq!(
        count("time > now() - 1h AND time <= now() - 50s"),
        json!([[T0 + 100 * S - 3_600 * S + 1, 5]])
    );
    // Epoch nanoseconds and a millisecond literal.
    assert_eq!(
        count("time >= 1699999980000ms AND time <= 1700000000000000000"),
        json!([[T0, 4]])
    );
    assert_eq!(
        count("time >= '2023-11-14T22:13:10Z' AND time < '2023-11-14T22:13:30Z'"),
        json!([[T0 + 10 * S, 2]])
    );
    assert_eq!(
        count("time >= '2023-11-14T22:13:10Z' + 1s"),
        json!([[T0 + 11 * S, 3]])
    );
    assert_eq!(count("time > now()"), json!(null));
    // GROUP BY time without an upper bound ends at now (T0 + 100s); 50s
    // intervals since the epoch start at T0 - 30s.
    assert_eq!(
        values(
            &f,
            "SELECT max(usage) FROM cpu WHERE time >= now() - 100s GROUP BY time(50s)"
        ),
        json!([[T0 - 30 * S, 5], [T0 + 20 * S, 7], [T0 + 70 * S, 10]])
    );
}

#[test]
fn raw_points() {
    let f = fixture();
    assert_eq!(
        run(
            &f,
            "SELECT usage FROM cpu WHERE device = 'd2'",
            Epoch::Rfc3339
        ),
        json!({"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage"],
            "values":[["2023-11-14T22:13:00Z",5],["2023-11-14T22:13:30Z",7]]}]}]})
    );
    assert_eq!(
        values(
            &f,
            "SELECT usage, \"count\" FROM cpu WHERE device = 'd1' AND time <= now() - 90s"
        ),
        json!([[T0, 1, 4], [T0 + 10 * S, 2, 6]])
    );
    assert_eq!(
        values(
            &f,
            "SELECT usage FROM \"mw\".\"autogen\".\"cpu\" WHERE device = 'd1' LIMIT 2"
        ),
        json!([[T0, 1], [T0 + 10 * S, 2]])
    );
    let r = run(
        &f,
        "SELECT usage FROM cpu WHERE time < now() - 80s GROUP BY device",
        Epoch::Ns,
    );
    assert_eq!(
        r["results"][0]["series"],
        json!([
            {"name":"cpu","tags":{"device":"d1"},"columns":["time","usage"],"values":[[T0 * 1_000_000, 1], [(T0 + 10 * S) * 1_000_000, 2]]},
            {"name":"cpu","tags":{"device":"d2"},"columns":["time","usage"],"values":[[T0 * 1_000_000, 5]]}
        ])
    );
}

#[test]
fn show_statements_and_several_results() {
    let f = fixture();
    let q = "SHOW MEASUREMENTS; SHOW TAG KEYS FROM cpu; SHOW TAG VALUES FROM \"cpu\" WITH KEY = \"region\"; \
             SHOW FIELD KEYS FROM cpu; SHOW DATABASES; CREATE DATABASE mw; SHOW MEASUREMENTS LIMIT 1";
    assert_eq!(
        run(&f, q, Epoch::Rfc3339),
        json!({"results":[
            {"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"],["temp"]]}]},
            {"statement_id":1,"series":[{"name":"cpu","columns":["tagKey"],"values":[["device"],["region"]]}]},
            {"statement_id":2,"series":[{"name":"cpu","columns":["key","value"],"values":[["region","eu"],["region","us"]]}]},
            {"statement_id":3,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["count","integer"],["usage","float"]]}]},
            {"statement_id":4,"series":[{"name":"databases","columns":["name"],"values":[["mw"]]}]},
            {"statement_id":5},
            {"statement_id":6,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"]]}]}
        ]})
    );
    assert_eq!(
        run(&f, "SHOW TAG VALUES WITH KEY = device", Epoch::Ms)["results"][0]["series"],
        json!([
            {"name":"cpu","columns":["key","value"],"values":[["device","d1"],["device","d2"]]},
            {"name":"mem","columns":["key","value"],"values":[["device","d1"]]},
            {"name":"temp","columns":["key","value"],"values":[["device","d3"]]}
        ])
    );
    assert_eq!(
        run(&f, "SHOW RETENTION POLICIES ON \"mw\"", Epoch::Ms),
        json!({"results":[{"statement_id":0,"series":[{
            "columns":["name","duration","shardGroupDuration","replicaN","default"],
            "values":[["autogen","0s","168h0m0s",1,true]]}]}]})
    );
    assert_eq!(
        run(&f, "SHOW MEASUREMENTS ON mw", Epoch::Ms)["results"][0]["series"][0]["values"],
        json!([["cpu"], ["mem"], ["temp"]])
    );
    assert_eq!(
        run(&f, "SHOW FIELD KEYS", Epoch::Ms)["results"][0]["series"][2],
        json!({"name":"temp","columns":["fieldKey","fieldType"],"values":[["value","float"]]})
    );
}

#[test]
fn errors() {
    let f = fixture();
    // A query that does not parse is one error for the whole.
    let r = run(&f, "SELEC usage FROM cpu", Epoch::Ms);
    assert!(r["results"].is_null());
    assert!(r["error"].as_str().unwrap().contains("SELEC"), "{r}");
    for (q, needle) in [
        ("SELECT median(usage) FROM cpu", "median"),
        ("SELECT * FROM cpu", "SELECT *"),
        (
            "SELECT usage FROM cpu WHERE device = 'd1' OR device = 'd2'",
            "OR",
        ),
        ("SELECT usage FROM cpu WHERE usage > 1", "field conditions"),
        (
            "SELECT mean(usage) FROM cpu GROUP BY time(1m) fill(linear)",
            "fill(linear)",
        ),
        ("SELECT usage FROM cpu ORDER BY time DESC", "ORDER BY"),
        ("SELECT usage FROM cpu WHERE region =~ /(/", "regex"),
        ("SELECT usage FROM cpu WHERE time > 'yesterday'", "bad time"),
        ("DROP MEASUREMENT cpu", "DROP"),
        ("SHOW CONTINUOUS QUERIES", "CONTINUOUS"),
        ("SELECT usage FROM cpu WHERE region = 'eu", "unterminated"),
        ("", "empty"),
    ] {
        let e = error_of(&f, q);
        assert!(e.contains(needle), "{q}: {e}");
    }
    // A statement that parses but cannot run fails alone.
    let r = run(
        &f,
        "SELECT mean(usage) FROM cpu GROUP BY time(1s); SELECT count(usage) FROM cpu",
        Epoch::Ms,
    );
    assert!(
        r["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("too many points"),
        "{r}"
    );
    assert_eq!(r["results"][1]["series"][0]["values"], json!([[0, 6]]));
    let r = run(
        &f,
        "SELECT mean(usage), usage FROM cpu; SELECT usage FROM cpu GROUP BY time(1m)",
        Epoch::Ms,
    );
    assert!(
        r["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("mixing"),
        "{r}"
    );
    assert!(
        r["results"][1]["error"]
            .as_str()
            .unwrap()
            .contains("aggregate"),
        "{r}"
    );
}
