//! Writes: line protocol (v1, v2, gzip, precision), device JSON, batch
//! JSON, all-or-nothing rejection, and durability after a 204.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tsdb::{Selector, Value};

use crate::harness::{gzip, raw_points, start, NOW};

#[tokio::test]
async fn line_protocol_write_then_raw_query() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = "cpu,device=d1,site=A usage=1.5,temp=40i 1700000000000000000\n\
                cpu,device=d1,site=A usage=2.5 1700000001000000000\n\
                \n\
                # a comment\n\
                cpu,device=d2 usage=3,mode=\"eco\",on=true 1700000002000000000\n";
    let r = srv
        .post("/api/v2/write?org=o&bucket=b", body.as_bytes())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());

    let q = format!(
        "/api/telemetry/query?device=d1&metric=cpu.usage&start={}&end={}",
        NOW,
        NOW + 10_000
    );
    let v = srv.get(&q).await.json();
    assert_eq!(
        raw_points(&v),
        vec![
            ("d1".into(), "cpu.usage".into(), NOW, json!(1.5)),
            ("d1".into(), "cpu.usage".into(), NOW + 1000, json!(2.5)),
        ]
    );
    assert_eq!(v["series"][0]["labels"], json!({"site": "A"}));
    assert_eq!(v["next"], json!(null));

    // Every type comes back as written; `*` and lists select devices and metrics.
    let q =
        "/api/telemetry/query?device=*&metric=cpu.temp,cpu.mode,cpu.on&start=now-1h&end=now%2B1h";
    let got = raw_points(&srv.get(q).await.json());
    assert_eq!(
        got,
        vec![
            ("d1".into(), "cpu.temp".into(), NOW, json!(40)),
            ("d2".into(), "cpu.mode".into(), NOW + 2000, json!("eco")),
            ("d2".into(), "cpu.on".into(), NOW + 2000, json!(true)),
        ]
    );
    let q = "/api/telemetry/query?device=d1,d2&metric=cpu.usage&start=2023-11-14T22:13:20Z&end=2023-11-14T22:13:22.001Z";
    assert_eq!(raw_points(&srv.get(q).await.json()).len(), 3);
}

