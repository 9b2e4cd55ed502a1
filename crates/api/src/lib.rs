//! `api`: Millwright's HTTP API, for now telemetry ingest and queries.
//!
//! What it is: an axum [`Router`] over a shared [`tsdb::Tsdb`], and
//! [`serve`] to run it on a listener with graceful shutdown. It is the only
//! crate that knows HTTP, and its JSON shapes (the DTOs in `render.rs` and
//! the batch format in `write.rs`) are the public format: engine types never
//! serialize themselves.
//!
//! What it is not: it opens no listener of its own (the binary binds and
//! passes a [`tokio::net::TcpListener`]), reads the clock only through
//! [`ApiState::clock`], installs no logging subscriber and holds no state
//! besides [`ApiState`]. Storage calls (which block on fsync or decode
//! chunks) run on tokio's blocking pool, never on the async workers.
//!
//! # Routes
//!
//! | method and path | what |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}`; never needs a token |
//! | `POST /api/v2/write?org=&bucket=&precision=ns\|us\|ms\|s` | InfluxDB 2.x line protocol |
//! | `POST /write?db=&rp=&precision=n\|u\|ms\|s\|m\|h` | InfluxDB 1.x line protocol |
//! | `POST /api/telemetry/{device}` | device telemetry JSON (the device-contract forms), server time from the clock |
//! | `POST /api/telemetry` | batch JSON: `{"points": [{"device", "metric", "ts"?, "value", "labels"?}]}` |
//! | `GET /api/telemetry/query` | raw points, or time-bucket aggregates with `agg` and `bucket` |
//! | `GET /api/telemetry/latest?device=d1,d2&metric=temp,rpm` | latest point per series |
//! | `GET /api/devices/{device}/series` | the metrics (series) of a device |
//! | `GET /api/telemetry/stats` | storage statistics and query work counters |
//!
//! **Writes** answer `204 No Content` only after `Tsdb::write` returned,
//! i.e. once the batch is in the fsynced write-ahead log. A request is
//! all-or-nothing: one bad line or element rejects it whole with 400 and
//! nothing is stored. Every write route accepts `Content-Encoding: gzip`.
//!
//! - Line protocol: the device is the value of the `device` tag, or the
//!   measurement if the line has none; the metric is `measurement.field`
//!   (`cpu,device=d1 usage=3` is device `d1`, metric `cpu.usage`); other
//!   tags become labels. `org`, `bucket`, `db` and `rp` are accepted and
//!   ignored: every point lands in [`ApiState::namespace`] (`default`). When
//!   tenants arrive, bucket/db will select the namespace. Lines without a
//!   timestamp get the server time truncated to the precision, as InfluxDB
//!   does. Errors carry the 1-based `"line"`.
//! - Device JSON: `/api/telemetry/query`, `/latest` and `/stats` are
//!   routes of their own, so devices with those ids must use the batch form.
//! - JSON numbers are stored as floats (JSON has one number type); `ts` in
//!   the batch form is Unix milliseconds or an RFC 3339 string and defaults
//!   to server time. Errors name the element, e.g. `"field":
//!   "points[3].value"`.
//!
//! **Queries** (`/api/telemetry/query`): `device` is required (a comma list
//! or `*`); `metric` is a comma list or `*` (all if absent);
//! `label.<key>=<value>` filters by label; `start` and `end` are Unix
//! milliseconds, RFC 3339, `now` or `now-<duration>`, the range is
//! half-open `[start, end)` and defaults to the last hour. Raw answers hold
//! `{"series": [{"device", "metric", "labels", "points": [{"ts", "value"}]}],
//! "next", "next_start"}`. With `agg=avg|min|max|sum|count|first|last` and
//! `bucket=30s|10m|1h|1d|<ms>`, points are aggregated in buckets aligned to
//! the Unix epoch (the first bucket may start before `start`), grouped by
//! `group_by=series` (default), `device`, `label:<key>` or `all`; empty
//! buckets are omitted. JSON by default; `Accept: text/csv` or `format=csv`
//! gives CSV (`format` wins). Unknown or repeated parameters are rejected.
//!
//! # Limits
//!
//! - Request bodies: at most [`ApiState::max_body_bytes`], both as sent and
//!   after gzip decoding; more gets 413.
//! - Raw queries: at most [`MAX_POINTS`] (100,000) points per response, or
//!   `limit` (1 to 100,000). A larger answer is cut at a timestamp: every
//!   point before it is returned, and `next` (also sent as a `Link: <...>;
//!   rel="next"` header, the only pointer in CSV) is the same query with
//!   `start` set to that timestamp and `end` pinned. Should more than `limit`
//!   points share the very first timestamp, the answer is a 400 asking for
//!   fewer series or a higher limit. While paging, each series is read with
//!   at most `limit + 1` points, so a page costs memory in proportion to
//!   the number of selected series times `limit`.
//! - Aggregate queries: at most [`MAX_POINTS`] buckets in the range per
//!   group, and at most [`MAX_POINTS`] buckets in the whole answer; beyond
//!   that a 400 names `bucket` (or asks to narrow the query).
//!
//! # Errors
//!
//! Every error is an RFC 9457 `application/problem+json` document:
//! `{"type": "urn:millwright:problem:<code>", "title", "status", "detail",
//! "code", "field"?, "line"?}`, with `code` stable: `unauthorized` (401),
//! `bad_parameter`, `bad_line`, `bad_body`, `type_conflict`,
//! `result_too_large` (400), `not_found` (404), `method_not_allowed` (405),
//! `body_too_large` (413), `unsupported_encoding` (415), `internal` (500),
//! `unavailable` (503), `storage_full` (507). See [`ApiError`].
//!
//! # Authentication (interim)
//!
//! When [`ApiState::token`] is set, every route but `/health` requires
//! `Authorization: Bearer <token>`. The InfluxDB write endpoints also take
//! `Authorization: Token <token>`; `/write` also takes Basic auth or
//! `?u=<user>&p=<token>` with the token as password, as InfluxDB 1.x
//! clients send it. Identities and roles replace this later.

