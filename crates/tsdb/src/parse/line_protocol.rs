//! InfluxDB line protocol:
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! Mapping to the data model:
//! - namespace: [`LineProtocolOptions::namespace`];
//! - device id: the value of the first tag of
//!   [`LineProtocolOptions::device_tags`] the line has (default `device`,
//!   then `host` as Telegraf sends it), or the measurement if it has none;
//!   the other tags, other device tags included, are labels;
//! - metric name: `measurement.field` (so `cpu usage=1` and `mem usage=1`
//!   stay apart);
//! - labels: every other tag.
//!
//! Values: `1.5`, `1` and `-2e3` are floats; `1i` is an integer; `1u` is an
//! unsigned integer, stored as an integer (values above `i64::MAX` are
//! rejected); `t`, `T`, `true`, `True`, `TRUE` and the `f` forms are
//! booleans; `"..."` is a string. NaN and infinities are rejected.
//!
//! Escaping as in InfluxDB: in the measurement `\,` and `\ `; in tag keys,
//! tag values and field keys `\,`, `\=` and `\ `; in string values `\"` and
//! `\\`. A backslash before any other character is kept as is. Blank lines
//! and lines starting with `#` are skipped; `\r\n` line ends are accepted.
//!
//! Timestamps are integers in [`LineProtocolOptions::precision`] units
//! (default nanoseconds), converted to milliseconds rounding toward negative
//! infinity; a line without one gets the `default_ts_ms` passed in (server
//! time). A field repeated on one line: the last one wins. A timestamp
//! that cannot be converted without overflow, or lands outside what the
//! engine stores, is refused; [`parse_line_protocol_with`] also refuses
//! those outside a plausibility window ([`ParseLimits`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::FastState;
use crate::error::Error;
use crate::model::{SeriesKey, Value, WritePoint, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
use crate::parse::limits::ParseLimits;

/// Units of line protocol timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (InfluxDB's default).
    #[default]
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
}

/// How line protocol maps onto series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineProtocolOptions {
    /// Namespace of every point.
    pub namespace: String,
    /// Tags that may hold the device id, the preferred first.
    pub device_tags: Vec<String>,
    /// Timestamp units.
    pub precision: Precision,
}

impl Default for LineProtocolOptions {
    fn default() -> LineProtocolOptions {
        LineProtocolOptions {
            namespace: "default".into(),
            device_tags: vec!["device".into(), "host".into()],
            precision: Precision::Nanoseconds,
        }
    }
}

struct LineErr(String);

fn err<T>(reason: impl Into<String>) -> Result<T, LineErr> {
    Err(LineErr(reason.into()))
}

/// Parses line protocol text into points, all or nothing. Errors carry
/// the 1-based line number and a reason.
///
/// Timestamps are only checked against what the engine stores
/// ([`crate::MIN_TIMESTAMP_MS`]`..=`[`crate::MAX_TIMESTAMP_MS`] after
/// conversion); use [`parse_line_protocol_with`] for a plausibility window.
pub fn parse_line_protocol(
    text: &str,
    opts: &LineProtocolOptions,
    default_ts_ms: i64,
) -> Result<Vec<WritePoint>, Error> {
    parse_line_protocol_with(text, opts, default_ts_ms, &ParseLimits::unlimited())
}

/// Parses line protocol text into points, all or nothing, refusing a line
/// whose timestamp (after conversion to milliseconds) is outside the
/// window of `limits` (`earliest_ms..=latest_ms`): the error names the
/// line. Lines without a timestamp get `default_ts_ms`, which is not
/// checked. `limits.max_metrics` does not apply to line protocol.
pub fn parse_line_protocol_with(
    text: &str,
    opts: &LineProtocolOptions,
    default_ts_ms: i64,
    limits: &ParseLimits,
) -> Result<Vec<WritePoint>, Error> {
    let mut out = Vec::new();
    let mut cache = KeyCache::new(opts);
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        parse_line(trimmed, opts, default_ts_ms, limits, &mut cache, &mut out).map_err(
            |LineErr(reason)| Error::LineProtocol {
                line: i + 1,
                reason,
            },
        )?;
    }
    Ok(out)
}

