//! What evaluation reads: series selected by label matchers and their
//! numeric points. [`TsdbStorage`] implements it over [`tsdb::Tsdb`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tsdb::{SeriesKey, Tsdb};

use crate::ast::Matcher;
use crate::error::Error;

/// A series' labels in PromQL terms, `__name__` included, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One numeric point: milliseconds since the Unix epoch and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// The value.
    pub value: f64,
}

/// Read access to series and their points.
pub trait Storage {
    /// A handle on one series, given back to [`Storage::points`].
    type Series;

    /// Every series whose labels match all matchers (a missing label
    /// matches as `""`), with its labels.
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<(Labels, Self::Series)>, Error>;

    /// The numeric points of a series with `start <= ts <= end`, ascending
    /// by timestamp. Non-numeric points are left out.
    fn points(&self, series: &Self::Series, start: i64, end: i64) -> Result<Vec<Sample>, Error>;

    /// The points of several series, in their order; by default one
    /// [`Storage::points`] each. A store that reads many series at once
    /// more cheaply overrides it.
    fn points_many(
        &self,
        series: &[Self::Series],
        start: i64,
        end: i64,
    ) -> Result<Vec<Vec<Sample>>, Error> {
        series.iter().map(|s| self.points(s, start, end)).collect()
    }
}

/// The namespace PromQL queries read.
pub const NAMESPACE: &str = "default";

/// The PromQL name of a telemetry metric: every character outside
/// `[a-zA-Z0-9_:]` becomes `_` (`readings.velocity` → `readings_velocity`).
pub fn metric_name(metric: &str) -> String {
    metric
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The PromQL name of a telemetry label: every character outside
/// `[a-zA-Z0-9_]` becomes `_`; `device` and `__name__` become
/// `exported_device` and `exported___name__`, as Prometheus renames scraped
/// labels that clash with the ones it sets.
pub fn label_name(key: &str) -> String {
    let s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s == "device" || s == "__name__" {
        format!("exported_{s}")
    } else {
        s
    }
}

/// The PromQL labels of a telemetry series: `__name__`, `device` and its
/// labels (see [`label_name`]).
pub fn series_labels(key: &SeriesKey) -> Labels {
    let mut l = Labels::new();
    for (k, v) in key.labels() {
        l.insert(label_name(k), v.to_string());
    }
    l.insert("__name__".into(), metric_name(key.metric()));
    l.insert("device".into(), key.device().to_string());
    l
}

/// Whether labels satisfy every matcher.
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).map(String::as_str).unwrap_or("")))
}

/// [`Storage`] over the telemetry store, namespace [`NAMESPACE`].
pub struct TsdbStorage<'a> {
    db: &'a Tsdb,
}

impl<'a> TsdbStorage<'a> {
    /// Reads `db`.
    pub fn new(db: &'a Tsdb) -> TsdbStorage<'a> {
        TsdbStorage { db }
    }
}

impl Storage for TsdbStorage<'_> {
    type Series = SeriesKey;

    fn select(&self, matchers: &[Matcher]) -> Result<Vec<(Labels, SeriesKey)>, Error> {
        // An exact device narrows the listing to that device's series.
        let device = matchers
            .iter()
            .find(|m| m.name == "device" && m.op == crate::ast::MatchOp::Equal)
            .map(|m| m.value.as_str());
        Ok(self
            .db
            .list_series(NAMESPACE, device)
            .into_iter()
            .filter_map(|k| {
                let l = series_labels(&k);
                matches_all(&l, matchers).then_some((l, k))
            })
            .collect())
    }

    fn points(&self, key: &SeriesKey, start: i64, end: i64) -> Result<Vec<Sample>, Error> {
        let mut all = self.points_many(std::slice::from_ref(key), start, end)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// One read per metric name (its devices together), not one per series.
    fn points_many(
        &self,
        keys: &[SeriesKey],
        start: i64,
        end: i64,
    ) -> Result<Vec<Vec<Sample>>, Error> {
        let start = start.max(tsdb::MIN_TIMESTAMP_MS);
        let end = end.min(tsdb::MAX_TIMESTAMP_MS);
        let mut found: HashMap<&SeriesKey, Vec<Sample>> = HashMap::new();
        if start <= end {
            let mut by_metric: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
            for k in keys {
                by_metric
                    .entry((k.namespace(), k.metric()))
                    .or_default()
                    .insert(k.device());
            }
            let wanted: HashSet<&SeriesKey> = keys.iter().collect();
            for ((ns, metric), devices) in by_metric {
                let mut sel = tsdb::Selector::namespace(ns).metric(metric);
                for d in devices {
                    sel = sel.device(d);
                }
                // Other label sets of the same device and metric are read
                // too and dropped here.
                for s in self.db.query_raw(&sel, start, end + 1, usize::MAX)? {
                    let Some(&key) = wanted.get(&s.series) else {
                        continue;
                    };
                    let samples = s
                        .points
                        .into_iter()
                        .filter_map(|p| p.value.as_f64().map(|value| Sample { ts: p.ts, value }))
                        .collect();
                    found.insert(key, samples);
                }
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.remove(k).unwrap_or_default())
            .collect())
    }
}
