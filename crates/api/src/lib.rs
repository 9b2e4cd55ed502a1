//! `api`: Millwright's HTTP API: telemetry ingest and queries, the device
//! registry (devices, tokens, certificates, claims, provisioning), device
//! twins, commands and presence, operators (login sessions, users, API
//! tokens) and the audit log.
//!
//! What it is: an axum [`Router`] over the shared stores in [`ApiState`],
//! [`serve`] to run it on a listener and [`serve_tls`] to run it over TLS,
//! both with graceful shutdown. It is the only crate that knows HTTP, and
//! its JSON shapes (the DTOs next to each route, `render.rs` for queries,
//! the batch format in `write.rs`) are the public format: engine and
//! registry types never serialize themselves.
//!
//! What it is not: it opens no listener of its own (the binary binds and
//! passes a [`tokio::net::TcpListener`]), reads the clock only through
//! [`ApiState::clock`], installs no logging subscriber, knows the broker
//! only through [`LiveSessions`] and the fleet services
//! ([`ApiState::fleet`], which talk to devices), and holds no state
//! besides [`ApiState`].
//! Storage calls (fsync, chunk decoding, argon2) run on tokio's blocking
//! pool, never on the async workers.
//!
//! # Routes
//!
//! Roles are ordered viewer < operator < admin; a route needs the role
//! shown or a higher one. "claim" means `Authorization: Bearer <claim
//! token>`; "none" needs no credential.
//!
//! Every operation is one entry of `ROUTES` (`openapi/routes.rs`):
//! method, path, role, handler, guard (the middleware it runs behind),
//! summary, tag, query parameters, body and response schemas (the shapes
//! in `openapi/schemas.rs`). `router()` registers each entry's handler,
//! and `GET /api/openapi.json` (OpenAPI 3.1) and `GET /api/docs` (the
//! reference page) are generated from the same table: a path is written
//! once. An HTTP test sends every method to every documented path (a
//! documented operation never answers 404 or 405; any other method
//! answers 405).
//!
//! # Live stream
//!
//! `GET /api/stream` (viewer) is a `text/event-stream` of what the broker
//! sees, through [`StreamSource`] (implemented by the binary; without one,
//! [`ApiState::stream`] `None`, the route answers 503 `unavailable`).
//! Parameters: `devices=d1,d2` or `*` (default), `metrics=temp,rpm`
//! (telemetry only; default all), `events=telemetry,presence,alarms,twins`
//! (default all); anything else is 400 naming it. Events:
//!
//! - `event: telemetry`, `data: {"device", "metric", "ts", "value"}`: one
//!   per point of a device's `devices/{id}/telemetry` message (the device
//!   JSON forms; server time where the message has none);
//! - `event: presence` for `$events/devices/{id}/...`, `event: alarm` for
//!   `$events/alarms/{id}/...`, `event: twin` for
//!   `devices/{id}/twin[/{name}]/documents`, each with
//!   `data: {"topic", "payload"}` (the payload as JSON);
//! - a comment `: connected` at once, and `: keep-alive` after
//!   [`STREAM_KEEPALIVE`] (15 s) without events.
//!
//! Back-pressure: each client has a queue of [`ApiState::stream_queue`]
//! messages (setting `stream_queue`, default 1024) that the broker fills
//! without waiting ([`StreamSink::offer`]). When a client reads too slowly
//! and its queue is full, the stream is cut: the client gets what was
//! queued, then `event: overflow` and the end of the response; the tap is
//! removed and [`stream_overflows`] counts it. Nothing is buffered without
//! bound. A client that disconnects drops its subscription (the guard
//! returned by [`StreamSource::subscribe`]).
//!
//! Caps ([`Limits`]): at most `max_streams` streams at once (more: 429
//! `too_many_requests` with `Retry-After`), and at most
//! `max_stream_filters` topic filters per stream (one per device and event
//! kind, two for twins; duplicates tap once; more: 400 naming `devices`).
//!
//! # Authentication
//!
//! Every route but `/health`, `POST /api/auth/login` and `POST
//! /api/provision` needs `Authorization: Bearer <token>`: an API token
//! (`mwa_...`, made by an admin) or a login session token (`mws_...`,
//! from `/api/auth/login`, valid [`ApiState::session_ttl_ms`]). The
//! InfluxDB write routes also take `Authorization: Token <token>`;
//! `/write` also takes Basic auth or `?u=<user>&p=<token>` with the token
//! as password, as InfluxDB 1.x clients send it. Tokens are checked by the
//! registry (argon2, then a verification cache); a revoked or expired
//! token, or one whose owner was disabled, fails at its next request. No
//! or a bad credential is 401 (`unauthorized`, with `WWW-Authenticate:
//! Bearer`); a role too low is 403 (`forbidden`, naming the role needed).
//! Unknown routes are 404 before any credential check.
//!
//! `POST /api/provision` takes a claim token instead: unknown is 401; a
//! revoked, expired or used-up claim is 403 with the reason. Its answer
//! (201) is the device id with its token, or with the certificate signed
//! for the CSR sent and the CA certificate; refusals of the claim's
//! template are 403, an existing device 409.
//!
//! # Management resources
//!
//! JSON in and out. Times in answers are Unix milliseconds (`created_at`,
//! `expires_at`, `not_after`, ...), like `ts` in telemetry answers; times
//! in requests are Unix milliseconds or RFC 3339. Unknown members are
//! refused; errors name the member (`"field": "labels.zone"`). Creating
//! answers 201 with a `Location`; deleting answers 204. Secrets (device
//! tokens, claim tokens, API tokens, generated private keys) appear only
//! in the answer that created them.
//!
//! - A device is `{"id", "name", "type", "labels": {k: v}, "groups": [..],
//!   "metadata": {..}, "enabled", "firmware_version", "created_at",
//!   "updated_at", "connected", "state"?}`; `connected` comes from
//!   [`LiveSessions`], `state` (`online`, `offline`, `inactive`,
//!   `never_connected`) from the fleet's presence records and is absent
//!   when [`ApiState::fleet`] is `None`.
//!   Listings are `{"items": [...], "next": cursor or null}` with the next
//!   page also in a `Link: <...>; rel="next"` header.
//! - Import: a JSON array of devices (or `{"devices": [...]}`), or CSV
//!   with `Content-Type: text/csv`, a header row of `id`, `name`, `type`,
//!   `labels` (`k=v;k2=v2`), `groups` (`a;b`), `enabled` (any order, `id`
//!   required) and one device per row. All or nothing: 200 `{"created",
//!   "tokens"?: [{"id", "token"}]}`, or 422 (`unprocessable`) whose
//!   problem document lists `"errors": [{"row", "id", "message"}]` (`row`
//!   counts data rows from 1) and nothing is created. Rows that cannot be
//!   read at all are reported first; checks against the registry (ids
//!   taken, duplicates) come once every row reads.
//! - Deleting a device also forgets its twins and commands
//!   ([`fleet::Fleet::forget`]).
//! - Sessions are dropped through [`LiveSessions::disconnect`] with reason
//!   0x87 (not authorized) when a device is disabled or deleted, its
//!   tokens are revoked or rotated without grace, a certificate of it is
//!   revoked, or a claim is revoked (principal `claim:<id>`).
//!
//! # Twins, commands and presence
//!
//! These routes call the fleet services ([`ApiState::fleet`]); without
//! them (a server with no broker) they answer 503 (`unavailable`). An
//! unknown device is 404.
//!
//! - Twin documents are `{"state": {"desired", "reported", "delta"},
//!   "metadata", "version", "timestamp"}` (version 0 and empty when never
//!   written). A `PATCH` merges `desired` (RFC 7386: `null` deletes a
//!   member; `"desired": null` clears it) and answers the new document;
//!   the device gets the delta on `devices/{id}/twin[/{name}]/delta` once
//!   the change is durable. The expected version, from `"version"` or
//!   `If-Match: "<version>"` (both: they must agree), makes it
//!   conditional: another version is 409 (`conflict`, the detail names the
//!   current version). A twin beyond its size limit is 413
//!   (`twin_too_large`); too deep, not an object or missing is 400 naming
//!   `desired`. A query that does not parse is 400 naming `query`.
//! - Commands are `{"id", "device_id", "method", "params", "status",
//!   "trail": [{"status", "time"}], "created_at", "timeout_ms",
//!   "expires_at", "response", "error"}`; `status` is `queued`, `sent`,
//!   `delivered`, `succeeded`, `failed`, `timed_out`, `expired` or
//!   `cancelled`. `timeout` (seconds the device has to answer once the
//!   command is sent, default 30) and `ttl` (seconds it may wait queued,
//!   default 86400) take fractions. A device that is offline gets the
//!   command when it connects, or, with `"queue": false`, the request is
//!   404 (`device_offline`) and nothing is stored. Without `wait` the
//!   answer is 202 with the command and a `Location`; with `"wait": true`
//!   the request waits (holding no worker thread) for the final status,
//!   at most `timeout` plus one second: 200 with the command once it
//!   succeeded, failed or was cancelled, else 504 (`timeout`) whose
//!   problem document carries the command as it stood in `command`.
//!   Cancelling a final command is 409.
//! - Presence `state` is `never_connected`, `online`, `inactive` (connected
//!   but silent for longer than the inactivity timeout) or `offline`;
//!   `connected` is whether the broker holds a live connection now. Only
//!   devices that authenticate with their registry credentials have
//!   presence.
//!
//! # Audit log
//!
//! Every POST, PUT, PATCH and DELETE on the management routes (devices,
//! certificates, claims, twins, commands, provisioning, login and logout,
//! users, tokens) is appended to the registry's audit log after its
//! handler ran, 4xx and 5xx outcomes included: actor (the principal; the
//! username for login attempts; `claim:<id>` for
//! provisioning), action (`device.create`, `twin.update`,
//! `command.create`, `token.revoke`, ... see `audit.rs`), target (the
//! object's id; the device for twins and commands, with the twin name or
//! command id in the details), source (the client's IP address), status,
//! and small
//! details (never a body, so never a secret). Requests refused with 401
//! (no or a bad credential, failed logins and unknown claims included) and
//! logins refused during back-off (429) are not logged but counted
//! (`GET /api/system` → `http.unauthorized`, `http.login`), so that a
//! flood of them cannot push real entries out of the bounded log.
//! Telemetry writes are data, not changes, and are not audited. Reads are
//! not audited.
//!
//! # Telemetry
//!
//! **Writes** answer `204 No Content` only after `Tsdb::write` returned,
//! i.e. once the batch is in the fsynced write-ahead log. A request is
//! all-or-nothing: one bad line or element rejects it whole with 400 and
//! nothing is stored. Every write route accepts `Content-Encoding: gzip`.
//!
//! - Line protocol: the device is the value of the first tag of
//!   [`ApiState::device_tags`] the line has (default `device`, then
//!   `host`), or the measurement if it has none; the metric is
//!   `measurement.field` (`cpu,device=d1 usage=3` is device `d1`, metric
//!   `cpu.usage`); other tags become labels. `org`, `bucket`, `db` and `rp` are accepted and
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
//! gives CSV, and `format=columnar` or `Accept:
//! application/vnd.millwright.columnar+json` a compact columnar JSON
//! (`format` wins). Unknown or repeated parameters are rejected.
//!
//! Columnar answers have the same top-level fields as the JSON ones, and
//! arrays per series instead of point objects. Raw: `{"device", "metric",
//! "labels", "ts": [..], "values": [..]}`. Aggregates: `{"group", "t0",
//! "values": [..]}` where `values[i]` is the bucket starting at `t0 + i *
//! bucket_ms` and `null` marks an empty bucket; when more than half of
//! those entries would be `null`, the series is sent sparse instead, as
//! `{"group", "ts": [..], "values": [..]}` (no `t0`).
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
//! - Commands sent with `"wait": true`: `timeout` at most 300 seconds (a
//!   waiting request holds its connection, and a graceful shutdown lets
//!   it finish). Twins: 64 KiB and depth 8 by default (the fleet's
//!   `TwinLimits`).
//! - Device import: the whole body is one request, so
//!   [`ApiState::max_body_bytes`] bounds it (10,000 CSV rows are well under
//!   1 MiB).
//!
//! # Errors
//!
//! Every error is an RFC 9457 `application/problem+json` document:
//! `{"type": "urn:millwright:problem:<code>", "title", "status", "detail",
//! "code", "field"?, "line"?, "errors"?}`, with `code` stable:
//! `unauthorized` (401), `forbidden` (403), `bad_parameter`, `bad_line`,
//! `bad_body`, `type_conflict`, `result_too_large` (400), `not_found`,
//! `device_offline` (404), `method_not_allowed` (405), `conflict` (409),
//! `body_too_large`, `twin_too_large` (413), `unsupported_encoding` (415),
//! `unprocessable` (422), `too_many_requests` (429, with `Retry-After`:
//! login back-off, live-stream cap), `internal` (500), `unavailable` (503:
//! storage refusing writes, no certificate authority, no fleet services,
//! or no login slot free, then with `Retry-After`),
//! `timeout` (504), `storage_full` (507). See [`ApiError`].
//!
//! # Listeners and hostile load
//!
//! [`HttpServer`] runs the router on hyper's HTTP/1.1 driver under
//! [`Limits`] (settings in `[http]` and `[auth]`): a header timeout (also
//! the keep-alive idle limit), an idle timeout while the server waits on
//! the client, and a connection cap shared by HTTP and HTTPS that, when
//! full, closes the oldest connection with no request in progress (so a
//! slowloris holding thousands of half-open connections cannot lock out a
//! client that sends its request). Logins back off per address and per
//! username (429 with `Retry-After`) and run argon2 at most
//! `login_concurrency` at a time. Every refusal is counted
//! ([`HttpCounters`]) and reported by `GET /api/system` under `http`.
//! Bodies: every route checks its credential before reading the body,
//! except login (8 KiB at most) and provisioning (the claim is checked
//! first; 64 KiB at most). Gzip bodies are decompressed on the blocking
//! pool.
//!
//! # HTTPS
//!
//! [`serve_tls`] serves the same router over TLS: handshakes run in tasks
//! of their own with a timeout ([`HANDSHAKE_TIMEOUT`]), at most
//! [`MAX_HANDSHAKES`] at once, so a slow client never holds up accepting
//! others; finished connections go through the same [`HttpServer`].

