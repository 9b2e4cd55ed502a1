//! Evaluation over a [`Storage`]: every expression is evaluated at all the
//! evaluation times at once (one step for an instant query), so each
//! selector reads its series' points once per query.

use std::collections::BTreeMap;

use crate::ast::{AggOp, Expr, Function, Grouping, MatrixSelector, VectorSelector};
use crate::error::Error;
use crate::parser::parse;
use crate::result::{InstantSample, QueryData, RangeSeries, SamplePair};
use crate::storage::{Labels, Sample, Storage};

/// Settings of the evaluator.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// How far back an instant vector selector looks for a series' latest
    /// point, in milliseconds (Prometheus' `--query.lookback-delta`, 5 minutes).
    pub lookback_ms: i64,
    /// Most evaluation times of a range query (Prometheus: 11,000).
    pub max_steps: usize,
    /// Most points a query may read from storage.
    pub max_samples: usize,
}

impl Default for EvalOptions {
    fn default() -> EvalOptions {
        EvalOptions {
            lookback_ms: 5 * 60_000,
            max_steps: 11_000,
            max_samples: 50_000_000,
        }
    }
}

/// Runs an instant query (`/api/v1/query`) at `time_ms`.
pub fn instant_query<S: Storage>(
    storage: &S,
    query: &str,
    time_ms: i64,
    opts: &EvalOptions,
) -> Result<QueryData, Error> {
    eval_instant(storage, &parse(query)?, time_ms, opts)
}

/// Runs a range query (`/api/v1/query_range`): the expression evaluated at
/// `start`, `start + step`, ... up to `end` inclusive (milliseconds).
pub fn range_query<S: Storage>(
    storage: &S,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &EvalOptions,
) -> Result<QueryData, Error> {
    eval_range(storage, &parse(query)?, start_ms, end_ms, step_ms, opts)
}

/// Evaluates a parsed expression at one time.
pub fn eval_instant<S: Storage>(
    storage: &S,
    expr: &Expr,
    time_ms: i64,
    opts: &EvalOptions,
) -> Result<QueryData, Error> {
    let mut ev = Evaluator::new(storage, opts, Steps::one(time_ms))?;
    if let Expr::Matrix(m) = expr {
        return ev.raw_matrix(m, time_ms);
    }
    Ok(match ev.eval(expr)? {
        Val::Scalar(v) => QueryData::Scalar(SamplePair {
            ts: time_ms,
            value: v.first().copied().unwrap_or(f64::NAN),
        }),
        Val::Vector(series) => {
            let mut out: Vec<InstantSample> = series
                .into_iter()
                .filter_map(|s| {
                    let value = s.values.first().copied().flatten()?;
                    Some(InstantSample {
                        metric: s.labels,
                        value: SamplePair { ts: time_ms, value },
                    })
                })
                .collect();
            out.sort_by(|a, b| a.metric.cmp(&b.metric));
            QueryData::Vector(out)
        }
    })
}

