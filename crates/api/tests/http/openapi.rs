//! The OpenAPI document and the reference page against the router: every
//! documented operation is routed, every routed method is documented.

use crate::harness::*;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

#[tokio::test]
async fn every_documented_operation_is_routed_and_no_other_method_is() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let resp = srv.anon("GET", "/api/openapi.json", &[], b"").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let doc = resp.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 40);
    for (path, ops) in paths {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for m in METHODS {
            let documented = ops.get(m.to_ascii_lowercase()).is_some();
            // No credential: a routed operation stops at authentication (or
            // at its own checks, for public ones), never at 404 or 405.
            let r = srv.anon(m, &concrete, &[], b"").await;
            if documented {
                assert!(
                    r.status != 404 && r.status != 405,
                    "{m} {path} is documented but answers {}: {}",
                    r.status,
                    r.text()
                );
                let op = &ops[m.to_ascii_lowercase()];
                let role = op["x-required-role"].as_str().unwrap();
                if role != "none" && role != "claim" {
                    r.problem(401, "unauthorized");
                }
            } else {
                assert_eq!(
                    r.status, 405,
                    "{m} {path} is routed but not in the OpenAPI document (openapi/routes.rs)"
                );
                r.problem(405, "method_not_allowed");
            }
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_reference_page_is_html_without_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(dir.path()).await;
    let r = srv.anon("GET", "/api/docs", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(html.contains("/api/devices/{id}/twin"));
    assert!(html.contains("schema-Problem"));
    assert!(!html.contains("<script"));
    srv.stop().await;
}
