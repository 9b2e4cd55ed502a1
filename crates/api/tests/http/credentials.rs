//! Device tokens, certificates, claims and provisioning.

use std::sync::atomic::Ordering;

use registry::DeviceAuth;
use serde_json::json;

use crate::harness::{start, start_with, Config, NOW};

fn valid(srv: &crate::harness::Server, id: &str, token: &str, at: i64) -> bool {
    matches!(
        srv.registry
            .authenticate_device("default", id, token.as_bytes(), at as u64)
            .unwrap(),
        DeviceAuth::Ok(_)
    )
}

#[tokio::test]
async fn token_rotation_with_and_without_grace() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let v = srv
        .json("POST", "/api/devices", &json!({"id": "d1"}))
        .await
        .json();
    let t1 = v["token"].as_str().unwrap().to_string();

    // With grace: both work until it ends; nobody is disconnected.
    let r = srv
        .json(
            "POST",
            "/api/devices/d1/tokens",
            &json!({"grace_seconds": 60}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let t2 = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(t1, t2);
    assert!(valid(&srv, "d1", &t1, NOW + 59_000));
    assert!(valid(&srv, "d1", &t2, NOW + 59_000));
    assert!(!valid(&srv, "d1", &t1, NOW + 60_000));
    assert!(srv.live.take().is_empty());

    // Without: the old one dies at once and sessions are dropped.
    let r = srv.post("/api/devices/d1/tokens", b"").await;
    assert_eq!(r.status, 201);
    let t3 = r.json()["token"].as_str().unwrap().to_string();
    assert!(!valid(&srv, "d1", &t2, NOW));
    assert!(valid(&srv, "d1", &t3, NOW));
    assert_eq!(srv.live.take(), vec![("d1".to_string(), 0x87)]);

    // Revoke all.
    let r = srv.req("DELETE", "/api/devices/d1/tokens", &[], b"").await;
    assert_eq!(r.status, 204);
    assert!(!valid(&srv, "d1", &t3, NOW));
    assert_eq!(srv.live.take(), vec![("d1".to_string(), 0x87)]);

    srv.post("/api/devices/nope/tokens", b"")
        .await
        .problem(404, "not_found");
    let p = srv
        .json(
            "POST",
            "/api/devices/d1/tokens",
            &json!({"grace_seconds": -1}),
        )
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "grace_seconds");
}

#[tokio::test]
async fn certificates_issue_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    srv.json("POST", "/api/devices", &json!({"id": "d1", "token": false}))
        .await;
    let ca_pem = srv.get("/api/ca").await;
    assert_eq!(ca_pem.status, 200);
    assert_eq!(
        ca_pem.header("content-type"),
        Some("application/x-pem-file")
    );
    assert!(ca_pem.text().starts_with("-----BEGIN CERTIFICATE-----"));

    // A key generated here.
    let r = srv.post("/api/devices/d1/certificates", b"{}").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(v["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(v["private_key"].as_str().unwrap().contains("PRIVATE KEY"));
    assert_eq!(v["ca_certificate"].as_str(), Some(ca_pem.text().as_str()));
    let generated_serial = v["serial"].as_str().unwrap().to_string();
    assert!(v["not_after"].as_u64().unwrap() > NOW as u64 + 89 * 86_400_000);

    // The device's own CSR: no key comes back.
    let (csr, _key) = pki::generate_csr("d1").unwrap();
    let r = srv
        .json(
            "POST",
            "/api/devices/d1/certificates",
            &json!({"csr": csr, "days": 7}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(v.get("private_key").is_none());
    let chain = pki::load_cert_chain(v["certificate"].as_str().unwrap()).unwrap();
    let peer = pki::peer_cert(chain[0].as_ref()).unwrap();
    assert_eq!(peer.device_id(), Some("d1"));
    let not_after = v["not_after"].as_u64().unwrap();
    assert!(not_after <= NOW as u64 + 7 * 86_400_000);

    let list = srv.get("/api/devices/d1/certificates").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(list["items"][0]["revoked_at"], json!(null));

    // Refusals.
    let p = srv
        .json(
            "POST",
            "/api/devices/d1/certificates",
            &json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
        )
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "csr");
    let p = srv
        .json("POST", "/api/devices/d1/certificates", &json!({"days": 0}))
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "days");
    srv.post("/api/devices/nope/certificates", b"")
        .await
        .problem(404, "not_found");
    srv.get("/api/devices/nope/certificates")
        .await
        .problem(404, "not_found");

    // Revocation drops the device's sessions.
    srv.now.store(NOW + 10, Ordering::Relaxed);
    let r = srv
        .post(&format!("/api/certificates/{generated_serial}/revoke"), b"")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["serial"], generated_serial.as_str());
    assert_eq!(v["device_id"], "d1");
    assert_eq!(v["revoked_at"], NOW + 10);
    assert!(srv.registry.is_certificate_revoked(&generated_serial));
    assert_eq!(srv.live.take(), vec![("d1".to_string(), 0x87)]);
    srv.post("/api/certificates/abcdef/revoke", b"")
        .await
        .problem(404, "not_found");
    srv.post("/api/certificates/not-hex/revoke", b"")
        .await
        .problem(400, "bad_body");
}