/// A parsed `measurement,tags` prefix: measurement, device, labels, and
/// the keys made so far per field (few per prefix, so a list).
struct SeriesPrefix {
    measurement: Arc<str>,
    device: Arc<str>,
    labels: Vec<(Arc<str>, Arc<str>)>,
    fields: Vec<(Box<str>, Arc<SeriesKey>)>,
}

impl SeriesPrefix {
    fn key(&mut self, ns: &Arc<str>, field: &str) -> Result<Arc<SeriesKey>, LineErr> {
        if let Some((_, k)) = self.fields.iter().find(|(f, _)| f.as_ref() == field) {
            return Ok(k.clone());
        }
        let metric: Arc<str> = Arc::from(format!("{}.{field}", self.measurement));
        let key =
            SeriesKey::from_parts(ns.clone(), self.device.clone(), metric, self.labels.clone());
        key.validate().map_err(|e| LineErr(e.to_string()))?;
        let key = Arc::new(key);
        self.fields.push((Box::from(field), key.clone()));
        Ok(key)
    }
}

/// Shares one `Arc<SeriesKey>` per series across the lines of one payload.
struct KeyCache<'a> {
    ns: Arc<str>,
    device_tags: &'a [String],
    by_series: HashMap<String, SeriesPrefix, FastState>,
}

impl<'a> KeyCache<'a> {
    fn new(opts: &'a LineProtocolOptions) -> KeyCache<'a> {
        KeyCache {
            ns: Arc::from(opts.namespace.as_str()),
            device_tags: &opts.device_tags,
            by_series: HashMap::default(),
        }
    }

    fn prefix(&mut self, series_part: &str) -> Result<&mut SeriesPrefix, LineErr> {
        if !self.by_series.contains_key(series_part) {
            let mut parts = split_unescaped(series_part, b',', false);
            let measurement = unescape(parts.next().unwrap_or(""), b", ");
            if measurement.is_empty() {
                return err("missing measurement");
            }
            // The device tag found so far: its rank in `device_tags`, its value.
            let mut device: Option<(usize, String)> = None;
            let mut labels = Vec::new();
            for t in parts {
                let mut kv = split_unescaped(t, b'=', false);
                let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
                    return err(format!("tag {t:?} is not key=value"));
                };
                let k = unescape(k, b",= ");
                let v = unescape(v, b",= ");
                if k.is_empty() || v.is_empty() {
                    return err(format!("tag {t:?} has an empty key or value"));
                }
                let rank = self.device_tags.iter().position(|d| *d == k);
                match (rank, &device) {
                    (Some(r), Some((best, _))) if r >= *best => {
                        labels.push((Arc::from(k.as_str()), Arc::from(v.as_str())));
                    }
                    (Some(r), _) => {
                        // A better device tag: the one it replaces is a label.
                        if let Some((old, value)) = device.replace((r, v)) {
                            let key = self.device_tags[old].as_str();
                            labels.push((Arc::from(key), Arc::from(value.as_str())));
                        }
                    }
                    (None, _) => labels.push((Arc::from(k.as_str()), Arc::from(v.as_str()))),
                }
            }
            let device = device.map_or_else(|| measurement.clone(), |(_, v)| v);
            self.by_series.insert(
                series_part.to_string(),
                SeriesPrefix {
                    measurement: Arc::from(measurement.as_str()),
                    device: Arc::from(device.as_str()),
                    labels,
                    fields: Vec::new(),
                },
            );
        }
        self.by_series
            .get_mut(series_part)
            .ok_or_else(|| LineErr("internal: series cache miss".into()))
    }
}

