//! Rollup maintenance: turning new points into updated rollup buckets.
//!
//! A rollup bucket always summarizes every raw point of its series in its
//! time range. When new points arrive for a bucket (at flush, or at query
//! time for points still in memory):
//! - no stored bucket: the new points' summary is the bucket;
//! - all new points are later than the stored bucket's last point: the two
//!   summaries merge (no point can be a duplicate);
//! - otherwise (late or duplicate points) the bucket is recomputed from the
//!   raw data with the newest write winning on duplicate timestamps.
//!
//! Recomputing needs the raw points, so for a bucket that starts before the
//! raw retention horizon the summaries are merged instead; a late point
//! that duplicates a timestamp whose raw data already expired is then
//! counted twice. This is the one documented approximation.
//!
//! Deferred rollups (levels finer than
//! [`crate::Options::deferred_rollups_below_ms`], by default the 1-minute
//! one): a partition's rollups of one level are *materialized* when a rollup
//! chunk of that level exists for it. While the raw retention horizon has
//! not reached a partition, flushes write no rollups for it and rollup
//! queries over it read raw data. When the horizon enters the partition (a
//! flush or `enforce_retention` moved it), `Tsdb::materialize_rollups`
//! writes its rollup chunks from the raw chunks, before any raw point is
//! removed; from then on flushes keep them up to date as above. A
//! partition is therefore either materialized, or its raw chunks still hold
//! every point it ever had, and each query's chunk snapshot sees one or the
//! other whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::catalog::SeriesId;
use crate::chunk::{Chunk, ChunkBuilder, ChunkKind, ChunkMeta};
use crate::chunkset::ChunkSet;
use crate::column::Column;
use crate::db::{read, Tsdb};
use crate::error::Error;
use crate::head::merge_newest_wins;
use crate::model::{SeriesKey, ValueType};
use crate::retention::{Horizons, MaintenanceStats};
use crate::summary::Summary;

/// Reads the raw runs (oldest first) of the series within `[lo, hi)`.
pub(crate) type RawReader<'a> = dyn FnMut(i64, i64) -> Result<Vec<(Vec<i64>, Column)>, Error> + 'a;

/// Summarizes new points (sorted, unique timestamps) per bucket.
pub(crate) fn bucketize(
    bucket_ms: i64,
    ts: &[i64],
    col: &Column,
) -> BTreeMap<i64, (Summary, usize, usize)> {
    let mut out: BTreeMap<i64, (Summary, usize, usize)> = BTreeMap::new();
    for (i, &t) in ts.iter().enumerate() {
        let Some(v) = col.num(i) else { continue };
        let b = t.div_euclid(bucket_ms) * bucket_ms;
        out.entry(b)
            .and_modify(|(s, _, end)| {
                s.add(t, v);
                *end = i + 1;
            })
            .or_insert((Summary::one(t, v), i, i + 1));
    }
    out
}

/// The buckets touched by `ts`/`col` (sorted, unique, newer than anything
/// stored) after applying them to `existing`.
pub(crate) fn updated_buckets(
    bucket_ms: i64,
    ts: &[i64],
    col: &Column,
    existing: &BTreeMap<i64, Summary>,
    raw_horizon: i64,
    read_raw: &mut RawReader<'_>,
) -> Result<Vec<(i64, Summary)>, Error> {
    let mut out = Vec::new();
    for (b, (new, start, end)) in bucketize(bucket_ms, ts, col) {
        let merged = match existing.get(&b) {
            None => new,
            Some(old) if ts[start] > old.last_ts => {
                let mut s = *old;
                s.merge(&new);
                s
            }
            Some(old) if b < raw_horizon => {
                let mut s = *old;
                s.merge(&new);
                s
            }
            Some(_) => {
                let hi = b.saturating_add(bucket_ms);
                let mut runs = read_raw(b, hi)?;
                let keep: Vec<usize> = (start..end).collect();
                runs.push((ts[start..end].to_vec(), col.select(&keep)));
                let (mts, mcol) = merge_newest_wins(col.vtype(), runs);
                let Some(s) = summarize_all(&mts, &mcol) else {
                    continue;
                };
                s
            }
        };
        out.push((b, merged));
    }
    Ok(out)
}