#[tokio::test]
async fn default_range_is_the_last_hour() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = format!(
        "m,device=d f=1 {}\nm,device=d f=2 {}\nm,device=d f=3 {}\n",
        NOW - 7_200_000,
        NOW - 1_800_000,
        NOW
    );
    let r = srv
        .post("/api/v2/write?precision=ms", body.as_bytes())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = srv.get("/api/telemetry/query?device=d").await.json();
    let ts: Vec<i64> = raw_points(&v).iter().map(|p| p.2).collect();
    assert_eq!(ts, vec![NOW - 1_800_000, NOW]);
    assert_eq!(v["end"], json!(NOW + 1));
    assert_eq!(v["start"], json!(NOW + 1 - 3_600_000));
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("m,device=g f={i} {}\n", NOW + i));
    }
    let z = gzip(text.as_bytes());
    assert!(z.len() < text.len() / 4);
    let r = srv
        .req(
            "POST",
            "/write?db=telegraf&precision=ms",
            &[("Content-Encoding", "gzip")],
            &z,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = srv
        .get(&format!(
            "/api/telemetry/query?device=g&start={NOW}&end={}",
            NOW + 1000
        ))
        .await
        .json();
    let got = raw_points(&v);
    assert_eq!(got.len(), 1000);
    assert_eq!(
        got[999],
        ("g".into(), "m.f".into(), NOW + 999, json!(999.0))
    );

    // Gzip also works for JSON, and garbage is a 400.
    let z = gzip(br#"{"temp": 1.5}"#);
    let r = srv
        .req(
            "POST",
            "/api/telemetry/zd",
            &[("Content-Encoding", "gzip")],
            &z,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = srv
        .req(
            "POST",
            "/api/telemetry/zd",
            &[("Content-Encoding", "gzip")],
            b"nope",
        )
        .await;
    r.problem(400, "bad_body");
    let r = srv
        .req(
            "POST",
            "/api/telemetry/zd",
            &[("Content-Encoding", "br")],
            b"{}",
        )
        .await;
    let p = r.problem(415, "unsupported_encoding");
    assert_eq!(p["field"], "Content-Encoding");
}

#[tokio::test]
async fn precision_handling() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let cases: [(&str, &str, i64); 10] = [
        ("/api/v2/write", "p ns=1 1700000000000000000", NOW),
        (
            "/api/v2/write?precision=ns",
            "p ns2=1 1700000000005999999",
            NOW + 5,
        ),
        (
            "/api/v2/write?precision=us",
            "p us=1 1700000000002000",
            NOW + 2,
        ),
        (
            "/api/v2/write?precision=ms",
            "p ms=1 1700000000001",
            NOW + 1,
        ),
        ("/api/v2/write?precision=s", "p s=1 1700000000", NOW),
        ("/write?precision=n", "p n=1 1700000000003000000", NOW + 3),
        ("/write?precision=u", "p u=1 1700000000004000", NOW + 4),
        ("/write?precision=s", "p s1=1 1700000001", NOW + 1000),
        ("/write?precision=m", "p m=1 28333333", 28_333_333 * 60_000),
        ("/write?precision=h", "p h=1 472222", 472_222 * 3_600_000),
    ];
    for (path, line, _) in &cases {
        let r = srv.post(path, line.as_bytes()).await;
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }
    // Lines without a timestamp get server time truncated to the precision.
    srv.now.store(NOW + 1234, Ordering::Relaxed);
    for (path, line) in [
        ("/api/v2/write", "p none_ns=1"),
        ("/api/v2/write?precision=s", "p none_s=1"),
        ("/write?precision=m", "p none_m=1"),
    ] {
        let r = srv.post(path, line.as_bytes()).await;
        assert_eq!(r.status, 204, "{path}: {}", r.text());
    }
    let v = srv
        .get("/api/telemetry/query?device=p&start=0&end=now%2B1d")
        .await
        .json();
    let got = raw_points(&v);
    let ts_of = |metric: &str| {
        got.iter()
            .find(|p| p.1 == format!("p.{metric}"))
            .map(|p| p.2)
            .unwrap_or_else(|| panic!("no {metric} in {got:?}"))
    };
    for (path, line, want) in &cases {
        let field = line.split(['=', ' ']).nth(1).unwrap();
        assert_eq!(ts_of(field), *want, "{path} {line}");
    }
    assert_eq!(ts_of("none_ns"), NOW + 1234);
    assert_eq!(ts_of("none_s"), NOW + 1000);
    assert_eq!(ts_of("none_m"), NOW + 1234 - (NOW + 1234) % 60_000);

    // v2 knows no minutes; unknown units are refused naming the parameter.
    for path in ["/api/v2/write?precision=m", "/write?precision=d"] {
        let p = srv.post(path, b"p x=1").await.problem(400, "bad_parameter");
        assert_eq!(p["field"], "precision");
    }
}

#[tokio::test]
async fn a_bad_line_rejects_the_whole_request() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = "m,device=x f=1 1700000000000000000\n\
                m,device=x f=2 1700000001000000000\n\
                m,device=x f\n\
                m,device=x f=4 1700000003000000000\n";
    for path in ["/api/v2/write", "/write?db=x"] {
        let r = srv.post(path, body.as_bytes()).await;
        let p = r.problem(400, "bad_line");
        assert_eq!(p["line"], 3, "{p}");
        assert!(p["detail"].as_str().unwrap().contains("line 3"), "{p}");
    }
    // Invalid UTF-8 on line 2 is also reported by line.
    let r = srv
        .post("/api/v2/write", b"m,device=x f=1\nm,device=\xff f=1\n")
        .await;
    assert_eq!(r.problem(400, "bad_line")["line"], 2);

    let v = srv
        .get("/api/telemetry/query?device=*&start=0&end=now%2B1d")
        .await
        .json();
    assert_eq!(v["series"], json!([]));
    let v = srv.get("/api/devices/x/series").await.json();
    assert_eq!(v["series"], json!([]));
    assert_eq!(srv.get("/api/telemetry/stats").await.json()["series"], 0);

    // A type conflict with stored data is refused, also as a whole.
    let r = srv.post("/api/v2/write", b"t,device=x f=1").await;
    assert_eq!(r.status, 204);
    let r = srv
        .post("/api/v2/write", b"t,device=x g=1\nt,device=x f=\"text\"")
        .await;
    r.problem(400, "type_conflict");
    let v = srv
        .get("/api/telemetry/query?device=x&metric=t.f,t.g&start=0&end=now%2B1d")
        .await
        .json();
    assert_eq!(raw_points(&v).len(), 1, "{v}");
}

