//! Mergeable summaries (count, sum, min, max, first, last) used by chunk
//! indexes, rollups and aggregate queries.

use crate::wire::{put_f64, put_svar, put_var, Reader};
use crate::Error;

/// The aggregate functions a query can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Agg {
    /// Arithmetic mean.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum of values.
    Sum,
    /// Number of points (the only aggregate that also counts string points).
    Count,
    /// Value of the earliest point.
    First,
    /// Value of the latest point.
    Last,
}

/// Which rollup fields a reader decodes: sum, min, max, first (with its
/// time), last (with its time); counts are always decoded.
pub(crate) type RollupFields = [bool; 5];

/// Every rollup field.
pub(crate) const ALL_FIELDS: RollupFields = [true; 5];

impl Agg {
    /// The rollup fields `Summary::eval` needs for this aggregate.
    pub(crate) fn rollup_fields(self) -> RollupFields {
        match self {
            Agg::Avg | Agg::Sum => [true, false, false, false, false],
            Agg::Min => [false, true, false, false, false],
            Agg::Max => [false, false, true, false, false],
            Agg::Count => [false; 5],
            Agg::First => [false, false, false, true, false],
            Agg::Last => [false, false, false, false, true],
        }
    }
}

/// A summary of some points of one or more numeric series.
///
/// Merging is associative and commutative except for ties of `first_ts`
/// or `last_ts`, which only occur across different series: on a tie `first`
/// keeps the summary merged earlier and `last` takes the one merged later,
/// and queries merge series in series-key order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) first_ts: i64,
    pub(crate) first: f64,
    pub(crate) last_ts: i64,
    pub(crate) last: f64,
}

impl Summary {
    pub(crate) fn one(ts: i64, v: f64) -> Summary {
        Summary {
            count: 1,
            sum: v,
            min: v,
            max: v,
            first_ts: ts,
            first: v,
            last_ts: ts,
            last: v,
        }
    }

    /// Adds one point of the same series (timestamps are unique per series).
    pub(crate) fn add(&mut self, ts: i64, v: f64) {
        self.merge(&Summary::one(ts, v));
    }

    pub(crate) fn merge(&mut self, o: &Summary) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.first_ts < self.first_ts {
            self.first_ts = o.first_ts;
            self.first = o.first;
        }
        if o.last_ts >= self.last_ts {
            self.last_ts = o.last_ts;
            self.last = o.last;
        }
    }

    pub(crate) fn merge_opt(slot: &mut Option<Summary>, o: &Summary) {
        match slot {
            Some(s) => s.merge(o),
            None => *slot = Some(*o),
        }
    }

    pub(crate) fn eval(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Avg => self.sum / self.count as f64,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Sum => self.sum,
            Agg::Count => self.count as f64,
            Agg::First => self.first,
            Agg::Last => self.last,
        }
    }

    /// A summary for string points, which only carries count and times.
    pub(crate) fn count_only(count: u64, first_ts: i64, last_ts: i64) -> Summary {
        Summary {
            count,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            first_ts,
            first: 0.0,
            last_ts,
            last: 0.0,
        }
    }

    /// Encodes with `first_ts` relative to `min_ts` and `last_ts` relative
    /// to `max_ts` (the index's range), which makes both one byte for raw data.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, min_ts: i64, max_ts: i64) {
        put_var(out, self.count);
        put_f64(out, self.sum);
        put_f64(out, self.min);
        put_f64(out, self.max);
        put_svar(out, self.first_ts.wrapping_sub(min_ts));
        put_f64(out, self.first);
        put_svar(out, max_ts.wrapping_sub(self.last_ts));
        put_f64(out, self.last);
    }

    pub(crate) fn decode(r: &mut Reader<'_>, min_ts: i64, max_ts: i64) -> Result<Summary, Error> {
        Ok(Summary {
            count: r.var()?,
            sum: r.f64()?,
            min: r.f64()?,
            max: r.f64()?,
            first_ts: min_ts.wrapping_add(r.svar()?),
            first: r.f64()?,
            last_ts: max_ts.wrapping_sub(r.svar()?),
            last: r.f64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_matches_direct() {
        let pts = [(5, 2.0), (1, 7.0), (9, -3.0), (3, 4.0)];
        let mut a = Summary::one(pts[0].0, pts[0].1);
        a.add(pts[1].0, pts[1].1);
        let mut b = Summary::one(pts[2].0, pts[2].1);
        b.add(pts[3].0, pts[3].1);
        a.merge(&b);
        assert_eq!(a.count, 4);
        assert_eq!(a.sum, 10.0);
        assert_eq!((a.min, a.max), (-3.0, 7.0));
        assert_eq!((a.first_ts, a.first), (1, 7.0));
        assert_eq!((a.last_ts, a.last), (9, -3.0));
        assert_eq!(a.eval(Agg::Avg), 2.5);
    }
}
