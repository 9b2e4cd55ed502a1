//! Bulk import: CSV and JSON, all or nothing, and 10,000 devices.

use std::time::Instant;

use registry::DeviceAuth;
use serde_json::json;

use crate::harness::{start, NOW};

const CSV: &[(&str, &str)] = &[("Content-Type", "text/csv")];

#[tokio::test]
async fn csv_and_json_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let csv = "id,name,type,labels,groups\n\
               p1,Press 1,press,zone=a;line=2,hall;north\n\
               p2,\"Press, two\",press,,\n";
    let r = srv
        .req(
            "POST",
            "/api/devices/import?tokens=true",
            CSV,
            csv.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["created"], 2);
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["id"], "p1");
    let t = tokens[0]["token"].as_str().unwrap();
    assert!(matches!(
        srv.registry
            .authenticate_device("default", "p1", t.as_bytes(), NOW as u64)
            .unwrap(),
        DeviceAuth::Ok(_)
    ));
    let p1 = srv.get("/api/devices/p1").await.json();
    assert_eq!(p1["labels"], json!({"zone": "a", "line": "2"}));
    assert_eq!(p1["groups"], json!(["hall", "north"]));
    assert_eq!(
        srv.get("/api/devices/p2").await.json()["name"],
        "Press, two"
    );

    // Bad rows: every one reported, nothing created.
    let csv = "id,type,labels\n\
               ok-1,press,\n\
               bad/id,press,\n\
               ok-2,press,zone\n\
               p1,press,\n";
    let r = srv
        .req("POST", "/api/devices/import", CSV, csv.as_bytes())
        .await;
    let p = r.problem(422, "unprocessable");
    // Unreadable rows first (row 3's labels), then the registry's checks.
    assert_eq!(p["errors"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["errors"][0]["row"], 3);
    assert_eq!(p["errors"][0]["id"], "ok-2");
    let csv = csv.replace("ok-2,press,zone", "ok-2,press,zone=x");
    let p = srv
        .req("POST", "/api/devices/import", CSV, csv.as_bytes())
        .await
        .problem(422, "unprocessable");
    let rows: Vec<(i64, &str)> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["id"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, vec![(2, "bad/id"), (4, "p1")]);
    assert!(p["errors"][1]["message"]
        .as_str()
        .unwrap()
        .contains("exists"));
    srv.get("/api/devices/ok-1").await.problem(404, "not_found");
    assert_eq!(srv.registry.count_devices("default").unwrap(), 2);

    // JSON, both shapes.
    let body = json!([{"id": "j1", "labels": {"k": "v"}}, {"id": "j2", "enabled": false}]);
    let r = srv.json("POST", "/api/devices/import", &body).await;
    assert_eq!(r.json(), json!({"created": 2}));
    assert_eq!(srv.get("/api/devices/j2").await.json()["enabled"], false);
    let body = json!({"devices": [{"id": "j3"}, {"id": "j3"}, {"id": "j4", "labels": [1]}]});
    let p = srv
        .json("POST", "/api/devices/import", &body)
        .await
        .problem(422, "unprocessable");
    assert_eq!(p["errors"][0]["row"], 3);
    assert!(p["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("devices[2].labels"));
    let body = json!({"devices": [{"id": "j3"}, {"id": "j3"}]});
    let p = srv
        .json("POST", "/api/devices/import", &body)
        .await
        .problem(422, "unprocessable");
    assert_eq!(p["errors"][0]["row"], 2);
    assert_eq!(srv.registry.count_devices("default").unwrap(), 4);

    // Structural errors are 400s.
    let p = srv
        .req("POST", "/api/devices/import", CSV, b"id,colour\nx,red\n")
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "csv header");
    srv.req("POST", "/api/devices/import", CSV, b"id\n\"x\n")
        .await
        .problem(400, "bad_line");
    srv.json("POST", "/api/devices/import", &json!({"items": []}))
        .await
        .problem(400, "bad_body");
    srv.post("/api/devices/import?tokens=yes", b"[]")
        .await
        .problem(400, "bad_parameter");
}

#[tokio::test]
async fn ten_thousand_devices() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut csv = String::from("id,name,type,labels,groups\n");
    for i in 0..10_000 {
        csv.push_str(&format!(
            "sensor-{i:05},Sensor {i},temp,site=s{};floor={},fleet;site-{}\n",
            i % 10,
            i % 7,
            i % 10
        ));
    }
    assert!(csv.len() < 1 << 20, "{} bytes", csv.len());
    let started = Instant::now();
    let r = srv
        .req("POST", "/api/devices/import", CSV, csv.as_bytes())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], 10_000);
    println!(
        "imported 10,000 devices ({} KiB of CSV) in {elapsed:?}",
        csv.len() / 1024
    );
    assert_eq!(srv.registry.count_devices("default").unwrap(), 10_000);
    let v = srv
        .get("/api/devices?label=site:s3&limit=1000")
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1000);
    assert_eq!(v["next"], json!(null));
}
