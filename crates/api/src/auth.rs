//! Authentication and roles. A request carries an API or session token
//! (`Authorization: Bearer`, and on the InfluxDB write routes the forms
//! InfluxDB clients send); the registry verifies it (argon2 on the blocking
//! pool, then cached) and the [`Principal`] goes into the request's
//! extensions. Each route class then needs a role.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use registry::{Principal, Role};

use crate::error::ApiError;
use crate::{blocking, ApiState};

/// Which credential forms a route accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer <token>` only (the platform's own API).
    Bearer,
    /// Also `Authorization: Token <token>` (InfluxDB 2.x clients).
    InfluxV2,
    /// Also `Token`, `Basic` with the token as password, and the
    /// `?p=<token>` / `?u=<user>&p=<token>` parameters (InfluxDB 1.x clients).
    InfluxV1,
}

/// The role a route class needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Viewer for reads (GET, HEAD), operator for changes.
    ReadWrite,
    /// Any authenticated principal (viewer).
    Any,
    /// Admin for every method.
    Admin,
}

impl Needs {
    fn role(self, method: &Method) -> Role {
        match self {
            Needs::Any => Role::Viewer,
            Needs::Admin => Role::Admin,
            Needs::ReadWrite if method == Method::GET || method == Method::HEAD => Role::Viewer,
            Needs::ReadWrite => Role::Operator,
        }
    }
}

/// Middleware: verifies the credential in a form `scheme` accepts and puts
/// the [`Principal`] into the request's extensions; 401 without one.
pub(crate) async fn authenticate(
    State((st, scheme)): State<(Arc<ApiState>, Scheme)>,
    mut req: Request,
    next: Next,
) -> Response {
    let offered = credentials(req.headers(), req.uri().query(), scheme);
    if offered.is_empty() {
        return ApiError::Unauthorized.into_response();
    }
    let now = st.now_ms();
    let st2 = st.clone();
    let found = blocking(move || {
        for token in offered {
            if let Some(p) = st2
                .operators
                .authenticate_api_token(token.as_bytes(), now)?
            {
                return Ok(Some(p));
            }
        }
        Ok(None)
    })
    .await;
    match found {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => ApiError::Unauthorized.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Middleware after [`authenticate`]: 403 unless the principal's role is
/// at least what `needs` asks for this method.
pub(crate) async fn require(State(needs): State<Needs>, req: Request, next: Next) -> Response {
    let needed = needs.role(req.method());
    match req.extensions().get::<Principal>() {
        Some(p) if p.role >= needed => next.run(req).await,
        Some(p) => ApiError::Forbidden(format!(
            "this needs the {needed} role; {} has {}",
            p.name, p.role
        ))
        .into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The bearer token of a request (for the claim-authenticated provisioning
/// route).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    credentials(headers, None, Scheme::Bearer)
        .into_iter()
        .next()
}

/// Every token the request offers in a form `scheme` accepts, in order
/// (at most a few: one per `Authorization` header and the query).
fn credentials(headers: &HeaderMap, query: Option<&str>, scheme: Scheme) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(header::AUTHORIZATION).iter().take(4) {
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        let (kind, cred) = value.split_once(' ').unwrap_or((value, ""));
        let cred = cred.trim();
        if cred.is_empty() {
            continue;
        }
        match (kind.to_ascii_lowercase().as_str(), scheme) {
            ("bearer", _) | ("token", Scheme::InfluxV2) => out.push(cred.to_string()),
            // InfluxDB 1.8 also sends `Token user:password`.
            ("token", Scheme::InfluxV1) => {
                out.push(cred.to_string());
                if let Some((_, p)) = cred.split_once(':') {
                    out.push(p.to_string());
                }
            }
            ("basic", Scheme::InfluxV1) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(cred)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok());
                if let Some((_, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                    out.push(p.to_string());
                }
            }
            _ => {}
        }
    }
    if scheme == Scheme::InfluxV1 {
        if let Some(q) = query {
            out.extend(
                form_urlencoded::parse(q.as_bytes())
                    .filter(|(k, v)| k == "p" && !v.is_empty())
                    .map(|(_, v)| v.into_owned())
                    .take(1),
            );
        }
    }
    out.retain(|t| !t.is_empty());
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            m.insert(header::AUTHORIZATION, v);
        }
        m
    }

    fn c(headers: &HeaderMap, q: Option<&str>, scheme: Scheme) -> Vec<String> {
        credentials(headers, q, scheme)
    }

    #[test]
    fn schemes() {
        let t = vec!["s3cret".to_string()];
        assert_eq!(c(&h("Bearer s3cret"), None, Scheme::Bearer), t);
        assert_eq!(c(&h("bearer  s3cret "), None, Scheme::Bearer), t);
        assert!(c(&h("Token s3cret"), None, Scheme::Bearer).is_empty());
        assert!(c(&h("Bearer"), None, Scheme::Bearer).is_empty());
        assert_eq!(c(&h("Token s3cret"), None, Scheme::InfluxV2), t);
        assert_eq!(
            c(&h("Token u:s3cret"), None, Scheme::InfluxV1),
            vec!["u:s3cret".to_string(), "s3cret".to_string()]
        );
        // "u:s3cret" in base64.
        assert_eq!(c(&h("Basic dTpzM2NyZXQ="), None, Scheme::InfluxV1), t);
        assert!(c(&h("Basic dTpzM2NyZXQ="), None, Scheme::InfluxV2).is_empty());
        let none = HeaderMap::new();
        assert_eq!(c(&none, Some("db=x&u=me&p=s3cret"), Scheme::InfluxV1), t);
        assert!(c(&none, Some("db=x&p=s3cret"), Scheme::InfluxV2).is_empty());
        assert!(c(&none, None, Scheme::Bearer).is_empty());
        assert_eq!(bearer(&h("Bearer s3cret")), Some("s3cret".to_string()));
    }

    #[test]
    fn roles_per_class() {
        assert_eq!(Needs::ReadWrite.role(&Method::GET), Role::Viewer);
        assert_eq!(Needs::ReadWrite.role(&Method::POST), Role::Operator);
        assert_eq!(Needs::ReadWrite.role(&Method::DELETE), Role::Operator);
        assert_eq!(Needs::Any.role(&Method::POST), Role::Viewer);
        assert_eq!(Needs::Admin.role(&Method::GET), Role::Admin);
    }
}
