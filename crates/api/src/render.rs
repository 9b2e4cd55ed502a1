//! Response bodies: the JSON DTOs and CSV tables of query results. These
//! shapes are the public format; the engine's types never serialize
//! themselves.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, Serializer};
use serde::Serialize as SerializeDerive;
use tsdb::{GroupKey, SeriesKey, Value};

use crate::error::ApiError;
use crate::params::Params;

/// How a query answer is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    /// JSON with one array per column: aggregates as `t0` and a dense
    /// `values` array (one entry per bucket, `null` when empty), raw points
    /// as `ts` and `values` arrays.
    Columnar,
}

/// The media type that asks for [`Format::Columnar`] in `Accept`.
pub(crate) const COLUMNAR_MEDIA_TYPE: &str = "application/vnd.millwright.columnar+json";

/// A stored value as JSON: number, boolean or string.
pub(crate) struct JsonValue<'a>(pub(crate) &'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::F64(v) => s.serialize_f64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::Str(v) => s.serialize_str(v),
        }
    }
}

/// Labels as a JSON object.
pub(crate) fn labels(k: &SeriesKey) -> BTreeMap<&str, &str> {
    k.labels()
        .iter()
        .map(|(a, b)| (a.as_ref(), b.as_ref()))
        .collect()
}

/// One point in a JSON answer.
#[derive(SerializeDerive)]
pub(crate) struct PointDto<'a> {
    pub(crate) ts: i64,
    pub(crate) value: JsonValue<'a>,
}

/// One aggregated point in a JSON answer (`null` if not finite).
#[derive(SerializeDerive)]
pub(crate) struct AggPointDto {
    pub(crate) ts: i64,
    pub(crate) value: f64,
}

/// A series' aggregated points as a JSON array of `{"ts", "value"}`,
/// serialized straight from the engine's points.
pub(crate) struct AggPointsJson<'a>(pub(crate) &'a [tsdb::AggPoint]);

impl Serialize for AggPointsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for p in self.0 {
            seq.serialize_element(&AggPointDto {
                ts: p.ts,
                value: p.value,
            })?;
        }
        seq.end()
    }
}

/// A series' aggregated values as a JSON array. Dense: entry `i` is the
/// bucket `t0 + i * bucket_ms` (`t0` the first point's bucket), `null` for
/// an empty bucket; otherwise one entry per point. Values that are not
/// finite are `null`.
pub(crate) struct DenseValuesJson<'a> {
    pub(crate) points: &'a [tsdb::AggPoint],
    pub(crate) bucket_ms: i64,
    pub(crate) dense: bool,
}

impl DenseValuesJson<'_> {
    /// Entries of the dense array (buckets from the first to the last point).
    pub(crate) fn slots(&self) -> usize {
        match (self.points.first(), self.points.last()) {
            (Some(f), Some(l)) => ((l.ts - f.ts) / self.bucket_ms.max(1)) as usize + 1,
            _ => 0,
        }
    }
}

impl Serialize for DenseValuesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Some(first) = self.points.first() else {
            return s.serialize_seq(Some(0))?.end();
        };
        if !self.dense {
            return s.collect_seq(
                self.points
                    .iter()
                    .map(|p| p.value.is_finite().then_some(p.value)),
            );
        }
        let slots = |ts: i64| ((ts - first.ts) / self.bucket_ms.max(1)) as usize;
        let n = self.points.last().map_or(0, |l| slots(l.ts) + 1);
        let mut seq = s.serialize_seq(Some(n))?;
        let mut next = 0;
        for p in self.points {
            let at = slots(p.ts);
            while next < at {
                seq.serialize_element(&None::<f64>)?;
                next += 1;
            }
            seq.serialize_element(&p.value.is_finite().then_some(p.value))?;
            next += 1;
        }
        seq.end()
    }
}

/// The group an aggregated series stands for, as a JSON object:
/// `{"device", "metric", "labels"}`, `{"device"}`, `{"label.<key>": value
/// or null}`, or `{}`.
pub(crate) fn group_json(g: &GroupKey, label_key: Option<&str>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    match g {
        GroupKey::Series(k) => {
            m.insert("device".into(), k.device().into());
            m.insert("metric".into(), k.metric().into());
            let l: serde_json::Map<String, serde_json::Value> = k
                .labels()
                .iter()
                .map(|(a, b)| (a.to_string(), b.as_ref().into()))
                .collect();
            m.insert("labels".into(), l.into());
        }
        GroupKey::Device(d) => {
            m.insert("device".into(), d.as_str().into());
        }
        GroupKey::Label(v) => {
            let name = format!("label.{}", label_key.unwrap_or(""));
            m.insert(
                name,
                v.as_deref().map_or(serde_json::Value::Null, Into::into),
            );
        }
        GroupKey::All => {}
    }
    serde_json::Value::Object(m)
}

