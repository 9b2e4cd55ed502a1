//! Window aggregates: sliding (`agg(x) OVER 5m`, the last five minutes)
//! and tumbling (`agg(x) OVER TUMBLING 5m`, the current epoch-aligned
//! five minutes so far).
//!
//! A sliding window holds its samples in time order and answers `avg`,
//! `sum`, `count`, `min` and `max` in amortised O(1) per message with the
//! two-stacks technique: the older part of the queue carries suffix
//! aggregates, the newer part one running aggregate, and the older part is
//! rebuilt from the newer whenever it runs out. Nothing is ever
//! subtracted, so floating-point sums do not drift and an infinite or huge
//! sample leaves no trace once it has left the window.
//!
//! A sample at time `t` is inside the window at time `now` while
//! `now - t < width`.
//!
//! # Bounded state
//!
//! A window holds at most `max` entries. When a new sample would exceed
//! that, the window is compacted: entries falling into the same time slot
//! of `g = ceil(2 * width / max)` milliseconds (aligned to the epoch) are
//! merged into one entry that keeps their count, sum, minimum and maximum
//! (or the oldest value, for `first`), timestamped with its newest sample.
//! No sample is dropped, so `count`, `sum`, `avg`, `min` and `max` stay
//! exact, except that a merged entry leaves the window when its newest
//! sample does: a result may include samples up to `g` ms older than the
//! window (5 minutes with the default 10,000 entries: 60 ms). A window
//! holds at most `width / g + 2 <= max / 2 + 2` slots, so compaction
//! always halves it; only for `max < 8` may it still be full, and then the
//! oldest entries are dropped.

use std::collections::VecDeque;

use crate::ast::Agg;
use crate::value::{Owned, Val};

/// A partial aggregate: how many samples, and their sum, min or max
/// (which one depends on the window's [`Agg`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    n: u64,
    v: f64,
}

fn identity(agg: Agg) -> Part {
    let v = match agg {
        Agg::Min => f64::INFINITY,
        Agg::Max => f64::NEG_INFINITY,
        _ => 0.0,
    };
    Part { n: 0, v }
}

fn combine(agg: Agg, a: Part, b: Part) -> Part {
    let v = match agg {
        Agg::Min => a.v.min(b.v),
        Agg::Max => a.v.max(b.v),
        _ => a.v + b.v,
    };
    Part { n: a.n + b.n, v }
}

fn result(agg: Agg, p: Part) -> Owned {
    match agg {
        Agg::Count => Val::Num(p.n as f64),
        _ if p.n == 0 => Val::Null,
        Agg::Avg => Val::Num(p.v / p.n as f64),
        _ => Val::Num(p.v),
    }
}

/// The sample a value contributes to a numeric aggregate, if any:
/// `count` counts every non-null value, the others take finite numbers.
fn sample(agg: Agg, v: &Val<'_>) -> Option<Part> {
    match agg {
        Agg::Count => (!v.is_null()).then_some(Part { n: 1, v: 0.0 }),
        _ => v.as_num().map(|x| Part { n: 1, v: x }),
    }
}

/// The length of the slots that compaction merges within.
fn slot_len(width: u64, max: usize) -> u64 {
    let max = max.max(1) as u64;
    width.saturating_mul(2).div_ceil(max).max(1)
}

#[derive(Debug, Clone)]
struct Entry {
    /// Time of the newest sample in this entry.
    t: u64,
    own: Part,
    /// Aggregate of this entry and every entry after it in the older part.
    suffix: Part,
}

/// Two-stacks sliding aggregation over time-ordered entries.
#[derive(Debug, Clone)]
struct NumWindow {
    entries: VecDeque<Entry>,
    /// `entries[..older]` carry valid suffix aggregates.
    older: usize,
    /// Aggregate of `entries[older..]`.
    newer: Part,
}

impl NumWindow {
    fn new(agg: Agg) -> Self {
        NumWindow {
            entries: VecDeque::new(),
            older: 0,
            newer: identity(agg),
        }
    }

    fn push(&mut self, agg: Agg, t: u64, own: Part) {
        self.newer = combine(agg, self.newer, own);
        self.entries.push_back(Entry {
            t,
            own,
            suffix: own,
        });
    }

    fn pop(&mut self, agg: Agg) {
        if self.older == 0 {
            let mut acc = identity(agg);
            for e in self.entries.iter_mut().rev() {
                acc = combine(agg, e.own, acc);
                e.suffix = acc;
            }
            self.older = self.entries.len();
            self.newer = identity(agg);
        }
        if self.entries.pop_front().is_some() {
            self.older -= 1;
        }
    }

