//! Answers byte for byte as `influxd` 1.6.7 (Debian `influxdb`) gave them
//! for the same data (written there as line protocol `cpu,device=d1,
//! region=eu usage=1,count=4i <T0>` ... with `precision=ms`) and the same
//! queries with `epoch=ms` (RFC 3339 where said).

use std::sync::Arc;

use influxql::{query, Epoch, QueryOptions};
use tsdb::{Options, SeriesKey, Tsdb, Value, WritePoint};

const T0: i64 = 1_699_999_980_000;

fn db() -> (tempfile::TempDir, Tsdb) {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let mut p = Vec::new();
    let mut put = |dev: &str, metric: &str, labels: &[(&str, &str)], dt: i64, value: Value| {
        p.push(WritePoint {
            series: Arc::new(
                SeriesKey::new("default", dev, metric).with_labels(labels.iter().copied()),
            ),
            ts: T0 + dt * 1000,
            value,
        })
    };
    let eu = [("region", "eu")];
    let us = [("region", "us")];
    for (dt, v) in [(0, 1.0), (10, 2.0), (20, 3.0), (70, 10.0)] {
        put("d1", "cpu.usage", &eu, dt, Value::F64(v));
    }
    put("d1", "cpu.count", &eu, 0, Value::I64(4));
    put("d1", "cpu.count", &eu, 10, Value::I64(6));
    put("d2", "cpu.usage", &us, 0, Value::F64(5.0));
    put("d2", "cpu.usage", &us, 30, Value::F64(7.0));
    put("d1", "mem.free", &[], 0, Value::F64(100.0));
    put("d3", "temp", &[], 0, Value::F64(20.5));
    db.write(&p).unwrap();
    (dir, db)
}

