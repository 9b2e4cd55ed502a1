//! Device telemetry JSON, as published on `devices/{id}/telemetry`:
//!
//! - `{"temp": 21.5, "rpm": 1200}`: every key is a metric, timestamped with
//!   the server time passed in;
//! - `{"ts": 1700000000000, "values": {"temp": 21.5}}`: explicit
//!   milliseconds (`ts` may be left out for server time);
//! - an array of either form.
//!
//! Values: numbers are stored as floats (JSON has one number type, and a
//! sensor sending `21` and then `21.5` must not hit a type conflict), `true`
//! and `false` as booleans, strings as strings. `null` is a missing point
//! and is skipped. Nested objects and arrays as values are rejected, as is a
//! plain object carrying `ts` without `values` (ambiguous). Any error
//! rejects the whole payload, with the path of the offending element.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::error::Error;
use crate::model::{SeriesKey, Value, WritePoint};

/// Parses a device telemetry payload into points, all or nothing.
pub fn parse_device_json(
    payload: &[u8],
    namespace: &str,
    device: &str,
    server_ts_ms: i64,
) -> Result<Vec<WritePoint>, Error> {
    let doc: Json =
        serde_json::from_slice(payload).map_err(|e| Error::Json(format!("not valid JSON: {e}")))?;
    let mut p = Parser {
        ns: Arc::from(namespace),
        device: Arc::from(device),
        server_ts_ms,
        keys: Vec::new(),
        out: Vec::new(),
    };
    match &doc {
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Json::Object(m) => p.object(m, &format!("[{i}]"))?,
                    _ => return Err(Error::Json(format!("[{i}]: expected an object"))),
                }
            }
        }
        Json::Object(m) => p.object(m, "")?,
        _ => {
            return Err(Error::Json(
                "expected an object or an array of objects".into(),
            ))
        }
    }
    Ok(p.out)
}

struct Parser {
    ns: Arc<str>,
    device: Arc<str>,
    server_ts_ms: i64,
    keys: Vec<(String, Arc<SeriesKey>)>,
    out: Vec<WritePoint>,
}

impl Parser {
    fn object(&mut self, m: &Map<String, Json>, path: &str) -> Result<(), Error> {
        let dot = if path.is_empty() { "" } else { "." };
        match m.get("values") {
            Some(Json::Object(values)) => {
                if let Some(k) = m.keys().find(|k| *k != "ts" && *k != "values") {
                    return Err(Error::Json(format!(
                        "{path}{dot}{k}: unexpected key beside \"ts\" and \"values\""
                    )));
                }
                let ts = match m.get("ts") {
                    None | Some(Json::Null) => self.server_ts_ms,
                    Some(Json::Number(n)) => n.as_i64().ok_or_else(|| {
                        Error::Json(format!(
                            "{path}{dot}ts: must be integer milliseconds, got {n}"
                        ))
                    })?,
                    Some(other) => {
                        return Err(Error::Json(format!(
                            "{path}{dot}ts: must be integer milliseconds, got {other}"
                        )))
                    }
                };
                self.values(values, ts, &format!("{path}{dot}values"))
            }
            Some(_) => Err(Error::Json(format!("{path}{dot}values: must be an object"))),
            None if m.contains_key("ts") => Err(Error::Json(format!(
                "{path}{dot}ts: a timestamp needs its values under \"values\""
            ))),
            None => self.values(m, self.server_ts_ms, path),
        }
    }

    fn values(&mut self, m: &Map<String, Json>, ts: i64, path: &str) -> Result<(), Error> {
        let dot = if path.is_empty() { "" } else { "." };
        for (k, v) in m {
            let value = match v {
                Json::Null => continue,
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_f64() {
                    Some(x) if x.is_finite() => Value::F64(x),
                    _ => return Err(Error::Json(format!("{path}{dot}{k}: number out of range"))),
                },
                Json::String(s) => Value::Str(Arc::from(s.as_str())),
                Json::Array(_) | Json::Object(_) => {
                    return Err(Error::Json(format!(
                        "{path}{dot}{k}: nested arrays and objects are not telemetry values"
                    )))
                }
            };
            let series = self
                .key(k)
                .map_err(|e| Error::Json(format!("{path}{dot}{k}: {e}")))?;
            self.out.push(WritePoint { series, ts, value });
        }
        Ok(())
    }

    fn key(&mut self, metric: &str) -> Result<Arc<SeriesKey>, Error> {
        if let Some((_, k)) = self.keys.iter().find(|(m, _)| m == metric) {
            return Ok(k.clone());
        }
        let key = SeriesKey::from_parts(
            self.ns.clone(),
            self.device.clone(),
            Arc::from(metric),
            Vec::new(),
        );
        key.validate()?;
        let key = Arc::new(key);
        self.keys.push((metric.to_string(), key.clone()));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<WritePoint>, Error> {
        parse_device_json(s.as_bytes(), "default", "dev1", 1000)
    }

    #[test]
    fn plain_object_uses_server_time() {
        let pts = parse(r#"{"temp": 21.5, "rpm": 1200, "on": true, "mode": "eco", "gone": null}"#)
            .unwrap();
        assert_eq!(pts.len(), 4);
        assert!(pts
            .iter()
            .all(|p| p.ts == 1000 && p.series.device() == "dev1"));
        let rpm = pts.iter().find(|p| p.series.metric() == "rpm").unwrap();
        assert_eq!(rpm.value, Value::F64(1200.0));
    }

    #[test]
    fn ts_values_and_arrays() {
        let pts = parse(r#"[{"ts": 5, "values": {"a": 1}}, {"values": {"a": 2}}, {"b": false}]"#)
            .unwrap();
        assert_eq!(pts.len(), 3);
        assert_eq!((pts[0].ts, pts[1].ts, pts[2].ts), (5, 1000, 1000));
        assert!(Arc::ptr_eq(&pts[0].series, &pts[1].series));
    }

    #[test]
    fn bad_payloads_are_rejected_whole() {
        for (input, needle) in [
            ("not json", "not valid JSON"),
            ("42", "expected an object"),
            (r#"[{"a": 1}, 3]"#, "[1]: expected an object"),
            (r#"{"ts": 5, "a": 1}"#, "needs its values"),
            (r#"{"ts": 5.5, "values": {"a": 1}}"#, "integer milliseconds"),
            (r#"{"ts": "x", "values": {"a": 1}}"#, "integer milliseconds"),
            (r#"{"values": 3}"#, "must be an object"),
            (r#"{"values": {"a": 1}, "x": 2}"#, "unexpected key"),
            (r#"[{"a": 1}, {"b": {"c": 1}}]"#, "[1].b: nested"),
            (r#"{"": 1}"#, "empty metric"),
        ] {
            match parse(input) {
                Err(Error::Json(m)) => assert!(m.contains(needle), "{input}: {m}"),
                other => panic!("{input}: expected an error, got {other:?}"),
            }
        }
    }
}
