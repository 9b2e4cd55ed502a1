//! Twins over HTTP with a real broker: desired changes reach a connected
//! device as deltas, its reported state comes back, versions guard
//! concurrent changes.

use mqtt_client::QoS;
use registry::Role;
use serde_json::json;

use crate::harness::{recv_on, start, start_fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_delta_reported_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    let token = srv.device_with_token("pump-1", "pump").await;

    // Never written: version 0, empty.
    let r = srv.get("/api/devices/pump-1/twin").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"0\""));
    let v = r.json();
    assert_eq!(v["version"], 0);
    assert_eq!(
        v["state"],
        json!({"desired": {}, "reported": {}, "delta": {}})
    );

    let mut dev = srv.mqtt_device("pump-1", &token, true).await;
    dev.subscribe([
        ("devices/pump-1/twin/delta", QoS::AtLeastOnce),
        ("devices/pump-1/twin/update/accepted", QoS::AtLeastOnce),
    ])
    .await
    .unwrap();

    // An operator changes desired: the device gets the delta.
    let r = srv
        .json(
            "PATCH",
            "/api/devices/pump-1/twin",
            &json!({"desired": {"speed": 10, "mode": {"eco": true}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"1\""));
    let v = r.json();
    assert_eq!(v["version"], 1);
    assert_eq!(
        v["state"]["delta"],
        json!({"speed": 10, "mode": {"eco": true}})
    );
    let delta = recv_on(&mut dev, "devices/pump-1/twin/delta").await;
    assert_eq!(delta["state"], json!({"speed": 10, "mode": {"eco": true}}));
    assert_eq!(delta["version"], 1);

    // The device reports: accepted, and the delta is gone.
    dev.publish(
        "devices/pump-1/twin/update",
        json!({"state": {"reported": {"speed": 10, "mode": {"eco": true}}}, "clientToken": "r1"})
            .to_string(),
        QoS::AtLeastOnce,
        false,
    )
    .await
    .unwrap();
    let accepted = loop {
        let a = recv_on(&mut dev, "devices/pump-1/twin/update/accepted").await;
        if a["clientToken"] == "r1" {
            break a;
        }
    };
    assert_eq!(accepted["version"], 2);
    assert_eq!(accepted["state"]["delta"], json!({}));
    let r = srv.get("/api/devices/pump-1/twin").await;
    let v = r.json();
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(v["state"]["delta"], json!({}));
    assert_eq!(v["state"]["reported"]["speed"], 10);
    assert!(v["metadata"]["reported"]["speed"]["timestamp"].is_u64());

    // Versions: in the body or as If-Match.
    let p = srv
        .json(
            "PATCH",
            "/api/devices/pump-1/twin",
            &json!({"desired": {"speed": 11}, "version": 1}),
        )
        .await
        .problem(409, "conflict");
    assert!(p["detail"].as_str().unwrap().contains("version 2"), "{p}");
    let body = json!({"desired": {"speed": 11}}).to_string();
    srv.req(
        "PATCH",
        "/api/devices/pump-1/twin",
        &[("If-Match", "\"1\"")],
        body.as_bytes(),
    )
    .await
    .problem(409, "conflict");
    let r = srv
        .req(
            "PATCH",
            "/api/devices/pump-1/twin",
            &[("If-Match", "\"2\"")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some("\"3\""));
    let delta = recv_on(&mut dev, "devices/pump-1/twin/delta").await;
    assert_eq!(delta["state"], json!({"speed": 11}));
    let p = srv
        .req(
            "PATCH",
            "/api/devices/pump-1/twin",
            &[("If-Match", "\"3\"")],
            json!({"desired": {"speed": 12}, "version": 2})
                .to_string()
                .as_bytes(),
        )
        .await
        .problem(400, "bad_parameter");
    assert_eq!(p["field"], "If-Match");

    // Refusals: too large (the body itself is well under the limit), not
    // an object, too deep, missing.
    let big = "x".repeat(70 * 1024);
    srv.json(
        "PATCH",
        "/api/devices/pump-1/twin",
        &json!({"desired": {"blob": big}}),
    )
    .await
    .problem(413, "twin_too_large");
    for body in [
        json!({"desired": [1]}),
        json!({"desired": {"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}}}}),
        json!({}),
    ] {
        let p = srv
            .json("PATCH", "/api/devices/pump-1/twin", &body)
            .await
            .problem(400, "bad_body");
        assert_eq!(p["field"], "desired", "{body}: {p}");
    }
    let p = srv
        .json(
            "PATCH",
            "/api/devices/pump-1/twin",
            &json!({"desired": {}, "colour": 1}),
        )
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "colour");
    srv.json(
        "PATCH",
        "/api/devices/nope/twin",
        &json!({"desired": {"a": 1}}),
    )
    .await
    .problem(404, "not_found");
    srv.get("/api/devices/nope/twin")
        .await
        .problem(404, "not_found");
    dev.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_twins_query_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    for id in ["a1", "a2", "a3"] {
        srv.device_with_token(id, "pump").await;
    }
    for (id, speed) in [("a1", 5), ("a2", 20), ("a3", 30)] {
        let r = srv
            .json(
                "PATCH",
                &format!("/api/devices/{id}/twin"),
                &json!({"desired": {"speed": speed}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = srv
        .json(
            "PATCH",
            "/api/devices/a1/twins/config",
            &json!({"desired": {"interval": 60}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"]["desired"], json!({"interval": 60}));
    let r = srv.get("/api/devices/a1/twins/config").await;
    assert_eq!(r.json()["version"], 1);
    let v = srv.get("/api/devices/a1/twins").await.json();
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["", "config"]);
    assert_eq!(
        v["items"][1]["document"]["state"]["desired"]["interval"],
        60
    );
    let p = srv
        .get("/api/devices/a1/twins/get")
        .await
        .problem(400, "bad_parameter");
    assert_eq!(p["field"], "name");

    // Query by value, paged.
    let v = srv
        .get("/api/twins?query=desired.speed%20%3E%2010")
        .await
        .json();
    assert_eq!(v, json!({"items": ["a2", "a3"], "next": null}));
    let r = srv
        .get("/api/twins?query=desired.speed%20%3E%2010&limit=1")
        .await;
    let v = r.json();
    assert_eq!(v["items"], json!(["a2"]));
    assert_eq!(v["next"], "a2");
    assert!(r.header("link").unwrap().contains("after=a2"));
    let v = srv
        .get("/api/twins?query=desired.speed%20%3E%2010&limit=1&after=a2")
        .await
        .json();
    assert_eq!(v["items"], json!(["a3"]));
    let v = srv
        .get("/api/twins?name=config&query=desired.interval%20%3D%2060")
        .await
        .json();
    assert_eq!(v["items"], json!(["a1"]));
    for q in [
        "/api/twins",
        "/api/twins?query=speed%20%3E",
        "/api/twins?query=x&y=1",
    ] {
        let p = srv.get(q).await.problem(400, "bad_parameter");
        assert!(p["field"] == "query" || p["field"] == "y", "{q}: {p}");
    }

    // Viewers read, operators change; changes are audited.
    let viewer = srv.token(Role::Viewer);
    let r = srv.as_(&viewer, "GET", "/api/devices/a1/twin", b"").await;
    assert_eq!(r.status, 200);
    srv.as_(
        &viewer,
        "PATCH",
        "/api/devices/a1/twin",
        br#"{"desired": {"speed": 1}}"#,
    )
    .await
    .problem(403, "forbidden");
    let operator = srv.token(Role::Operator);
    let r = srv
        .as_(
            &operator,
            "PATCH",
            "/api/devices/a1/twins/config",
            br#"{"desired": {"speed": 1}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let audit = srv.get("/api/audit?action=twin.").await.json();
    let e = &audit["items"][0];
    assert_eq!(e["action"], "twin.update");
    assert_eq!(e["target"], "a1");
    assert_eq!(e["details"], json!({"twin": "config", "version": 2}));
    assert_eq!(e["actor"], "token:operator");
}

#[tokio::test]
async fn without_a_broker_the_routes_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.device_with_token("d1", "t").await;
    for (method, path) in [
        ("GET", "/api/devices/d1/twin"),
        ("GET", "/api/devices/d1/presence"),
        ("GET", "/api/fleet/status"),
        ("GET", "/api/devices/d1/commands"),
        ("POST", "/api/devices/d1/commands"),
    ] {
        srv.req(method, path, &[], br#"{"method": "x"}"#)
            .await
            .problem(503, "unavailable");
    }
    // Devices carry no presence state then.
    let v = srv.get("/api/devices/d1").await.json();
    assert!(v.get("state").is_none(), "{v}");
}