/// Evaluates a parsed expression at `start`, `start + step`, ... `end`.
pub fn eval_range<S: Storage>(
    storage: &S,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &EvalOptions,
) -> Result<QueryData, Error> {
    if step_ms <= 0 {
        return Err(Error::Invalid(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if end_ms < start_ms {
        return Err(Error::Invalid(
            "end timestamp must not be before start time".into(),
        ));
    }
    let n = (i128::from(end_ms) - i128::from(start_ms)) / i128::from(step_ms) + 1;
    if n > opts.max_steps as i128 {
        return Err(Error::Invalid(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            opts.max_steps
        )));
    }
    if matches!(expr, Expr::Matrix(_)) {
        return Err(Error::Invalid(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
                .into(),
        ));
    }
    let steps = Steps {
        start: start_ms,
        step: step_ms,
        n: n as usize,
    };
    let mut ev = Evaluator::new(storage, opts, steps)?;
    let times: Vec<i64> = (0..steps.n).map(|i| steps.at(i)).collect();
    let mut out: Vec<RangeSeries> = match ev.eval(expr)? {
        Val::Scalar(v) => vec![RangeSeries {
            metric: Labels::new(),
            values: times
                .iter()
                .zip(v)
                .map(|(&ts, value)| SamplePair { ts, value })
                .collect(),
        }],
        Val::Vector(series) => series
            .into_iter()
            .map(|s| RangeSeries {
                metric: s.labels,
                values: times
                    .iter()
                    .zip(s.values)
                    .filter_map(|(&ts, v)| v.map(|value| SamplePair { ts, value }))
                    .collect(),
            })
            .filter(|s| !s.values.is_empty())
            .collect(),
    };
    out.sort_by(|a, b| a.metric.cmp(&b.metric));
    Ok(QueryData::Matrix(out))
}

/// The evaluation times.
#[derive(Clone, Copy, Debug)]
struct Steps {
    start: i64,
    step: i64,
    n: usize,
}

impl Steps {
    fn one(t: i64) -> Steps {
        Steps {
            start: t,
            step: 1,
            n: 1,
        }
    }

    /// The i-th time; `i < n`, so within `[start, end]` (computed wide:
    /// `step * i` alone may not fit).
    fn at(&self, i: usize) -> i64 {
        let t = i128::from(self.start) + i128::from(self.step) * i as i128;
        i64::try_from(t).unwrap_or(i64::MAX)
    }

    fn last(&self) -> i64 {
        self.at(self.n.saturating_sub(1))
    }
}

/// An intermediate value: per evaluation time, a number or one optional
/// value per series.
enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
}

struct Series {
    labels: Labels,
    values: Vec<Option<f64>>,
}

struct Evaluator<'a, S: Storage> {
    storage: &'a S,
    opts: &'a EvalOptions,
    steps: Steps,
    samples: usize,
}

impl<'a, S: Storage> Evaluator<'a, S> {
    fn new(storage: &'a S, opts: &'a EvalOptions, steps: Steps) -> Result<Self, Error> {
        if opts.lookback_ms <= 0 {
            return Err(Error::Invalid("lookback must be positive".into()));
        }
        Ok(Evaluator {
            storage,
            opts,
            steps,
            samples: 0,
        })
    }