/// A 200 JSON answer, with an optional `Link: <next>; rel="next"`.
pub(crate) fn json<T: Serialize>(body: &T, next: Option<&str>) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ApiError::Internal(format!("encoding the answer: {e}")))?;
    Ok(with_type(bytes, "application/json", next))
}

/// A page of a listing, `{"items", "next"}`, with the next page also in a
/// `Link` header: the query `p` at `path` with `cursor` set to `next`.
pub(crate) fn page<T: Serialize>(
    items: Vec<T>,
    next: Option<String>,
    p: &Params,
    path: &str,
    cursor: &str,
) -> Result<Response, ApiError> {
    let link = p.next_link(path, cursor, next.as_ref());
    json(&api_types::Page { items, next }, link.as_deref())
}

/// A whole listing, `{"items"}`.
pub(crate) fn items<T: Serialize>(items: Vec<T>) -> Result<Response, ApiError> {
    #[derive(SerializeDerive)]
    struct Items<T> {
        items: Vec<T>,
    }
    json(&Items { items }, None)
}

/// A 201 JSON answer with a `Location`.
pub(crate) fn created<T: Serialize>(body: &T, location: &str) -> Result<Response, ApiError> {
    located(StatusCode::CREATED, body, location)
}

/// A JSON answer with this status and a `Location`.
pub(crate) fn located<T: Serialize>(
    status: StatusCode,
    body: &T,
    location: &str,
) -> Result<Response, ApiError> {
    let mut resp = json(body, None)?;
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// The answer to a deletion: 204 when `found`, else 404 naming `what`.
pub(crate) fn removed(found: bool, what: impl FnOnce() -> String) -> Result<Response, ApiError> {
    if found {
        Ok(no_content())
    } else {
        Err(ApiError::Missing(format!("{} not found", what())))
    }
}

/// A 204 answer.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A 200 CSV answer.
pub(crate) fn csv(body: String, next: Option<&str>) -> Response {
    with_type(body.into_bytes(), "text/csv; charset=utf-8", next)
}

/// A 200 JSON answer encoded into a buffer of `capacity` bytes to start with.
pub(crate) fn json_sized<T: Serialize>(body: &T, capacity: usize) -> Result<Response, ApiError> {
    let mut bytes = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut bytes, body)
        .map_err(|e| ApiError::Internal(format!("encoding the answer: {e}")))?;
    Ok(with_type(bytes, "application/json", None))
}

fn with_type(body: Vec<u8>, ctype: &'static str, next: Option<&str>) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Some(v) = next.and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok())
    {
        h.insert(header::LINK, v);
    }
    resp
}

/// Builds CSV text (RFC 4180: comma separated, CRLF line ends, fields with
/// commas, quotes or line breaks quoted).
pub(crate) struct CsvWriter {
    out: String,
}

impl CsvWriter {
    pub(crate) fn new(header: &[&str]) -> CsvWriter {
        let mut w = CsvWriter { out: String::new() };
        w.row(header.iter().copied());
        w
    }

    pub(crate) fn row<'a>(&mut self, fields: impl IntoIterator<Item = &'a str>) {
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            if f.contains([',', '"', '\n', '\r']) {
                self.out.push('"');
                self.out.push_str(&f.replace('"', "\"\""));
                self.out.push('"');
            } else {
                self.out.push_str(f);
            }
        }
        self.out.push_str("\r\n");
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Labels in one CSV field: `k=v;k2=v2`.
pub(crate) fn labels_csv(k: &SeriesKey) -> String {
    let mut s = String::new();
    for (i, (a, b)) in k.labels().iter().enumerate() {
        if i > 0 {
            s.push(';');
        }
        s.push_str(a);
        s.push('=');
        s.push_str(b);
    }
    s
}

/// A value in a CSV field (numbers as in JSON).
pub(crate) fn value_csv(v: &Value) -> String {
    match v {
        Value::F64(x) => f64_csv(*x),
        Value::I64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
        Value::Str(x) => x.to_string(),
    }
}

/// A float in a CSV field; empty if not finite.
pub(crate) fn f64_csv(x: f64) -> String {
    if x.is_finite() {
        serde_json::to_string(&x).unwrap_or_default()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let mut w = CsvWriter::new(&["a", "b"]);
        w.row(["x,y", "say \"hi\""]);
        w.row(["1.5", ""]);
        assert_eq!(w.finish(), "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n1.5,\r\n");
        assert_eq!(f64_csv(21.5), "21.5");
        assert_eq!(f64_csv(1e300), "1e+300");
        assert_eq!(f64_csv(f64::NAN), "");
    }
}