#[tokio::test]
async fn device_json_and_batch_json() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    // The three device forms.
    let r = srv
        .post("/api/telemetry/dev1", br#"{"temp": 21.5, "on": true}"#)
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let body = format!(r#"{{"ts": {}, "values": {{"temp": 20}}}}"#, NOW - 60_000);
    assert_eq!(
        srv.post("/api/telemetry/dev1", body.as_bytes())
            .await
            .status,
        204
    );
    let body = format!(
        r#"[{{"ts": {}, "values": {{"temp": 19}}}}, {{"rpm": 1200}}]"#,
        NOW - 120_000
    );
    assert_eq!(
        srv.post("/api/telemetry/dev1", body.as_bytes())
            .await
            .status,
        204
    );
    let v = srv
        .get("/api/telemetry/query?device=dev1&metric=temp")
        .await
        .json();
    let got: Vec<(i64, serde_json::Value)> =
        raw_points(&v).into_iter().map(|p| (p.2, p.3)).collect();
    assert_eq!(
        got,
        vec![
            (NOW - 120_000, json!(19.0)),
            (NOW - 60_000, json!(20.0)),
            (NOW, json!(21.5))
        ]
    );
    let r = srv.post("/api/telemetry/dev1", br#"{"a": {"b": 1}}"#).await;
    r.problem(400, "bad_body");

    // The batch form, with labels and RFC 3339 timestamps.
    let body = json!({"points": [
        {"device": "b1", "metric": "temp", "ts": NOW, "value": 1.5, "labels": {"fleet": "North"}},
        {"device": "b1", "metric": "temp", "ts": "2023-11-14T22:13:21Z", "value": 2.5, "labels": {"fleet": "North"}},
        {"device": "b2", "metric": "temp", "value": 7, "labels": {"fleet": "South"}},
        {"device": "b2", "metric": "state", "value": "running"},
    ]});
    let r = srv
        .post("/api/telemetry", body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let v = srv
        .get("/api/telemetry/query?device=*&metric=temp&label.fleet=North&end=now%2B1m")
        .await
        .json();
    assert_eq!(
        raw_points(&v),
        vec![
            ("b1".into(), "temp".into(), NOW, json!(1.5)),
            ("b1".into(), "temp".into(), NOW + 1000, json!(2.5)),
        ]
    );
    assert_eq!(v["series"][0]["labels"], json!({"fleet": "North"}));

    // A bad element names its path and nothing of the batch is stored.
    let body = json!({"points": [
        {"device": "b3", "metric": "temp", "value": 1},
        {"device": "b3", "metric": "temp", "value": null},
    ]});
    let r = srv
        .post("/api/telemetry", body.to_string().as_bytes())
        .await;
    assert_eq!(r.problem(400, "bad_body")["field"], "points[1].value");
    assert_eq!(
        srv.get("/api/devices/b3/series").await.json()["series"],
        json!([])
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let r = srv
        .post(
            "/api/v2/write?precision=ms",
            format!("dur,device=d1 v=42 {NOW}\ndur,device=d1 w=\"x\" {NOW}").as_bytes(),
        )
        .await;
    assert_eq!(r.status, 204);
    let body = json!({"points": [{"device": "d1", "metric": "batch", "ts": NOW, "value": true}]});
    let r = srv
        .post("/api/telemetry", body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 204);

    // Stop serving and drop every handle without closing the store: only
    // what the WAL holds can come back.
    let tsdb = srv.stop().await;
    assert_eq!(
        Arc::strong_count(&tsdb),
        1,
        "the router still holds the store"
    );
    drop(tsdb);

    let tsdb = tsdb::Tsdb::open(dir.path(), tsdb::Options::default()).unwrap();
    let got = tsdb
        .query_raw(
            &Selector::namespace("default").device("d1"),
            NOW,
            NOW + 1,
            10,
        )
        .unwrap();
    let values: Vec<(String, Value)> = got
        .iter()
        .map(|s| (s.series.metric().to_string(), s.points[0].value.clone()))
        .collect();
    assert_eq!(
        values,
        vec![
            ("batch".into(), Value::Bool(true)),
            ("dur.v".into(), Value::F64(42.0)),
            ("dur.w".into(), Value::Str(Arc::from("x"))),
        ]
    );
}
