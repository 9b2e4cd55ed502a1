//! Aggregate queries over time buckets, from chunk summaries, rollups or
//! raw points, merged with the points still in memory.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use crate::catalog::SeriesId;
use crate::chunk::ChunkKind;
use crate::column::Column;
use crate::db::{read, Tsdb};
use crate::error::Error;
use crate::head::merge_newest_wins;
use crate::model::{SeriesKey, ValueType};
use crate::retention::Horizons;
use crate::rollup::updated_buckets;
use crate::summary::{Agg, Summary, ALL_FIELDS};

use super::{Selector, Snapshot};

/// How the selected series are grouped into result series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One result per series.
    Series,
    /// One result per device.
    Device,
    /// One result per value of this label (series without it form one group).
    Label(String),
    /// One result for everything selected.
    All,
}

/// The group a result series stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKey {
    /// One series.
    Series(SeriesKey),
    /// One device.
    Device(String),
    /// One label value (`None`: series without the label).
    Label(Option<String>),
    /// Everything selected.
    All,
}

/// One bucket's aggregate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AggPoint {
    /// Bucket start in milliseconds (a multiple of the bucket width).
    pub ts: i64,
    /// The aggregate.
    pub value: f64,
}

/// One group's aggregates, ascending by bucket; empty buckets are omitted.
#[derive(Clone, Debug, PartialEq)]
pub struct AggSeries {
    /// The group.
    pub group: GroupKey,
    /// Non-empty buckets.
    pub points: Vec<AggPoint>,
}

impl Tsdb {
    /// Aggregates the selected series over `[start, end)` in buckets of
    /// `bucket_ms` aligned to the Unix epoch, grouped by `group`.
    ///
    /// Sources, per series: the coarsest rollup level whose bucket divides
    /// `bucket_ms`, whose width also divides `start` and `end`, and whose
    /// retention still covers `start`; otherwise raw data, where a chunk
    /// lying inside one bucket and overlapping no other data is answered
    /// from its index summary alone. Points still in memory are merged in
    /// either case, the newest write winning on equal timestamps.
    ///
    /// Values are aggregated as `f64` (integers converted, booleans as 0/1).
    /// String series only take part in `Count`. Within a group, series are
    /// merged in series-key order, which decides `First`/`Last` ties.
    pub fn query_agg(
        &self,
        sel: &Selector,
        start: i64,
        end: i64,
        bucket_ms: i64,
        agg: Agg,
        group: GroupBy,
    ) -> Result<Vec<AggSeries>, Error> {
        if bucket_ms <= 0 {
            return Err(Error::InvalidQuery(format!(
                "bucket width {bucket_ms} ms must be > 0"
            )));
        }
        if start >= end {
            return Ok(Vec::new());
        }
        let horizons = read(&self.horizons).clone();
        let raw_h = horizons.raw(&sel.namespace);
        let level = self.rollup_level_for(&sel.namespace, start, end, bucket_ms);
        let lo = match level {
            Some(_) => start,
            None => start.max(raw_h),
        };
        let snap = self.snapshot(sel, lo, end);
        // Deferred rollups: materialized partitions are read from rollup
        // chunks, the others (whose raw data is complete) from raw chunks.
        let segments = match level {
            Some(l) => self.level_segments(&snap, l, &sel.namespace, start, end),
            None => Vec::new(),
        };
        let mut groups: BTreeMap<GroupKey, Vec<(i64, Summary)>> = BTreeMap::new();
        for (sid, key, vtype) in &snap.series {
            if !vtype.is_numeric() && agg != Agg::Count {
                continue;
            }
            let buckets = match level {
                Some(l) if vtype.is_numeric() => {
                    let mut out = Vec::new();
                    for &(a, b, materialized) in &segments {
                        out.extend(if materialized {
                            self.rollup_series(
                                &snap,
                                *sid,
                                &sel.namespace,
                                l,
                                a,
                                b,
                                bucket_ms,
                                agg,
                                &horizons,
                            )?
                        } else {
                            self.raw_series(
                                &snap,
                                *sid,
                                *vtype,
                                &sel.namespace,
                                a,
                                b,
                                bucket_ms,
                                agg,
                            )?
                        });
                    }
                    if segments.len() > 1 {
                        // A bucket wider than a partition can span segments.
                        out = coarsen(out, bucket_ms);
                    }
                    out
                }
                _ => {
                    self.raw_series(&snap, *sid, *vtype, &sel.namespace, lo, end, bucket_ms, agg)?
                }
            };
            if buckets.is_empty() {
                continue;
            }
            let gk = match &group {
                GroupBy::Series => GroupKey::Series((**key).clone()),
                GroupBy::Device => GroupKey::Device(key.device().to_string()),
                GroupBy::Label(l) => GroupKey::Label(key.label(l).map(str::to_string)),
                GroupBy::All => GroupKey::All,
            };
            let g = groups.entry(gk).or_default();
            if g.is_empty() {
                *g = buckets;
            } else {
                *g = merge_sorted(std::mem::take(g), buckets);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(group, b)| AggSeries {
                group,
                points: b
                    .into_iter()
                    .map(|(ts, s)| AggPoint {
                        ts,
                        value: s.eval(agg),
                    })
                    .collect(),
            })
            .collect())
    }

