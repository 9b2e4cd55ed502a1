//! Login sessions, users, API tokens and the audit log.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::harness::{start, Server, NOW};

async fn login(srv: &Server, user: &str, password: &str) -> crate::harness::Resp {
    let body = json!({"username": user, "password": password}).to_string();
    srv.anon("POST", "/api/auth/login", &[], body.as_bytes())
        .await
}

#[tokio::test]
async fn users_sessions_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = json!({"username": "alice", "password": "correct horse", "role": "operator"});
    let r = srv.json("POST", "/api/users", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/api/users/alice"));
    assert_eq!(
        r.json(),
        json!({"username": "alice", "role": "operator", "disabled": false, "created_at": NOW})
    );
    srv.json("POST", "/api/users", &body)
        .await
        .problem(409, "conflict");
    for (body, field) in [
        (
            json!({"username": "bob", "password": "correct horse", "role": "boss"}),
            "role",
        ),
        (
            json!({"username": "bob", "password": "short", "role": "viewer"}),
            "password",
        ),
        (
            json!({"username": "b b", "password": "correct horse", "role": "viewer"}),
            "username",
        ),
        (
            json!({"username": "bob", "password": "correct horse"}),
            "role",
        ),
    ] {
        let p = srv
            .json("POST", "/api/users", &body)
            .await
            .problem(400, "bad_body");
        assert_eq!(p["field"], field, "{body}");
    }
    let users = srv.get("/api/users").await.json();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);

    // Login, me, what the role allows, logout.
    login(&srv, "alice", "wrong password")
        .await
        .problem(401, "unauthorized");
    login(&srv, "nobody", "whatever!")
        .await
        .problem(401, "unauthorized");
    let r = login(&srv, "alice", "correct horse").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let session = v["token"].as_str().unwrap().to_string();
    assert!(session.starts_with("mws_"));
    assert_eq!(v["role"], "operator");
    assert_eq!(v["expires_at"], NOW + 3_600_000);
    let me = srv.as_(&session, "GET", "/api/auth/me", b"").await.json();
    assert_eq!(me, json!({"name": "alice", "role": "operator"}));
    let r = srv
        .as_(&session, "POST", "/api/devices", br#"{"id": "by-alice"}"#)
        .await;
    assert_eq!(r.status, 201);
    srv.as_(&session, "GET", "/api/users", b"")
        .await
        .problem(403, "forbidden");
    let r = srv.as_(&session, "POST", "/api/auth/logout", b"").await;
    assert_eq!(r.status, 204, "{}", r.text());
    srv.as_(&session, "GET", "/api/auth/me", b"")
        .await
        .problem(401, "unauthorized");
    // Logout is for sessions, not API tokens.
    let p = srv
        .req("POST", "/api/auth/logout", &[], b"")
        .await
        .problem(400, "bad_parameter");
    assert_eq!(p["field"], "Authorization");

    // Sessions expire.
    let s2 = login(&srv, "alice", "correct horse").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    srv.now.store(NOW + 3_600_000, Ordering::Relaxed);
    srv.as_(&s2, "GET", "/api/auth/me", b"")
        .await
        .problem(401, "unauthorized");
    srv.now.store(NOW, Ordering::Relaxed);

    // A role change applies to sessions; disabling ends them.
    let s3 = login(&srv, "alice", "correct horse").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv
        .json("PATCH", "/api/users/alice", &json!({"role": "viewer"}))
        .await;
    assert_eq!(r.json()["role"], "viewer");
    srv.as_(&s3, "POST", "/api/devices", br#"{"id": "x"}"#)
        .await
        .problem(403, "forbidden");
    let r = srv
        .json("PATCH", "/api/users/alice", &json!({"disabled": true}))
        .await;
    assert_eq!(r.json()["disabled"], true);
    srv.as_(&s3, "GET", "/api/auth/me", b"")
        .await
        .problem(401, "unauthorized");
    login(&srv, "alice", "correct horse")
        .await
        .problem(401, "unauthorized");
    srv.json(
        "PATCH",
        "/api/users/alice",
        &json!({"disabled": false, "password": "battery staple"}),
    )
    .await;
    assert_eq!(login(&srv, "alice", "battery staple").await.status, 200);
    srv.json("PATCH", "/api/users/nobody", &json!({"disabled": true}))
        .await
        .problem(404, "not_found");
    assert_eq!(
        srv.req("DELETE", "/api/users/alice", &[], b"").await.status,
        204
    );
    srv.req("DELETE", "/api/users/alice", &[], b"")
        .await
        .problem(404, "not_found");

    // API tokens.
    let r = srv
        .json(
            "POST",
            "/api/tokens",
            &json!({"name": "grafana", "role": "viewer", "expires_at": NOW + 60_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("mwa_"));
    assert_eq!(v["last4"].as_str(), Some(&token[token.len() - 4..]));
    assert_eq!(v["expires_at"], NOW + 60_000);
    let list = srv.get("/api/tokens").await.json();
    let listed: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "grafana")
        .collect();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("token").is_none());
    assert_eq!(listed[0]["role"], "viewer");
    assert_eq!(
        srv.as_(&token, "GET", "/api/devices", b"").await.status,
        200
    );
    srv.now.store(NOW + 60_000, Ordering::Relaxed);
    srv.as_(&token, "GET", "/api/devices", b"")
        .await
        .problem(401, "unauthorized");
    let p = srv
        .json(
            "POST",
            "/api/tokens",
            &json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "expires_at");
}

#[tokio::test]
async fn changes_are_audited_reads_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let operator = srv.token(registry::Role::Operator);
    srv.json(
        "POST",
        "/api/users",
        &json!({"username": "alice", "password": "correct horse", "role": "admin"}),
    )
    .await;
    login(&srv, "alice", "wrong password").await;
    srv.json("POST", "/api/devices", &json!({"id": "d1"})).await;
    srv.json("PATCH", "/api/devices/d1", &json!({"name": "D1"}))
        .await;
    srv.get("/api/devices/d1").await;
    srv.as_(&operator, "POST", "/api/users", br#"{"username": "eve"}"#)
        .await;
    srv.json("POST", "/api/devices", &json!({"id": "d1"})).await;
    srv.req("DELETE", "/api/devices/d1", &[], b"").await;
    // Telemetry writes are data, not changes.
    srv.post("/api/telemetry/d1", br#"{"v": 1}"#).await;

    let r = srv.get("/api/audit").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let items = v["items"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str, i64)> = items
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("token:admin", "device.delete", "d1", 204),
            ("token:admin", "device.create", "d1", 409),
            ("token:operator", "user.create", "", 403),
            ("token:admin", "device.update", "d1", 200),
            ("token:admin", "device.create", "d1", 201),
            // The failed login (401) is counted, not logged.
            ("token:admin", "user.create", "alice", 201),
        ]
    );
    for e in items {
        assert_eq!(e["source"], "127.0.0.1");
        assert_eq!(e["time"], NOW);
        let text = e.to_string();
        assert!(
            !text.contains("correct horse") && !text.contains("mwd_"),
            "{text}"
        );
    }
    assert_eq!(items[1]["details"], json!({"error": "conflict"}));
    let seqs: Vec<i64> = items.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    // Filters and pages.
    let v = srv
        .get("/api/audit?action=device.&actor=token:admin")
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 4);
    // The user's creation; the failed login is not logged.
    let v = srv.get("/api/audit?target=alice").await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let r = srv.get("/api/audit?limit=3").await;
    let v = r.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 3);
    let before = v["next"].as_str().unwrap().to_string();
    assert!(r
        .header("link")
        .unwrap()
        .contains(&format!("before={before}")));
    let v = srv
        .get(&format!("/api/audit?limit=3&before={before}"))
        .await
        .json();
    assert_eq!(v["items"][0]["action"], "device.update");
    let v = srv.get("/api/audit?since=now%2B1s").await.json();
    assert_eq!(v["items"], json!([]));
    let v = srv.get("/api/audit?until=now%2B1s&limit=1").await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    for (q, field) in [
        ("limit=0", "limit"),
        ("before=x", "before"),
        ("since=soon", "since"),
    ] {
        let p = srv
            .get(&format!("/api/audit?{q}"))
            .await
            .problem(400, "bad_parameter");
        assert_eq!(p["field"], field);
    }
}