fn parse_line(
    line: &str,
    opts: &LineProtocolOptions,
    default_ts_ms: i64,
    limits: &ParseLimits,
    cache: &mut KeyCache<'_>,
    out: &mut Vec<WritePoint>,
) -> Result<(), LineErr> {
    let mut sections = split_unescaped(line, b' ', true).filter(|s| !s.is_empty());
    let (series_part, fields_part, ts_part) =
        match (sections.next(), sections.next(), sections.next()) {
            (Some(s), Some(f), t) => (s, f, t),
            _ => return err("missing fields"),
        };
    if sections.next().is_some() {
        return err("unexpected text after the timestamp");
    }
    let ts = match ts_part {
        None => default_ts_ms,
        Some(t) => {
            let ts = to_ms(t, opts.precision)?;
            limits.check_ts(ts).map_err(LineErr)?;
            ts
        }
    };
    let start = out.len();
    let ns = cache.ns.clone();
    let prefix = cache.prefix(series_part)?;
    for f in split_unescaped(fields_part, b',', true) {
        let eq =
            find_unescaped(f, b'=').ok_or_else(|| LineErr(format!("field {f:?} has no '='")))?;
        let raw_key = &f[..eq];
        let value = parse_value(&f[eq + 1..])?;
        let series = if raw_key.contains('\\') {
            let key = unescape(raw_key, b",= ");
            prefix.key(&ns, &key)?
        } else {
            if raw_key.is_empty() {
                return err(format!("field {f:?} has an empty name"));
            }
            prefix.key(&ns, raw_key)?
        };
        out.push(WritePoint { series, ts, value });
    }
    if out.len() == start {
        return err("missing fields");
    }
    Ok(())
}

/// Converts a timestamp in `p` units to milliseconds (rounding toward
/// negative infinity); no arithmetic here can overflow.
fn to_ms(t: &str, p: Precision) -> Result<i64, LineErr> {
    let v: i64 = t
        .parse()
        .map_err(|_| LineErr(format!("invalid timestamp {t:?}")))?;
    let out_of_range = || LineErr(format!("timestamp {t:?} out of range"));
    let ms = match p {
        Precision::Nanoseconds => v.div_euclid(1_000_000),
        Precision::Microseconds => v.div_euclid(1_000),
        Precision::Milliseconds => v,
        Precision::Seconds => v.checked_mul(1_000).ok_or_else(out_of_range)?,
        Precision::Minutes => v.checked_mul(60_000).ok_or_else(out_of_range)?,
        Precision::Hours => v.checked_mul(3_600_000).ok_or_else(out_of_range)?,
    };
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms) {
        return Err(out_of_range());
    }
    Ok(ms)
}

fn parse_value(v: &str) -> Result<Value, LineErr> {
    if v.is_empty() {
        return err("empty field value");
    }
    if let Some(rest) = v.strip_prefix('"') {
        let Some(body) = rest.strip_suffix('"') else {
            return err(format!("unterminated string {v:?}"));
        };
        if body.ends_with('\\') && !body.ends_with("\\\\") {
            return err(format!("unterminated string {v:?}"));
        }
        return Ok(Value::Str(Arc::from(unescape(body, b"\"\\").as_str())));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Some(n) = v.strip_suffix('i') {
        return n
            .parse::<i64>()
            .map(Value::I64)
            .map_err(|_| LineErr(format!("invalid integer {v:?}")));
    }
    if let Some(n) = v.strip_suffix('u') {
        let u: u64 = n
            .parse()
            .map_err(|_| LineErr(format!("invalid unsigned integer {v:?}")))?;
        return i64::try_from(u).map(Value::I64).map_err(|_| {
            LineErr(format!(
                "unsigned integer {v:?} exceeds the stored integer range"
            ))
        });
    }
    let ok_chars = v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match v.parse::<f64>() {
        Ok(x) if ok_chars && x.is_finite() => Ok(Value::F64(x)),
        _ => err(format!("invalid field value {v:?}")),
    }
}

/// Splits on `sep` where it is not escaped by a backslash and, if `quotes`,
/// not inside a double-quoted string.
fn split_unescaped(s: &str, sep: u8, quotes: bool) -> Split<'_> {
    Split {
        s,
        pos: 0,
        sep,
        quotes,
        done: false,
    }
}

struct Split<'a> {
    s: &'a str,
    pos: usize,
    sep: u8,
    quotes: bool,
    done: bool,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let (mut i, mut in_q) = (start, false);
        while i < b.len() {
            let c = b[i];
            if c == b'\\' {
                i += 2;
                continue;
            }
            if self.quotes && c == b'"' {
                in_q = !in_q;
            } else if c == self.sep && !in_q {
                self.pos = i + 1;
                return Some(&self.s[start..i]);
            }
            i += 1;
        }
        self.done = true;
        Some(&self.s[start.min(self.s.len())..])
    }
}

