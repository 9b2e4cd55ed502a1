//! Device CRUD, list filters and pagination, live-session effects.

use std::collections::BTreeSet;

use registry::DeviceAuth;
use serde_json::json;

use crate::harness::{start, NOW};

#[tokio::test]
async fn create_read_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = json!({
        "id": "press-1", "name": "Press 1", "type": "press",
        "labels": {"zone": "a"}, "groups": ["hall", "north"],
        "metadata": {"serial": 42}
    });
    let r = srv.json("POST", "/api/devices", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/api/devices/press-1"));
    let v = r.json();
    assert_eq!(v["id"], "press-1");
    assert_eq!(v["type"], "press");
    assert_eq!(v["labels"], json!({"zone": "a"}));
    assert_eq!(v["groups"], json!(["hall", "north"]));
    assert_eq!(v["metadata"], json!({"serial": 42}));
    assert_eq!(v["enabled"], true);
    assert_eq!(v["connected"], false);
    assert_eq!(v["created_at"], NOW);
    assert_eq!(v["firmware_version"], json!(null));
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("mwd_"));
    let auth = srv
        .registry
        .authenticate_device("default", "press-1", token.as_bytes(), NOW as u64)
        .unwrap();
    assert!(matches!(auth, DeviceAuth::Ok(_)));

    // Without a token; defaults applied.
    let r = srv
        .json(
            "POST",
            "/api/devices",
            &json!({"id": "bare", "token": false}),
        )
        .await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert!(v.get("token").is_none());
    assert_eq!(
        (v["name"].clone(), v["type"].clone()),
        (json!("bare"), json!("default"))
    );

    // Refusals name the field.
    srv.json("POST", "/api/devices", &json!({"id": "press-1"}))
        .await
        .problem(409, "conflict");
    for (body, field) in [
        (json!({"id": "a/b"}), "id"),
        (json!({"name": "x"}), "id"),
        (
            json!({"id": "x", "labels": {"bad key": "v"}}),
            "labels.bad key",
        ),
        (json!({"id": "x", "labels": {"k": 1}}), "labels.k"),
        (json!({"id": "x", "groups": "hall"}), "groups"),
        (json!({"id": "x", "colour": "red"}), "colour"),
        (json!({"id": "x", "enabled": "yes"}), "enabled"),
    ] {
        let r = srv.json("POST", "/api/devices", &body).await;
        let p = r.problem(400, "bad_body");
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    srv.post("/api/devices", b"{not json")
        .await
        .problem(400, "bad_body");

    // Read.
    let v = srv.get("/api/devices/press-1").await.json();
    assert_eq!(v["name"], "Press 1");
    assert!(v.get("token").is_none());
    srv.get("/api/devices/nope").await.problem(404, "not_found");

    // Update; disabling drops the device's sessions.
    srv.live.connect("press-1");
    assert_eq!(
        srv.get("/api/devices/press-1").await.json()["connected"],
        true
    );
    srv.now.store(NOW + 5, std::sync::atomic::Ordering::Relaxed);
    let r = srv
        .json(
            "PATCH",
            "/api/devices/press-1",
            &json!({"name": "P1", "labels": {"zone": "b"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["name"].clone(), v["labels"]["zone"].clone()),
        (json!("P1"), json!("b"))
    );
    assert_eq!(v["groups"], json!(["hall", "north"]), "untouched");
    assert_eq!(v["updated_at"], NOW + 5);
    assert!(srv.live.take().is_empty());
    let r = srv
        .json("PATCH", "/api/devices/press-1", &json!({"enabled": false}))
        .await;
    assert_eq!(r.json()["enabled"], false);
    assert_eq!(srv.live.take(), vec![("press-1".to_string(), 0x87)]);
    srv.json("PATCH", "/api/devices/nope", &json!({"name": "x"}))
        .await
        .problem(404, "not_found");
    let p = srv
        .json("PATCH", "/api/devices/press-1", &json!({"id": "other"}))
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "id");

    // Delete.
    let r = srv.req("DELETE", "/api/devices/press-1", &[], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(srv.live.take(), vec![("press-1".to_string(), 0x87)]);
    srv.req("DELETE", "/api/devices/press-1", &[], b"")
        .await
        .problem(404, "not_found");
    srv.get("/api/devices/press-1")
        .await
        .problem(404, "not_found");
}

/// Every page of a listing, following `next`; checks `Link` along the way.
async fn walk(srv: &crate::harness::Server, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/api/devices?{query}");
    loop {
        let r = srv.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let v = r.json();
        for d in v["items"].as_array().unwrap() {
            ids.push(d["id"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            None => {
                assert!(r.header("link").is_none());
                return ids;
            }
            Some(_) => {
                let link = r.header("link").expect("Link header").to_string();
                let next = link
                    .strip_prefix('<')
                    .and_then(|l| l.split_once(">; rel=\"next\""))
                    .map(|(u, _)| u.to_string())
                    .expect("Link format");
                path = next;
            }
        }
    }
}

#[tokio::test]
async fn list_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let mut all = BTreeSet::new();
    for i in 0..23 {
        let id = format!("dev-{i:02}");
        let body = json!({
            "id": id,
            "type": if i % 2 == 0 { "press" } else { "lathe" },
            "labels": {"zone": if i % 3 == 0 { "a" } else { "b" }, "line": (i % 4).to_string()},
            "groups": if i < 5 { vec!["hall"] } else { vec![] },
            "enabled": i != 7,
            "token": false,
        });
        assert_eq!(srv.json("POST", "/api/devices", &body).await.status, 201);
        all.insert(id);
    }
    srv.json(
        "POST",
        "/api/devices",
        &json!({"id": "other-1", "token": false}),
    )
    .await;
    all.insert("other-1".to_string());
    srv.live.connect("dev-03");
    srv.live.connect("dev-04");

    let all: Vec<String> = all.into_iter().collect();
    assert_eq!(walk(&srv, "limit=7").await, all);
    assert_eq!(walk(&srv, "").await, all);
    let ids = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..23)
            .filter(|i| pred(*i))
            .map(|i| format!("dev-{i:02}"))
            .collect()
    };
    assert_eq!(walk(&srv, "type=press&limit=3").await, ids(&|i| i % 2 == 0));
    assert_eq!(walk(&srv, "group=hall").await, ids(&|i| i < 5));
    assert_eq!(
        walk(&srv, "label=zone:a&label=line:0&limit=1").await,
        ids(&|i| i % 3 == 0 && i % 4 == 0)
    );
    assert_eq!(walk(&srv, "enabled=false").await, vec!["dev-07"]);
    assert_eq!(walk(&srv, "state=online").await, vec!["dev-03", "dev-04"]);
    assert_eq!(
        walk(&srv, "state=offline&prefix=dev-0&limit=2").await.len(),
        8
    );
    assert_eq!(walk(&srv, "prefix=other").await, vec!["other-1"]);
    let v = srv.get("/api/devices?state=online").await.json();
    assert_eq!(v["items"][0]["connected"], true);

    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("label=zone", "label"),
        ("enabled=maybe", "enabled"),
        ("state=asleep", "state"),
        ("colour=red", "colour"),
        ("type=a&type=b", "type"),
    ] {
        let p = srv
            .get(&format!("/api/devices?{q}"))
            .await
            .problem(400, "bad_parameter");
        assert_eq!(p["field"], field, "{q}");
    }
}
