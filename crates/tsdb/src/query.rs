//! Queries: selectors, raw points, latest values, series listing. Time
//! ranges are half-open, `[start, end)`, in milliseconds.
//!
//! A query takes a consistent snapshot (points still in memory and the
//! current chunk set) under a short read lock and then works without locks.

mod agg;

pub use agg::{AggPoint, AggSeries, GroupBy, GroupKey};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::catalog::{IdMap, SeriesId};
use crate::chunkset::{clip, ChunkSet};
use crate::column::Column;
use crate::db::{read, Tsdb};
use crate::error::Error;
use crate::head::merge_newest_wins;
use crate::model::{Point, SeriesKey, ValueType};

/// Which devices or metrics a query covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    /// Every one.
    #[default]
    All,
    /// Only those listed.
    Only(Vec<String>),
}

impl Filter {
    fn matches(&self, s: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(v) => v.iter().any(|x| x == s),
        }
    }
}

/// Selects series in one namespace by device, metric and labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// The namespace.
    pub namespace: String,
    /// Devices to include.
    pub devices: Filter,
    /// Metrics to include.
    pub metrics: Filter,
    /// Labels every selected series must carry with these values.
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Every series of a namespace.
    pub fn namespace(ns: &str) -> Selector {
        Selector {
            namespace: ns.to_string(),
            ..Selector::default()
        }
    }

    /// Exactly one series (of any labels) of one device.
    pub fn series(ns: &str, device: &str, metric: &str) -> Selector {
        Selector::namespace(ns).device(device).metric(metric)
    }

    /// Adds a device to the device list.
    pub fn device(mut self, device: &str) -> Selector {
        match &mut self.devices {
            Filter::All => self.devices = Filter::Only(vec![device.to_string()]),
            Filter::Only(v) => v.push(device.to_string()),
        }
        self
    }

    /// Adds a metric to the metric list.
    pub fn metric(mut self, metric: &str) -> Selector {
        match &mut self.metrics {
            Filter::All => self.metrics = Filter::Only(vec![metric.to_string()]),
            Filter::Only(v) => v.push(metric.to_string()),
        }
        self
    }

    /// Requires a label value.
    pub fn label(mut self, key: &str, value: &str) -> Selector {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    pub(crate) fn devices_list(&self) -> Option<&[String]> {
        match &self.devices {
            Filter::All => None,
            Filter::Only(v) => Some(v),
        }
    }

    pub(crate) fn matches_metric(&self, m: &str) -> bool {
        self.metrics.matches(m)
    }

    pub(crate) fn matches_labels(&self, k: &SeriesKey) -> bool {
        self.labels
            .iter()
            .all(|(lk, lv)| k.label(lk) == Some(lv.as_str()))
    }
}

/// The points of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesPoints {
    /// The series.
    pub series: SeriesKey,
    /// Points ascending by timestamp.
    pub points: Vec<Point>,
}

/// Counters of work done by queries and flushes since open, to check that
/// summaries and rollups are used.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) chunk_series_decoded: AtomicU64,
    pub(crate) chunk_summaries_used: AtomicU64,
    pub(crate) rollup_series_read: AtomicU64,
    pub(crate) batches_refused: AtomicU64,
    pub(crate) type_conflicts: AtomicU64,
    pub(crate) series_refused: AtomicU64,
}

/// Counters of refused writes since open (see [`Tsdb::write_batches`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Batches refused for any reason (type conflict, series cap, invalid
    /// point); each is a `WriteError` verdict or an `Err` from `write`.
    pub batches_refused: u64,
    /// Of those, batches refused for a type conflict.
    pub type_conflicts: u64,
    /// New series turned away by `Options::max_series_per_device`: every
    /// new series of the device in each batch refused for the cap.
    pub series_refused: u64,
}

/// A snapshot of the work counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Raw series columns decoded from chunk files.
    pub chunk_series_decoded: u64,
    /// Raw chunk series answered from their index summary alone.
    pub chunk_summaries_used: u64,
    /// Rollup series columns decoded.
    pub rollup_series_read: u64,
}

/// Sizes of what is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Known series.
    pub series: usize,
    /// Raw chunk files and their bytes.
    pub raw_chunks: usize,
    /// Bytes of raw chunk files.
    pub raw_chunk_bytes: u64,
    /// Points in raw chunk files (before de-duplication across files).
    pub raw_chunk_points: u64,
    /// Rollup chunk files.
    pub rollup_chunks: usize,
    /// Bytes of rollup chunk files.
    pub rollup_chunk_bytes: u64,
    /// Bytes of WAL segment files.
    pub wal_bytes: u64,
    /// Points in memory (head and blocks being flushed).
    pub head_points: usize,
    /// Approximate heap bytes of the head.
    pub head_bytes: usize,
}

/// Selected series with their data still in memory, and the chunk set.
pub(crate) struct Snapshot {
    pub(crate) chunks: Arc<ChunkSet>,
    pub(crate) series: Vec<(SeriesId, Arc<SeriesKey>, ValueType)>,
    /// Per series: in-memory points within the range, merged (sorted, newest wins).
    pub(crate) unflushed: IdMap<(Vec<i64>, Column)>,
}

