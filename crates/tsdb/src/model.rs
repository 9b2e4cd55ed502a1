//! The data model: series keys, values, points.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use crate::catalog::FastState;
use crate::error::Error;

/// Longest namespace, device id, metric name, label key or label value, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Most labels on one series.
pub const MAX_LABELS: usize = 64;
/// Earliest timestamp the engine stores: -2^53 ms, about 285,000 years
/// before 1970. With timestamps within ±2^53 no arithmetic of the engine
/// (deltas, spans, partition and bucket starts, retention horizons) can
/// overflow, and every timestamp is exact as a JSON number. The ingest
/// parsers apply a much narrower window.
pub const MIN_TIMESTAMP_MS: i64 = -(1 << 53);
/// Latest timestamp the engine stores: 2^53 ms; see [`MIN_TIMESTAMP_MS`].
pub const MAX_TIMESTAMP_MS: i64 = 1 << 53;

/// Identifies one series: namespace, device id, metric name and sorted labels.
///
/// Labels are kept sorted by key with unique keys, so two keys built from the
/// same labels in any order are equal. Keys order by namespace, device,
/// metric, then labels.
#[derive(Clone)]
pub struct SeriesKey {
    namespace: Arc<str>,
    device: Arc<str>,
    metric: Arc<str>,
    labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// Hash of the fields above, computed once: keys are hashed on every write.
    hash: u64,
}

/// The fields of a key that define it, for equality, order and hashing.
type KeyParts<'a> = (&'a str, &'a str, &'a str, &'a [(Arc<str>, Arc<str>)]);

impl SeriesKey {
    fn parts(&self) -> KeyParts<'_> {
        (&self.namespace, &self.device, &self.metric, &self.labels)
    }

    fn with_hash(mut self) -> SeriesKey {
        self.hash = FastState::default().hash_one(self.parts());
        self
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, o: &SeriesKey) -> bool {
        self.hash == o.hash && self.parts() == o.parts()
    }
}

impl Eq for SeriesKey {}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, o: &SeriesKey) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, o: &SeriesKey) -> Ordering {
        self.parts().cmp(&o.parts())
    }
}

impl SeriesKey {
    /// A key without labels.
    pub fn new(namespace: &str, device: &str, metric: &str) -> SeriesKey {
        SeriesKey {
            namespace: Arc::from(namespace),
            device: Arc::from(device),
            metric: Arc::from(metric),
            labels: Arc::from(Vec::new()),
            hash: 0,
        }
        .with_hash()
    }

    /// A key from shared strings, for callers that intern names.
    pub fn from_parts(
        namespace: Arc<str>,
        device: Arc<str>,
        metric: Arc<str>,
        labels: Vec<(Arc<str>, Arc<str>)>,
    ) -> SeriesKey {
        SeriesKey {
            namespace,
            device,
            metric,
            labels: sort_labels(labels),
            hash: 0,
        }
        .with_hash()
    }

    /// The same key with these labels (sorted; on a repeated key the last wins).
    pub fn with_labels<K: AsRef<str>, V: AsRef<str>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> SeriesKey {
        let v = labels
            .into_iter()
            .map(|(k, v)| (Arc::from(k.as_ref()), Arc::from(v.as_ref())))
            .collect();
        self.labels = sort_labels(v);
        self.with_hash()
    }

    /// The namespace (tenant).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }
    /// The metric name.
    pub fn metric(&self) -> &str {
        &self.metric
    }
    /// The labels, sorted by key.
    pub fn labels(&self) -> &[(Arc<str>, Arc<str>)] {
        &self.labels
    }
    /// The value of one label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_ref())
    }
    pub(crate) fn namespace_arc(&self) -> &Arc<str> {
        &self.namespace
    }
    pub(crate) fn device_arc(&self) -> &Arc<str> {
        &self.device
    }

    /// Checks lengths and emptiness; called before anything is logged.
    pub fn validate(&self) -> Result<(), Error> {
        check_name("namespace", &self.namespace)?;
        check_name("device id", &self.device)?;
        check_name("metric name", &self.metric)?;
        if self.labels.len() > MAX_LABELS {
            return Err(Error::InvalidSeries(format!(
                "{} labels, at most {MAX_LABELS} allowed",
                self.labels.len()
            )));
        }
        for (k, v) in self.labels.iter() {
            check_name("label key", k)?;
            if v.len() > MAX_NAME_LEN {
                return Err(Error::InvalidSeries(format!(
                    "label value longer than {MAX_NAME_LEN} bytes"
                )));
            }
        }
        Ok(())
    }
}

fn sort_labels(mut v: Vec<(Arc<str>, Arc<str>)>) -> Arc<[(Arc<str>, Arc<str>)]> {
    // Stable sort keeps input order among equal keys, so keeping the last of
    // each run implements "last wins".
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(v.len());
    for kv in v {
        match out.last_mut() {
            Some(last) if last.0 == kv.0 => *last = kv,
            _ => out.push(kv),
        }
    }
    Arc::from(out)
}

fn check_name(what: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::InvalidSeries(format!("empty {what}")));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(Error::InvalidSeries(format!(
            "{what} longer than {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(())
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.device, self.metric)?;
        for (k, v) in self.labels.iter() {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeriesKey({self})")
    }
}

/// One stored value. A series keeps the type of its first value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A 64-bit float.
    F64(f64),
    /// A signed 64-bit integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string (dictionary-encoded at rest).
    Str(Arc<str>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::F64(_) => ValueType::F64,
            Value::I64(_) => ValueType::I64,
            Value::Bool(_) => ValueType::Bool,
            Value::Str(_) => ValueType::Str,
        }
    }

    /// The value as a number for aggregation: floats as is, integers
    /// converted, booleans as 0 or 1, strings none.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F64(v) => Some(*v),
            Value::I64(v) => Some(*v as f64),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Str(_) => None,
        }
    }
}

/// The type of a series' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// 64-bit floats.
    F64,
    /// Signed 64-bit integers.
    I64,
    /// Booleans.
    Bool,
    /// Strings.
    Str,
}

impl ValueType {
    pub(crate) fn code(self) -> u8 {
        match self {
            ValueType::F64 => 0,
            ValueType::I64 => 1,
            ValueType::Bool => 2,
            ValueType::Str => 3,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<ValueType> {
        Some(match c {
            0 => ValueType::F64,
            1 => ValueType::I64,
            2 => ValueType::Bool,
            3 => ValueType::Str,
            _ => return None,
        })
    }
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::F64 => "float",
            ValueType::I64 => "integer",
            ValueType::Bool => "boolean",
            ValueType::Str => "string",
        }
    }
    /// Whether numeric aggregates (avg, min, max, sum, first, last) apply.
    pub fn is_numeric(self) -> bool {
        !matches!(self, ValueType::Str)
    }
}

/// One point to write: its series, a timestamp in milliseconds since the
/// Unix epoch, and its value.
///
/// Writing a point whose series and timestamp already exist replaces the
/// old value: the last write wins.
#[derive(Clone, Debug, PartialEq)]
pub struct WritePoint {
    /// The series.
    pub series: Arc<SeriesKey>,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// The value.
    pub value: Value,
}

/// One stored point as returned by queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// The value.
    pub value: Value,
}
