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

use std::collections::BTreeMap;

use crate::column::Column;
use crate::error::Error;
use crate::head::merge_newest_wins;
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