mod audit;
mod auth;
mod body;
mod certs;
mod claims;
mod commands;
mod csv;
mod dashboard;
mod devices;
mod error;
mod extract;
mod fields;
mod limits;
mod openapi;
mod operators;
mod params;
mod presence;
mod prom;
mod query;
mod render;
mod rule_routes;
mod server;
mod stream;
mod throttle;
mod time;
mod tls;
mod twins;
mod write;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tracing::Instrument;

pub use error::{ApiError, RowError};
pub use limits::{Guards, HttpCounters, Limits};
pub use server::HttpServer;
pub use stream::{
    stream_overflows, StreamGuard, StreamMessage, StreamSink, StreamSource, STREAM_KEEPALIVE,
};
pub use tls::{serve_tls, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES};

use auth::{Needs, Scheme};

/// Most points (raw) or buckets (aggregates) in one query response.
pub const MAX_POINTS: usize = 100_000;

/// The query range when `start` is not given: one hour before `end`.
pub const DEFAULT_RANGE_MS: i64 = 3_600_000;

/// The MQTT v5 DISCONNECT reason code the API uses to drop sessions whose
/// credential it just disabled, deleted or revoked: 0x87, not authorized.
pub const REASON_NOT_AUTHORIZED: u8 = 0x87;

/// Every live session toward devices, implemented by the binary over the
/// broker. Called from async handlers: implementations must not block for
/// long (a lock and a few channel sends).
pub trait LiveSessions: Send + Sync + 'static {
    /// Drops every live MQTT connection authenticated as `principal` (a
    /// device id, or `claim:<claim id>`) with this v5 DISCONNECT reason
    /// code (the API always sends [`REASON_NOT_AUTHORIZED`]); returns how
    /// many were dropped.
    fn disconnect(&self, principal: &str, reason_code: u8) -> usize;
    /// Whether a connection authenticated as `principal` is live.
    fn is_connected(&self, principal: &str) -> bool;
}

