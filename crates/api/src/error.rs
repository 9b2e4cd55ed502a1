//! The API's error type and its rendering as an RFC 9457 problem document.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value as Json;

/// Everything a request can fail with. Each variant maps to one HTTP status
/// and one stable `code` in the problem document, so clients can react to
/// the code without parsing the text.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong credential (401, `unauthorized`).
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The credential is valid but may not do this (403, `forbidden`); the
    /// detail says why, e.g. which role is needed.
    #[error("{0}")]
    Forbidden(String),
    /// A query parameter, path parameter or header is missing or invalid
    /// (400, `bad_parameter`); `field` names it.
    #[error("parameter {field}: {reason}")]
    BadParameter {
        /// The parameter (or header) name.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line protocol body was rejected (400, `bad_line`); nothing of the
    /// request was written.
    #[error("line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON body was rejected (400, `bad_body`); nothing of the request was
    /// written. `field` is the path of the offending element, if known.
    #[error("invalid body: {reason}")]
    BadBody {
        /// Path of the offending element (e.g. `points[3].value`).
        field: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A write conflicts with stored data, e.g. a value of another type than
    /// the series was created with (400, `type_conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The answer would exceed a response limit (400, `result_too_large`).
    #[error("{reason}")]
    TooLarge {
        /// The parameter to change, if one is to blame.
        field: Option<String>,
        /// What to do about it.
        reason: String,
    },
    /// The request body exceeds the configured maximum (413, `body_too_large`).
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A `Content-Encoding` other than gzip or identity (415,
    /// `unsupported_encoding`).
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
    /// No such route (404, `not_found`).
    #[error("no such resource")]
    NotFound,
    /// The route exists but the resource it names does not (404,
    /// `not_found`), e.g. `device "p1" not found`.
    #[error("{0}")]
    Missing(String),
    /// The resource exists already, or its state refuses the change (409,
    /// `conflict`).
    #[error("{0}")]
    AlreadyExists(String),
    /// A batch was refused as a whole (422, `unprocessable`); `errors`
    /// lists every bad row and nothing was written.
    #[error("{reason}")]
    Unprocessable {
        /// What was wrong overall.
        reason: String,
        /// One entry per refused row.
        errors: Vec<RowError>,
    },
    /// A command for a device that is offline, sent with `"queue": false`
    /// (404, `device_offline`).
    #[error("the device is offline")]
    DeviceOffline,
    /// A twin update would make the twin larger than its limit (413,
    /// `twin_too_large`); the request body itself was accepted.
    #[error("{0}")]
    TwinTooLarge(String),
    /// Waiting for a result took longer than allowed (504, `timeout`);
    /// `command` is the command as it stood, in the problem document.
    #[error("{reason}")]
    Timeout {
        /// What was waited for.
        reason: String,
        /// The command DTO, as it stood when the wait ended.
        command: Box<Json>,
    },
    /// The route exists but not for this method (405, `method_not_allowed`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The store's disk is full (507, `storage_full`); nothing of the request
    /// was written and it may be retried.
    #[error("storage is full")]
    StorageFull,
    /// A needed part of the server is unavailable: the store refuses
    /// writes (closed, or its log is unusable until a restart), or there is
    /// no certificate authority (503, `unavailable`).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// 429: a limit of the client's own (login back-off, live streams);
    /// `Retry-After` says when to try again.
    #[error("{reason}")]
    TooManyRequests {
        reason: String,
        retry_after_secs: u64,
    },
    /// 503 with `Retry-After`: the server is busy (no login slot free).
    #[error("{reason}")]
    Busy {
        reason: String,
        retry_after_secs: u64,
    },
    /// Anything else (500, `internal`). The detail sent to the client is
    /// generic; the cause is logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<tsdb::Error> for ApiError {
    fn from(e: tsdb::Error) -> ApiError {
        use tsdb::Error as E;
        match e {
            E::LineProtocol { line, reason } => ApiError::BadLine { line, reason },
            E::Json(reason) => ApiError::BadBody {
                field: None,
                reason,
            },
            E::InvalidSeries(reason) => ApiError::BadBody {
                field: None,
                reason,
            },
            e @ E::Refused(_) => ApiError::Conflict(e.to_string()),
            E::InvalidQuery(reason) => ApiError::BadParameter {
                field: "query".into(),
                reason,
            },
            E::DiskFull { .. } => ApiError::StorageFull,
            e @ (E::Closed | E::Poisoned(_)) => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<registry::RegistryError> for ApiError {
    /// `NotFound` 404, `AlreadyExists` and `Conflict` 409, `Invalid` 400
    /// naming the field, `Storage` 500.
    fn from(e: registry::RegistryError) -> ApiError {
        use registry::RegistryError as E;
        match e {
            e @ E::NotFound { .. } => ApiError::Missing(e.to_string()),
            e @ E::AlreadyExists { .. } => ApiError::AlreadyExists(e.to_string()),
            E::Conflict(m) => ApiError::AlreadyExists(m),
            E::Invalid { field, message } => ApiError::BadBody {
                field: Some(field),
                reason: message,
            },
            E::Storage(m) => ApiError::Internal(format!("registry: {m}")),
        }
    }
}

impl From<fleet::FleetError> for ApiError {
    /// `NotFound` 404, `Offline` 404 (`device_offline`), `Invalid` 400,
    /// `Conflict` 409, `Storage` 500. Routes that know which member or
    /// parameter an `Invalid` is about map it themselves.
    fn from(e: fleet::FleetError) -> ApiError {
        use fleet::FleetError as E;
        match e {
            E::NotFound(m) => ApiError::Missing(m),
            E::Offline(_) => ApiError::DeviceOffline,
            E::Invalid(reason) => ApiError::BadBody {
                field: None,
                reason,
            },
            E::Conflict(m) => ApiError::AlreadyExists(m),
            E::Storage(m) => ApiError::Internal(format!("fleet: {m}")),
        }
    }
}

impl ApiError {
    /// A 400 naming a parameter.
    pub(crate) fn param(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A 400 for a JSON body element.
    pub(crate) fn body(field: impl Into<String>, reason: impl Into<String>) -> ApiError {
        ApiError::BadBody {
            field: Some(field.into()),
            reason: reason.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind().0
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.kind().1
    }

    fn title(&self) -> &'static str {
        self.kind().2
    }

    /// Status, code and title: one row per kind of problem.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::BadParameter { .. } => (S::BAD_REQUEST, "bad_parameter", "Invalid parameter"),
            ApiError::BadLine { .. } => (S::BAD_REQUEST, "bad_line", "Invalid line protocol"),
            ApiError::BadBody { .. } => (S::BAD_REQUEST, "bad_body", "Invalid request body"),
            ApiError::Conflict(_) => (S::BAD_REQUEST, "type_conflict", "Value type conflict"),
            ApiError::TooLarge { .. } => (S::BAD_REQUEST, "result_too_large", "Result too large"),
            ApiError::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "Request body too large",
            ),
            ApiError::UnsupportedEncoding(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                "Unsupported content encoding",
            ),
            ApiError::NotFound | ApiError::Missing(_) => (S::NOT_FOUND, "not_found", "Not found"),
            ApiError::DeviceOffline => (S::NOT_FOUND, "device_offline", "Device offline"),
            ApiError::AlreadyExists(_) => (S::CONFLICT, "conflict", "Conflict"),
            ApiError::TwinTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "twin_too_large", "Twin too large"),
            ApiError::Timeout { .. } => (S::GATEWAY_TIMEOUT, "timeout", "Timed out"),
            ApiError::Unprocessable { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "Request refused as a whole",
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::StorageFull => (S::INSUFFICIENT_STORAGE, "storage_full", "Storage full"),
            ApiError::Unavailable(_) | ApiError::Busy { .. } => {
                (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            }
            ApiError::TooManyRequests { .. } => (
                S::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too many requests",
            ),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::BadParameter { field, .. } => Some(field),
            ApiError::BadBody { field, .. } | ApiError::TooLarge { field, .. } => field.as_deref(),
            ApiError::UnsupportedEncoding(_) => Some("Content-Encoding"),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::BadParameter { reason, .. }
            | ApiError::BadBody { reason, .. }
            | ApiError::TooLarge { reason, .. }
            | ApiError::Timeout { reason, .. }
            | ApiError::Unprocessable { reason, .. }
            | ApiError::TooManyRequests { reason, .. }
            | ApiError::Busy { reason, .. } => reason.clone(),
            ApiError::Internal(_) => "the server failed to handle the request; see its log".into(),
            other => other.to_string(),
        }
    }
}

/// An RFC 9457 problem document with Millwright's extension members.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [RowError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a Json>,
}

/// One refused row of a batch (an import): `{"row", "id", "message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based position of the row among the data rows.
    pub row: usize,
    /// The id the row carried.
    pub id: String,
    /// Why it was refused.
    pub message: String,
}

/// The problem code of an error response, left in the response's
/// extensions for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProblemCode(pub(crate) &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request rejected");
        }
        let code = self.code();
        let problem = Problem {
            kind: format!("urn:millwright:problem:{code}"),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            code,
            field: self.field(),
            line: match &self {
                ApiError::BadLine { line, .. } => Some(*line),
                _ => None,
            },
            errors: match &self {
                ApiError::Unprocessable { errors, .. } => Some(errors),
                _ => None,
            },
            command: match &self {
                ApiError::Timeout { command, .. } => Some(command),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp.extensions_mut().insert(ProblemCode(code));
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        }
        | ApiError::Busy {
            retry_after_secs, ..
        } = &self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        if let ApiError::Unauthorized = self {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"millwright\""),
            );
        }
        resp
    }
}
