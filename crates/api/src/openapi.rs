//! The route table ([`ROUTES`]) and what is built from it: the axum router
//! ([`crate::router`] registers each entry's handler behind its
//! [`Guard`]), the OpenAPI 3.1 document (`GET /api/openapi.json`) and the
//! reference page (`GET /api/docs`). A path is written once, here.
//!
//! An HTTP test (`tests/http/openapi.rs`) sends every method to every
//! documented path: a documented operation must not answer 404 or 405, an
//! undocumented method must answer 405.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use serde_json::{json, Map, Value as Json};

use crate::ApiState;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No credential.
    Public,
    /// A claim token (`Authorization: Bearer <claim token>`).
    Claim,
    /// An API or session token of at least this role.
    Viewer,
    Operator,
    Admin,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Public => "none",
            Access::Claim => "claim",
            Access::Viewer => "viewer",
            Access::Operator => "operator",
            Access::Admin => "admin",
        }
    }
}

/// The middleware a route runs behind, outermost first: authentication
/// (the principal), the audit log (so that refusals for a missing role are
/// logged with who tried), the role check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Guard {
    /// Nothing (liveness, this document, the docs page).
    Open,
    /// Telemetry: a bearer credential and the role by method; data, not
    /// changes, so not audited.
    Data,
    /// As `Data`, with the credential forms of InfluxDB 2.x clients.
    InfluxV2,
    /// As `Data`, with the credential forms of InfluxDB 1.x clients.
    InfluxV1,
    /// A bearer credential, audited, the role by method.
    Audited,
    /// A bearer credential of any role, audited (the caller's own session).
    Session,
    /// An admin bearer credential, audited.
    AdminOnly,
    /// Credentials of their own (a password, a claim token), audited.
    Credential,
}

/// Makes the axum route of a handler for one method.
pub(crate) type Handler = fn(MethodFilter) -> MethodRouter<Arc<ApiState>>;

/// The [`Handler`] of an async handler function.
macro_rules! h {
    ($f:path) => {{
        fn route(
            m: axum::routing::MethodFilter,
        ) -> axum::routing::MethodRouter<std::sync::Arc<crate::ApiState>> {
            axum::routing::on(m, $f)
        }
        route
    }};
}

/// One operation: a method on a path, and its handler.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteSpec {
    pub(crate) handler: Handler,
    pub(crate) guard: Guard,
    pub(crate) method: &'static str,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    pub(crate) tag: &'static str,
    pub(crate) summary: &'static str,
    /// Query parameters: name and description.
    pub(crate) query: &'static [(&'static str, &'static str)],
    /// The request body's schema (a name in `components.schemas`).
    pub(crate) body: Option<&'static str>,
    /// Success statuses with their body's schema (`None`: no body).
    pub(crate) ok: &'static [(u16, Option<&'static str>)],
    /// Error statuses beyond the common ones ([`COMMON_ERRORS`]).
    pub(crate) errors: &'static [u16],
}

/// Error statuses every operation may answer (a route without a
/// credential never answers 401 or 403 for it, but may for other reasons).
const COMMON_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 503];

const fn op(
    handler: Handler,
    guard: Guard,
    method: &'static str,
    path: &'static str,
    access: Access,
    tag: &'static str,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        handler,
        guard,
        method,
        path,
        access,
        tag,
        summary,
        query: &[],
        body: None,
        ok: &[(200, None)],
        errors: &[],
    }
}

impl RouteSpec {
    /// The axum route of this operation.
    pub(crate) fn method_router(&self) -> MethodRouter<Arc<ApiState>> {
        let filter = match self.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            // `operations_are_unique_and_complete` checks the table's methods.
            other => unreachable!("no such method in ROUTES: {other}"),
        };
        (self.handler)(filter)
    }

    const fn query(mut self, q: &'static [(&'static str, &'static str)]) -> RouteSpec {
        self.query = q;
        self
    }
    const fn body(mut self, schema: &'static str) -> RouteSpec {
        self.body = Some(schema);
        self
    }
    const fn ok(mut self, ok: &'static [(u16, Option<&'static str>)]) -> RouteSpec {
        self.ok = ok;
        self
    }
    const fn errors(mut self, e: &'static [u16]) -> RouteSpec {
        self.errors = e;
        self
    }
}

mod docs;
mod routes;
mod schemas;

pub(crate) use docs::docs;
pub(crate) use routes::ROUTES;
use schemas::schemas;

fn reason(code: u16) -> &'static str {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

/// Path parameters of a path template, in order.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn media(schema: &str) -> Json {
    let r = |n: &str| json!({ "$ref": format!("#/components/schemas/{n}") });
    match schema {
        "LineProtocol" => json!({ "text/plain": { "schema": r(schema) } }),
        "Pem" => json!({ "application/x-pem-file": { "schema": r(schema) } }),
        "EventStream" => json!({ "text/event-stream": { "schema": r(schema) } }),
        "Html" => json!({ "text/html": { "schema": r(schema) } }),
        "PrometheusText" => json!({ "text/plain": { "schema": r(schema) } }),
        "DeviceImport" => json!({
            "application/json": { "schema": r(schema) },
            "text/csv": { "schema": { "type": "string" } },
        }),
        "TelemetryQueryAnswer" => json!({
            "application/json": { "schema": r(schema) },
            "text/csv": { "schema": { "type": "string" } },
            "application/vnd.millwright.columnar+json": { "schema": { "type": "object" } },
        }),
        "LatestAnswer" => json!({
            "application/json": { "schema": r(schema) },
            "text/csv": { "schema": { "type": "string" } },
        }),
        _ => json!({ "application/json": { "schema": r(schema) } }),
    }
}

