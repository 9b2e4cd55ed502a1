//! Roles per route class, and tokens failing at once when revoked.

use registry::Role;
use serde_json::json;

use crate::harness::start;

#[tokio::test]
async fn each_role_against_each_class() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let tokens = [
        (Role::Viewer, srv.token(Role::Viewer)),
        (Role::Operator, srv.token(Role::Operator)),
        (Role::Admin, srv.admin.clone()),
    ];
    for (role, token) in &tokens {
        let create = json!({"id": format!("rbac-{role}")}).to_string();
        // (method, path, body, role needed, success status)
        let cases: [(&str, &str, &[u8], Role, u16); 7] = [
            ("GET", "/api/devices", b"", Role::Viewer, 200),
            ("GET", "/api/telemetry/stats", b"", Role::Viewer, 200),
            ("GET", "/api/auth/me", b"", Role::Viewer, 200),
            (
                "POST",
                "/api/devices",
                create.as_bytes(),
                Role::Operator,
                201,
            ),
            (
                "POST",
                "/api/telemetry/d",
                br#"{"v": 1}"#,
                Role::Operator,
                204,
            ),
            ("GET", "/api/users", b"", Role::Admin, 200),
            ("GET", "/api/audit", b"", Role::Admin, 200),
        ];
        for (method, path, body, needed, ok) in cases {
            let r = srv.as_(token, method, path, body).await;
            if *role >= needed {
                assert_eq!(r.status, ok, "{role} {method} {path}: {}", r.text());
            } else {
                let p = r.problem(403, "forbidden");
                let detail = p["detail"].as_str().unwrap();
                assert!(detail.contains(needed.as_str()), "{detail}");
            }
        }
        let me = srv.as_(token, "GET", "/api/auth/me", b"").await.json();
        assert_eq!(me["role"], role.as_str());
        assert_eq!(me["name"], format!("token:{role}"));
    }
    // No credential at all.
    for (method, path) in [
        ("GET", "/api/devices"),
        ("POST", "/api/devices"),
        ("GET", "/api/users"),
        ("GET", "/api/auth/me"),
    ] {
        srv.anon(method, path, &[], b"")
            .await
            .problem(401, "unauthorized");
    }
}

#[tokio::test]
async fn a_revoked_token_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let r = srv
        .json(
            "POST",
            "/api/tokens",
            &json!({"name": "ci", "role": "operator"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    // Verified once (argon2), then from the cache.
    for _ in 0..2 {
        assert_eq!(
            srv.as_(&token, "GET", "/api/devices", b"").await.status,
            200
        );
    }
    let r = srv
        .req("DELETE", &format!("/api/tokens/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    srv.as_(&token, "GET", "/api/devices", b"")
        .await
        .problem(401, "unauthorized");
    srv.req("DELETE", &format!("/api/tokens/{id}"), &[], b"")
        .await
        .problem(404, "not_found");
}