    fn eval(&mut self, e: &Expr) -> Result<Val, Error> {
        match e {
            Expr::Number(n) => Ok(Val::Scalar(vec![*n; self.steps.n])),
            Expr::Vector(sel) => self.vector(sel).map(Val::Vector),
            Expr::Matrix(_) => Err(Error::Invalid(
                "a range vector is only allowed as the argument of a function".into(),
            )),
            Expr::Call { func, arg } => self.call(*func, arg).map(Val::Vector),
            Expr::Aggregate { op, grouping, arg } => {
                let Val::Vector(series) = self.eval(arg)? else {
                    return Err(Error::Invalid(
                        "expected type instant vector in aggregation expression, got scalar".into(),
                    ));
                };
                Ok(Val::Vector(aggregate(*op, grouping, series, self.steps.n)))
            }
            Expr::Binary { op, lhs, rhs } => {
                let (l, r) = (self.eval(lhs)?, self.eval(rhs)?);
                let f = |a: f64, b: f64| op.apply(a, b);
                match (l, r) {
                    (Val::Scalar(a), Val::Scalar(b)) => Ok(Val::Scalar(
                        a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect(),
                    )),
                    (Val::Vector(v), Val::Scalar(s)) => {
                        map_vector(v, |i, x| f(x, s.get(i).copied().unwrap_or(f64::NAN)))
                            .map(Val::Vector)
                    }
                    (Val::Scalar(s), Val::Vector(v)) => {
                        map_vector(v, |i, x| f(s.get(i).copied().unwrap_or(f64::NAN), x))
                            .map(Val::Vector)
                    }
                    (Val::Vector(_), Val::Vector(_)) => Err(Error::unsupported(
                        "binary operations between two instant vectors",
                    )),
                }
            }
            Expr::Neg(inner) => match self.eval(inner)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(v) => map_vector(v, |_, x| -x).map(Val::Vector),
            },
        }
    }

    /// Selects the series of a selector and reads their points with
    /// `lo <= ts <= hi`.
    fn fetch(
        &mut self,
        sel: &VectorSelector,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, Error> {
        let (labels, handles): (Vec<Labels>, Vec<S::Series>) =
            self.storage.select(&sel.matchers)?.into_iter().unzip();
        let points = self.storage.points_many(&handles, lo, hi)?;
        if points.len() != labels.len() {
            return Err(Error::Storage(format!(
                "asked for the points of {} series, got {}",
                labels.len(),
                points.len()
            )));
        }
        self.charge(points.iter().map(Vec::len).sum())?;
        Ok(labels.into_iter().zip(points).collect())
    }

    /// Counts `n` samples read or held against [`EvalOptions::max_samples`].
    fn charge(&mut self, n: usize) -> Result<(), Error> {
        self.samples = self.samples.saturating_add(n);
        if self.samples > self.opts.max_samples {
            return Err(Error::Execution(
                "query processing would load too many samples into memory".into(),
            ));
        }
        Ok(())
    }

    /// An instant vector selector: at each time `t`, the latest point in
    /// `(t - offset - lookback, t - offset]`.
    fn vector(&mut self, sel: &VectorSelector) -> Result<Vec<Series>, Error> {
        let lookback = self.opts.lookback_ms;
        let first = self.steps.start.saturating_sub(sel.offset_ms);
        let last = self.steps.last().saturating_sub(sel.offset_ms);
        let lo = first.saturating_sub(lookback).saturating_add(1);
        let series = self.fetch(sel, lo, last)?;
        let steps = self.steps;
        self.charge(series.len().saturating_mul(steps.n))?;
        Ok(series
            .into_iter()
            .map(|(labels, pts)| {
                let values = (0..steps.n)
                    .map(|i| {
                        let t = steps.at(i).saturating_sub(sel.offset_ms);
                        let end = pts.partition_point(|p| p.ts <= t);
                        let p = pts.get(end.checked_sub(1)?)?;
                        (p.ts > t.saturating_sub(lookback)).then_some(p.value)
                    })
                    .collect();
                Series { labels, values }
            })
            .collect())
    }

    /// A function over a range selector: at each time `t`, the points in
    /// `(t - offset - range, t - offset]`.
    fn call(&mut self, func: Function, m: &MatrixSelector) -> Result<Vec<Series>, Error> {
        let sel = &m.selector;
        let first = self.steps.start.saturating_sub(sel.offset_ms);
        let last = self.steps.last().saturating_sub(sel.offset_ms);
        let lo = first.saturating_sub(m.range_ms).saturating_add(1);
        let series = self.fetch(sel, lo, last)?;
        let steps = self.steps;
        self.charge(series.len().saturating_mul(steps.n))?;
        let mut out = Vec::with_capacity(series.len());
        for (mut labels, pts) in series {
            let mut values = Vec::with_capacity(steps.n);
            for i in 0..steps.n {
                let t = steps.at(i).saturating_sub(sel.offset_ms);
                let from = t.saturating_sub(m.range_ms);
                let a = pts.partition_point(|p| p.ts <= from);
                let b = pts.partition_point(|p| p.ts <= t);
                let w = pts.get(a..b).unwrap_or(&[]);
                // Every window's points count, as in Prometheus: overlapping
                // windows over many steps are work, too.
                self.charge(w.len())?;
                values.push(window(func, w, from, t, m.range_ms));
            }
            if func != Function::LastOverTime {
                labels.remove("__name__");
            }
            out.push(Series { labels, values });
        }
        merge_same_labels(out)
    }

    /// An instant query of a bare range selector: the raw points in
    /// `(t - offset - range, t - offset]`, with their own timestamps.
    fn raw_matrix(&mut self, m: &MatrixSelector, t: i64) -> Result<QueryData, Error> {
        let t = t.saturating_sub(m.selector.offset_ms);
        let lo = t.saturating_sub(m.range_ms).saturating_add(1);
        let mut out: Vec<RangeSeries> = self
            .fetch(&m.selector, lo, t)?
            .into_iter()
            .filter(|(_, pts)| !pts.is_empty())
            .map(|(metric, pts)| RangeSeries {
                metric,
                values: pts
                    .into_iter()
                    .map(|p| SamplePair {
                        ts: p.ts,
                        value: p.value,
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(QueryData::Matrix(out))
    }
}

/// Applies `f(step, value)` to every value of a vector; the metric name is
/// dropped, as arithmetic in Prometheus does.
fn map_vector(v: Vec<Series>, f: impl Fn(usize, f64) -> f64) -> Result<Vec<Series>, Error> {
    let out = v
        .into_iter()
        .map(|mut s| {
            s.labels.remove("__name__");
            s.values = s
                .values
                .iter()
                .enumerate()
                .map(|(i, x)| x.map(|x| f(i, x)))
                .collect();
            s
        })
        .collect();
    merge_same_labels(out)
}

/// Joins series that ended up with the same labels (after the metric name
/// was dropped); two values at the same time are an error, as in Prometheus.
fn merge_same_labels(v: Vec<Series>) -> Result<Vec<Series>, Error> {
    let mut map: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for s in v {
        match map.get_mut(&s.labels) {
            None => {
                map.insert(s.labels, s.values);
            }
            Some(values) => {
                for (slot, x) in values.iter_mut().zip(s.values) {
                    if x.is_some() {
                        if slot.is_some() {
                            return Err(Error::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *slot = x;
                    }
                }
            }
        }
    }
    Ok(map
        .into_iter()
        .map(|(labels, values)| Series { labels, values })
        .collect())
}

/// Neumaier-compensated running sum, as Prometheus sums.
#[derive(Default, Clone, Copy)]
struct KahanSum {
    sum: f64,
    c: f64,
}

impl KahanSum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.c += (self.sum - t) + x;
        } else {
            self.c += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.c
        }
    }
}

/// A mean as Prometheus takes it: the compensated sum over the count, or,
/// when that sum overflows though no value is infinite, a running mean.
#[derive(Default, Clone, Copy)]
struct Mean {
    count: usize,
    sum: KahanSum,
    running: f64,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        self.running += (x - self.running) / self.count as f64;
    }

    fn value(&self) -> f64 {
        let s = self.sum.value();
        if s.is_infinite() && self.running.is_finite() {
            self.running
        } else {
            s / self.count as f64
        }
    }
}

/// The `min`/`max` step of Prometheus: a NaN is replaced by any number.
fn pick(cur: f64, x: f64, want_min: bool) -> f64 {
    let better = if want_min { x < cur } else { x > cur };
    if better || cur.is_nan() {
        x
    } else {
        cur
    }
}

/// One function over the points of one window `(from, to]`.
fn window(func: Function, pts: &[Sample], from: i64, to: i64, range_ms: i64) -> Option<f64> {
    let first = pts.first()?;
    let vals = pts.iter().map(|p| p.value);
    Some(match func {
        Function::CountOverTime => pts.len() as f64,
        Function::LastOverTime => pts.last()?.value,
        Function::SumOverTime => sum(vals),
        Function::AvgOverTime => {
            let mut m = Mean::default();
            vals.for_each(|x| m.add(x));
            m.value()
        }
        Function::MinOverTime => vals.fold(first.value, |m, x| pick(m, x, true)),
        Function::MaxOverTime => vals.fold(first.value, |m, x| pick(m, x, false)),
        Function::Rate => extrapolated_delta(pts, from, to, Some(range_ms))?,
        Function::Increase => extrapolated_delta(pts, from, to, None)?,
    })
}

fn sum(vals: impl Iterator<Item = f64>) -> f64 {
    let mut k = KahanSum::default();
    vals.for_each(|x| k.add(x));
    k.value()
}

/// The increase of a counter over the window `(from, to]`, extrapolated as
/// Prometheus does: the difference between the last and first points,
/// plus the value before each drop (a counter reset), scaled from the
/// sampled interval out to the window's edges. An edge farther than 1.1
/// average sample intervals from the nearest point is taken to be where
/// the series starts or ends, and the extrapolation goes only half an
/// interval towards it; at the start it never goes past where the counter
/// would have been zero. Needs at least two points. With `per_range_ms`,
/// the result is per second of that range (`rate`). The arithmetic is done
/// in Prometheus' order so that results agree to the last bit.
fn extrapolated_delta(
    pts: &[Sample],
    from: i64,
    to: i64,
    per_range_ms: Option<i64>,
) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts.first()?, pts.last()?);
    let mut delta = last.value - first.value;
    for w in pts.windows(2) {
        if w[1].value < w[0].value {
            delta += w[0].value;
        }
    }
    // Differences taken wide: with extreme query times they may not fit an
    // i64; with ordinary ones they are exact either way.
    let secs = |a: i64, b: i64| (i128::from(a) - i128::from(b)) as f64 / 1000.0;
    let sampled = secs(last.ts, first.ts);
    let avg_interval = sampled / (pts.len() - 1) as f64;
    let threshold = avg_interval * 1.1;
    let mut to_start = secs(first.ts, from);
    let mut to_end = secs(to, last.ts);
    if to_start >= threshold {
        to_start = avg_interval / 2.0;
    }
    if delta > 0.0 && first.value >= 0.0 {
        let to_zero = sampled * (first.value / delta);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_interval / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if let Some(r) = per_range_ms {
        factor /= r as f64 / 1000.0;
    }
    Some(delta * factor)
}

/// The labels of a series' group.
fn group_labels(labels: &Labels, grouping: &Grouping) -> Labels {
    match grouping {
        Grouping::None => Labels::new(),
        Grouping::By(keep) => labels
            .iter()
            .filter(|(k, _)| keep.iter().any(|x| x == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Grouping::Without(drop) => labels
            .iter()
            .filter(|(k, _)| *k != "__name__" && !drop.iter().any(|x| x == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// One group's accumulator at one time.
#[derive(Clone, Copy, Default)]
struct Acc {
    count: usize,
    sum: KahanSum,
    mean: Mean,
    pick: f64,
}

fn aggregate(op: AggOp, grouping: &Grouping, series: Vec<Series>, n: usize) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Vec<Acc>> = BTreeMap::new();
    for s in series {
        let accs = groups
            .entry(group_labels(&s.labels, grouping))
            .or_insert_with(|| vec![Acc::default(); n]);
        for (acc, x) in accs.iter_mut().zip(&s.values) {
            let Some(x) = *x else { continue };
            acc.pick = if acc.count == 0 {
                x
            } else {
                pick(acc.pick, x, op == AggOp::Min)
            };
            acc.count += 1;
            acc.sum.add(x);
            acc.mean.add(x);
        }
    }
    groups
        .into_iter()
        .map(|(labels, accs)| Series {
            labels,
            values: accs
                .iter()
                .map(|a| {
                    (a.count > 0).then(|| match op {
                        AggOp::Sum => a.sum.value(),
                        AggOp::Avg => a.mean.value(),
                        AggOp::Count => a.count as f64,
                        AggOp::Min | AggOp::Max => a.pick,
                    })
                })
                .collect(),
        })
        .collect()
}