mod auth;
mod body;
mod error;
mod params;
mod query;
mod render;
mod time;
mod write;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tracing::Instrument;

pub use error::ApiError;

use auth::Scheme;

/// Most points (raw) or buckets (aggregates) in one query response.
pub const MAX_POINTS: usize = 100_000;

/// The query range when `start` is not given: one hour before `end`.
pub const DEFAULT_RANGE_MS: i64 = 3_600_000;

/// Everything the routes need, given by the binary.
#[derive(Clone)]
pub struct ApiState {
    /// The telemetry store.
    pub tsdb: Arc<tsdb::Tsdb>,
    /// The namespace (tenant) every request reads and writes: `default`.
    pub namespace: String,
    /// The interim shared API token; `None` leaves the API open.
    pub token: Option<String>,
    /// Largest accepted request body in bytes, before and after decompression.
    pub max_body_bytes: usize,
    /// Now, in Unix milliseconds.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("namespace", &self.namespace)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    let st = Arc::new(state);
    let guard =
        |scheme: Scheme| middleware::from_fn_with_state((st.clone(), scheme), auth::require_token);
    let api = Router::new()
        .route("/api/telemetry", post(write::write_batch))
        .route("/api/telemetry/query", get(query::query))
        .route("/api/telemetry/latest", get(query::latest))
        .route("/api/telemetry/stats", get(query::stats))
        .route("/api/telemetry/{device}", post(write::write_device))
        .route("/api/devices/{device}/series", get(query::device_series))
        .route_layer(guard(Scheme::Bearer));
    let influx_v2 = Router::new()
        .route("/api/v2/write", post(write::write_v2))
        .route_layer(guard(Scheme::InfluxV2));
    let influx_v1 = Router::new()
        .route("/write", post(write::write_v1))
        .route_layer(guard(Scheme::InfluxV1));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .merge(influx_v2)
        .merge(influx_v1)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(st)
        .layer(middleware::from_fn(trace))
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in progress finish (a write in progress is
/// still acknowledged) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Response {
    let mut resp = (StatusCode::OK, r#"{"status":"ok"}"#).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A span per request. The query string is left out of it: `/write` may
/// carry the token there.
async fn trace(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    async move {
        let resp = next.run(req).await;
        tracing::debug!(
            status = resp.status().as_u16(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request done"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Runs storage work (fsync, chunk decoding, decompression, parsing) on the
/// blocking pool. A panic there becomes a 500, not a dead server.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("storage task failed: {e}")))?
}
