//! Queries: aggregates against known values, latest, CSV, paging, series
//! listing and stats.

use serde_json::{json, Value as Json};

use crate::harness::{raw_points, start, Server, NOW};

/// 2023-11-14T22:10:00Z, a multiple of 10 minutes before `NOW`.
const T0: i64 = 1_699_999_800_000;

/// Device `a` (fleet South) holds `i` and device `b` (fleet North) holds
/// `100` at `T0 + i` minutes, `i` in 0..20.
async fn load_agg_data(srv: &Server) {
    let mut points = Vec::new();
    for i in 0..20 {
        let ts = T0 + i * 60_000;
        points.push(json!({"device": "a", "metric": "temp", "ts": ts, "value": i, "labels": {"fleet": "South"}}));
        points.push(json!({"device": "b", "metric": "temp", "ts": ts, "value": 100, "labels": {"fleet": "North"}}));
    }
    let r = srv
        .post(
            "/api/telemetry",
            json!({ "points": points }).to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
}

fn agg_points(s: &Json) -> Vec<(i64, f64)> {
    s["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ts"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
        .collect()
}

#[tokio::test]
async fn aggregates_match_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    load_agg_data(&srv).await;
    let (b0, b1) = (T0, T0 + 600_000);
    let range = format!("start={T0}&end={}", T0 + 1_200_000);
    for (agg, want) in [
        ("avg", [4.5, 14.5]),
        ("min", [0.0, 10.0]),
        ("max", [9.0, 19.0]),
        ("sum", [45.0, 145.0]),
        ("count", [10.0, 10.0]),
        ("first", [0.0, 10.0]),
        ("last", [9.0, 19.0]),
    ] {
        for bucket in ["10m", "600000"] {
            let v = srv
                .get(&format!(
                    "/api/telemetry/query?device=a&metric=temp&{range}&agg={agg}&bucket={bucket}"
                ))
                .await
                .json();
            assert_eq!(v["series"].as_array().unwrap().len(), 1, "{v}");
            assert_eq!(
                v["series"][0]["group"],
                json!({"device": "a", "metric": "temp", "labels": {"fleet": "South"}})
            );
            assert_eq!(
                agg_points(&v["series"][0]),
                vec![(b0, want[0]), (b1, want[1])],
                "{agg}"
            );
            assert_eq!(v["bucket_ms"], 600_000);
        }
    }

    // Both devices, several groupings.
    let q = |extra: &str| {
        format!("/api/telemetry/query?device=a,b&metric=temp&{range}&agg=avg&bucket=10m&{extra}")
    };
    let v = srv.get(&q("group_by=all")).await.json();
    assert_eq!(v["series"][0]["group"], json!({}));
    assert_eq!(agg_points(&v["series"][0]), vec![(b0, 52.25), (b1, 57.25)]);

    let v = srv.get(&q("group_by=device")).await.json();
    let groups: Vec<&Json> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["group"])
        .collect();
    assert_eq!(
        groups,
        vec![&json!({"device": "a"}), &json!({"device": "b"})]
    );
    assert_eq!(agg_points(&v["series"][1]), vec![(b0, 100.0), (b1, 100.0)]);

    let v = srv.get(&q("group_by=label:fleet")).await.json();
    let groups: Vec<&Json> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["group"])
        .collect();
    assert_eq!(
        groups,
        vec![
            &json!({"label.fleet": "North"}),
            &json!({"label.fleet": "South"})
        ]
    );

    let v = srv
        .get(&format!(
            "/api/telemetry/query?device=*&{range}&agg=max&bucket=20m&group_by=all&label.fleet=South"
        ))
        .await
        .json();
    assert_eq!(
        agg_points(&v["series"][0]),
        vec![(T0 - 600_000, 9.0), (b1, 19.0)]
    );

    // An unaligned range and 1-minute buckets read raw data and agree.
    let v = srv
        .get(&format!(
            "/api/telemetry/query?device=a&start={}&end={}&agg=sum&bucket=1m",
            T0 + 90_000,
            T0 + 210_000
        ))
        .await
        .json();
    assert_eq!(
        agg_points(&v["series"][0]),
        vec![(T0 + 120_000, 2.0), (T0 + 180_000, 3.0)]
    );
}