    /// The rollup level (bucket width) `query_agg` would read for this
    /// range and bucket, or `None` for raw data.
    pub fn rollup_level_for(
        &self,
        namespace: &str,
        start: i64,
        end: i64,
        bucket_ms: i64,
    ) -> Option<i64> {
        let _ = namespace;
        let h = read(&self.horizons);
        self.opts
            .rollups
            .iter()
            .rev()
            .find(|l| {
                let w = l.bucket_ms;
                bucket_ms % w == 0
                    && start.rem_euclid(w) == 0
                    && end.rem_euclid(w) == 0
                    && start >= h.rollup(w)
            })
            .map(|l| l.bucket_ms)
    }

    /// `[start, end)` cut into ascending segments, each either made of
    /// partitions whose rollups of `level_ms` are materialized (`true`) or
    /// of partitions whose raw data is complete (`false`).
    fn level_segments(
        &self,
        snap: &Snapshot,
        level_ms: i64,
        ns: &str,
        start: i64,
        end: i64,
    ) -> Vec<(i64, i64, bool)> {
        let pms = self.opts.partition_ms;
        let mat = snap.chunks.partitions(ChunkKind::Rollup(level_ms), ns);
        let first = mat.partition_point(|&p| p.saturating_add(pms) <= start);
        let mut segs: Vec<(i64, i64, bool)> = Vec::new();
        let mut cur = start;
        for &p in &mat[first..] {
            if p >= end {
                break;
            }
            let (a, b) = (p.max(start), p.saturating_add(pms).min(end));
            if a > cur {
                segs.push((cur, a, false));
            }
            match segs.last_mut() {
                Some(last) if last.2 && last.1 == a => last.1 = b,
                _ => segs.push((a, b, true)),
            }
            cur = b;
        }
        if cur < end {
            segs.push((cur, end, false));
        }
        segs
    }

