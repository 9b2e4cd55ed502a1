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
//!
//! Limits ([`ParseLimits`]): at most `max_metrics` values per message, and
//! device timestamps (`ts`) within the window; server time is not checked.
//!
//! Cost: the payload is decoded in one streaming pass (no document tree):
//! each object's entries are visited once, each metric name is looked up
//! in a hash map, and decoding stops at the first error, including the
//! first value over the cap. A repeated key in one object yields two
//! points of the same series and timestamp: the later one wins.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::catalog::FastState;
use crate::error::Error;
use crate::model::{SeriesKey, Value, WritePoint};
use crate::parse::limits::ParseLimits;

/// Parses a device telemetry payload into points, all or nothing, with the
/// default limits for a message received at `server_ts_ms`
/// ([`ParseLimits::at`]: at most 1,000 values, device timestamps from
/// 2000-01-01 to one day ahead).
pub fn parse_device_json(
    payload: &[u8],
    namespace: &str,
    device: &str,
    server_ts_ms: i64,
) -> Result<Vec<WritePoint>, Error> {
    parse_device_json_with(
        payload,
        namespace,
        device,
        server_ts_ms,
        &ParseLimits::at(server_ts_ms),
    )
}

/// Parses a device telemetry payload into points, all or nothing, under
/// `limits`. Points without a timestamp get `server_ts_ms`.
pub fn parse_device_json_with(
    payload: &[u8],
    namespace: &str,
    device: &str,
    server_ts_ms: i64,
    limits: &ParseLimits,
) -> Result<Vec<WritePoint>, Error> {
    let mut p = Parser {
        ns: Arc::from(namespace),
        device: Arc::from(device),
        server_ts_ms,
        limits,
        keys: HashMap::default(),
        out: Vec::new(),
        err: None,
    };
    let mut de = serde_json::Deserializer::from_slice(payload);
    let res = Objects {
        p: &mut p,
        index: None,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match res {
        Ok(()) => Ok(p.out),
        Err(e) => Err(p
            .err
            .take()
            .unwrap_or_else(|| Error::Json(format!("not valid JSON: {e}")))),
    }
}

struct Parser<'l> {
    ns: Arc<str>,
    device: Arc<str>,
    server_ts_ms: i64,
    limits: &'l ParseLimits,
    keys: HashMap<Box<str>, Arc<SeriesKey>, FastState>,
    out: Vec<WritePoint>,
    /// Our own error, when decoding stopped on it (serde's error then only
    /// carries the position).
    err: Option<Error>,
}

/// Where an object sits, for error messages: the top level or `[i]`.
#[derive(Clone, Copy)]
struct At(Option<usize>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "[{i}]"),
            None => Ok(()),
        }
    }
}

impl At {
    /// `[i].rest`, or `rest` at the top level.
    fn join(self, rest: &str) -> String {
        match self.0 {
            Some(i) => format!("[{i}].{rest}"),
            None => rest.to_string(),
        }
    }
}

