//! The query APIs of other systems over the telemetry store, for the tools
//! plant engineers already run. The Prometheus HTTP API, for Grafana's
//! built-in Prometheus data source: `/api/v1/query`, `/api/v1/query_range`,
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values` and
//! `/api/v1/status/buildinfo`; and InfluxDB 1.x's `/query` with an InfluxQL
//! subset (`influx_query`), for InfluxDB clients and Grafana's InfluxDB
//! data source. Parameters come in the query string (GET) or as a form
//! body (POST, which Grafana sends by default); answers and errors have the
//! original systems' shapes. The query languages, the naming of series and
//! the evaluation are the `promql` and `influxql` crates'; this module only
//! reads parameters and runs them off the async workers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::ApiError;
use crate::params::Params;
use crate::{blocking, ApiState};

/// The request's parameters: the query string, then a form body if any.
async fn params(
    st: &ApiState,
    query: Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok(query);
    }
    let raw = crate::body::read(headers, body, st.max_body_bytes).await?;
    Ok(query.with_form(&raw))
}

/// An answer in Prometheus' shape, with the status Prometheus gives it.
fn answer<T: Serialize>(r: Result<T, promql::Error>) -> Response {
    let status = match &r {
        Ok(_) => StatusCode::OK,
        Err(e) => match e.error_type() {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    };
    let body = promql::Response::from(r);
    let text = serde_json::to_string(&body).unwrap_or_else(|e| {
        format!(r#"{{"status":"error","errorType":"internal","error":"{e}"}}"#)
    });
    let mut resp = (status, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, promql::Error> {
    p.get(name)
        .ok_or_else(|| promql::Error::Invalid(format!("missing parameter {name:?}")))
}

/// `time`, or now.
fn time_or_now(st: &ApiState, p: &Params, name: &str) -> Result<i64, promql::Error> {
    match p.get(name) {
        Some(t) => promql::parse_time(name, t),
        None => Ok(st.now()),
    }
}

/// `match[]` selectors.
fn selectors(p: &Params) -> Result<Vec<Vec<promql::Matcher>>, promql::Error> {
    p.all("match[]").map(promql::parse_selector).collect()
}

/// Runs `f` over the telemetry store on the blocking pool.
async fn on_store<T: Send + 'static>(
    st: &Arc<ApiState>,
    f: impl FnOnce(&promql::TsdbStorage<'_>) -> Result<T, promql::Error> + Send + 'static,
) -> Result<Result<T, promql::Error>, ApiError> {
    let st = st.clone();
    blocking(move || Ok(f(&promql::TsdbStorage::new(&st.tsdb)))).await
}

/// Runs a query whose parameters were read (`asked`) on the store, timed
/// into the query histogram; a parameter error answers without touching it.
async fn run_query<A: Send + 'static>(
    st: &Arc<ApiState>,
    asked: Result<A, promql::Error>,
    eval: impl FnOnce(&promql::TsdbStorage<'_>, A) -> Result<promql::QueryData, promql::Error>
        + Send
        + 'static,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let r = match asked {
        Ok(a) => on_store(st, move |s| eval(s, a)).await?,
        Err(e) => Err(e),
    };
    st.http_metrics
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(answer(r))
}

/// `GET|POST /api/v1/query`.
pub(crate) async fn query(
    State(st): State<Arc<ApiState>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = params(&st, q, &headers, body).await?;
    let asked = required(&p, "query")
        .map(str::to_string)
        .and_then(|q| Ok((q, time_or_now(&st, &p, "time")?)));
    run_query(&st, asked, |s, (q, t)| {
        promql::instant_query(s, &q, t, &promql::EvalOptions::default())
    })
    .await
}

/// `GET|POST /api/v1/query_range`.
pub(crate) async fn query_range(
    State(st): State<Arc<ApiState>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = params(&st, q, &headers, body).await?;
    let asked = (|| {
        Ok::<_, promql::Error>((
            required(&p, "query")?.to_string(),
            promql::parse_time("start", required(&p, "start")?)?,
            promql::parse_time("end", required(&p, "end")?)?,
            promql::parse_step("step", required(&p, "step")?)?,
        ))
    })();
    run_query(&st, asked, |s, (q, start, end, step)| {
        promql::range_query(s, &q, start, end, step, &promql::EvalOptions::default())
    })
    .await
}

/// `GET|POST /api/v1/series`.
pub(crate) async fn series(
    State(st): State<Arc<ApiState>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = params(&st, q, &headers, body).await?;
    let r = match selectors(&p) {
        Ok(sel) if sel.is_empty() => Err(promql::Error::Invalid(
            "no match[] parameter provided".into(),
        )),
        Ok(sel) => on_store(&st, move |s| promql::series(s, &sel)).await?,
        Err(e) => Err(e),
    };
    Ok(answer(r))
}

/// `GET|POST /api/v1/labels`.
pub(crate) async fn labels(
    State(st): State<Arc<ApiState>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = params(&st, q, &headers, body).await?;
    let r = match selectors(&p) {
        Ok(sel) => on_store(&st, move |s| promql::label_names(s, &sel)).await?,
        Err(e) => Err(e),
    };
    Ok(answer(r))
}

/// `GET /api/v1/label/{name}/values`.
pub(crate) async fn label_values(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let r = match selectors(&p) {
        Ok(sel) => on_store(&st, move |s| promql::label_values(s, &name, &sel)).await?,
        Err(e) => Err(e),
    };
    Ok(answer(r))
}

/// `GET /api/v1/status/buildinfo`: what Grafana reads to pick its query
/// features. `version` is the Prometheus API level this subset follows;
/// `application` and `millwright_version` say what answers.
pub(crate) async fn buildinfo() -> Response {
    answer::<serde_json::Value>(Ok(serde_json::json!({
        "version": "2.42.0",
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "millwright",
        "millwright_version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET|POST /query`: InfluxDB 1.x's query endpoint with the InfluxQL
/// subset of the `influxql` crate (`q`, `db` accepted and listed by `SHOW
/// DATABASES`, `epoch`), for InfluxDB clients and Grafana's InfluxDB data
/// source. 200 with one result per statement (a statement's own error is
/// in its result, as InfluxDB does); 400 `{"error"}` when the query does
/// not parse.
pub(crate) async fn influx_query(
    State(st): State<Arc<ApiState>>,
    q: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = params(&st, q, &headers, body).await?;
    let Some(text) = p.get("q").map(str::to_string) else {
        return Ok(influx_answer(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "missing required parameter \"q\"" }),
        ));
    };
    let epoch = match p.get("epoch") {
        None => influxql::Epoch::Rfc3339,
        Some(e) => match influxql::Epoch::parse(e) {
            Some(e) => e,
            None => {
                return Ok(influx_answer(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": format!("unknown epoch {e:?}") }),
                ))
            }
        },
    };
    let opts = influxql::QueryOptions {
        now_ms: st.now(),
        epoch,
        database: p.get("db").unwrap_or("millwright").to_string(),
    };
    let started = std::time::Instant::now();
    let st2 = st.clone();
    let answer = blocking(move || Ok(influxql::query(&st2.tsdb, &text, &opts))).await?;
    st.http_metrics
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    let status = if answer.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(influx_answer(status, &answer))
}

fn influx_answer<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#));
    let mut resp = (status, text).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-influxdb-version", HeaderValue::from_static("1.8.10"));
    resp
}