    fn expire(&mut self, agg: Agg, now: u64, width: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_sub(e.t) >= width)
        {
            self.pop(agg);
        }
    }

    fn query(&self, agg: Agg) -> Part {
        match self.entries.front() {
            Some(e) if self.older > 0 => combine(agg, e.suffix, self.newer),
            _ => self.newer,
        }
    }

    /// Merges entries sharing a slot, then drops the oldest while still
    /// at `max` (only possible for tiny `max`).
    fn compact(&mut self, agg: Agg, width: u64, max: usize) {
        let g = slot_len(width, max);
        let mut merged: VecDeque<Entry> = VecDeque::with_capacity(self.entries.len() / 2 + 2);
        for e in self.entries.drain(..) {
            match merged.back_mut() {
                Some(last) if last.t / g == e.t / g => {
                    last.own = combine(agg, last.own, e.own);
                    last.t = e.t;
                }
                _ => merged.push_back(e),
            }
        }
        while merged.len() >= max.max(1) {
            merged.pop_front();
        }
        self.newer = merged
            .iter()
            .fold(identity(agg), |acc, e| combine(agg, acc, e.own));
        self.entries = merged;
        self.older = 0;
    }
}

/// `first(x) OVER d`: the oldest value still inside the window.
#[derive(Debug, Clone, Default)]
struct FirstWindow {
    entries: VecDeque<(u64, Owned)>,
}

impl FirstWindow {
    fn compact(&mut self, width: u64, max: usize) {
        let g = slot_len(width, max);
        let mut merged: VecDeque<(u64, Owned)> = VecDeque::new();
        for (t, v) in self.entries.drain(..) {
            match merged.back_mut() {
                // Keep the older value, take the newer time.
                Some(last) if last.0 / g == t / g => last.0 = t,
                _ => merged.push_back((t, v)),
            }
        }
        while merged.len() >= max.max(1) {
            merged.pop_front();
        }
        self.entries = merged;
    }
}

#[derive(Debug, Clone)]
enum SlidingState {
    Num(NumWindow),
    First(FirstWindow),
    /// `last(x) OVER d` needs only the newest value and its time.
    Last(Option<(u64, Owned)>),
}

/// One group's sliding window for one `agg(x) OVER d` of a rule.
#[derive(Debug, Clone)]
pub(crate) struct Sliding {
    agg: Agg,
    width: u64,
    state: SlidingState,
}

impl Sliding {
    pub fn new(agg: Agg, width: u64) -> Self {
        let state = match agg {
            Agg::First => SlidingState::First(FirstWindow::default()),
            Agg::Last => SlidingState::Last(None),
            _ => SlidingState::Num(NumWindow::new(agg)),
        };
        Sliding { agg, width, state }
    }

