//! Presence over HTTP: devices authenticated by the broker with their
//! registry tokens go online and offline; fleet counts.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::harness::{eventually, start_fleet, Server, NOW};

async fn presence(srv: &Server, id: &str) -> Value {
    let r = srv.get(&format!("/api/devices/{id}/presence")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_offline_and_fleet_status() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_fleet(dir.path()).await;
    let token = srv.device_with_token("p1", "press").await;
    srv.device_with_token("p2", "press").await;
    srv.device_with_token("f1", "fan").await;
    let r = srv
        .json(
            "PATCH",
            "/api/devices/f1",
            &json!({"labels": {"zone": "a"}, "groups": ["hall", "north"]}),
        )
        .await;
    assert_eq!(r.status, 200);

    let v = presence(&srv, "p1").await;
    assert_eq!(
        v,
        json!({
            "state": "never_connected", "connected": false,
            "last_connected": null, "last_disconnected": null, "last_seen": null,
            "address": null, "protocol": null, "last_reason": null
        })
    );
    srv.get("/api/devices/nope/presence")
        .await
        .problem(404, "not_found");

    let dev = srv.mqtt_device("p1", &token, true).await;
    eventually("p1 online", || async {
        presence(&srv, "p1").await["state"] == "online"
    })
    .await;
    let v = presence(&srv, "p1").await;
    assert_eq!(v["connected"], true);
    assert_eq!(v["last_connected"], NOW);
    assert_eq!(v["protocol"], "mqtt5");
    assert!(
        v["address"].as_str().unwrap().starts_with("127.0.0.1"),
        "{v}"
    );
    // The device DTO carries the state too.
    assert_eq!(srv.get("/api/devices/p1").await.json()["state"], "online");
    let list = srv.get("/api/devices?type=press").await.json();
    let states: Vec<(&str, &str)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("p1", "online"), ("p2", "never_connected")]);

    let v = srv.get("/api/fleet/status").await.json();
    assert_eq!(
        v,
        json!({"groups": {"all": {
            "online": 1, "offline": 0, "inactive": 0, "never_connected": 2, "total": 3
        }}})
    );

    // Silent for longer than the inactivity timeout (five minutes by
    // default; the broker's activity times are real Unix time): inactive,
    // and online again once the clock is back.
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let fleet = srv.fleet.clone().unwrap();
    srv.now.store(real_now + 400_000, Ordering::Relaxed);
    fleet.scan();
    assert_eq!(presence(&srv, "p1").await["state"], "inactive");
    let v = srv.get("/api/fleet/status").await.json();
    assert_eq!(v["groups"]["all"]["inactive"], 1);
    srv.now.store(real_now + 1_000, Ordering::Relaxed);
    fleet.scan();
    assert_eq!(presence(&srv, "p1").await["state"], "online");
    srv.now.store(NOW, Ordering::Relaxed);

    dev.disconnect().await.unwrap();
    eventually("p1 offline", || async {
        presence(&srv, "p1").await["state"] == "offline"
    })
    .await;
    let v = presence(&srv, "p1").await;
    assert_eq!(v["connected"], false);
    assert_eq!(v["last_disconnected"], NOW);
    assert_eq!(v["last_reason"], "client disconnected");

    let v = srv.get("/api/fleet/status?group_by=type").await.json();
    assert_eq!(
        v["groups"],
        json!({
            "fan": {"online": 0, "offline": 0, "inactive": 0, "never_connected": 1, "total": 1},
            "press": {"online": 0, "offline": 1, "inactive": 0, "never_connected": 1, "total": 2}
        })
    );
    let v = srv.get("/api/fleet/status?group_by=group").await.json();
    let groups: Vec<&String> = v["groups"].as_object().unwrap().keys().collect();
    assert_eq!(groups, ["hall", "north"]);
    let v = srv
        .get("/api/fleet/status?group_by=label:zone")
        .await
        .json();
    assert_eq!(v["groups"][""]["total"], 2);
    assert_eq!(v["groups"]["a"]["total"], 1);
    for q in ["group_by=colour", "group_by=label:", "x=1"] {
        srv.get(&format!("/api/fleet/status?{q}"))
            .await
            .problem(400, "bad_parameter");
    }
}