/// Everything the routes need, given by the binary.
#[derive(Clone)]
pub struct ApiState {
    /// The telemetry store.
    pub tsdb: Arc<tsdb::Tsdb>,
    /// Devices, their credentials, claims and certificate records
    /// (`registry::Registry` in the binary; any implementation of the
    /// trait, e.g. on PostgreSQL, can stand in).
    pub devices: Arc<dyn registry::DeviceStorage>,
    /// Operators, login sessions and API tokens.
    pub operators: Arc<dyn registry::OperatorStorage>,
    /// The audit log (`registry::Registry::audit` in the binary).
    pub audit: Arc<dyn registry::AuditStorage>,
    /// The certificate authority; `None` answers certificate requests
    /// with 503.
    pub ca: Option<Arc<pki::CertificateAuthority>>,
    /// The broker's live sessions.
    pub live: Arc<dyn LiveSessions>,
    /// The namespace (tenant) every request reads and writes: `default`.
    pub namespace: String,
    /// Default validity of issued device certificates, in days.
    pub device_cert_days: u32,
    /// Lifetime of dashboard login sessions, in milliseconds.
    pub session_ttl_ms: u64,
    /// Largest accepted request body in bytes, before and after decompression.
    pub max_body_bytes: usize,
    /// Now: the one clock every route reads (the wall clock in the
    /// binary, one the test sets in tests).
    pub clock: iot_types::SharedClock,
    /// The fleet services (twins, commands, presence); `None` where no
    /// broker runs, and then their routes answer 503.
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// The rules engine and alarms; `None` where none runs (503).
    pub automation: Option<Arc<automation::Automation>>,
    /// The broker's messages for live streams (`GET /api/stream`); `None`
    /// where no broker runs (503).
    pub stream: Option<Arc<dyn StreamSource>>,
    /// Messages queued per live-stream client before it is cut off as too
    /// slow (setting `stream_queue`, default [`DEFAULT_STREAM_QUEUE`]).
    pub stream_queue: usize,
    /// The broker's figures for `GET /api/system`; `None`: not served.
    pub system: Option<Arc<dyn SystemInfo>>,
    /// The limits against hostile load (login back-off and concurrency,
    /// live-stream caps) and their counters; give the same guards to the
    /// [`HttpServer`] that serves this router.
    pub guards: Arc<Guards>,
    /// What a telemetry write may hold, for a request received at the given
    /// Unix ms: values per device JSON message and the timestamp window
    /// (device JSON and line protocol alike).
    pub ingest_limits: Arc<dyn Fn(i64) -> tsdb::ParseLimits + Send + Sync>,
    /// Line-protocol tags that may hold the device id, the preferred
    /// first (setting `telemetry.device_tags`).
    pub device_tags: Vec<String>,
    /// What `GET /metrics` collects besides the API's own figures (the
    /// broker, the telemetry store, the rules engine, the fleet).
    pub metrics: Vec<Arc<dyn metrics::Source>>,
    /// What `GET /health/ready` checks, by name (the broker and its
    /// persistence, ...); every one must answer `Ok`.
    pub ready: Vec<(&'static str, Arc<dyn ReadyCheck>)>,
    /// The API's own figures: requests by route and status, request and
    /// telemetry query durations.
    pub http_metrics: Arc<HttpMetrics>,
}

/// One check of `GET /health/ready`.
pub trait ReadyCheck: Send + Sync {
    fn check(&self) -> Result<(), String>;
}

/// The API's own figures for `GET /metrics`.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Requests by method, route template (`unmatched` for unknown paths)
    /// and status.
    pub requests: metrics::CounterFamily,
    pub request_seconds: metrics::Histogram,
    /// Telemetry queries (raw and aggregated), from the request to the
    /// answer built.
    pub query_seconds: metrics::Histogram,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: metrics::CounterFamily::new(
                "millwright_http_requests_total",
                "HTTP API requests by method, route template and status.",
                &["method", "route", "status"],
            ),
            request_seconds: metrics::Histogram::new(
                "millwright_http_request_seconds",
                "HTTP API request durations.",
                metrics::LATENCY_BUCKETS,
            ),
            query_seconds: metrics::Histogram::new(
                "millwright_telemetry_query_seconds",
                "Telemetry query durations (raw and aggregated).",
                metrics::LATENCY_BUCKETS,
            ),
        }
    }
}