#[tokio::test]
async fn without_a_ca_certificates_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start_with(
        dir.path(),
        Config {
            with_ca: false,
            ..Config::default()
        },
    )
    .await;
    srv.json("POST", "/api/devices", &json!({"id": "d1"})).await;
    srv.post("/api/devices/d1/certificates", b"")
        .await
        .problem(503, "unavailable");
    srv.get("/api/ca").await.problem(503, "unavailable");
}

#[tokio::test]
async fn claims_and_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let body = json!({
        "name": "line 1",
        "template": {"type": "press", "labels": {"zone": "a"}, "groups": ["hall"], "id_pattern": "press-*"},
        "max_uses": 2,
        "expires_at": "2023-11-15T00:00:00Z",
    });
    let r = srv.json("POST", "/api/claims", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("mwc_"));
    assert_eq!(v["template"]["type"], "press");
    assert_eq!(v["expires_at"], 1_700_006_400_000_i64);
    assert_eq!(
        (v["uses"].clone(), v["max_uses"].clone()),
        (json!(0), json!(2))
    );

    let list = srv.get("/api/claims").await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("token").is_none());

    // Template errors name the member.
    for (body, field) in [
        (json!({"template": {}}), "name"),
        (
            json!({"name": "c", "template": {"id_pattern": "a/*"}}),
            "template.id_pattern",
        ),
        (
            json!({"name": "c", "template": {"type": "a b"}}),
            "template.type",
        ),
        (
            json!({"name": "c", "template": {"colour": 1}}),
            "template.colour",
        ),
        (json!({"name": "c", "expires_at": 5}), "expires_at"),
    ] {
        let p = srv
            .json("POST", "/api/claims", &body)
            .await
            .problem(400, "bad_body");
        assert_eq!(p["field"], field, "{body}");
    }

    // Provisioning with the claim token.
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let r = srv
        .anon(
            "POST",
            "/api/provision",
            &auth,
            br#"{"device_id": "press-1"}"#,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["device_id"], "press-1");
    let dt = v["token"].as_str().unwrap();
    assert!(matches!(
        srv.registry
            .authenticate_device("default", "press-1", dt.as_bytes(), NOW as u64)
            .unwrap(),
        DeviceAuth::Ok(d) if d.device_type == "press" && d.labels.get("zone").map(String::as_str) == Some("a")
    ));
    // The template refuses other ids; a device that exists is 409.
    srv.anon(
        "POST",
        "/api/provision",
        &auth,
        br#"{"device_id": "lathe-1"}"#,
    )
    .await
    .problem(403, "forbidden");
    srv.anon(
        "POST",
        "/api/provision",
        &auth,
        br#"{"device_id": "press-1"}"#,
    )
    .await
    .problem(409, "conflict");
    let p = srv
        .anon("POST", "/api/provision", &auth, b"{}")
        .await
        .problem(400, "bad_body");
    assert_eq!(p["field"], "device_id");
    srv.anon(
        "POST",
        "/api/provision",
        &auth,
        br#"{"device_id": "x", "extra": 1}"#,
    )
    .await
    .problem(400, "bad_body");
    // With a CSR: a certificate and the CA instead of a token.
    let (csr, _key) = pki::generate_csr("press-2").unwrap();
    let body = json!({"device_id": "press-2", "csr": csr});
    let r = srv
        .anon("POST", "/api/provision", &auth, body.to_string().as_bytes())
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert!(v.get("token").is_none());
    assert!(v["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(
        v["ca_certificate"].as_str(),
        Some(srv.get("/api/ca").await.text().as_str())
    );
    assert_eq!(
        srv.get("/api/devices/press-2/certificates").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Two uses: exhausted.
    let p = srv
        .anon(
            "POST",
            "/api/provision",
            &auth,
            br#"{"device_id": "press-3"}"#,
        )
        .await
        .problem(403, "forbidden");
    assert!(
        p["detail"].as_str().unwrap().contains("no uses left"),
        "{p}"
    );

    // Unknown or missing token: 401.
    srv.anon(
        "POST",
        "/api/provision",
        &[("Authorization", "Bearer mwc_nope")],
        br#"{"device_id": "press-4"}"#,
    )
    .await
    .problem(401, "unauthorized");
    srv.anon(
        "POST",
        "/api/provision",
        &[],
        br#"{"device_id": "press-4"}"#,
    )
    .await
    .problem(401, "unauthorized");

    // Revoking drops the sessions connected with the claim.
    let r = srv
        .req("DELETE", &format!("/api/claims/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(srv.live.take(), vec![(format!("claim:{id}"), 0x87)]);
    let p = srv
        .anon(
            "POST",
            "/api/provision",
            &auth,
            br#"{"device_id": "press-5"}"#,
        )
        .await
        .problem(403, "forbidden");
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
    assert_eq!(
        srv.get("/api/claims").await.json()["items"][0]["revoked"],
        true
    );
    srv.req("DELETE", "/api/claims/nope", &[], b"")
        .await
        .problem(404, "not_found");

    // An expired claim.
    let (_, t) = srv
        .registry
        .create_claim(
            "default",
            "short",
            registry::ProvisioningTemplate::default(),
            None,
            Some(NOW as u64 + 1000),
            NOW as u64,
        )
        .unwrap();
    srv.now.store(NOW + 1000, Ordering::Relaxed);
    let p = srv
        .anon(
            "POST",
            "/api/provision",
            &[("Authorization", &format!("Bearer {t}"))],
            br#"{"device_id": "x"}"#,
        )
        .await
        .problem(403, "forbidden");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
}
