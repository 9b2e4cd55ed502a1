//! Ingest routes: InfluxDB line protocol (v1 and v2 endpoints), device
//! telemetry JSON, and the platform's batch JSON. Every route answers 204
//! only after `Tsdb::write` returned, i.e. after the batch is in the
//! fsynced write-ahead log; a request is written whole or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value as Json};
use tsdb::{LineProtocolOptions, Precision, SeriesKey, Value, WritePoint};

use crate::body;
use crate::error::ApiError;
use crate::extract::PathDevice;
use crate::params::Params;
use crate::time::parse_instant;
use crate::{blocking, ApiState};

/// Timestamp units accepted by the write endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LpPrecision {
    Ns,
    Us,
    Ms,
    S,
    M,
    H,
}

impl LpPrecision {
    /// `/api/v2/write`: `ns`, `us`, `ms`, `s`.
    fn v2(p: &Params) -> Result<LpPrecision, ApiError> {
        Ok(match p.get("precision") {
            None | Some("ns") => LpPrecision::Ns,
            Some("us") => LpPrecision::Us,
            Some("ms") => LpPrecision::Ms,
            Some("s") => LpPrecision::S,
            Some(other) => {
                return Err(ApiError::param(
                    "precision",
                    format!("{other:?} is not one of ns, us, ms, s"),
                ))
            }
        })
    }

    /// `/write`: `n`, `u`, `ms`, `s`, `m`, `h` (and `ns`, `us`).
    fn v1(p: &Params) -> Result<LpPrecision, ApiError> {
        Ok(match p.get("precision") {
            None | Some("n" | "ns") => LpPrecision::Ns,
            Some("u" | "us" | "µ") => LpPrecision::Us,
            Some("ms") => LpPrecision::Ms,
            Some("s") => LpPrecision::S,
            Some("m") => LpPrecision::M,
            Some("h") => LpPrecision::H,
            Some(other) => {
                return Err(ApiError::param(
                    "precision",
                    format!("{other:?} is not one of n, u, ms, s, m, h"),
                ))
            }
        })
    }

    /// The parser's precision and its unit in milliseconds (for the
    /// server time of lines without a timestamp).
    fn parser(self) -> (Precision, i64) {
        match self {
            LpPrecision::Ns => (Precision::Nanoseconds, 1),
            LpPrecision::Us => (Precision::Microseconds, 1),
            LpPrecision::Ms => (Precision::Milliseconds, 1),
            LpPrecision::S => (Precision::Seconds, 1_000),
            LpPrecision::M => (Precision::Minutes, 60_000),
            LpPrecision::H => (Precision::Hours, 3_600_000),
        }
    }
}

/// An InfluxDB write endpoint: its timestamp units.
pub(crate) trait Dialect {
    fn precision(p: &Params) -> Result<LpPrecision, ApiError>;
}

/// `POST /api/v2/write?org=&bucket=&precision=`.
pub(crate) struct V2;

/// `POST /write?db=&precision=`.
pub(crate) struct V1;

impl Dialect for V2 {
    fn precision(p: &Params) -> Result<LpPrecision, ApiError> {
        LpPrecision::v2(p)
    }
}

impl Dialect for V1 {
    fn precision(p: &Params) -> Result<LpPrecision, ApiError> {
        LpPrecision::v1(p)
    }
}

/// The line protocol write routes: `write_lp::<V2>` and `write_lp::<V1>`.
pub(crate) async fn write_lp<D: Dialect>(
    State(st): State<Arc<ApiState>>,
    p: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let precision = D::precision(&p)?;
    store(st, headers, body, move |st, data, now| {
        let limits = (st.ingest_limits)(now);
        parse_lp(
            utf8_text(data)?,
            &st.namespace,
            &st.device_tags,
            precision,
            now,
            &limits,
        )
    })
    .await
}

