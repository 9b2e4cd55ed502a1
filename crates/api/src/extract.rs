//! What the routes take from a request, as axum extractors: path
//! parameters, the JSON body, and the services a route needs. Each one
//! refuses with the problem its routes answer (a path parameter that does
//! not decode is 400 naming it, a missing service 503, a body that is not
//! JSON 400), so that handlers start with what they work on.
//!
//! Order is part of the answer: axum runs the extractors in the order of
//! the handler's arguments, path and services before the body, so a route
//! without its service answers 503 without reading the body.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde_json::Value as Json;

use crate::error::ApiError;
use crate::fields::{read_body, read_object, Fields};
use crate::ApiState;

/// One path parameter, refused as a bad parameter named `name`.
async fn one_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    name: &str,
) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|Path(v)| v)
        .map_err(|e| ApiError::param(name, e.body_text()))
}

/// Extractors of a route's single path parameter, each naming the
/// parameter its refusal reports.
macro_rules! path_params {
    ($($(#[$doc:meta])* $ty:ident => $name:literal;)*) => {$(
        $(#[$doc])*
        pub(crate) struct $ty(pub(crate) String);

        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                one_param(parts, state, $name).await.map($ty)
            }
        }
    )*};
}

path_params! {
    /// `{id}` (a device, claim, token, alarm, or a rule's `{name}`: the
    /// routes have always reported it as `id`).
    PathId => "id";
    /// `{name}` of a user.
    PathName => "name";
    /// `{serial}` of a certificate.
    PathSerial => "serial";
    /// `{device}` of a telemetry write.
    PathDevice => "device";
}

/// Two path parameters (`{id}` and `{name}` or `{cmd}`), refused as a bad
/// parameter named `id`.
pub(crate) struct PathIds(pub(crate) String, pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((a, b))| PathIds(a, b))
            .map_err(|e| ApiError::param("id", e.body_text()))
    }
}

/// A JSON object body (empty is an empty object), read within
/// [`ApiState::max_body_bytes`] and gzip-decoded.
pub(crate) struct Object(pub(crate) Fields);

impl FromRequest<Arc<ApiState>> for Object {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &Arc<ApiState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        read_object(&parts.headers, body, st.max_body_bytes)
            .await
            .map(Object)
    }
}

/// Any JSON document as the body (empty is refused: not valid JSON).
pub(crate) struct JsonBody(pub(crate) Json);

impl FromRequest<Arc<ApiState>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &Arc<ApiState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let data = read_body(&parts.headers, body, st.max_body_bytes).await?;
        serde_json::from_slice(&data)
            .map(JsonBody)
            .map_err(|e| ApiError::BadBody {
                field: None,
                reason: format!("not valid JSON: {e}"),
            })
    }
}

/// The fleet services (twins, commands, presence), or 503 where none run.
pub(crate) struct FleetService(pub(crate) Arc<fleet::Fleet>);

impl FromRequestParts<Arc<ApiState>> for FleetService {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, st: &Arc<ApiState>) -> Result<Self, ApiError> {
        st.require_fleet().map(FleetService)
    }
}

/// The rules engine and alarms, or 503 where none runs.
pub(crate) struct Rules(pub(crate) Arc<automation::Automation>);

impl FromRequestParts<Arc<ApiState>> for Rules {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, st: &Arc<ApiState>) -> Result<Self, ApiError> {
        st.automation
            .clone()
            .map(Rules)
            .ok_or_else(|| ApiError::Unavailable("the rules engine is not running".into()))
    }
}
