//! The audit log: every change made through the API (POST, PUT, PATCH,
//! DELETE on the management routes) is appended after its handler ran,
//! with who (the principal), what (an action from [`ACTIONS`]), to which
//! object, from which address, and the response status. Bodies are never
//! logged, so no secret reaches the log. Telemetry writes are data, not
//! changes, and are not audited (their routes do not carry this layer).
//! Also `GET /api/audit`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use registry::{AuditFilter, NewAuditEntry, Principal};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::{ApiError, ProblemCode};
use crate::params::Params;
use crate::time::parse_instant;
use crate::{render, ApiState};

/// (`"METHOD route"`, action). Routes not listed are logged as
/// `"METHOD route"`.
pub(crate) const ACTIONS: &[(&str, &str)] = &[
    ("POST /api/devices", "device.create"),
    ("PATCH /api/devices/{id}", "device.update"),
    ("DELETE /api/devices/{id}", "device.delete"),
    ("POST /api/devices/import", "device.import"),
    ("POST /api/devices/{id}/tokens", "device.token.issue"),
    ("DELETE /api/devices/{id}/tokens", "device.token.revoke"),
    ("POST /api/devices/{id}/certificates", "certificate.issue"),
    (
        "POST /api/certificates/{serial}/revoke",
        "certificate.revoke",
    ),
    ("PATCH /api/devices/{id}/twin", "twin.update"),
    ("PATCH /api/devices/{id}/twins/{name}", "twin.update"),
    ("POST /api/devices/{id}/commands", "command.create"),
    (
        "POST /api/devices/{id}/commands/{cmd}/cancel",
        "command.cancel",
    ),
    ("POST /api/claims", "claim.create"),
    ("DELETE /api/claims/{id}", "claim.revoke"),
    ("POST /api/provision", "device.provision"),
    ("POST /api/auth/login", "auth.login"),
    ("POST /api/auth/logout", "auth.logout"),
    ("POST /api/users", "user.create"),
    ("PATCH /api/users/{name}", "user.update"),
    ("DELETE /api/users/{name}", "user.delete"),
    ("POST /api/tokens", "token.create"),
    ("DELETE /api/tokens/{id}", "token.revoke"),
    ("POST /api/rules", "rule.create"),
    ("PUT /api/rules/{name}", "rule.update"),
    ("DELETE /api/rules/{name}", "rule.delete"),
    ("POST /api/rules/{name}/enable", "rule.enable"),
    ("POST /api/rules/{name}/disable", "rule.disable"),
    ("POST /api/alarms/{id}/ack", "alarm.acknowledge"),
    ("POST /api/alarms/{id}/clear", "alarm.clear"),
];

/// The action name of a request.
pub(crate) fn action(method: &Method, route: &str) -> String {
    let request = format!("{method} {route}");
    ACTIONS
        .iter()
        .find(|(r, _)| *r == request)
        .map_or(request, |(_, a)| (*a).to_string())
}

/// What a handler tells the audit log beyond what the request shows: the
/// object it created, who acted when no token did (login, provisioning),
/// and a few details. Left in the response's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Note {
    target: Option<String>,
    actor: Option<String>,
    details: Option<Json>,
}

impl Note {
    pub(crate) fn target(t: &str) -> Note {
        Note {
            target: Some(t.to_string()),
            ..Note::default()
        }
    }

    pub(crate) fn actor(a: &str) -> Note {
        Note {
            actor: Some(a.to_string()),
            ..Note::default()
        }
    }

    pub(crate) fn details(d: Json) -> Note {
        Note {
            details: Some(d),
            ..Note::default()
        }
    }

    pub(crate) fn with_details(mut self, d: Json) -> Note {
        self.details = Some(d);
        self
    }

    pub(crate) fn with_target(mut self, t: &str) -> Note {
        self.target = Some(t.to_string());
        self
    }

    pub(crate) fn attach(self, mut resp: Response) -> Response {
        resp.extensions_mut().insert(self);
        resp
    }