    /// Buckets of `bucket_ms` of one series' raw data within `[lo, hi)`,
    /// ascending.
    #[allow(clippy::too_many_arguments)]
    fn raw_series(
        &self,
        snap: &Snapshot,
        sid: SeriesId,
        vtype: ValueType,
        ns: &str,
        lo: i64,
        hi: i64,
        bucket_ms: i64,
        agg: Agg,
    ) -> Result<Vec<(i64, Summary)>, Error> {
        let bucket = |t: i64| t.div_euclid(bucket_ms) * bucket_ms;
        let entries = snap.chunks.entries(ChunkKind::Raw, ns, sid, lo, hi);
        let unflushed = snap.unflushed.get(&sid);
        let mut from_summaries: BTreeMap<i64, Summary> = BTreeMap::new();
        let mut runs: Vec<(Vec<i64>, Column)> = Vec::new();
        for (i, (c, e)) in entries.iter().enumerate() {
            let inside = e.min_ts >= lo && e.max_ts < hi && bucket(e.min_ts) == bucket(e.max_ts);
            let overlapped = entries
                .iter()
                .enumerate()
                .any(|(j, (_, o))| j != i && o.min_ts <= e.max_ts && o.max_ts >= e.min_ts)
                || unflushed.is_some_and(|(ts, _)| {
                    let k = ts.partition_point(|&t| t < e.min_ts);
                    k < ts.len() && ts[k] <= e.max_ts
                });
            if inside && !overlapped {
                self.stats
                    .chunk_summaries_used
                    .fetch_add(1, Ordering::Relaxed);
                let b = bucket(e.min_ts);
                from_summaries
                    .entry(b)
                    .and_modify(|x| x.merge(&e.summary))
                    .or_insert(e.summary);
                continue;
            }
            self.stats
                .chunk_series_decoded
                .fetch_add(1, Ordering::Relaxed);
            runs.push(c.read_raw(e)?);
        }
        if let Some(u) = unflushed {
            runs.push(u.clone());
        }
        // Chunk runs and the unflushed run are each sorted with unique
        // timestamps; when they do not overlap (the usual case: one chunk
        // per flush), each is bucketed where it lies, without merging.
        // (`runs` stays oldest first: that order decides duplicates.)
        runs.retain(|r| !r.0.is_empty());
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by_key(|&i| runs[i].0[0]);
        let disjoint = order
            .windows(2)
            .all(|w| runs[w[0]].0.last() < runs[w[1]].0.first());
        let points = if disjoint && runs.len() > 1 {
            let mut all = Vec::new();
            for &i in &order {
                let (ts, col) = &runs[i];
                all.extend(bucket_points(ts, col, lo, hi, bucket_ms, agg));
            }
            coarsen(all, bucket_ms)
        } else {
            let (ts, col) = merge_newest_wins(vtype, runs);
            bucket_points(&ts, &col, lo, hi, bucket_ms, agg)
        };
        if from_summaries.is_empty() {
            return Ok(points);
        }
        Ok(merge_sorted(points, from_summaries.into_iter().collect()))
    }

    #[allow(clippy::too_many_arguments)]
    fn rollup_series(
        &self,
        snap: &Snapshot,
        sid: SeriesId,
        ns: &str,
        level_ms: i64,
        start: i64,
        end: i64,
        bucket_ms: i64,
        agg: Agg,
        horizons: &Horizons,
    ) -> Result<Vec<(i64, Summary)>, Error> {
        // Unflushed points update whole summaries; otherwise only the
        // fields the aggregate reads are decoded.
        let unflushed = snap.unflushed.get(&sid);
        let fields = match unflushed {
            Some(_) => ALL_FIELDS,
            None => agg.rollup_fields(),
        };
        let mut buckets =
            snap.chunks
                .read_rollup_sorted(level_ms, ns, sid, start, end, fields, &self.stats)?;
        buckets.retain(|(b, _)| horizons.bucket_live(level_ms, *b));
        if let Some((ts, col)) = unflushed {
            // Only the points of this segment (the snapshot covers the
            // whole query).
            let (a, b) = (
                ts.partition_point(|&t| t < start),
                ts.partition_point(|&t| t < end),
            );
            let (ts, col) = if a == 0 && b == ts.len() {
                (ts.clone(), col.clone())
            } else {
                (ts[a..b].to_vec(), col.select(&(a..b).collect::<Vec<_>>()))
            };
            let (ts, col) = (&ts, &col);
            let mut buckets: BTreeMap<i64, Summary> = buckets.into_iter().collect();
            // Like a flush, points past raw retention still feed rollups.
            let raw_h = horizons.raw(ns);
            let mut read_raw = |a: i64, b: i64| snap.chunks.read_raw(ns, sid, a, b, &self.stats);
            for (b, s) in updated_buckets(level_ms, ts, col, &buckets, raw_h, &mut read_raw)? {
                if horizons.bucket_live(level_ms, b) {
                    buckets.insert(b, s);
                }
            }
            return Ok(coarsen(buckets, bucket_ms));
        }
        Ok(coarsen(buckets, bucket_ms))
    }
}