/// What `GET /api/system` reports about the parts the API does not own
/// (the broker), as JSON; implemented by the binary.
pub trait SystemInfo: Send + Sync + 'static {
    fn figures(&self) -> serde_json::Value;
}

/// The default of [`ApiState::stream_queue`].
pub const DEFAULT_STREAM_QUEUE: usize = 1024;

impl ApiState {
    /// Now for the registry: Unix milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now().as_millis()
    }

    /// Now for the telemetry store and time parameters: Unix milliseconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now().as_millis_i64()
    }

    /// Drops every live session of `principal` (a device id or
    /// `claim:<id>`) whose credential was just disabled, deleted or
    /// revoked; returns how many were dropped.
    pub(crate) fn drop_sessions(&self, principal: &str) -> usize {
        self.live.disconnect(principal, REASON_NOT_AUTHORIZED)
    }

    /// Runs `f` over the device store and this namespace on the blocking
    /// pool.
    pub(crate) async fn on_devices<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn registry::DeviceStorage, &str) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let (devices, ns) = (self.devices.clone(), self.namespace.clone());
        blocking(move || f(&*devices, &ns)).await
    }

    /// Runs `f` over the operator store on the blocking pool.
    pub(crate) async fn on_operators<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn registry::OperatorStorage) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let operators = self.operators.clone();
        blocking(move || f(&*operators)).await
    }

    /// The fleet services, or 503 when this server runs without them.
    pub(crate) fn require_fleet(&self) -> Result<Arc<fleet::Fleet>, ApiError> {
        self.fleet.clone().ok_or_else(|| {
            ApiError::Unavailable(
                "this server runs no broker: twins, commands and presence are unavailable".into(),
            )
        })
    }
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("namespace", &self.namespace)
            .field("ca", &self.ca.as_ref().map(|_| "<set>"))
            .field("device_cert_days", &self.device_cert_days)
            .field("session_ttl_ms", &self.session_ttl_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("fleet", &self.fleet.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// The API's routes over `state`: every operation of the route table
/// (`openapi::ROUTES`) with its handler, behind its guard's layers
/// (outermost first: authentication (the principal), the audit log (so
/// that refusals for a missing role are logged with who tried), the role
/// check, the handler), and the dashboard's pages.
pub fn router(state: ApiState) -> Router {
    use openapi::Guard;
    let st = Arc::new(state);
    let mut groups: std::collections::BTreeMap<Guard, Router<Arc<ApiState>>> = Default::default();
    for r in openapi::ROUTES {
        let group = groups.remove(&r.guard).unwrap_or_default();
        groups.insert(r.guard, group.route(r.path, r.method_router()));
    }
    let authn =
        |scheme: Scheme| middleware::from_fn_with_state((st.clone(), scheme), auth::authenticate);
    let needs = |n: Needs| middleware::from_fn_with_state(n, auth::require);
    let audited = || middleware::from_fn_with_state(st.clone(), audit::record);
    let mut app = dashboard::routes();
    for (guard, group) in groups {
        let group = match guard {
            Guard::Open => group,
            Guard::Data | Guard::InfluxV2 | Guard::InfluxV1 => {
                let scheme = match guard {
                    Guard::InfluxV2 => Scheme::InfluxV2,
                    Guard::InfluxV1 => Scheme::InfluxV1,
                    _ => Scheme::Bearer,
                };
                group
                    .route_layer(needs(Needs::ReadWrite))
                    .route_layer(authn(scheme))
            }
            Guard::Audited | Guard::Session | Guard::AdminOnly => {
                let n = match guard {
                    Guard::Session => Needs::Any,
                    Guard::AdminOnly => Needs::Admin,
                    _ => Needs::ReadWrite,
                };
                group
                    .route_layer(needs(n))
                    .route_layer(audited())
                    .route_layer(authn(Scheme::Bearer))
            }
            Guard::Credential => group.route_layer(audited()),
        };
        app = app.merge(group);
    }
    app.fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(st.clone())
        .layer(middleware::from_fn_with_state(st, trace))
}

/// Serves `router` on `listener` under the default [`Limits`] until
/// `shutdown` completes (see [`HttpServer::serve`]). Handlers see the
/// client address as `ConnectInfo<SocketAddr>` (the audit log records it).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    HttpServer::new(Arc::new(Guards::default()))
        .serve(listener, router, shutdown)
        .await
}

/// `GET /api/system`: version and the broker's figures (connections,
/// sessions, subscriptions, retained messages, message and byte counters,
/// drops of every bounded queue).
async fn system(
    axum::extract::State(st): axum::extract::State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let broker = st
        .system
        .as_ref()
        .map_or(serde_json::Value::Null, |s| s.figures());
    render::json(
        &serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "broker": broker,
            "stream_overflows": stream::stream_overflows(),
            "http": st.guards.figures(),
        }),
        None,
    )
}