    /// The outcome of a handler that filled in the note as it went, so
    /// that a refusal is logged with what was known by then.
    pub(crate) fn outcome(self, r: Result<Response, ApiError>) -> Response {
        self.attach(r.unwrap_or_else(IntoResponse::into_response))
    }
}

/// Middleware: runs the request, then appends its audit entry if it was a
/// change. A failure to append is logged, not turned into an error: the
/// change itself is done.
pub(crate) async fn record(
    State(st): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let principal = req.extensions().get::<Principal>().map(|p| p.name.clone());
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let path_target = req
        .extract_parts::<RawPathParams>()
        .await
        .ok()
        .and_then(|p| p.iter().last().map(|(_, v)| v.to_string()));
    let resp = next.run(req).await;
    // Refusals before any identity was established (401), and logins
    // refused unchecked during back-off (429), are counted
    // (`GET /api/system`), not logged: a flood of them would push real
    // entries out of the bounded log.
    if matches!(
        resp.status(),
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
    ) {
        return resp;
    }
    let note = resp.extensions().get::<Note>().cloned().unwrap_or_default();
    let details = note.details.unwrap_or_else(|| {
        resp.extensions()
            .get::<ProblemCode>()
            .map_or(Json::Null, |c| serde_json::json!({ "error": c.0 }))
    });
    let entry = NewAuditEntry {
        time_ms: st.now_ms(),
        actor: note
            .actor
            .or(principal)
            .unwrap_or_else(|| "anonymous".to_string()),
        action: action(&method, &route),
        target: note.target.or(path_target).unwrap_or_default(),
        source,
        status: resp.status().as_u16(),
        details,
    };
    let audit = st.audit.clone();
    let appended = tokio::task::spawn_blocking(move || audit.append(entry)).await;
    match appended {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "appending to the audit log failed"),
        Err(e) => tracing::warn!(error = %e, "audit task failed"),
    }
    resp
}

/// Default and largest page of `GET /api/audit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// `GET /api/audit?actor=&action=&target=&since=&until=&limit=&before=`:
/// newest first; `action` is a prefix (`device.` for every device action).
pub(crate) async fn query(
    State(st): State<Arc<ApiState>>,
    p: Params,
) -> Result<Response, ApiError> {
    p.only(
        &[
            "actor", "action", "target", "since", "until", "limit", "before",
        ],
        &[],
    )?;
    let now = st.now();
    let instant = |name: &str| -> Result<Option<u64>, ApiError> {
        p.get(name)
            .map(|v| {
                parse_instant(v, now)
                    .and_then(|ms| u64::try_from(ms).map_err(|_| "before 1970".to_string()))
                    .map_err(|r| ApiError::param(name, r))
            })
            .transpose()
    };
    let filter = AuditFilter {
        actor: p.get("actor").map(str::to_string),
        action_prefix: p.get("action").map(str::to_string),
        target: p.get("target").map(str::to_string),
        since_ms: instant("since")?,
        until_ms: instant("until")?,
    };
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = match p.get("before") {
        None => None,
        Some(b) => Some(
            b.parse::<u64>()
                .map_err(|_| ApiError::param("before", "must be a sequence number"))?,
        ),
    };
    let audit = st.audit.clone();
    let page = crate::blocking(move || Ok(audit.query(&filter, before, limit)?)).await?;
    #[derive(Serialize)]
    struct EntryDto<'a> {
        seq: u64,
        time: u64,
        actor: &'a str,
        action: &'a str,
        target: &'a str,
        source: &'a str,
        status: u16,
        details: &'a Json,
    }
    let items = page
        .items
        .iter()
        .map(|e| EntryDto {
            seq: e.seq,
            time: e.time_ms,
            actor: &e.actor,
            action: &e.action,
            target: &e.target,
            source: &e.source,
            status: e.status,
            details: &e.details,
        })
        .collect();
    render::page(items, page.next, &p, "/api/audit", "before")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(action(&Method::POST, "/api/devices"), "device.create");
        assert_eq!(action(&Method::DELETE, "/api/tokens/{id}"), "token.revoke");
        assert_eq!(action(&Method::PUT, "/api/x"), "PUT /api/x");
    }
}