/// Summaries per bucket of `bucket_ms` of the points of a sorted run
/// (unique timestamps) within `[lo, hi)`, ascending; one pass per bucket.
/// Sum, min and max are only computed when `agg` reads them (NaN
/// otherwise, as in rollups read with some fields only).
fn bucket_points(
    ts: &[i64],
    col: &Column,
    lo: i64,
    hi: i64,
    bucket_ms: i64,
    agg: Agg,
) -> Vec<(i64, Summary)> {
    let a = ts.partition_point(|&t| t < lo);
    let b = ts.partition_point(|&t| t < hi);
    let [sum, min, max, _, _] = agg.rollup_fields();
    let fields = (sum, min, max);
    let mut out = Vec::new();
    let mut i = a;
    while i < b {
        let bk = ts[i].div_euclid(bucket_ms) * bucket_ms;
        let stop = bk.saturating_add(bucket_ms);
        let j = i + ts[i..b].partition_point(|&t| t < stop);
        let s = match col {
            Column::F64(v) => summarize_slice(&ts[i..j], &v[i..j], fields),
            Column::Str(_) => Summary::count_only((j - i) as u64, ts[i], ts[j - 1]),
            _ => {
                let v: Vec<f64> = (i..j).map(|k| col.num(k).unwrap_or(0.0)).collect();
                summarize_slice(&ts[i..j], &v, fields)
            }
        };
        out.push((bk, s));
        i = j;
    }
    out
}

/// The summary of a non-empty run of one series' points, with sum, min and
/// max only if asked for (in that order).
fn summarize_slice(ts: &[i64], v: &[f64], (sum, min, max): (bool, bool, bool)) -> Summary {
    let n = v.len() - 1;
    let mut s = Summary {
        count: v.len() as u64,
        sum: f64::NAN,
        min: f64::NAN,
        max: f64::NAN,
        first_ts: ts[0],
        first: v[0],
        last_ts: ts[n],
        last: v[n],
    };
    if sum {
        s.sum = v[1..].iter().fold(v[0], |a, &x| a + x);
    }
    if min {
        s.min = v[1..].iter().fold(v[0], |a, &x| a.min(x));
    }
    if max {
        s.max = v[1..].iter().fold(v[0], |a, &x| a.max(x));
    }
    s
}

/// Merges ascending buckets into ascending buckets of `bucket_ms`.
fn coarsen(
    buckets: impl IntoIterator<Item = (i64, Summary)>,
    bucket_ms: i64,
) -> Vec<(i64, Summary)> {
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for (b, s) in buckets {
        let ob = b.div_euclid(bucket_ms) * bucket_ms;
        match out.last_mut() {
            Some((lb, ls)) if *lb == ob => ls.merge(&s),
            _ => out.push((ob, s)),
        }
    }
    out
}

/// Merges two bucket lists ascending by start, `a` merged before `b` on
/// equal starts.
fn merge_sorted(a: Vec<(i64, Summary)>, b: Vec<(i64, Summary)>) -> Vec<(i64, Summary)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let mut bi = b.into_iter().peekable();
    for (ta, mut sa) in a {
        while let Some(&(tb, sb)) = bi.peek() {
            if tb < ta {
                out.push((tb, sb));
                bi.next();
            } else {
                if tb == ta {
                    sa.merge(&sb);
                    bi.next();
                }
                break;
            }
        }
        out.push((ta, sa));
    }
    out.extend(bi);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sorted_and_coarsen_match_a_map() {
        let s = |t: i64, v: f64| (t, Summary::one(t, v));
        let a = vec![s(0, 1.0), s(20, 2.0), s(40, 3.0)];
        let b = vec![s(-10, 4.0), s(20, 5.0), s(50, 6.0), s(70, 7.0)];
        let got = merge_sorted(a.clone(), b.clone());
        let mut want: BTreeMap<i64, Summary> = BTreeMap::new();
        for (t, x) in a.into_iter().chain(b) {
            want.entry(t).and_modify(|y| y.merge(&x)).or_insert(x);
        }
        assert_eq!(got, want.clone().into_iter().collect::<Vec<_>>());
        let c = coarsen(got, 30);
        assert_eq!(
            c.iter()
                .map(|(t, x)| (*t, x.count, x.sum))
                .collect::<Vec<_>>(),
            vec![(-30, 1, 4.0), (0, 3, 8.0), (30, 2, 9.0), (60, 1, 7.0)]
        );
    }
}