impl Parser<'_> {
    /// Records our error and returns the serde error that stops decoding.
    fn fail<E: de::Error>(&mut self, msg: String) -> E {
        self.err = Some(Error::Json(msg));
        E::custom("telemetry rejected")
    }

    fn key(&mut self, metric: &str) -> Result<Arc<SeriesKey>, Error> {
        if let Some(k) = self.keys.get(metric) {
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
        self.keys.insert(Box::from(metric), key.clone());
        Ok(key)
    }

    /// Turns one object's entries into points.
    fn object<'de, A: MapAccess<'de>>(&mut self, mut map: A, at: At) -> Result<(), A::Error> {
        // Plain entries (metrics, or stray keys beside "values") and the
        // "values" object's entries, in order; `None` values were null.
        let mut plain: Vec<(String, Option<Value>)> = Vec::new();
        let mut values: Option<Vec<(String, Option<Value>)>> = None;
        let mut ts: Option<Option<i64>> = None;
        let mut count = 0usize;
        while let Some(k) = map.next_key::<String>()? {
            match k.as_str() {
                "values" => {
                    let path = at.join("values");
                    let v = map.next_value_seed(ValuesSeed {
                        p: self,
                        path: &path,
                        count: &mut count,
                    })?;
                    values = Some(v);
                }
                "ts" => {
                    let path = at.join("ts");
                    ts = Some(map.next_value_seed(TsSeed {
                        p: self,
                        path: &path,
                    })?);
                }
                _ => {
                    let path = at.join(&k);
                    let v = map.next_value_seed(ScalarSeed {
                        p: self,
                        path: &path,
                    })?;
                    if v.is_some() {
                        self.count_one(&mut count)?;
                    }
                    plain.push((k, v));
                }
            }
        }
        let (entries, ts, path) = match values {
            Some(entries) => {
                if let Some((k, _)) = plain.first() {
                    let path = at.join(k);
                    return Err(self.fail(format!(
                        "{path}: unexpected key beside \"ts\" and \"values\""
                    )));
                }
                let ts = ts.flatten().unwrap_or(self.server_ts_ms);
                (entries, ts, at.join("values"))
            }
            None if ts.is_some() => {
                let path = at.join("ts");
                return Err(self.fail(format!(
                    "{path}: a timestamp needs its values under \"values\""
                )));
            }
            None => (plain, self.server_ts_ms, at.to_string()),
        };
        let dot = if path.is_empty() { "" } else { "." };
        for (k, v) in entries {
            let Some(value) = v else { continue };
            let series = match self.key(&k) {
                Ok(s) => s,
                Err(e) => return Err(self.fail(format!("{path}{dot}{k}: {e}"))),
            };
            self.out.push(WritePoint { series, ts, value });
        }
        Ok(())
    }

    /// Counts one value against the message's cap.
    fn count_one<E: de::Error>(&mut self, count: &mut usize) -> Result<(), E> {
        *count += 1;
        if self.out.len().saturating_add(*count) > self.limits.max_metrics {
            let max = self.limits.max_metrics;
            return Err(self.fail(format!(
                "more than {max} metric values in one message (the limit)"
            )));
        }
        Ok(())
    }
}

/// The document (`index: None`: an object or an array of objects) or one
/// element of the array form (`index: Some(i)`: an object).
struct Objects<'a, 'l> {
    p: &'a mut Parser<'l>,
    index: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for Objects<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Objects<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            None => f.write_str("an object or an array of objects"),
            Some(_) => f.write_str("an object"),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.p.object(map, At(self.index))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.index.is_some() {
            return Err(self.not_object());
        }
        let mut i = 0;
        while seq
            .next_element_seed(Objects {
                p: &mut *self.p,
                index: Some(i),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.not_object())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.not_object())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.not_object())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.not_object())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.not_object())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.not_object())
    }
}

impl Objects<'_, '_> {
    fn not_object<E: de::Error>(self) -> E {
        let msg = match self.index {
            None => "expected an object or an array of objects".to_string(),
            Some(i) => format!("[{i}]: expected an object"),
        };
        self.p.fail(msg)
    }
}

/// The object under "values": metric names to scalar values.
struct ValuesSeed<'a, 'l, 'c> {
    p: &'a mut Parser<'l>,
    path: &'a str,
    count: &'c mut usize,
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_, '_, '_> {
    type Value = Vec<(String, Option<Value>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_, '_, '_> {
    type Value = Vec<(String, Option<Value>)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of metric values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let path = format!("{}.{k}", self.path);
            let v = map.next_value_seed(ScalarSeed {
                p: self.p,
                path: &path,
            })?;
            if v.is_some() {
                self.p.count_one(self.count)?;
            }
            out.push((k, v));
        }
        Ok(out)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.not_object())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
}

impl ValuesSeed<'_, '_, '_> {
    fn not_object<E: de::Error>(self) -> E {
        let path = self.path;
        self.p.fail(format!("{path}: must be an object"))
    }
}