/// `GET /metrics`: every figure of the platform in the Prometheus text
/// format (see docs/observability.md).
async fn metrics_text(
    axum::extract::State(st): axum::extract::State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let text = blocking(move || {
        let mut e = metrics::Exposition::new();
        for s in &st.metrics {
            s.collect(&mut e);
        }
        e.family(&st.http_metrics.requests);
        e.histogram(&st.http_metrics.request_seconds);
        e.histogram(&st.http_metrics.query_seconds);
        e.render()
            .map_err(|e| ApiError::Internal(format!("metrics: {e}")))
    })
    .await?;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(resp)
}

/// `GET /health/ready`: 200 when every check passes, 503 naming the ones
/// that fail.
async fn ready(axum::extract::State(st): axum::extract::State<Arc<ApiState>>) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    for (name, c) in &st.ready {
        let v = match c.check() {
            Ok(()) => "ok".to_string(),
            Err(why) => {
                ok = false;
                why
            }
        };
        checks.insert((*name).to_string(), serde_json::Value::String(v));
    }
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": checks,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `GET /ping`: InfluxDB's liveness probe, as its clients and Telegraf
/// call it: 204 with the InfluxDB version this API follows.
async fn ping() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert("x-influxdb-version", HeaderValue::from_static("1.8.10"));
    h.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    resp
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
/// carry the token there. Counts the requests refused with 401 (they are
/// not audited).
async fn trace(
    axum::extract::State(st): axum::extract::State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let span = tracing::info_span!("http", method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    // The route template, never the raw path: ids stay out of labels.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    async move {
        let resp = next.run(req).await;
        let m = &st.http_metrics;
        m.requests
            .inc(&[method.as_str(), &route, resp.status().as_str()]);
        m.request_seconds.observe(started.elapsed().as_secs_f64());
        if resp.status() == StatusCode::UNAUTHORIZED {
            st.guards
                .counters()
                .unauthorized
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