/// Reads the body (the encoding is checked before the body is read), then
/// on the blocking pool decodes it, parses it with `parse` at the
/// request's time, and writes the points: 204 once they are durable.
async fn store(
    st: Arc<ApiState>,
    headers: HeaderMap,
    body: Body,
    parse: impl FnOnce(&ApiState, &[u8], i64) -> Result<Vec<WritePoint>, ApiError> + Send + 'static,
) -> Result<StatusCode, ApiError> {
    let enc = body::encoding(&headers)?;
    let raw = body::read(&headers, body, st.max_body_bytes).await?;
    let now = st.now();
    blocking(move || {
        let data = body::decode(raw, enc, st.max_body_bytes)?;
        let points = parse(&st, &data, now)?;
        st.tsdb.write(&points)?;
        tracing::debug!(points = points.len(), "telemetry written");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// The body as text; invalid UTF-8 is reported with its line number.
fn utf8_text(data: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(data).map_err(|e| {
        let upto = e.valid_up_to();
        let line = data[..upto].iter().filter(|&&b| b == b'\n').count() + 1;
        ApiError::BadLine {
            line,
            reason: "invalid UTF-8".into(),
        }
    })
}

/// Parses line protocol with InfluxDB's rules for lines without a
/// timestamp: they get the server time truncated to the precision.
/// Timestamps outside the window of `limits` are refused, naming the line.
fn parse_lp(
    text: &str,
    namespace: &str,
    device_tags: &[String],
    precision: LpPrecision,
    now_ms: i64,
    limits: &tsdb::ParseLimits,
) -> Result<Vec<WritePoint>, ApiError> {
    let (parser_precision, unit_ms) = precision.parser();
    let opts = LineProtocolOptions {
        namespace: namespace.to_string(),
        device_tags: device_tags.to_vec(),
        precision: parser_precision,
    };
    // The parser takes the default timestamp in milliseconds.
    let default_ts = now_ms.div_euclid(unit_ms.max(1)) * unit_ms.max(1);
    Ok(tsdb::parse_line_protocol_with(
        text, &opts, default_ts, limits,
    )?)
}

/// `POST /api/telemetry/{device}`: the device telemetry JSON forms.
pub(crate) async fn write_device(
    State(st): State<Arc<ApiState>>,
    PathDevice(device): PathDevice,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    store(st, headers, body, move |st, data, now| {
        let limits = (st.ingest_limits)(now);
        Ok(tsdb::parse_device_json_with(
            data,
            &st.namespace,
            &device,
            now,
            &limits,
        )?)
    })
    .await
}

/// `POST /api/telemetry`: `{"points": [{"device", "metric", "ts"?, "value",
/// "labels"?}, ...]}`.
pub(crate) async fn write_batch(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    store(st, headers, body, |st, data, now| {
        parse_batch(data, &st.namespace, now)
    })
    .await
}

/// Parses the batch document, all or nothing, naming the offending element.
pub(crate) fn parse_batch(
    data: &[u8],
    namespace: &str,
    now_ms: i64,
) -> Result<Vec<WritePoint>, ApiError> {
    let doc: Json = serde_json::from_slice(data).map_err(|e| ApiError::BadBody {
        field: None,
        reason: format!("not valid JSON: {e}"),
    })?;
    let Json::Object(root) = doc else {
        return Err(ApiError::BadBody {
            field: None,
            reason: "expected an object {\"points\": [...]}".into(),
        });
    };
    if let Some(k) = root.keys().find(|k| *k != "points") {
        return Err(ApiError::body(k.as_str(), "unknown key"));
    }
    let Some(Json::Array(items)) = root.get("points") else {
        return Err(ApiError::body("points", "required: an array of points"));
    };
    let ns: Arc<str> = Arc::from(namespace);
    let mut keys: HashMap<SeriesKey, Arc<SeriesKey>> = HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("points[{i}]");
        let Json::Object(m) = item else {
            return Err(ApiError::body(path, "expected an object"));
        };
        let (key, ts, value) = batch_point(m, &path, &ns, now_ms)?;
        let series = match keys.get(&key) {
            Some(k) => k.clone(),
            None => {
                key.validate()
                    .map_err(|e| ApiError::body(path.as_str(), e.to_string()))?;
                let k = Arc::new(key.clone());
                keys.insert(key, k.clone());
                k
            }
        };
        out.push(WritePoint { series, ts, value });
    }
    Ok(out)
}

fn batch_point(
    m: &Map<String, Json>,
    path: &str,
    ns: &Arc<str>,
    now_ms: i64,
) -> Result<(SeriesKey, i64, Value), ApiError> {
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "device" | "metric" | "ts" | "value" | "labels"))
    {
        return Err(ApiError::body(format!("{path}.{k}"), "unknown key"));
    }
    let string = |name: &str| match m.get(name) {
        Some(Json::String(s)) if !s.is_empty() => Ok(s.as_str()),
        _ => Err(ApiError::body(
            format!("{path}.{name}"),
            "required: a non-empty string",
        )),
    };
    let device = string("device")?;
    let metric = string("metric")?;
    let ts = match m.get("ts") {
        None | Some(Json::Null) => now_ms,
        Some(Json::Number(n)) => n.as_i64().ok_or_else(|| {
            ApiError::body(format!("{path}.ts"), "must be integer Unix milliseconds")
        })?,
        Some(Json::String(s)) => parse_instant(s, now_ms)
            .map_err(|reason| ApiError::body(format!("{path}.ts"), reason))?,
        Some(_) => {
            return Err(ApiError::body(
                format!("{path}.ts"),
                "must be integer Unix milliseconds or an RFC 3339 string",
            ))
        }
    };
    let value = match m.get("value") {
        Some(Json::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Value::F64(x),
            _ => {
                return Err(ApiError::body(
                    format!("{path}.value"),
                    "number out of range",
                ))
            }
        },
        Some(Json::Bool(b)) => Value::Bool(*b),
        Some(Json::String(s)) => Value::Str(Arc::from(s.as_str())),
        _ => {
            return Err(ApiError::body(
                format!("{path}.value"),
                "required: a number, boolean or string",
            ))
        }
    };
    let mut labels = Vec::new();
    match m.get("labels") {
        None | Some(Json::Null) => {}
        Some(Json::Object(l)) => {
            for (k, v) in l {
                let Json::String(v) = v else {
                    return Err(ApiError::body(
                        format!("{path}.labels.{k}"),
                        "label values must be strings",
                    ));
                };
                labels.push((Arc::from(k.as_str()), Arc::from(v.as_str())));
            }
        }
        Some(_) => {
            return Err(ApiError::body(
                format!("{path}.labels"),
                "must be an object of strings",
            ))
        }
    }
    let key = SeriesKey::from_parts(ns.clone(), Arc::from(device), Arc::from(metric), labels);
    Ok((key, ts, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags() -> Vec<String> {
        tsdb::LineProtocolOptions::default().device_tags
    }

    #[test]
    fn minutes_and_hours_scale_and_truncate_server_time() {
        let now = 1_700_000_123_456;
        let any = tsdb::ParseLimits::unlimited();
        let pts = parse_lp(
            "m f=1 2\nm g=1",
            "default",
            &tags(),
            LpPrecision::M,
            now,
            &any,
        )
        .unwrap_or_default();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].ts, 120_000);
        assert_eq!(pts[1].ts, now - now.rem_euclid(60_000));
        let pts =
            parse_lp("m f=1 1", "default", &tags(), LpPrecision::H, now, &any).unwrap_or_default();
        assert_eq!(pts[0].ts, 3_600_000);
        let pts =
            parse_lp("m f=1", "default", &tags(), LpPrecision::S, now, &any).unwrap_or_default();
        assert_eq!(pts[0].ts, now - 456);
        match parse_lp(
            "m f=1 1\nm f=2 9000000000000000",
            "default",
            &tags(),
            LpPrecision::H,
            now,
            &any,
        ) {
            Err(ApiError::BadLine { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamps_outside_the_window_name_their_line() {
        let now = 1_700_000_123_456;
        let window = tsdb::ParseLimits::at(now);
        // 1999, then tomorrow + 1 hour, in seconds.
        for (text, bad) in [
            ("m f=1 1700000000\nm f=2 915148800", 2),
            ("m f=1 1700000000\nm f=1 1700000000\nm f=3 1700090000", 3),
        ] {
            match parse_lp(text, "default", &tags(), LpPrecision::S, now, &window) {
                Err(ApiError::BadLine { line, .. }) => assert_eq!(line, bad, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(parse_lp(
            "m f=1 1700000000",
            "default",
            &tags(),
            LpPrecision::S,
            now,
            &window
        )
        .is_ok());
    }

    #[test]
    fn batch_errors_name_the_element() {
        let cases = [
            (r#"[]"#, None),
            (r#"{"pts": []}"#, Some("pts")),
            (r#"{"points": 3}"#, Some("points")),
            (
                r#"{"points": [{"device": "d", "metric": "m"}]}"#,
                Some("points[0].value"),
            ),
            (
                r#"{"points": [{"device": "d", "metric": "m", "value": 1}, {"metric": "m", "value": 1}]}"#,
                Some("points[1].device"),
            ),
            (
                r#"{"points": [{"device": "d", "metric": "m", "value": 1, "ts": 1.5}]}"#,
                Some("points[0].ts"),
            ),
            (
                r#"{"points": [{"device": "d", "metric": "m", "value": 1, "labels": {"a": 1}}]}"#,
                Some("points[0].labels.a"),
            ),
            (
                r#"{"points": [{"device": "d", "metric": "m", "value": 1, "extra": 1}]}"#,
                Some("points[0].extra"),
            ),
        ];
        for (input, field) in cases {
            match parse_batch(input.as_bytes(), "default", 0) {
                Err(ApiError::BadBody { field: f, .. }) => {
                    assert_eq!(f.as_deref(), field, "{input}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        let ok = parse_batch(
            br#"{"points": [{"device": "d", "metric": "m", "value": 1.5, "labels": {"a": "b"}},
                            {"device": "d", "metric": "m", "value": 2, "ts": "1970-01-01T00:00:01Z", "labels": {"a": "b"}}]}"#,
            "default",
            7,
        )
        .unwrap_or_default();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].ts, ok[1].ts), (7, 1000));
        assert!(Arc::ptr_eq(&ok[0].series, &ok[1].series));
        assert_eq!(ok[0].series.label("a"), Some("b"));
    }
}