impl Tsdb {
    /// Writes the rollup chunks of every partition the raw horizon has
    /// entered that has raw chunks but no rollup chunk of some level (see
    /// the module documentation). The caller holds the maintenance lock and
    /// has persisted `horizons`.
    pub(crate) fn materialize_rollups(
        &self,
        horizons: &Horizons,
        stats: &mut MaintenanceStats,
    ) -> Result<(), Error> {
        if self.opts.rollups.is_empty() {
            return Ok(());
        }
        let cs: Arc<ChunkSet> = read(&self.chunks).clone();
        let mut todo: BTreeMap<(Arc<str>, i64), Vec<Arc<Chunk>>> = BTreeMap::new();
        for c in cs.all() {
            let m = &c.meta;
            if m.kind == ChunkKind::Raw && m.partition_start < horizons.raw(&m.namespace) {
                todo.entry((m.namespace.clone(), m.partition_start))
                    .or_default()
                    .push(c.clone());
            }
        }
        for ((ns, p), mut chunks) in todo {
            let levels: Vec<i64> = self
                .opts
                .rollups
                .iter()
                .map(|l| l.bucket_ms)
                .filter(|&l| !cs.partitions(ChunkKind::Rollup(l), &ns).contains(&p))
                .collect();
            if levels.is_empty() {
                continue;
            }
            chunks.sort_by_key(|c| c.meta.file_id);
            let mut builders: Vec<ChunkBuilder> = levels
                .iter()
                .map(|&l| {
                    ChunkBuilder::new(
                        ChunkMeta {
                            kind: ChunkKind::Rollup(l),
                            namespace: ns.clone(),
                            partition_start: p,
                            partition_ms: self.opts.partition_ms,
                            file_id: 0,
                        },
                        self.opts.compression_level,
                    )
                })
                .collect();
            let mut series: BTreeMap<SeriesKey, (SeriesId, ValueType)> = BTreeMap::new();
            for c in &chunks {
                for (sid, s) in c.sids() {
                    if s.vtype.is_numeric() {
                        series.insert(s.key.clone(), (sid, s.vtype));
                    }
                }
            }
            for (key, (sid, vtype)) in series {
                let mut runs = Vec::new();
                for c in &chunks {
                    if let Some(s) = c.find(sid) {
                        runs.push(c.read_raw(s)?);
                    }
                }
                let (ts, col) = merge_newest_wins(vtype, runs);
                for (b, &l) in builders.iter_mut().zip(&levels) {
                    let (buckets, sums): (Vec<i64>, Vec<Summary>) = bucketize(l, &ts, &col)
                        .into_iter()
                        .filter(|(bk, _)| horizons.bucket_live(l, *bk))
                        .map(|(bk, (s, _, _))| (bk, s))
                        .unzip();
                    if !buckets.is_empty() {
                        b.add_rollup(key.clone(), vtype, &buckets, &sums)?;
                    }
                }
            }
            let built: Vec<ChunkBuilder> = builders.into_iter().filter(|b| !b.is_empty()).collect();
            if !built.is_empty() {
                tracing::debug!(namespace = %ns, partition = p, files = built.len(), "rollups materialized");
                self.replace_chunks(built, &HashSet::new(), &[], stats)?;
            }
        }
        Ok(())
    }

    /// Whether a flush must keep the rollups of level `bucket_ms` of
    /// partition `p` up to date: the level is not deferred, or they are
    /// materialized, or raw data has started to expire there.
    pub(crate) fn rollup_stored(
        &self,
        cs: &ChunkSet,
        bucket_ms: i64,
        ns: &str,
        p: i64,
        raw_h: i64,
    ) -> bool {
        bucket_ms >= self.opts.deferred_rollups_below_ms
            || p < raw_h
            || cs.partitions(ChunkKind::Rollup(bucket_ms), ns).contains(&p)
    }
}

fn summarize_all(ts: &[i64], col: &Column) -> Option<Summary> {
    let mut s: Option<Summary> = None;
    for (i, &t) in ts.iter().enumerate() {
        if let Some(v) = col.num(i) {
            Summary::merge_opt(&mut s, &Summary::one(t, v));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_merges_and_late_recomputes() {
        let mut existing = BTreeMap::new();
        let mut s = Summary::one(0, 1.0);
        s.add(10, 2.0);
        existing.insert(0, s);
        // Appended point: merged without reading raw data.
        let mut no_raw = |_: i64, _: i64| -> Result<Vec<(Vec<i64>, Column)>, Error> {
            panic!("should not read raw data")
        };
        let out = updated_buckets(
            60,
            &[20],
            &Column::F64(vec![3.0]),
            &existing,
            i64::MIN,
            &mut no_raw,
        )
        .unwrap();
        assert_eq!(out[0].1.count, 3);
        // Duplicate of ts 10: recomputed, new value wins.
        let mut raw = |_: i64, _: i64| -> Result<Vec<(Vec<i64>, Column)>, Error> {
            Ok(vec![(vec![0, 10], Column::F64(vec![1.0, 2.0]))])
        };
        let out = updated_buckets(
            60,
            &[10],
            &Column::F64(vec![5.0]),
            &existing,
            i64::MIN,
            &mut raw,
        )
        .unwrap();
        assert_eq!(out[0].1.count, 2);
        assert_eq!(out[0].1.sum, 6.0);
        assert_eq!(out[0].1.last, 5.0);
    }
}
