//! Credentials, body limits, parameter errors and unknown routes.

use base64::Engine;
use registry::Role;
use serde_json::json;

use crate::harness::{gzip, start, start_with, Config, NOW};

#[tokio::test]
async fn a_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let t = srv.token(Role::Operator);
    let line = b"a,device=d f=1";
    let bearer = format!("Bearer {t}");
    let token = format!("Token {t}");
    let token_up = format!("Token me:{t}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("me:{t}"))
    );
    let p = format!("/write?db=x&p={t}");
    let up = format!("/write?db=x&u=me&p={t}");
    let wrong_p = format!("/api/v2/write?p={t}");

    // No credential, a wrong one, or the wrong scheme: 401, nothing stored.
    for (path, headers) in [
        ("/api/v2/write", vec![]),
        ("/api/v2/write", vec![("Authorization", "Bearer nope")]),
        ("/write?db=x&u=me&p=nope", vec![]),
        (wrong_p.as_str(), vec![]),
        ("/api/telemetry/d", vec![("Authorization", token.as_str())]),
        ("/api/telemetry/d", vec![("Authorization", t.as_str())]),
    ] {
        let r = srv.anon("POST", path, &headers, line).await;
        let p = r.problem(401, "unauthorized");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"millwright\"")
        );
        assert!(p["detail"].is_string());
    }
    for path in [
        "/api/telemetry/query?device=*",
        "/api/telemetry/latest?device=*",
        "/api/telemetry/stats",
        "/api/devices/d/series",
        "/api/devices",
        "/api/users",
    ] {
        srv.anon("GET", path, &[], b"")
            .await
            .problem(401, "unauthorized");
    }
    let r = srv
        .anon(
            "GET",
            "/api/telemetry/stats",
            &[("Authorization", &bearer)],
            b"",
        )
        .await;
    assert_eq!(r.json()["series"], 0);

    // Every accepted form.
    for (path, headers) in [
        ("/api/v2/write", vec![("Authorization", bearer.as_str())]),
        ("/api/v2/write", vec![("Authorization", token.as_str())]),
        ("/write?db=x", vec![("Authorization", token.as_str())]),
        ("/write?db=x", vec![("Authorization", token_up.as_str())]),
        (up.as_str(), vec![]),
        (p.as_str(), vec![]),
        ("/write?db=x", vec![("Authorization", basic.as_str())]),
    ] {
        let r = srv.anon("POST", path, &headers, line).await;
        assert_eq!(r.status, 204, "{path} {headers:?}: {}", r.text());
    }
    let r = srv
        .anon(
            "POST",
            "/api/telemetry/d",
            &[("Authorization", &bearer)],
            br#"{"g": 1}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = srv
        .get_with(
            "/api/telemetry/latest?device=*",
            &[("Authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["latest"].as_array().unwrap().len(), 2);

    // Health needs nothing; unknown routes are 404 before any check.
    let r = srv.anon("GET", "/health", &[], b"").await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    srv.anon("GET", "/nope", &[], b"")
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            max_body_bytes: 1024,
            ..Config::default()
        },
    )
    .await;
    let mut big = String::new();
    while big.len() <= 1024 {
        big.push_str(&format!("big,device=z f=1 {}\n", NOW + big.len() as i64));
    }
    // Declared length over the limit.
    let r = srv.post("/api/v2/write?precision=ms", big.as_bytes()).await;
    let p = r.problem(413, "body_too_large");
    assert!(p["detail"].as_str().unwrap().contains("1024"), "{p}");
    // No length up front: stopped while reading.
    let r = srv
        .post_chunked("/api/v2/write?precision=ms", big.as_bytes())
        .await;
    r.problem(413, "body_too_large");
    // A small gzip body that expands past the limit.
    let huge = "big,device=z f=1\n".repeat(5000);
    let z = gzip(huge.as_bytes());
    assert!(z.len() < 1024);
    let r = srv
        .req(
            "POST",
            "/write?precision=ms",
            &[("Content-Encoding", "gzip")],
            &z,
        )
        .await;
    r.problem(413, "body_too_large");
    // JSON routes share the limit.
    let json = format!(r#"{{"v": "{}"}}"#, "x".repeat(2000));
    srv.post("/api/telemetry/z", json.as_bytes())
        .await
        .problem(413, "body_too_large");
    // Nothing was stored; a body at the limit passes.
    let v = srv.get("/api/devices/z/series").await.json();
    assert_eq!(v["series"], json!([]));
    let fits = format!("{:<1024}", "big,device=z f=1");
    assert_eq!(fits.len(), 1024);
    let r = srv.post("/api/v2/write", fits.as_bytes()).await;
    assert_eq!(r.status, 204, "{}", r.text());
}

#[tokio::test]
async fn bad_parameters_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let q = "/api/telemetry/query";
    let cases = [
        (q.to_string(), "device", "bad_parameter"),
        (format!("{q}?device="), "device", "bad_parameter"),
        (format!("{q}?device=,"), "device", "bad_parameter"),
        (format!("{q}?device=d&metric=,"), "metric", "bad_parameter"),
        (
            format!("{q}?device=d&start=yesterday"),
            "start",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&end=2024-13-01T00:00:00Z"),
            "end",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&start=2&end=1"),
            "start",
            "bad_parameter",
        ),
        (format!("{q}?device=d&limit=0"), "limit", "bad_parameter"),
        (
            format!("{q}?device=d&limit=100001"),
            "limit",
            "bad_parameter",
        ),
        (format!("{q}?device=d&limit=ten"), "limit", "bad_parameter"),
        (
            format!("{q}?device=d&agg=median&bucket=1m"),
            "agg",
            "bad_parameter",
        ),
        (format!("{q}?device=d&agg=avg"), "bucket", "bad_parameter"),
        (
            format!("{q}?device=d&agg=avg&bucket=0"),
            "bucket",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&agg=avg&bucket=fortnight"),
            "bucket",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&agg=avg&bucket=1m&limit=5"),
            "limit",
            "bad_parameter",
        ),
        (format!("{q}?device=d&bucket=1m"), "bucket", "bad_parameter"),
        (
            format!("{q}?device=d&group_by=device"),
            "group_by",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&agg=avg&bucket=1m&group_by=site"),
            "group_by",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&agg=avg&bucket=1ms&start=0&end=now"),
            "bucket",
            "result_too_large",
        ),
        (
            format!("{q}?device=d&format=xml"),
            "format",
            "bad_parameter",
        ),
        (
            format!("{q}?device=d&devices=x"),
            "devices",
            "bad_parameter",
        ),
        (format!("{q}?device=d&device=e"), "device", "bad_parameter"),
        (format!("{q}?device=d&label.=x"), "label.", "bad_parameter"),
        (
            "/api/telemetry/latest".to_string(),
            "device",
            "bad_parameter",
        ),
        (
            "/api/telemetry/latest?device=d&start=1".to_string(),
            "start",
            "bad_parameter",
        ),
    ];
    for (path, field, code) in &cases {
        let r = srv.get(path).await;
        let p = r.problem(400, code);
        assert_eq!(p["field"], *field, "{path}: {p}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.get("/nope").await.problem(404, "not_found");
    srv.req("DELETE", "/api/telemetry/query", &[], b"")
        .await
        .problem(405, "method_not_allowed");
    srv.get("/api/v2/write")
        .await
        .problem(405, "method_not_allowed");
}