fn find_unescaped(s: &str, c: u8) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == c {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Removes the backslash before any character in `escapable`.
fn unescape(s: &str, escapable: &[u8]) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n.is_ascii() && escapable.contains(&(n as u8)) {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_device_is_the_first_device_tag_present_then_the_measurement() {
        let opts = LineProtocolOptions::default();
        let parse = |l: &str| {
            let p = parse_line_protocol(l, &opts, 0).unwrap();
            (
                p[0].series.device().to_string(),
                p[0].series.labels().to_vec(),
            )
        };
        // Telegraf's `host`.
        let (d, labels) = parse("cpu,host=gw-1,cpu=cpu0 usage=1 1");
        assert_eq!(d, "gw-1");
        assert_eq!(labels, vec![(Arc::from("cpu"), Arc::from("cpu0"))]);
        // `device` wins over `host`, in either order; `host` stays a label.
        for l in [
            "cpu,host=gw-1,device=m7 usage=1 1",
            "cpu,device=m7,host=gw-1 usage=1 1",
        ] {
            let (d, labels) = parse(l);
            assert_eq!(d, "m7", "{l}");
            assert_eq!(labels, vec![(Arc::from("host"), Arc::from("gw-1"))], "{l}");
        }
        // Neither: the measurement.
        assert_eq!(parse("cpu,zone=a usage=1 1").0, "cpu");
    }

    use super::*;

    fn parse(s: &str) -> Result<Vec<WritePoint>, Error> {
        parse_line_protocol(s, &LineProtocolOptions::default(), 42)
    }

    #[test]
    fn basic_line_maps_device_metric_labels() {
        let pts = parse("weather,device=s1,site=north temp=21.5,ok=t,n=3i,u=7u,msg=\"hi\" 1700000000123456789\n").unwrap();
        assert_eq!(pts.len(), 5);
        let k = &pts[0].series;
        assert_eq!(
            (k.namespace(), k.device(), k.metric()),
            ("default", "s1", "weather.temp")
        );
        assert_eq!(k.label("site"), Some("north"));
        assert_eq!(k.label("device"), None);
        assert_eq!(pts[0].ts, 1_700_000_000_123);
        assert_eq!(pts[0].value, Value::F64(21.5));
        assert_eq!(pts[1].value, Value::Bool(true));
        assert_eq!(pts[2].value, Value::I64(3));
        assert_eq!(pts[3].value, Value::I64(7));
        assert_eq!(pts[4].value, Value::Str(Arc::from("hi")));
    }

    #[test]
    fn keys_are_shared_within_a_payload() {
        let pts = parse("m,device=a f=1 1\nm,device=a f=2 2\nm,device=b f=3 3").unwrap();
        assert!(Arc::ptr_eq(&pts[0].series, &pts[1].series));
        assert!(!Arc::ptr_eq(&pts[0].series, &pts[2].series));
    }

    #[test]
    fn device_falls_back_to_measurement_and_default_time() {
        let pts = parse("cpu usage=0.5").unwrap();
        assert_eq!(pts[0].series.device(), "cpu");
        assert_eq!(pts[0].series.metric(), "cpu.usage");
        assert_eq!(pts[0].ts, 42);
    }

    #[test]
    fn escapes() {
        let pts = parse(r#"my\ meas,device=d\,1,t\=k=v\ v f\ 1="a \"q\" \\ b" 5000000"#).unwrap();
        let k = &pts[0].series;
        assert_eq!(k.device(), "d,1");
        assert_eq!(k.metric(), "my meas.f 1");
        assert_eq!(k.label("t=k"), Some("v v"));
        assert_eq!(pts[0].value, Value::Str(Arc::from(r#"a "q" \ b"#)));
        assert_eq!(pts[0].ts, 5);
        let pts = parse(r#"m,device=d s="a,b c=d" 1"#).unwrap();
        assert_eq!(pts[0].value, Value::Str(Arc::from("a,b c=d")));
    }

    #[test]
    fn precisions() {
        let mut o = LineProtocolOptions::default();
        for (p, raw, ms) in [
            (Precision::Seconds, "3", 3000),
            (Precision::Milliseconds, "3", 3),
            (Precision::Microseconds, "3999", 3),
            (Precision::Nanoseconds, "-1", -1),
        ] {
            o.precision = p;
            let pts = parse_line_protocol(&format!("m f=1 {raw}"), &o, 0).unwrap();
            assert_eq!(pts[0].ts, ms);
        }
    }

    #[test]
    fn comments_blank_lines_crlf() {
        let pts = parse("# hello\r\n\r\nm f=1 1000000\r\n  \nm f=2 2000000\r\n").unwrap();
        assert_eq!(pts.len(), 2);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let cases = [
            ("m f=1\nm\n", 2, "missing fields"),
            ("m f=1\n\nm f=abc", 3, "invalid field value"),
            ("m f=1 notatime", 1, "invalid timestamp"),
            ("m f=\"open", 1, "unterminated string"),
            ("m f=1.5i", 1, "invalid integer"),
            ("m f=18446744073709551615u", 1, "exceeds"),
            ("m,tag f=1", 1, "not key=value"),
            ("m f=1 1 extra", 1, "after the timestamp"),
            (",t=v f=1", 1, "missing measurement"),
            ("m =1", 1, "empty name"),
            ("m f=NaN", 1, "invalid field value"),
            ("m f=inf", 1, "invalid field value"),
            ("m f", 1, "no '='"),
            ("m f=1 99999999999999999999", 1, "invalid timestamp"),
        ];
        for (input, line, reason) in cases {
            match parse(input) {
                Err(Error::LineProtocol { line: l, reason: r }) => {
                    assert_eq!(l, line, "{input:?}: {r}");
                    assert!(r.contains(reason), "{input:?}: {r}");
                }
                other => panic!("{input:?}: expected an error, got {other:?}"),
            }
        }
        let o = LineProtocolOptions {
            precision: Precision::Seconds,
            ..LineProtocolOptions::default()
        };
        assert!(parse_line_protocol("m f=1 9223372036854775807", &o, 0).is_err());
    }

    #[test]
    fn minutes_and_hours() {
        for (p, raw, ms) in [
            (Precision::Minutes, "2", 120_000),
            (Precision::Hours, "-1", -3_600_000),
        ] {
            let o = LineProtocolOptions {
                precision: p,
                ..LineProtocolOptions::default()
            };
            assert_eq!(
                parse_line_protocol(&format!("m f=1 {raw}"), &o, 0).unwrap()[0].ts,
                ms
            );
            let huge = format!("m f=1 {}", i64::MAX / 1000);
            assert!(parse_line_protocol(&huge, &o, 0).is_err());
        }
    }

    #[test]
    fn window_refuses_implausible_timestamps_naming_the_line() {
        let now = 1_700_000_000_000i64;
        let limits = ParseLimits::at(now);
        let o = LineProtocolOptions {
            precision: Precision::Milliseconds,
            ..LineProtocolOptions::default()
        };
        let ok = format!("m f=1 {now}\nm f=2\nm f=3 {}", now + crate::DAY_MS);
        let pts = parse_line_protocol_with(&ok, &o, now, &limits).unwrap();
        assert_eq!(pts.len(), 3);
        for bad in [0, now + crate::DAY_MS + 1, crate::parse::YEAR_2000_MS - 1] {
            let text = format!("m f=1 {now}\n\nm f=2 {bad}");
            match parse_line_protocol_with(&text, &o, now, &limits) {
                Err(Error::LineProtocol { line: 3, reason }) => {
                    assert!(reason.contains("outside the accepted window"), "{reason}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        // The default nanosecond precision: 1970 is refused.
        let o = LineProtocolOptions::default();
        assert!(parse_line_protocol_with("m f=1 5", &o, now, &limits).is_err());
        assert!(parse_line_protocol("m f=1 5", &o, now).is_ok());
    }
}
