//! Commands over HTTP with a real broker and real MQTT devices: queued
//! while offline and sent on connection, synchronous calls, timeouts,
//! cancellation.

use std::sync::atomic::Ordering;

use mqtt_client::QoS;
use serde_json::{json, Value};

use crate::harness::{eventually, recv_on, start_fleet, Server};

/// A device that answers every command on `devices/{id}/commands/+`:
/// `{"status": 0, "result": {"echo": params}}`, or status 2 for method
/// `fail`; method `ignore` gets no answer.
async fn responder(srv: &Server, id: &str, token: &str) -> tokio::task::JoinHandle<()> {
    let mut dev = srv.mqtt_device(id, token, true).await;
    dev.subscribe([(format!("devices/{id}/commands/+"), QoS::AtLeastOnce)])
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(p) = dev.recv().await {
            let msg: Value = serde_json::from_slice(&p.payload).unwrap();
            let answer = match msg["method"].as_str() {
                Some("ignore") => continue,
                Some("fail") => json!({"status": 2, "result": {"why": "jammed"}}),
                _ => json!({"status": 0, "result": {"echo": msg["params"]}}),
            };
            let topic = format!("{}/response", &*p.topic);
            dev.publish(topic, answer.to_string(), QoS::AtLeastOnce, false)
                .await
                .unwrap();
        }
    })
}