fn operation(r: &RouteSpec) -> Json {
    let mut params: Vec<Json> = path_params(r.path)
        .into_iter()
        .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    for (name, desc) in r.query {
        params.push(json!({
            "name": name, "in": "query", "required": desc.starts_with("required"),
            "description": desc, "schema": { "type": "string" },
        }));
    }
    let mut responses = Map::new();
    for (code, schema) in r.ok {
        let mut resp = json!({ "description": reason(*code) });
        if let Some(s) = schema {
            resp["content"] = media(s);
        }
        responses.insert(code.to_string(), resp);
    }
    for code in error_codes(r) {
        responses.insert(
            code.to_string(),
            json!({ "$ref": format!("#/components/responses/{code}") }),
        );
    }
    let mut o = json!({
        "operationId": operation_id(r),
        "summary": r.summary,
        "tags": [r.tag],
        "parameters": params,
        "responses": responses,
        "x-required-role": r.access.as_str(),
        "security": match r.access {
            Access::Public => json!([]),
            Access::Claim => json!([{ "claimToken": [] }]),
            _ => json!([{ "bearer": [] }]),
        },
    });
    if let Some(b) = r.body {
        o["requestBody"] = json!({ "required": true, "content": media(b) });
    }
    o
}

/// The error statuses of an operation: the common ones (without 401 and
/// 403 where no credential is checked) and its own.
fn error_codes(r: &RouteSpec) -> Vec<u16> {
    let mut errors: Vec<u16> = COMMON_ERRORS.iter().chain(r.errors).copied().collect();
    if r.access == Access::Public && r.path != "/api/auth/login" {
        errors.retain(|c| *c != 401 && *c != 403);
    }
    errors.sort_unstable();
    errors
}

/// `get_api_devices_id`, unique per method and path.
fn operation_id(r: &RouteSpec) -> String {
    let mut id = r.method.to_ascii_lowercase();
    for c in r.path.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('_') && c != '}' {
            id.push('_');
        }
    }
    id.trim_end_matches('_').to_string()
}

/// The OpenAPI 3.1 document.
pub(crate) fn spec() -> Json {
    let mut paths: BTreeMap<&str, Map<String, Json>> = BTreeMap::new();
    for r in ROUTES {
        paths
            .entry(r.path)
            .or_default()
            .insert(r.method.to_ascii_lowercase(), operation(r));
    }
    let mut responses = Map::new();
    for code in [
        400u16, 401, 403, 404, 409, 412, 413, 415, 422, 429, 503, 504, 507,
    ] {
        responses.insert(
            code.to_string(),
            json!({
                "description": reason(code),
                "content": { "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" } } },
            }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Millwright API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted IoT platform: telemetry, devices, twins, commands, rules, alarms, operators. \
    Roles are ordered viewer < operator < admin; `x-required-role` names the least role an operation needs. \
    Every error is an RFC 9457 problem document with a stable `code`.",
        },
        "servers": [{ "url": "/" }],
        "tags": tags().iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                    "description": "An API token (mwa_...) or a login session token (mws_...)" },
                "claimToken": { "type": "http", "scheme": "bearer",
                    "description": "A provisioning claim token" },
            },
            "responses": responses,
            "schemas": schemas(),
        },
    })
}

fn tags() -> Vec<&'static str> {
    let mut t: Vec<&str> = Vec::new();
    for r in ROUTES {
        if !t.contains(&r.tag) {
            t.push(r.tag);
        }
    }
    t
}

/// `GET /api/openapi.json`.
pub(crate) async fn document(State(_): State<Arc<ApiState>>) -> Response {
    let body = serde_json::to_vec_pretty(&spec()).unwrap_or_default();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn operations_are_unique_and_complete() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(
                ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&r.method),
                "{} {}",
                r.method,
                r.path
            );
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(!r.ok.is_empty());
        }
        let doc = spec();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        // Every $ref resolves.
        let text = doc.to_string();
        for part in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            let (kind, name) = target.split_once('/').unwrap();
            assert!(
                doc["components"][kind].get(name).is_some(),
                "dangling $ref {target}"
            );
        }
        for name in [
            "Device",
            "TwinDocument",
            "Command",
            "Alarm",
            "Rule",
            "Problem",
            "Presence",
            "FleetStatus",
            "Claim",
            "ApiToken",
            "User",
            "AuditEntry",
            "TelemetryQueryAnswer",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        let op = &doc["paths"]["/api/devices/{id}"]["patch"];
        assert_eq!(op["x-required-role"], "operator");
        assert_eq!(op["security"][0]["bearer"], json!([]));
        assert_eq!(op["parameters"][0]["name"], "id");
        assert_eq!(op["responses"]["404"]["$ref"], "#/components/responses/404");
        assert_eq!(doc["paths"]["/health"]["get"]["security"], json!([]));
    }

    #[test]
    fn the_docs_page_lists_every_operation() {
        let html = docs::docs_html();
        for r in ROUTES {
            assert!(
                html.contains(&format!("id=\"{}\"", operation_id(r))),
                "{} {}",
                r.method,
                r.path
            );
        }
        assert!(!html.contains("<script"));
    }
}