#[tokio::test]
async fn latest_values_per_device_and_metric() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = format!(
        "s,device=d1 temp=1,rpm=10i {a}\ns,device=d1 temp=2 {b}\ns,device=d2 temp=3 {a}\ns,device=d3 temp=4 {b}\n",
        a = NOW - 1000,
        b = NOW
    );
    assert_eq!(
        srv.post("/api/v2/write?precision=ms", body.as_bytes())
            .await
            .status,
        204
    );
    let v = srv
        .get("/api/telemetry/latest?device=d1,d2&metric=s.temp,s.rpm")
        .await
        .json();
    let got: Vec<(String, String, i64, Json)> = v["latest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["device"].as_str().unwrap().to_string(),
                e["metric"].as_str().unwrap().to_string(),
                e["ts"].as_i64().unwrap(),
                e["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("d1".into(), "s.rpm".into(), NOW - 1000, json!(10)),
            ("d1".into(), "s.temp".into(), NOW, json!(2.0)),
            ("d2".into(), "s.temp".into(), NOW - 1000, json!(3.0)),
        ]
    );
    let v = srv
        .get("/api/telemetry/latest?device=*&metric=s.temp")
        .await
        .json();
    assert_eq!(v["latest"].as_array().unwrap().len(), 3);
    let p = srv
        .get("/api/telemetry/latest?metric=s.temp")
        .await
        .problem(400, "bad_parameter");
    assert_eq!(p["field"], "device");
}

#[tokio::test]
async fn csv_output() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = format!(
        "c,device=d1,site=A\\ B,zone=z1 v=1.5 {NOW}\nc,device=d1,site=A\\ B,zone=z1 v=2 {}\nc,device=d1 note=\"a, \\\"b\\\"\" {NOW}\n",
        NOW + 1000
    );
    let r = srv
        .post("/api/v2/write?precision=ms", body.as_bytes())
        .await;
    assert_eq!(r.status, 204, "{}", r.text());

    let want = format!(
        "ts,device,metric,labels,value\r\n\
         {NOW},d1,c.v,site=A B;zone=z1,1.5\r\n\
         {},d1,c.v,site=A B;zone=z1,2.0\r\n",
        NOW + 1000
    );
    let r = srv
        .get("/api/telemetry/query?device=d1&metric=c.v&format=csv&end=now%2B1m")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(r.text(), want);
    let r = srv
        .get_with(
            "/api/telemetry/query?device=d1&metric=c.v&end=now%2B1m",
            &[("Accept", "text/csv")],
        )
        .await;
    assert_eq!(r.text(), want);
    // format=json wins over Accept.
    let r = srv
        .get_with(
            "/api/telemetry/query?device=d1&metric=c.v&format=json",
            &[("Accept", "text/csv")],
        )
        .await;
    assert_eq!(r.header("content-type"), Some("application/json"));

    // Quoting of commas and quotes.
    let r = srv
        .get("/api/telemetry/query?device=d1&metric=c.note&format=csv")
        .await;
    assert_eq!(
        r.text(),
        format!("ts,device,metric,labels,value\r\n{NOW},d1,c.note,,\"a, \"\"b\"\"\"\r\n")
    );

    // Aggregates and latest.
    let r = srv
        .get(&format!(
            "/api/telemetry/query?device=d1&metric=c.v&agg=count&bucket=1h&group_by=device&format=csv&start={}&end={}",
            NOW - NOW % 3_600_000,
            NOW - NOW % 3_600_000 + 3_600_000
        ))
        .await;
    assert_eq!(
        r.text(),
        format!("ts,device,value\r\n{},d1,2.0\r\n", NOW - NOW % 3_600_000)
    );
    let r = srv
        .get_with(
            "/api/telemetry/latest?device=d1&metric=c.v",
            &[("Accept", "text/csv")],
        )
        .await;
    assert_eq!(
        r.text(),
        format!(
            "device,metric,labels,ts,value\r\nd1,c.v,site=A B;zone=z1,{},2.0\r\n",
            NOW + 1000
        )
    );
}

#[tokio::test]
async fn large_answers_are_paged_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut body = String::new();
    for t in [1, 2, 3, 4, 5] {
        body.push_str(&format!("pg,device=d1 v={t} {}\n", NOW + t));
    }
    for t in [2, 4] {
        body.push_str(&format!("pg,device=d2 v={t} {}\n", NOW + t));
    }
    assert_eq!(
        srv.post("/api/v2/write?precision=ms", body.as_bytes())
            .await
            .status,
        204
    );
    let mut path = format!(
        "/api/telemetry/query?device=d1,d2&start={NOW}&end={}&limit=3",
        NOW + 100
    );
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = srv.get(&path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let got = raw_points(&v);
        assert!(got.len() <= 3, "{v}");
        all.extend(got.into_iter().map(|p| (p.0, p.2)));
        pages += 1;
        match v["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    r.header("link"),
                    Some(format!("<{next}>; rel=\"next\"").as_str())
                );
                assert!(next.contains("limit=3") && next.contains(&format!("end={}", NOW + 100)));
                path = next.to_string();
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    all.sort();
    let want: Vec<(String, i64)> = [
        ("d1", 1),
        ("d1", 2),
        ("d1", 3),
        ("d1", 4),
        ("d1", 5),
        ("d2", 2),
        ("d2", 4),
    ]
    .iter()
    .map(|(d, t)| (d.to_string(), NOW + t))
    .collect();
    assert_eq!(all, want);
    assert_eq!(pages, 3);

    // More points on the first timestamp than the limit: a clear 400.
    let p = srv
        .get(&format!(
            "/api/telemetry/query?device=d1,d2&start={}&end={}&limit=1",
            NOW + 2,
            NOW + 3
        ))
        .await
        .problem(400, "result_too_large");
    assert_eq!(p["field"], "limit");
}