async fn presence_state(srv: &Server, id: &str) -> String {
    let v = srv.get(&format!("/api/devices/{id}/presence")).await.json();
    v["state"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_while_offline_then_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    let token = srv.device_with_token("m1", "mixer").await;

    // The device's session keeps its subscription while it is away: the
    // commands sent when it connects reach it however fast that is.
    let dev = srv.mqtt_device("m1", &token, false).await;
    dev.subscribe([("devices/m1/commands/+", QoS::AtLeastOnce)])
        .await
        .unwrap();
    dev.disconnect().await.unwrap();
    eventually("m1 offline", || async {
        presence_state(&srv, "m1").await == "offline"
    })
    .await;

    let mut ids = Vec::new();
    for (method, params) in [("set_speed", json!({"rpm": 900})), ("stop", Value::Null)] {
        let r = srv
            .json(
                "POST",
                "/api/devices/m1/commands",
                &json!({"method": method, "params": params}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text());
        let v = r.json();
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(
            r.header("location"),
            Some(format!("/api/devices/m1/commands/{id}").as_str())
        );
        assert_eq!(v["status"], "queued");
        assert_eq!(v["device_id"], "m1");
        assert_eq!(v["method"], method);
        assert_eq!(v["params"], params);
        assert_eq!(v["timeout_ms"], 30_000);
        assert_eq!(
            v["expires_at"].as_u64(),
            Some(v["created_at"].as_u64().unwrap() + 86_400_000)
        );
        assert_eq!(
            v["trail"],
            json!([{"status": "queued", "time": v["created_at"]}])
        );
        assert_eq!(v["response"], Value::Null);
        ids.push(id);
    }

    let mut dev = srv.mqtt_device("m1", &token, false).await;
    for (id, method) in ids.iter().zip(["set_speed", "stop"]) {
        let topic = format!("devices/m1/commands/{id}");
        let msg = recv_on(&mut dev, &topic).await;
        assert_eq!(msg["method"], method);
        dev.publish(
            format!("{topic}/response"),
            json!({"status": 0, "result": {"done": method}}).to_string(),
            QoS::AtLeastOnce,
            false,
        )
        .await
        .unwrap();
    }
    for (id, method) in ids.iter().zip(["set_speed", "stop"]) {
        let path = format!("/api/devices/m1/commands/{id}");
        eventually("the command succeeded", || async {
            srv.get(&path).await.json()["status"] == "succeeded"
        })
        .await;
        let v = srv.get(&path).await.json();
        assert_eq!(
            v["response"],
            json!({"status": 0, "result": {"done": method}})
        );
        let trail: Vec<&str> = v["trail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(trail, ["queued", "sent", "delivered", "succeeded"]);
    }

    // The list, oldest first, paged.
    let v = srv.get("/api/devices/m1/commands").await.json();
    let listed: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(v["next"], Value::Null);
    let r = srv.get("/api/devices/m1/commands?limit=1").await;
    let v = r.json();
    assert_eq!(v["items"][0]["id"], ids[0].as_str());
    assert_eq!(v["next"], ids[0].as_str());
    assert!(r
        .header("link")
        .unwrap()
        .contains(&format!("after={}", ids[0])));
    let v = srv
        .get(&format!("/api/devices/m1/commands?after={}", ids[0]))
        .await
        .json();
    assert_eq!(v["items"][0]["id"], ids[1].as_str());
    srv.get("/api/devices/m1/commands?after=x")
        .await
        .problem(400, "bad_parameter");
    srv.get("/api/devices/nope/commands")
        .await
        .problem(404, "not_found");
    dev.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_calls() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    let t1 = srv.device_with_token("s1", "mixer").await;
    srv.device_with_token("s2", "mixer").await;
    let task = responder(&srv, "s1", &t1).await;

    let r = srv
        .json(
            "POST",
            "/api/devices/s1/commands",
            &json!({"method": "ping", "params": {"n": 1}, "wait": true, "timeout": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        v["response"],
        json!({"status": 0, "result": {"echo": {"n": 1}}})
    );
    assert_eq!(v["timeout_ms"], 5000);

    let v = srv
        .json(
            "POST",
            "/api/devices/s1/commands",
            &json!({"method": "fail", "wait": true}),
        )
        .await
        .json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["response"]["status"], 2);

    // Offline and not to be queued: refused, nothing stored.
    for body in [
        json!({"method": "ping", "queue": false, "wait": true}),
        json!({"method": "ping", "queue": false}),
    ] {
        let p = srv
            .json("POST", "/api/devices/s2/commands", &body)
            .await
            .problem(404, "device_offline");
        assert_eq!(p["detail"], "the device is offline");
    }
    let v = srv.get("/api/devices/s2/commands").await.json();
    assert_eq!(v["items"], json!([]));

    // No answer within the timeout: 504 with the command as it is; the
    // fleet marks it timed out once its clock passes the deadline.
    let started = std::time::Instant::now();
    let p = srv
        .json(
            "POST",
            "/api/devices/s1/commands",
            &json!({"method": "ignore", "wait": true, "timeout": 1}),
        )
        .await
        .problem(504, "timeout");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let status = p["command"]["status"].as_str().unwrap();
    assert!(status == "sent" || status == "delivered", "{p}");
    let path = format!(
        "/api/devices/s1/commands/{}",
        p["command"]["id"].as_str().unwrap()
    );
    srv.now.fetch_add(2_000, Ordering::Relaxed);
    eventually("the command timed out", || async {
        srv.get(&path).await.json()["status"] == "timed_out"
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_cancel_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    srv.device_with_token("c1", "mixer").await;

    srv.json(
        "POST",
        "/api/devices/nope/commands",
        &json!({"method": "x"}),
    )
    .await
    .problem(404, "not_found");
    for (body, field) in [
        (json!({}), "method"),
        (json!({"method": ""}), "method"),
        (json!({"method": 5}), "method"),
        (json!({"method": "x", "params": 1}), "params"),
        (json!({"method": "x", "timeout": 0}), "timeout"),
        (json!({"method": "x", "timeout": "5"}), "timeout"),
        (json!({"method": "x", "ttl": 31 * 86_400}), "ttl"),
        (json!({"method": "x", "wait": "yes"}), "wait"),
        (
            json!({"method": "x", "wait": true, "timeout": 301}),
            "timeout",
        ),
        (json!({"method": "x", "colour": 1}), "colour"),
    ] {
        let p = srv
            .json("POST", "/api/devices/c1/commands", &body)
            .await
            .problem(400, "bad_body");
        assert_eq!(p["field"], field, "{body}: {p}");
    }

    // Cancel a queued command; a final one cannot be cancelled again.
    let v = srv
        .json(
            "POST",
            "/api/devices/c1/commands",
            &json!({"method": "reboot", "ttl": 60, "timeout": 0.5}),
        )
        .await
        .json();
    assert_eq!(v["timeout_ms"], 500);
    assert_eq!(
        v["expires_at"].as_u64(),
        Some(v["created_at"].as_u64().unwrap() + 60_000)
    );
    let id = v["id"].as_str().unwrap();
    let r = srv
        .post(&format!("/api/devices/c1/commands/{id}/cancel"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "cancelled");
    srv.post(&format!("/api/devices/c1/commands/{id}/cancel"), b"")
        .await
        .problem(409, "conflict");
    srv.post("/api/devices/c1/commands/c0000000000000999/cancel", b"")
        .await
        .problem(404, "not_found");
    srv.get("/api/devices/c1/commands/nope")
        .await
        .problem(404, "not_found");
    let audit = srv.get("/api/audit?action=command.").await.json();
    let actions: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("command.cancel", "c1")), "{actions:?}");
    assert!(actions.contains(&("command.create", "c1")), "{actions:?}");
    let created = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "command.create" && e["status"] == 202)
        .unwrap();
    assert_eq!(
        created["details"],
        json!({"command": id, "method": "reboot"})
    );

    // Deleting the device forgets its commands and twins.
    srv.json(
        "PATCH",
        "/api/devices/c1/twin",
        &json!({"desired": {"a": 1}}),
    )
    .await;
    let r = srv.req("DELETE", "/api/devices/c1", &[], b"").await;
    assert_eq!(r.status, 204);
    srv.device_with_token("c1", "mixer").await;
    let v = srv.get("/api/devices/c1/commands").await.json();
    assert_eq!(v["items"], json!([]));
    assert_eq!(srv.get("/api/devices/c1/twin").await.json()["version"], 0);
}