impl Tsdb {
    pub(crate) fn snapshot(&self, sel: &Selector, lo: i64, hi: i64) -> Snapshot {
        let series: Vec<(SeriesId, Arc<SeriesKey>, ValueType)> = {
            let cat = read(&self.catalog);
            cat.select(sel)
                .into_iter()
                .filter_map(|id| cat.entry(id).map(|e| (id, e.key.clone(), e.vtype)))
                .collect()
        };
        let mut raw: IdMap<Vec<(Vec<i64>, Column)>> = IdMap::default();
        let chunks = {
            let mem = read(&self.mem);
            for (sid, _, _) in &series {
                for h in mem.frozen.iter().map(|h| h.as_ref()).chain([&mem.head]) {
                    if let Some(run) = h.copy_range(*sid, lo, hi) {
                        raw.entry(*sid).or_default().push(run);
                    }
                }
            }
            read(&self.chunks).clone()
        };
        let mut unflushed = IdMap::default();
        for (sid, _, vtype) in &series {
            if let Some(runs) = raw.remove(sid) {
                unflushed.insert(*sid, merge_newest_wins(*vtype, runs));
            }
        }
        Snapshot {
            chunks,
            series,
            unflushed,
        }
    }

    /// Raw points of every selected series within `[start, end)`, at most
    /// `limit` per series (the earliest ones). Series without points in the
    /// range are left out. Points past retention are never returned.
    pub fn query_raw(
        &self,
        sel: &Selector,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<SeriesPoints>, Error> {
        if start >= end || limit == 0 {
            return Ok(Vec::new());
        }
        let lo = start.max(read(&self.horizons).raw(&sel.namespace));
        let snap = self.snapshot(sel, lo, end);
        let mut out = Vec::new();
        for (sid, key, vtype) in &snap.series {
            let mut runs = snap
                .chunks
                .read_raw(&sel.namespace, *sid, lo, end, &self.stats)?;
            if let Some(u) = snap.unflushed.get(sid) {
                runs.push(u.clone());
            }
            let (ts, col) = merge_newest_wins(*vtype, runs);
            let (ts, col) = clip(ts, col, lo, end);
            if ts.is_empty() {
                continue;
            }
            let points = ts
                .iter()
                .take(limit)
                .enumerate()
                .map(|(i, &t)| Point {
                    ts: t,
                    value: col.get(i),
                })
                .collect();
            out.push(SeriesPoints {
                series: (**key).clone(),
                points,
            });
        }
        Ok(out)
    }

    /// The latest point (largest timestamp; newest write on a tie) of every
    /// matching series in a namespace, sorted by series. Served from memory.
    pub fn latest(
        &self,
        namespace: &str,
        devices: &Filter,
        metrics: &Filter,
    ) -> Vec<(SeriesKey, Point)> {
        let sel = Selector {
            namespace: namespace.to_string(),
            devices: devices.clone(),
            metrics: metrics.clone(),
            labels: Vec::new(),
        };
        let horizon = read(&self.horizons).raw(namespace);
        let ids: Vec<(SeriesId, Arc<SeriesKey>)> = {
            let cat = read(&self.catalog);
            cat.select(&sel)
                .into_iter()
                .filter_map(|id| cat.entry(id).map(|e| (id, e.key.clone())))
                .collect()
        };
        let mem = read(&self.mem);
        ids.into_iter()
            .filter_map(|(id, key)| {
                let (ts, v) = mem.latest.get(&id)?;
                (*ts >= horizon).then(|| {
                    (
                        (*key).clone(),
                        Point {
                            ts: *ts,
                            value: v.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// Every known series of a namespace, or of one device, sorted.
    pub fn list_series(&self, namespace: &str, device: Option<&str>) -> Vec<SeriesKey> {
        let mut sel = Selector::namespace(namespace);
        if let Some(d) = device {
            sel = sel.device(d);
        }
        let cat = read(&self.catalog);
        cat.select(&sel)
            .into_iter()
            .filter_map(|id| cat.entry(id).map(|e| (*e.key).clone()))
            .collect()
    }

    /// Work counters since open.
    pub fn query_stats(&self) -> QueryStats {
        QueryStats {
            chunk_series_decoded: self.stats.chunk_series_decoded.load(Ordering::Relaxed),
            chunk_summaries_used: self.stats.chunk_summaries_used.load(Ordering::Relaxed),
            rollup_series_read: self.stats.rollup_series_read.load(Ordering::Relaxed),
        }
    }

    /// Sizes of what is stored now.
    pub fn storage_stats(&self) -> StorageStats {
        let mut s = StorageStats {
            series: read(&self.catalog).len(),
            ..StorageStats::default()
        };
        for c in read(&self.chunks).all() {
            match c.meta.kind {
                crate::chunk::ChunkKind::Raw => {
                    s.raw_chunks += 1;
                    s.raw_chunk_bytes += c.file_bytes;
                    s.raw_chunk_points += c.series.iter().map(|x| x.count).sum::<u64>();
                }
                crate::chunk::ChunkKind::Rollup(_) => {
                    s.rollup_chunks += 1;
                    s.rollup_chunk_bytes += c.file_bytes;
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.dir.join("wal")) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    s.wal_bytes += m.len();
                }
            }
        }
        let mem = read(&self.mem);
        s.head_points = mem.head.points() + mem.frozen.iter().map(|h| h.points()).sum::<usize>();
        s.head_bytes = mem.head.heap_bytes();
        s
    }
}