#[tokio::test]
async fn series_listing_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = "x,device=d1,site=A temp=1,rpm=2\nx,device=d2 temp=1\n";
    assert_eq!(srv.post("/api/v2/write", body.as_bytes()).await.status, 204);
    let v = srv.get("/api/devices/d1/series").await.json();
    assert_eq!(
        v,
        json!({"device": "d1", "series": [
            {"metric": "x.rpm", "labels": {"site": "A"}},
            {"metric": "x.temp", "labels": {"site": "A"}},
        ]})
    );
    let v = srv.get("/api/telemetry/stats").await.json();
    assert_eq!(v["series"], 3);
    assert_eq!(v["head_points"], 3);
    assert!(v["wal_bytes"].as_u64().unwrap() > 0);
    assert!(v["query_work"].is_object());
    let r = srv.get("/health").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn columnar_answers_match_the_row_answers() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    load_agg_data(&srv).await;
    // One more point for `a`, 40 minutes later: one empty bucket between.
    let r = srv
        .post(
            "/api/telemetry",
            json!({"points": [{"device": "a", "metric": "temp", "ts": T0 + 40 * 60_000, "value": 7, "labels": {"fleet": "South"}}]})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let q = format!(
        "/api/telemetry/query?device=*&metric=temp&agg=avg&bucket=10m&group_by=device&start={T0}&end={}",
        T0 + 3_600_000
    );
    let rows = srv.get(&q).await.json();
    let cols = srv.get(&format!("{q}&format=columnar")).await.json();
    let by_accept = srv
        .get_with(
            &q,
            &[("Accept", "application/vnd.millwright.columnar+json")],
        )
        .await
        .json();
    assert_eq!(cols, by_accept);
    assert_eq!(cols["bucket_ms"], 600_000);
    let a = &cols["series"][0];
    assert_eq!(a["group"], json!({"device": "a"}));
    assert_eq!(a["t0"], T0);
    assert_eq!(a["values"], json!([4.5, 14.5, null, null, 7.0]));
    assert!(a.get("ts").is_none());
    // Dense arrays expand to the row answer.
    for (s_rows, s_cols) in rows["series"]
        .as_array()
        .unwrap()
        .iter()
        .zip(cols["series"].as_array().unwrap())
    {
        let t0 = s_cols["t0"].as_i64().unwrap();
        let expanded: Vec<(i64, f64)> = s_cols["values"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_f64().map(|v| (t0 + i as i64 * 600_000, v)))
            .collect();
        assert_eq!(expanded, agg_points(s_rows));
    }
    // Sparse when most buckets would be empty: ts and values.
    let q1 = format!(
        "/api/telemetry/query?device=a&metric=temp&agg=count&bucket=1m&start={}&end={}&format=columnar",
        T0 + 19 * 60_000,
        T0 + 41 * 60_000
    );
    let s = &srv.get(&q1).await.json()["series"][0];
    assert!(s.get("t0").is_none());
    assert_eq!(s["ts"], json!([T0 + 19 * 60_000, T0 + 40 * 60_000]));
    assert_eq!(s["values"], json!([1.0, 1.0]));
    // Raw points: ts and values arrays.
    let raw = srv
        .get(&format!(
            "/api/telemetry/query?device=b&metric=temp&start={T0}&end={}&limit=3&format=columnar",
            T0 + 3_600_000
        ))
        .await;
    assert!(raw.header("link").is_some(), "paged like JSON");
    let raw = raw.json();
    assert_eq!(raw["series"][0]["device"], "b");
    assert_eq!(
        raw["series"][0]["ts"],
        json!([T0, T0 + 60_000, T0 + 120_000])
    );
    assert_eq!(raw["series"][0]["values"], json!([100.0, 100.0, 100.0]));
    assert_eq!(raw["next_start"], T0 + 180_000);
    let bad = srv.get(&format!("{q}&format=arrow")).await;
    assert_eq!(bad.status, 400);
}
