//! The set of open chunk files, published as an immutable snapshot that
//! queries clone (an `Arc`) and maintenance replaces whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::SeriesId;
use crate::chunk::{Chunk, ChunkKind, ChunkSeries};
use crate::column::Column;
use crate::error::Error;
use crate::query::Stats;
use crate::summary::{RollupFields, Summary};

#[derive(Default, Clone)]
pub(crate) struct ChunkSet {
    /// kind -> namespace -> chunks ordered by file id (oldest first).
    groups: BTreeMap<ChunkKind, BTreeMap<Arc<str>, Vec<Arc<Chunk>>>>,
}

impl ChunkSet {
    /// A new set with `added` and without the files in `removed`.
    pub(crate) fn with_changes(&self, added: Vec<Arc<Chunk>>, removed: &HashSet<u64>) -> ChunkSet {
        let mut groups = self.groups.clone();
        for c in added {
            groups
                .entry(c.meta.kind)
                .or_default()
                .entry(c.meta.namespace.clone())
                .or_default()
                .push(c);
        }
        for by_ns in groups.values_mut() {
            for v in by_ns.values_mut() {
                v.retain(|c| !removed.contains(&c.meta.file_id));
                v.sort_by_key(|c| c.meta.file_id);
            }
            by_ns.retain(|_, v| !v.is_empty());
        }
        groups.retain(|_, m| !m.is_empty());
        ChunkSet { groups }
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Chunk>> {
        self.groups.values().flat_map(|m| m.values()).flatten()
    }

    pub(crate) fn group(&self, kind: ChunkKind, ns: &str) -> &[Arc<Chunk>] {
        self.groups
            .get(&kind)
            .and_then(|m| m.get(ns))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }

    /// Partition starts that have at least one chunk of `kind` in `ns`,
    /// ascending. For a rollup kind: the partitions whose rollups are
    /// materialized (stored as chunk files).
    pub(crate) fn partitions(&self, kind: ChunkKind, ns: &str) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .group(kind, ns)
            .iter()
            .map(|c| c.meta.partition_start)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Chunk entries of `sid` overlapping `[lo, hi)`, oldest file first.
    pub(crate) fn entries(
        &self,
        kind: ChunkKind,
        ns: &str,
        sid: SeriesId,
        lo: i64,
        hi: i64,
    ) -> Vec<(&Arc<Chunk>, &ChunkSeries)> {
        let mut out = Vec::new();
        for c in self.group(kind, ns) {
            let p_end = c.meta.partition_start.saturating_add(c.meta.partition_ms);
            if p_end <= lo || c.meta.partition_start >= hi {
                continue;
            }
            if let Some(s) = c.find(sid) {
                if s.max_ts >= lo && s.min_ts < hi {
                    out.push((c, s));
                }
            }
        }
        out
    }

    /// Raw runs of `sid` within `[lo, hi)`, oldest file first, each sorted.
    pub(crate) fn read_raw(
        &self,
        ns: &str,
        sid: SeriesId,
        lo: i64,
        hi: i64,
        stats: &Stats,
    ) -> Result<Vec<(Vec<i64>, Column)>, Error> {
        let mut runs = Vec::new();
        for (c, s) in self.entries(ChunkKind::Raw, ns, sid, lo, hi) {
            stats.chunk_series_decoded.fetch_add(1, Ordering::Relaxed);
            let (ts, col) = c.read_raw(s)?;
            runs.push(clip(ts, col, lo, hi));
        }
        Ok(runs)
    }

    /// Rollup buckets of `sid` with `lo <= start < hi`; a newer file's bucket
    /// replaces an older one's.
    pub(crate) fn read_rollup(
        &self,
        bucket_ms: i64,
        ns: &str,
        sid: SeriesId,
        lo: i64,
        hi: i64,
        stats: &Stats,
    ) -> Result<BTreeMap<i64, Summary>, Error> {
        let mut out = BTreeMap::new();
        for (c, s) in self.entries(ChunkKind::Rollup(bucket_ms), ns, sid, lo, hi) {
            stats.rollup_series_read.fetch_add(1, Ordering::Relaxed);
            let rc = c.read_rollup(s)?;
            for (b, sum) in rc.buckets.into_iter().zip(rc.sums) {
                if b >= lo && b < hi {
                    out.insert(b, sum);
                }
            }
        }
        Ok(out)
    }
}

impl ChunkSet {
    /// Like `read_rollup`, as a vector ascending by bucket start, without
    /// building a map when one file holds the buckets.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_rollup_sorted(
        &self,
        bucket_ms: i64,
        ns: &str,
        sid: SeriesId,
        lo: i64,
        hi: i64,
        fields: RollupFields,
        stats: &Stats,
    ) -> Result<Vec<(i64, Summary)>, Error> {
        let entries = self.entries(ChunkKind::Rollup(bucket_ms), ns, sid, lo, hi);
        if entries.len() > 1 {
            return Ok(self
                .read_rollup(bucket_ms, ns, sid, lo, hi, stats)?
                .into_iter()
                .collect());
        }
        let mut out = Vec::new();
        for (c, s) in entries {
            stats.rollup_series_read.fetch_add(1, Ordering::Relaxed);
            let rc = c.read_rollup_fields(s, fields)?;
            out.reserve(rc.buckets.len());
            for (b, sum) in rc.buckets.into_iter().zip(rc.sums) {
                if b >= lo && b < hi {
                    out.push((b, sum));
                }
            }
        }
        Ok(out)
    }
}

/// Keeps the part of a sorted run inside `[lo, hi)`.
pub(crate) fn clip(ts: Vec<i64>, col: Column, lo: i64, hi: i64) -> (Vec<i64>, Column) {
    let a = ts.partition_point(|&t| t < lo);
    let b = ts.partition_point(|&t| t < hi);
    if a == 0 && b == ts.len() {
        return (ts, col);
    }
    let keep: Vec<usize> = (a..b).collect();
    (ts[a..b].to_vec(), col.select(&keep))
}
