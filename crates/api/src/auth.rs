//! The interim shared-token check. Full identities and roles come later;
//! until then one token, when configured, guards every route but `/health`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::error::ApiError;
use crate::ApiState;

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

/// Middleware: passes the request on if no token is configured or the
/// request carries it in a form `scheme` accepts; otherwise 401.
pub(crate) async fn require_token(
    State((state, scheme)): State<(Arc<ApiState>, Scheme)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(req).await;
    };
    if authorized(req.headers(), req.uri().query(), token, scheme) {
        next.run(req).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

fn authorized(headers: &HeaderMap, query: Option<&str>, token: &str, scheme: Scheme) -> bool {
    let offered = |t: &str| constant_time_eq(t.as_bytes(), token.as_bytes());
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        let (kind, cred) = value.trim().split_once(' ').unwrap_or((value, ""));
        let cred = cred.trim();
        let kind = kind.to_ascii_lowercase();
        let ok = match (kind.as_str(), scheme) {
            ("bearer", _) => offered(cred),
            ("token", Scheme::InfluxV2) => offered(cred),
            // InfluxDB 1.8 also sends `Token user:password`.
            ("token", Scheme::InfluxV1) => {
                offered(cred) || cred.split_once(':').is_some_and(|(_, p)| offered(p))
            }
            ("basic", Scheme::InfluxV1) => base64::engine::general_purpose::STANDARD
                .decode(cred)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .is_some_and(|d| d.split_once(':').is_some_and(|(_, p)| offered(p))),
            _ => false,
        };
        if ok {
            return true;
        }
    }
    if scheme == Scheme::InfluxV1 {
        if let Some(q) = query {
            return form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "p" && offered(&v));
        }
    }
    false
}

/// Compares without an early exit on the first differing byte, so response
/// time does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    #[test]
    fn schemes() {
        let t = "s3cret";
        assert!(authorized(&h("Bearer s3cret"), None, t, Scheme::Bearer));
        assert!(authorized(&h("bearer  s3cret "), None, t, Scheme::Bearer));
        assert!(!authorized(&h("Bearer s3cre"), None, t, Scheme::Bearer));
        assert!(!authorized(&h("Token s3cret"), None, t, Scheme::Bearer));
        assert!(authorized(&h("Token s3cret"), None, t, Scheme::InfluxV2));
        assert!(!authorized(&h("Token u:s3cret"), None, t, Scheme::InfluxV2));
        assert!(authorized(&h("Token u:s3cret"), None, t, Scheme::InfluxV1));
        // "u:s3cret" in base64.
        assert!(authorized(
            &h("Basic dTpzM2NyZXQ="),
            None,
            t,
            Scheme::InfluxV1
        ));
        assert!(!authorized(
            &h("Basic dTpzM2NyZXQ="),
            None,
            t,
            Scheme::InfluxV2
        ));
        let none = HeaderMap::new();
        assert!(authorized(
            &none,
            Some("db=x&u=me&p=s3cret"),
            t,
            Scheme::InfluxV1
        ));
        assert!(!authorized(
            &none,
            Some("db=x&p=s3cret"),
            t,
            Scheme::InfluxV2
        ));
        assert!(!authorized(
            &none,
            Some("db=x&p=wrong"),
            t,
            Scheme::InfluxV1
        ));
        assert!(!authorized(&none, None, t, Scheme::Bearer));
    }
}