    /// Adds the value seen at `now` (skipped if it does not count for
    /// this aggregate), expires old samples and returns the aggregate.
    pub fn update(&mut self, now: u64, value: &Val<'_>, max: usize) -> Owned {
        let (agg, width) = (self.agg, self.width);
        match &mut self.state {
            SlidingState::Num(w) => {
                w.expire(agg, now, width);
                if let Some(part) = sample(agg, value) {
                    if w.entries.len() >= max {
                        w.compact(agg, width, max);
                    }
                    w.push(agg, now, part);
                }
                result(agg, w.query(agg))
            }
            SlidingState::First(w) => {
                while w
                    .entries
                    .front()
                    .is_some_and(|(t, _)| now.saturating_sub(*t) >= width)
                {
                    w.entries.pop_front();
                }
                if !value.is_null() {
                    if w.entries.len() >= max {
                        w.compact(width, max);
                    }
                    w.entries.push_back((now, value.clone().into_owned()));
                }
                w.entries.front().map_or(Val::Null, |(_, v)| v.clone())
            }
            SlidingState::Last(last) => {
                if !value.is_null() {
                    *last = Some((now, value.clone().into_owned()));
                }
                match last {
                    Some((t, v)) if now.saturating_sub(*t) < width => v.clone(),
                    _ => Val::Null,
                }
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        match &self.state {
            SlidingState::Num(w) => w.entries.len(),
            SlidingState::First(w) => w.entries.len(),
            SlidingState::Last(l) => usize::from(l.is_some()),
        }
    }
}

/// One group's tumbling window for one `agg(x) OVER TUMBLING d`: the
/// aggregate of the samples since the start of the current window
/// (`floor(now / d) * d`); the first message of the next window starts
/// afresh.
#[derive(Debug, Clone)]
pub(crate) struct Tumbling {
    agg: Agg,
    width: u64,
    index: Option<u64>,
    part: Part,
    /// First and last value (for `first` and `last`).
    ends: Option<(Owned, Owned)>,
}

impl Tumbling {
    pub fn new(agg: Agg, width: u64) -> Self {
        Tumbling {
            agg,
            width,
            index: None,
            part: identity(agg),
            ends: None,
        }
    }

    pub fn update(&mut self, now: u64, value: &Val<'_>) -> Owned {
        let index = now / self.width.max(1);
        if self.index != Some(index) {
            self.index = Some(index);
            self.part = identity(self.agg);
            self.ends = None;
        }
        match self.agg {
            Agg::First | Agg::Last => {
                if !value.is_null() {
                    let v = value.clone().into_owned();
                    match &mut self.ends {
                        Some((_, last)) => *last = v,
                        None => self.ends = Some((v.clone(), v)),
                    }
                }
                match (&self.ends, self.agg) {
                    (Some((first, _)), Agg::First) => first.clone(),
                    (Some((_, last)), _) => last.clone(),
                    (None, _) => Val::Null,
                }
            }
            agg => {
                if let Some(p) = sample(agg, value) {
                    self.part = combine(agg, self.part, p);
                }
                result(agg, self.part)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(agg: Agg, samples: &[(u64, f64)], now: u64, width: u64) -> Owned {
        let inside: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| now - t < width)
            .map(|&(_, v)| v)
            .collect();
        if agg == Agg::Count {
            return Val::Num(inside.len() as f64);
        }
        if inside.is_empty() {
            return Val::Null;
        }
        Val::Num(match agg {
            Agg::Avg => inside.iter().sum::<f64>() / inside.len() as f64,
            Agg::Sum => inside.iter().sum(),
            Agg::Min => inside.iter().copied().fold(f64::INFINITY, f64::min),
            Agg::Max => inside.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Agg::First => inside[0],
            Agg::Last => inside[inside.len() - 1],
            Agg::Count => unreachable!(),
        })
    }

    fn close(a: &Owned, b: &Owned) -> bool {
        match (a, b) {
            (Val::Num(x), Val::Num(y)) => (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())),
            _ => a == b,
        }
    }

    #[test]
    fn sliding_matches_naive() {
        for agg in [
            Agg::Avg,
            Agg::Sum,
            Agg::Count,
            Agg::Min,
            Agg::Max,
            Agg::First,
            Agg::Last,
        ] {
            let mut w = Sliding::new(agg, 1_000);
            let mut samples = Vec::new();
            let mut t = 0;
            for i in 0..500u64 {
                t += (i * 7919) % 300;
                let v = ((i * 31) % 17) as f64 - 8.0;
                samples.push((t, v));
                let got = w.update(t, &Val::Num(v), 10_000);
                let want = naive(agg, &samples, t, 1_000);
                assert!(close(&got, &want), "{agg:?} at {i}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn huge_values_leave_no_trace() {
        let mut w = Sliding::new(Agg::Sum, 100);
        w.update(0, &Val::Num(1e308), 100);
        assert_eq!(w.update(1, &Val::Num(1e308), 100), Val::Num(f64::INFINITY));
        assert_eq!(w.update(150, &Val::Num(1.0), 100), Val::Num(1.0));
    }

    #[test]
    fn compaction_bounds_entries_and_keeps_counts() {
        let max = 16;
        let mut w = Sliding::new(Agg::Count, 1_000);
        let mut samples = Vec::new();
        for i in 0..5_000u64 {
            let t = i * 3;
            samples.push((t, 1.0));
            let Val::Num(got) = w.update(t, &Val::Num(1.0), max) else {
                panic!()
            };
            assert!(w.len() <= max);
            let g = slot_len(1_000, max);
            let lo = samples.iter().filter(|(s, _)| t - s < 1_000).count() as f64;
            let hi = samples.iter().filter(|(s, _)| t - s < 1_000 + g).count() as f64;
            assert!(lo <= got && got <= hi, "{i}: {lo} <= {got} <= {hi}");
        }
    }

    #[test]
    fn tiny_bounds_drop_the_oldest() {
        let mut w = Sliding::new(Agg::Max, 1_000_000);
        for i in 0..100u64 {
            w.update(i * 1_000, &Val::Num(100.0 - i as f64), 1);
            assert!(w.len() <= 1);
        }
        let mut f = Sliding::new(Agg::First, 1_000_000);
        for i in 0..100u64 {
            f.update(i * 1_000, &Val::Num(i as f64), 2);
            assert!(f.len() <= 2);
        }
    }

    #[test]
    fn tumbling_resets_at_boundaries() {
        let mut w = Tumbling::new(Agg::Sum, 1_000);
        assert_eq!(w.update(500, &Val::Num(1.0)), Val::Num(1.0));
        assert_eq!(w.update(999, &Val::Num(2.0)), Val::Num(3.0));
        assert_eq!(w.update(1_000, &Val::Num(5.0)), Val::Num(5.0));
        assert_eq!(w.update(1_500, &Val::Null), Val::Num(5.0));
        assert_eq!(w.update(3_500, &Val::Null), Val::Null);
        let mut f = Tumbling::new(Agg::First, 1_000);
        assert_eq!(f.update(10, &Val::Str("a".into())), Val::Str("a".into()));
        assert_eq!(f.update(20, &Val::Str("b".into())), Val::Str("a".into()));
        let mut l = Tumbling::new(Agg::Last, 1_000);
        assert_eq!(l.update(10, &Val::Str("a".into())), Val::Str("a".into()));
        assert_eq!(l.update(20, &Val::Str("b".into())), Val::Str("b".into()));
        assert_eq!(l.update(30, &Val::Null), Val::Str("b".into()));
    }
}
