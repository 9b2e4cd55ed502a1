//! Twin routes: a device's twin documents, changes to their desired state
//! (JSON merge patches, optionally at an expected version), and the query
//! of devices by twin values. The documents are the `twin` crate's own
//! JSON shape ([`twin::document`]): twin documents *are* JSON.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value as Json;
use twin::UpdateError;

use crate::audit::Note;
use crate::error::ApiError;
use crate::extract::{FleetService, Object, PathId, PathIds};
use crate::fields::Fields;
use crate::params::Params;
use crate::{blocking, render, ApiState};

/// Default and largest page of `GET /api/twins`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The `{id}` and `{name}` path parameters; the name must be a valid twin
/// name.
pub(crate) struct TwinPath(String, String);

impl<S: Send + Sync> FromRequestParts<S> for TwinPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathIds(id, name) = PathIds::from_request_parts(parts, state).await?;
        check_name(&name)?;
        Ok(TwinPath(id, name))
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    twin::validate_twin_name(name).map_err(|e| match e {
        twin::TwinError::Invalid { message, .. } => ApiError::param("name", message),
        other => ApiError::param("name", other.to_string()),
    })
}

/// A twin document as a 200 answer with `ETag: "<version>"`.
fn document_response(doc: &Json) -> Result<Response, ApiError> {
    let mut resp = render::json(doc, None)?;
    let version = doc.get("version").and_then(Json::as_u64).unwrap_or(0);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// `GET /api/devices/{id}/twin`: the classic twin (version 0 and empty
/// when never written).
pub(crate) async fn get_classic(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    read(&st, id, String::new()).await
}

/// `GET /api/devices/{id}/twins/{name}`: a named twin.
pub(crate) async fn get_named(
    State(st): State<Arc<ApiState>>,
    TwinPath(id, name): TwinPath,
) -> Result<Response, ApiError> {
    read(&st, id, name).await
}

async fn read(st: &Arc<ApiState>, id: String, name: String) -> Result<Response, ApiError> {
    let fleet = st.require_fleet()?;
    let doc = blocking(move || Ok(fleet.twin_document(&id, &name)?)).await?;
    document_response(&doc)
}

/// `GET /api/devices/{id}/twins`: `{"items": [{"name", "document"}]}`,
/// the classic twin (if ever written) named `""`.
pub(crate) async fn list(
    PathId(id): PathId,
    FleetService(fleet): FleetService,
) -> Result<Response, ApiError> {
    let twins = blocking(move || Ok(fleet.twins(&id)?)).await?;
    #[derive(Serialize)]
    struct Item<'a> {
        name: &'a str,
        document: &'a Json,
    }
    render::items(
        twins
            .iter()
            .map(|(name, document)| Item { name, document })
            .collect(),
    )
}

/// `PATCH /api/devices/{id}/twin`: changes the classic twin's desired
/// state.
pub(crate) async fn patch_classic(
    PathId(id): PathId,
    FleetService(fleet): FleetService,
    headers: HeaderMap,
    Object(f): Object,
) -> Result<Response, ApiError> {
    patch(fleet, id, String::new(), &headers, f).await
}

/// `PATCH /api/devices/{id}/twins/{name}`: changes a named twin's desired
/// state (creating the twin).
pub(crate) async fn patch_named(
    TwinPath(id, name): TwinPath,
    FleetService(fleet): FleetService,
    headers: HeaderMap,
    Object(f): Object,
) -> Result<Response, ApiError> {
    patch(fleet, id, name, &headers, f).await
}

