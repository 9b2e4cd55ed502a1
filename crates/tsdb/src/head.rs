//! The head block: recent points in memory, in write order, until a flush
//! turns them into chunk files.

use crate::catalog::{IdMap, SeriesId};
use crate::column::Column;
use crate::model::ValueType;
use crate::wal::ColRef;

/// One series' unflushed points in write order (later entries are newer).
pub(crate) struct SeriesBuf {
    pub(crate) ts: Vec<i64>,
    pub(crate) vals: Column,
}

#[derive(Default)]
pub(crate) struct Head {
    series: IdMap<SeriesBuf>,
    points: usize,
}

impl Head {
    pub(crate) fn append(&mut self, sid: SeriesId, ts: &[i64], vals: &Column) {
        let buf = self.series.entry(sid).or_insert_with(|| SeriesBuf {
            ts: Vec::new(),
            vals: Column::new(vals.vtype()),
        });
        if buf.vals.vtype() != vals.vtype() {
            debug_assert!(false, "series type checked by the catalog");
            return;
        }
        buf.ts.extend_from_slice(ts);
        buf.vals.extend(vals);
        self.points += ts.len();
    }

    /// Like `append`, from borrowed values (WAL replay).
    pub(crate) fn append_ref(&mut self, sid: SeriesId, ts: &[i64], vals: ColRef<'_>) {
        let buf = self.series.entry(sid).or_insert_with(|| SeriesBuf {
            ts: Vec::new(),
            vals: Column::new(vals.vtype()),
        });
        match (&mut buf.vals, vals) {
            (Column::F64(c), ColRef::F64(o)) => c.extend_from_slice(o),
            (Column::I64(c), ColRef::I64(o)) => c.extend_from_slice(o),
            (Column::Bool(c), ColRef::Bool(o)) => c.extend_from_slice(o),
            (Column::Str(c), ColRef::Str(o)) => c.extend_from_slice(o),
            _ => {
                debug_assert!(false, "series type checked by the catalog");
                return;
            }
        }
        buf.ts.extend_from_slice(ts);
        self.points += ts.len();
    }

    pub(crate) fn points(&self) -> usize {
        self.points
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.points == 0
    }

    pub(crate) fn get(&self, sid: SeriesId) -> Option<&SeriesBuf> {
        self.series.get(&sid)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (SeriesId, &SeriesBuf)> {
        self.series.iter().map(|(k, v)| (*k, v))
    }

    /// Copies the points of `sid` with `lo <= ts < hi`, in write order.
    pub(crate) fn copy_range(&self, sid: SeriesId, lo: i64, hi: i64) -> Option<(Vec<i64>, Column)> {
        let buf = self.series.get(&sid)?;
        let keep: Vec<usize> = (0..buf.ts.len())
            .filter(|&i| buf.ts[i] >= lo && buf.ts[i] < hi)
            .collect();
        if keep.is_empty() {
            return None;
        }
        if keep.len() == buf.ts.len() {
            return Some((buf.ts.clone(), buf.vals.clone()));
        }
        let ts = keep.iter().map(|&i| buf.ts[i]).collect();
        Some((ts, buf.vals.select(&keep)))
    }

    /// Approximate heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.series
            .values()
            .map(|b| b.ts.capacity() * 8 + b.vals.heap_bytes() + 64)
            .sum()
    }
}

/// Merges runs given oldest first into one run sorted by timestamp with
/// unique timestamps: on equal timestamps the newest run (and, within a run,
/// the later entry) wins.
pub(crate) fn merge_newest_wins(
    vtype: ValueType,
    runs: Vec<(Vec<i64>, Column)>,
) -> (Vec<i64>, Column) {
    let mut runs: Vec<(Vec<i64>, Column)> = runs.into_iter().filter(|r| !r.0.is_empty()).collect();
    if runs.is_empty() {
        return (Vec::new(), Column::new(vtype));
    }
    if runs.len() == 1 && runs[0].0.windows(2).all(|w| w[0] < w[1]) {
        return runs.remove(0);
    }
    // Already sorted and disjoint runs in order: concatenate.
    let disjoint = runs.iter().all(|r| r.0.windows(2).all(|w| w[0] < w[1]))
        && runs.windows(2).all(|w| w[0].0.last() < w[1].0.first());
    if disjoint {
        let n = runs.iter().map(|r| r.0.len()).sum();
        let mut ts = Vec::with_capacity(n);
        let mut col = Column::with_capacity(vtype, n);
        for (t, c) in &runs {
            ts.extend_from_slice(t);
            col.extend(c);
        }
        return (ts, col);
    }
    let mut order: Vec<(i64, u32, u32)> = Vec::with_capacity(runs.iter().map(|r| r.0.len()).sum());
    for (ri, (t, _)) in runs.iter().enumerate() {
        for (i, &x) in t.iter().enumerate() {
            order.push((x, ri as u32, i as u32));
        }
    }
    // Stable sort on the timestamp keeps run order and in-run order for ties.
    order.sort_by_key(|e| e.0);
    let mut ts = Vec::with_capacity(order.len());
    let mut col = Column::with_capacity(vtype, order.len());
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].0 == order[i].0 {
            j += 1;
        }
        let (t, ri, ii) = order[j];
        ts.push(t);
        col.push_from(&runs[ri as usize].1, ii as usize);
        i = j + 1;
    }
    (ts, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_on_ties() {
        let a = (vec![3, 1, 3], Column::I64(vec![1, 2, 3]));
        let b = (vec![1, 5], Column::I64(vec![10, 20]));
        let (ts, col) = merge_newest_wins(ValueType::I64, vec![a, b]);
        assert_eq!(ts, vec![1, 3, 5]);
        assert_eq!(col, Column::I64(vec![10, 3, 20]));
    }
}