/// A metric value: a number, a boolean, a string, or null (skipped).
struct ScalarSeed<'a, 'l> {
    p: &'a mut Parser<'l>,
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_, '_> {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_, '_> {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, boolean, string or null")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::F64(v as f64)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::F64(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() {
            Ok(Some(Value::F64(v)))
        } else {
            let path = self.path;
            Err(self.p.fail(format!("{path}: number out of range")))
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(Value::Str(Arc::from(s))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.nested())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.nested())
    }
}

impl ScalarSeed<'_, '_> {
    fn nested<E: de::Error>(self) -> E {
        let path = self.path;
        self.p.fail(format!(
            "{path}: nested arrays and objects are not telemetry values"
        ))
    }
}

/// The "ts" member: integer milliseconds within the window, or null.
struct TsSeed<'a, 'l> {
    p: &'a mut Parser<'l>,
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for TsSeed<'_, '_> {
    type Value = Option<i64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TsSeed<'_, '_> {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("integer milliseconds")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match self.p.limits.check_ts(v) {
            Ok(()) => Ok(Some(v)),
            Err(m) => {
                let path = self.path;
                Err(self.p.fail(format!("{path}: {m}")))
            }
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(self.bad(&v.to_string())),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(self.bad(&v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Err(self.bad(&v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Err(self.bad(&format!("{v:?}")))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.bad("an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.bad("an array"))
    }
}

impl TsSeed<'_, '_> {
    fn bad<E: de::Error>(self, got: &str) -> E {
        let path = self.path;
        self.p
            .fail(format!("{path}: must be integer milliseconds, got {got}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::DAY_MS;

    const NOW: i64 = 1_700_000_000_000;

    fn parse(s: &str) -> Result<Vec<WritePoint>, Error> {
        parse_device_json(s.as_bytes(), "default", "dev1", NOW)
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Err(Error::Json(m)) => m,
            other => panic!("{s}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn plain_object_uses_server_time() {
        let pts = parse(r#"{"temp": 21.5, "rpm": 1200, "on": true, "mode": "eco", "gone": null}"#)
            .unwrap();
        assert_eq!(pts.len(), 4);
        assert!(pts
            .iter()
            .all(|p| p.ts == NOW && p.series.device() == "dev1"));
        let rpm = pts.iter().find(|p| p.series.metric() == "rpm").unwrap();
        assert_eq!(rpm.value, Value::F64(1200.0));
    }

    #[test]
    fn ts_values_and_arrays() {
        let text = format!(
            r#"[{{"ts": {}, "values": {{"a": 1}}}}, {{"values": {{"a": 2}}}}, {{"b": false}}, {{"values": {{"a": 3}}, "ts": null}}]"#,
            NOW - 5
        );
        let pts = parse(&text).unwrap();
        assert_eq!(pts.len(), 4);
        assert_eq!(
            (pts[0].ts, pts[1].ts, pts[2].ts, pts[3].ts),
            (NOW - 5, NOW, NOW, NOW)
        );
        assert!(Arc::ptr_eq(&pts[0].series, &pts[1].series));
        // "ts" may come after "values".
        let pts = parse(r#"{"values": {"a": 1}, "ts": 1699999999000}"#).unwrap();
        assert_eq!(pts[0].ts, 1_699_999_999_000);
    }

    #[test]
    fn bad_payloads_are_rejected_whole() {
        for (input, needle) in [
            ("not json", "not valid JSON"),
            ("{} x", "not valid JSON"),
            ("42", "expected an object"),
            (r#"[{"a": 1}, 3]"#, "[1]: expected an object"),
            (
                r#"{"a": 1, "ts": 1699999999000}"#,
                "ts: a timestamp needs its values",
            ),
            (r#"{"ts": 5.5, "values": {"a": 1}}"#, "integer milliseconds"),
            (r#"{"ts": "x", "values": {"a": 1}}"#, "integer milliseconds"),
            (
                r#"{"ts": 18446744073709551615, "values": {"a": 1}}"#,
                "integer milliseconds",
            ),
            (r#"{"values": 3}"#, "values: must be an object"),
            (r#"{"values": {"a": 1}, "x": 2}"#, "x: unexpected key"),
            (r#"[{"a": 1}, {"b": {"c": 1}}]"#, "[1].b: nested"),
            (r#"[{"values": {"b": [1]}}]"#, "[0].values.b: nested"),
            (r#"{"": 1}"#, "empty metric"),
            (r#"{"a": 1e999}"#, "not valid JSON"),
        ] {
            let m = err(input);
            assert!(m.contains(needle), "{input}: {m}");
        }
    }

    #[test]
    fn timestamps_outside_the_window_are_refused() {
        for ts in [
            0,
            5,
            -1,
            i64::MIN,
            i64::MAX,
            crate::parse::YEAR_2000_MS - 1,
            NOW + DAY_MS + 1,
        ] {
            let m = err(&format!(
                r#"[{{"a": 1}}, {{"ts": {ts}, "values": {{"a": 1}}}}]"#
            ));
            assert!(m.starts_with("[1].ts: timestamp"), "{ts}: {m}");
            assert!(
                m.contains("outside the accepted window 2000-01-01T00:00:00Z"),
                "{m}"
            );
        }
        for ts in [crate::parse::YEAR_2000_MS, NOW + DAY_MS] {
            assert!(parse(&format!(r#"{{"ts": {ts}, "values": {{"a": 1}}}}"#)).is_ok());
        }
        // A custom window.
        let limits = ParseLimits {
            earliest_ms: 0,
            latest_ms: 10,
            max_metrics: 5,
        };
        let ok = parse_device_json_with(br#"{"ts": 10, "values": {"a": 1}}"#, "n", "d", 0, &limits);
        assert_eq!(ok.unwrap()[0].ts, 10);
    }

    #[test]
    fn metric_cap_counts_the_whole_message() {
        let limits = ParseLimits {
            max_metrics: 3,
            ..ParseLimits::at(NOW)
        };
        let p = |s: &str| parse_device_json_with(s.as_bytes(), "n", "d", NOW, &limits);
        assert_eq!(
            p(r#"{"a": 1, "b": 2, "c": null, "d": 4}"#).unwrap().len(),
            3
        );
        assert_eq!(
            p(r#"[{"a": 1}, {"values": {"a": 2, "b": 3}}]"#)
                .unwrap()
                .len(),
            3
        );
        for over in [
            r#"{"a": 1, "b": 2, "c": 3, "d": 4}"#,
            r#"[{"a": 1, "b": 2}, {"values": {"a": 2, "b": 3}}]"#,
            r#"[{"a": 1}, {"b": 1}, {"c": 1}, {"d": 1}]"#,
        ] {
            match p(over) {
                Err(Error::Json(m)) => assert!(m.contains("more than 3 metric values"), "{m}"),
                other => panic!("{over}: {other:?}"),
            }
        }
        // The default cap is 1,000.
        let body = |n: usize| {
            let fields: Vec<String> = (0..n).map(|i| format!("\"m{i}\": {i}")).collect();
            format!("{{{}}}", fields.join(","))
        };
        assert_eq!(parse(&body(1_000)).unwrap().len(), 1_000);
        assert!(err(&body(1_001)).contains("more than 1000 metric values"));
    }

    #[test]
    fn many_distinct_keys_parse_in_full_and_the_cap_stops_early() {
        // 100,000 distinct metrics (about 1.5 MB) parse in full when
        // uncapped (names are hashed: linear, no pairwise comparison;
        // bench/isolation.py measures what it costs other clients), and
        // the default cap stops decoding at the first value over it.
        let n = 100_000;
        let fields: Vec<String> = (0..n).map(|i| format!("\"metric{i}\": {i}")).collect();
        let text = format!("{{{}}}", fields.join(","));
        let unlimited = ParseLimits {
            max_metrics: usize::MAX,
            ..ParseLimits::at(NOW)
        };
        let pts = parse_device_json_with(text.as_bytes(), "n", "d", NOW, &unlimited).unwrap();
        assert_eq!(pts.len(), n);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn repeated_keys_keep_both_points_and_the_later_wins_in_storage() {
        let pts = parse(r#"{"a": 1, "a": 2}"#).unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].value, Value::F64(2.0));
        assert!(Arc::ptr_eq(&pts[0].series, &pts[1].series));
    }
}
