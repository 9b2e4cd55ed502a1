//! The state one group keeps for one stateful expression of a rule, and
//! how a new value updates it: windows (in `window.rs`), `FOR`
//! durations, change detection and the z-score.

use crate::ast::SlotKind;
use crate::value::{Owned, Val};
use crate::window::{Sliding, Tumbling};

/// How many values `zscore` learns from before it answers.
pub(crate) const ZSCORE_WARMUP: u64 = 5;

#[derive(Debug, Clone)]
pub(crate) enum SlotState {
    Sliding(Sliding),
    Tumbling(Tumbling),
    /// Time the condition became (and has stayed) true.
    For(Option<u64>),
    /// Last non-null value (`changed`, `previous`).
    Last(Option<Owned>),
    /// Last number (`delta`).
    Number(Option<f64>),
    /// Last number and its time (`rate`).
    Timed(Option<(u64, f64)>),
    ZScore(Ewma),
}

/// Exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ewma {
    pub n: u64,
    pub mean: f64,
    pub var: f64,
}

impl Ewma {
    /// The z-score of `x` against the values seen so far (null until
    /// [`ZSCORE_WARMUP`] values have been seen), then learns `x`.
    pub fn score_then_learn(&mut self, x: f64, alpha: f64) -> Owned {
        let z = if self.n < ZSCORE_WARMUP {
            Val::Null
        } else {
            let diff = x - self.mean;
            let sd = self.var.sqrt();
            if sd > 0.0 {
                Val::Num(diff / sd)
            } else if diff == 0.0 {
                Val::Num(0.0)
            } else {
                // A constant signal that moves: infinitely unusual.
                Val::Num(f64::INFINITY.copysign(diff))
            }
        };
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let diff = x - self.mean;
            let incr = alpha * diff;
            self.mean += incr;
            self.var = (1.0 - alpha) * (self.var + diff * incr);
        }
        self.n += 1;
        z
    }
}

impl SlotState {
    pub fn new(kind: &SlotKind) -> Self {
        match *kind {
            SlotKind::Sliding(agg, ms) => SlotState::Sliding(Sliding::new(agg, ms)),
            SlotKind::Tumbling(agg, ms) => SlotState::Tumbling(Tumbling::new(agg, ms)),
            SlotKind::For(_) => SlotState::For(None),
            SlotKind::Changed | SlotKind::Previous => SlotState::Last(None),
            SlotKind::Delta => SlotState::Number(None),
            SlotKind::Rate => SlotState::Timed(None),
            SlotKind::ZScore(_) => SlotState::ZScore(Ewma::default()),
        }
    }

    /// Window entries held (0 for the other kinds).
    pub fn samples(&self) -> usize {
        match self {
            SlotState::Sliding(w) => w.len(),
            _ => 0,
        }
    }

    /// Feeds the value the expression's argument had on the message seen
    /// at `now` and returns the expression's value for that message.
    pub fn update(
        &mut self,
        kind: &SlotKind,
        now: u64,
        value: &Val<'_>,
        max_samples: usize,
    ) -> Owned {
        match (self, *kind) {
            (SlotState::Sliding(w), _) => w.update(now, value, max_samples),
            (SlotState::Tumbling(w), _) => w.update(now, value),
            (SlotState::For(since), SlotKind::For(ms)) => {
                if value.is_true() {
                    let start = *since.get_or_insert(now);
                    Val::Bool(now.saturating_sub(start) >= ms)
                } else {
                    *since = None;
                    Val::Bool(false)
                }
            }
            (SlotState::Last(last), SlotKind::Changed) => {
                if value.is_null() {
                    return Val::Null;
                }
                let changed = last.as_ref().is_some_and(|p| !p.same(value));
                *last = Some(value.clone().into_owned());
                Val::Bool(changed)
            }
            (SlotState::Last(last), _) => {
                let previous = last.clone().unwrap_or(Val::Null);
                if !value.is_null() {
                    *last = Some(value.clone().into_owned());
                }
                previous
            }
            (SlotState::Number(last), _) => {
                let Some(x) = value.as_num() else {
                    return Val::Null;
                };
                let delta = last.map_or(Val::Null, |p| Val::Num(x - p));
                *last = Some(x);
                delta
            }
            (SlotState::Timed(last), _) => {
                let Some(x) = value.as_num() else {
                    return Val::Null;
                };
                let rate = match *last {
                    Some((t, p)) if now > t => Val::Num((x - p) * 1000.0 / (now - t) as f64),
                    _ => Val::Null,
                };
                *last = Some((now, x));
                rate
            }
            (SlotState::ZScore(ewma), SlotKind::ZScore(bits)) => match value.as_num() {
                Some(x) => ewma.score_then_learn(x, f64::from_bits(bits)),
                None => Val::Null,
            },
            // A state that does not fit its kind cannot happen (states are
            // built from the kinds and reset when a rule's layout changes).
            (state, kind) => {
                *state = SlotState::new(&kind);
                Val::Null
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: SlotKind, inputs: &[(u64, Owned)]) -> Vec<Owned> {
        let mut s = SlotState::new(&kind);
        inputs
            .iter()
            .map(|(t, v)| s.update(&kind, *t, v, 100))
            .collect()
    }

    #[test]
    fn for_duration() {
        let t = Val::Bool(true);
        let out = run(
            SlotKind::For(100),
            &[
                (0, t.clone()),
                (50, t.clone()),
                (100, t.clone()),
                (120, Val::Null),
                (130, t.clone()),
                (229, t.clone()),
                (230, t.clone()),
            ],
        );
        let b: Vec<_> = out.iter().map(Val::is_true).collect();
        assert_eq!(b, [false, false, true, false, false, false, true]);
    }

    #[test]
    fn change_detection() {
        let vals = [
            (0, Val::Num(1.0)),
            (1000, Val::Null),
            (2000, Val::Num(1.0)),
            (4000, Val::Num(5.0)),
        ];
        assert_eq!(
            run(SlotKind::Changed, &vals),
            [
                Val::Bool(false),
                Val::Null,
                Val::Bool(false),
                Val::Bool(true)
            ]
        );
        assert_eq!(
            run(SlotKind::Previous, &vals),
            [Val::Null, Val::Num(1.0), Val::Num(1.0), Val::Num(1.0)]
        );
        assert_eq!(
            run(SlotKind::Delta, &vals),
            [Val::Null, Val::Null, Val::Num(0.0), Val::Num(4.0)]
        );
        assert_eq!(
            run(SlotKind::Rate, &vals),
            [Val::Null, Val::Null, Val::Num(0.0), Val::Num(2.0)]
        );
    }

    #[test]
    fn zscore_warms_up_and_flags_jumps() {
        let mut e = Ewma::default();
        for _ in 0..ZSCORE_WARMUP {
            assert_eq!(e.score_then_learn(1.0, 0.1), Val::Null);
        }
        assert_eq!(e.score_then_learn(1.0, 0.1), Val::Num(0.0));
        assert_eq!(e.score_then_learn(2.0, 0.1), Val::Num(f64::INFINITY));
    }
}