/// `{"desired": <merge patch, or null to clear>, "version"?: n}`, with
/// `If-Match: "<version>"` as another way to give the version. The device
/// gets the delta (if any) on `devices/{id}/twin[/{name}]/delta` once the
/// change is durable.
async fn patch(
    fleet: Arc<fleet::Fleet>,
    id: String,
    name: String,
    headers: &HeaderMap,
    f: Fields,
) -> Result<Response, ApiError> {
    f.only(&["desired", "version"])?;
    let desired = f.raw("desired").ok_or_else(|| {
        ApiError::body(
            "desired",
            "required: a JSON merge patch object (or null to clear desired)",
        )
    })?;
    let in_body = f.uint("version", u64::MAX)?;
    let expected = match (in_body, if_match(headers)?) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::param(
                "If-Match",
                format!("names version {b}, the body version {a}"),
            ))
        }
        (a, b) => a.or(b),
    };
    let target = id.clone();
    let twin_name = name.clone();
    let doc = blocking(
        move || match fleet.update_desired(&id, &name, desired, expected)? {
            Ok(doc) => Ok(doc),
            Err(e) => Err(refusal(e)),
        },
    )
    .await?;
    let version = doc.get("version").and_then(Json::as_u64).unwrap_or(0);
    let resp = document_response(&doc)?;
    Ok(Note::target(&target)
        .with_details(serde_json::json!({ "twin": twin_name, "version": version }))
        .attach(resp))
}

/// An update the twin refused: 409 version conflict, 413 too large, 400
/// naming `desired` otherwise.
fn refusal(e: UpdateError) -> ApiError {
    match e {
        UpdateError::VersionConflict { .. } => ApiError::AlreadyExists(e.to_string()),
        UpdateError::TooLarge { .. } => ApiError::TwinTooLarge(e.to_string()),
        UpdateError::TooManyTwins { .. } => ApiError::param("name", e.to_string()),
        UpdateError::TooDeep { .. } | UpdateError::NotAnObject { .. } | UpdateError::Empty => {
            ApiError::body("desired", e.to_string())
        }
    }
}

/// `If-Match: "<version>"` (also `W/"<version>"`); `*` or no header is
/// no condition.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || ApiError::param("If-Match", "expected \"<version>\" (the twin's ETag)");
    let v = v.to_str().map_err(|_| bad())?.trim();
    if v == "*" {
        return Ok(None);
    }
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(bad)
}

/// `GET /api/twins?name=&query=<expr>&limit=&after=`: ids of the devices
/// whose twin `name` (default the classic twin) matches `query`, e.g.
/// `reported.firmware = "1.2.0" and desired.speed > 10`; `{"items",
/// "next"}`.
pub(crate) async fn query(
    State(st): State<Arc<ApiState>>,
    p: Params,
) -> Result<Response, ApiError> {
    p.only(&["name", "query", "limit", "after"], &[])?;
    let name = p.get("name").unwrap_or_default().to_string();
    check_name(&name)?;
    let text = match p.get("query") {
        Some(t) if !t.trim().is_empty() => t.to_string(),
        _ => {
            return Err(ApiError::param(
                "query",
                "required, e.g. reported.firmware = \"1.2.0\"",
            ))
        }
    };
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.get("after").map(str::to_string);
    let fleet = st.require_fleet()?;
    let (items, next) = blocking(move || {
        fleet
            .query_twins(&name, &text, after.as_deref(), limit)
            .map_err(|e| match e {
                fleet::FleetError::Invalid(reason) => ApiError::param("query", reason),
                other => other.into(),
            })
    })
    .await?;
    render::page(items, next, &p, "/api/twins", "after")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).ok(), Some(None));
        for (v, want) in [("\"7\"", Some(7)), ("W/\"3\"", Some(3)), ("*", None)] {
            h.insert(header::IF_MATCH, HeaderValue::from_static(v));
            assert_eq!(if_match(&h).ok(), Some(want), "{v}");
        }
        for v in ["7", "\"x\"", "\"-1\""] {
            h.insert(header::IF_MATCH, HeaderValue::from_static(v));
            assert!(if_match(&h).is_err(), "{v}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(
            refusal(UpdateError::VersionConflict { current: 4 }).status(),
            409
        );
        assert_eq!(
            refusal(UpdateError::TooLarge { bytes: 2, limit: 1 }).code(),
            "twin_too_large"
        );
        let e = refusal(UpdateError::NotAnObject { side: "desired" });
        assert!(matches!(e, ApiError::BadBody { field: Some(f), .. } if f == "desired"));
    }
}
