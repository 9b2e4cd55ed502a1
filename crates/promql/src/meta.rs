//! The metadata endpoints Grafana's Prometheus data source uses for its
//! metric browser and autocompletion: `/api/v1/series`, `/api/v1/labels`
//! and `/api/v1/label/<name>/values`, over the same [`Storage`].
//!
//! The `start`/`end` parameters of those endpoints are not applied: every
//! known series of the namespace is considered (a superset of Prometheus'
//! answer, which Grafana only uses for suggestions).

use std::collections::BTreeSet;

use crate::ast::{Expr, Matcher};
use crate::error::Error;
use crate::parser::parse;
use crate::storage::{Labels, Storage};

/// Parses a `match[]` parameter: an instant vector selector without
/// offset (`up`, `{device="m1"}`), to its matchers.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, Error> {
    match parse(s)? {
        Expr::Vector(sel) if sel.offset_ms == 0 => Ok(sel.matchers),
        _ => Err(Error::Invalid(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        ))),
    }
}

/// The label sets of the series any of `selectors` matches (each a list
/// of matchers, all of which must match); with no selector, every series.
/// Sorted, without duplicates.
pub fn series<S: Storage>(storage: &S, selectors: &[Vec<Matcher>]) -> Result<Vec<Labels>, Error> {
    let mut out = BTreeSet::new();
    if selectors.is_empty() {
        out.extend(storage.select(&[])?.into_iter().map(|(l, _)| l));
    }
    for sel in selectors {
        out.extend(storage.select(sel)?.into_iter().map(|(l, _)| l));
    }
    Ok(out.into_iter().collect())
}

/// The label names used by those series, sorted.
pub fn label_names<S: Storage>(
    storage: &S,
    selectors: &[Vec<Matcher>],
) -> Result<Vec<String>, Error> {
    let names: BTreeSet<String> = series(storage, selectors)?
        .into_iter()
        .flat_map(|l| l.into_keys())
        .collect();
    Ok(names.into_iter().collect())
}

/// The values label `name` takes on those series, sorted (`__name__`
/// gives the metric names).
pub fn label_values<S: Storage>(
    storage: &S,
    name: &str,
    selectors: &[Vec<Matcher>],
) -> Result<Vec<String>, Error> {
    let values: BTreeSet<String> = series(storage, selectors)?
        .into_iter()
        .filter_map(|mut l| l.remove(name))
        .collect();
    Ok(values.into_iter().collect())
}