#[test]
fn same_json_as_influxd_1_6() {
    let (_dir, db) = db();
    let range = "time >= 1699999980000ms AND time <= 1700000159999ms";
    let cases: Vec<(String, Epoch, &str)> = vec![
        (
            "SELECT mean(usage), min(usage), max(usage), sum(usage), count(usage), first(usage), last(usage) FROM cpu WHERE device = 'd1' AND time >= '2023-11-14T22:13:00Z' AND time < '2023-11-14T22:14:00Z'".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","mean","min","max","sum","count","first","last"],"values":[[1699999980000,2,1,3,6,3,1,3]]}]}]}"#,
        ),
        (
            "SELECT max(usage) FROM cpu WHERE device = 'd1'".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","max"],"values":[[1700000050000,10]]}]}]}"#,
        ),
        (
            "SELECT sum(count) AS total FROM cpu".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","total"],"values":[[0,10]]}]}]}"#,
        ),
        (
            "SELECT min(usage), min(usage) FROM cpu".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","min","min_1"],"values":[[1699999980000,1,1]]}]}]}"#,
        ),
        (
            format!("SELECT count(usage) FROM cpu WHERE {range} GROUP BY time(1m), device"),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"device":"d1"},"columns":["time","count"],"values":[[1699999980000,3],[1700000040000,1],[1700000100000,0]]},{"name":"cpu","tags":{"device":"d2"},"columns":["time","count"],"values":[[1699999980000,2],[1700000040000,0],[1700000100000,0]]}]}]}"#,
        ),
        (
            format!("SELECT mean(usage) FROM cpu WHERE {range} GROUP BY time(1m), device fill(previous)"),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"device":"d1"},"columns":["time","mean"],"values":[[1699999980000,2],[1700000040000,10],[1700000100000,10]]},{"name":"cpu","tags":{"device":"d2"},"columns":["time","mean"],"values":[[1699999980000,6],[1700000040000,6],[1700000100000,6]]}]}]}"#,
        ),
        (
            format!("SELECT count(usage) FROM cpu WHERE {range} GROUP BY time(1m), device fill(none)"),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"device":"d1"},"columns":["time","count"],"values":[[1699999980000,3],[1700000040000,1]]},{"name":"cpu","tags":{"device":"d2"},"columns":["time","count"],"values":[[1699999980000,2]]}]}]}"#,
        ),
        (
            format!("SELECT count(usage), sum(usage) FROM cpu WHERE {range} GROUP BY time(1m) fill(5)"),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count","sum"],"values":[[1699999980000,5,18],[1700000040000,1,10],[1700000100000,5,5]]}]}]}"#,
        ),
        (
            "SELECT usage, \"count\" FROM cpu WHERE device = 'd1'".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage","count"],"values":[[1699999980000,1,4],[1699999990000,2,6],[1700000000000,3,null],[1700000050000,10,null]]}]}]}"#,
        ),
        (
            "SELECT sum(usage) FROM cpu WHERE nosuch = ''".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","sum"],"values":[[0,28]]}]}]}"#,
        ),
        (
            "SELECT sum(usage) FROM cpu WHERE region <> 'eu' AND device = 'd1'".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0}]}"#,
        ),
        (
            "SELECT usage FROM cpu WHERE device='d1' LIMIT 1".into(),
            Epoch::Rfc3339,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage"],"values":[["2023-11-14T22:13:00Z",1]]}]}]}"#,
        ),
        (
            "SELECT max(usage) FROM cpu WHERE time >= 1700000010000ms - 1h AND time <= 1700000010000ms GROUP BY time(50s) fill(none)".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","max"],"values":[[1699999950000,5],[1700000000000,7]]}]}]}"#,
        ),
        (
            "SHOW TAG KEYS FROM cpu; SHOW FIELD KEYS; SHOW RETENTION POLICIES; SHOW DATABASES".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["tagKey"],"values":[["device"],["region"]]}]},{"statement_id":1,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["count","integer"],["usage","float"]]},{"name":"mem","columns":["fieldKey","fieldType"],"values":[["free","float"]]},{"name":"temp","columns":["fieldKey","fieldType"],"values":[["value","float"]]}]},{"statement_id":2,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true]]}]},{"statement_id":3,"series":[{"name":"databases","columns":["name"],"values":[["mw"]]}]}]}"#,
        ),
        (
            "SELECT min(usage), max(usage) FROM cpu".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","min","max"],"values":[[0,1,10]]}]}]}"#,
        ),
        (
            "SELECT mean(count), last(count) FROM cpu WHERE time >= 1699999980000ms GROUP BY time(1m), region fill(none)".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"region":"eu"},"columns":["time","mean","last"],"values":[[1699999980000,5,6]]}]}]}"#,
        ),
        (
            "SELECT usage FROM cpu WHERE time < 1700000000000ms GROUP BY device".into(),
            Epoch::S,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"device":"d1"},"columns":["time","usage"],"values":[[1699999980,1],[1699999990,2]]},{"name":"cpu","tags":{"device":"d2"},"columns":["time","usage"],"values":[[1699999980,5]]}]}]}"#,
        ),
        (
            "SHOW MEASUREMENTS; SHOW TAG VALUES WITH KEY = device".into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"],["temp"]]}]},{"statement_id":1,"series":[{"name":"cpu","columns":["key","value"],"values":[["device","d1"],["device","d2"]]},{"name":"mem","columns":["key","value"],"values":[["device","d1"]]},{"name":"temp","columns":["key","value"],"values":[["device","d3"]]}]}]}"#,
        ),
        (
            "SELECT last(usage) FROM cpu WHERE region =~ /u/ AND time >= '2023-11-14T22:13:00.5Z'".into(),
            Epoch::Rfc3339,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","last"],"values":[["2023-11-14T22:14:10Z",10]]}]}]}"#,
        ),
        (
            // As Grafana writes it.
            r#"SELECT mean("usage") FROM "autogen"."cpu" WHERE ("device" =~ /^(d1|d2)$/) and time >= 1699999980000ms and time <= 1700000159999ms GROUP BY time(3m) fill(null)"#.into(),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","mean"],"values":[[1699999920000,4.666666666666667],[1700000100000,null]]}]}]}"#,
        ),
        (
            format!("SELECT count(usage) FROM cpu WHERE {range} GROUP BY time(1m) fill(previous)"),
            Epoch::Ms,
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","count"],"values":[[1699999980000,5],[1700000040000,1],[1700000100000,1]]}]}]}"#,
        ),
    ];
    for (q, epoch, want) in cases {
        let opts = QueryOptions {
            now_ms: T0 + 100_000,
            epoch,
            database: "mw".into(),
        };
        let got = serde_json::to_string(&query(&db, &q, &opts)).unwrap();
        assert_eq!(got, want, "{q}");
    }
}
