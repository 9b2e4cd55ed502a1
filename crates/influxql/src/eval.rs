//! Evaluation of statements over the telemetry store.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use tsdb::{Filter, Selector, SeriesKey, Tsdb, Value, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};

use crate::error::Error;
use crate::parser::{Agg, Fill, Select, Statement, TagCond};
use crate::result::{Epoch, Series};

/// The namespace InfluxQL reads.
pub const NAMESPACE: &str = "default";

/// Most `GROUP BY time()` intervals one statement may ask for.
pub const MAX_BUCKETS: i64 = 100_000;

const NS_PER_MS: i64 = 1_000_000;

/// What a query needs besides its text.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// What `now()` means, ms since the epoch.
    pub now_ms: i64,
    /// How times are written.
    pub epoch: Epoch,
    /// The name `SHOW DATABASES` lists.
    pub database: String,
}

/// The measurement and field of a telemetry metric: the part before the
/// first `.` and the rest; a metric without a `.` is field `value`.
pub fn split_metric(metric: &str) -> (&str, &str) {
    metric.split_once('.').unwrap_or((metric, "value"))
}

/// The metric names a field of a measurement can be stored under.
fn metric_names(measurement: &str, field: &str) -> Vec<String> {
    let mut v = vec![format!("{measurement}.{field}")];
    if field == "value" {
        v.push(measurement.to_string());
    }
    v
}

/// A tag of a series: `device` is the device id, others are labels.
pub fn tag_value<'a>(key: &'a SeriesKey, tag: &str) -> Option<&'a str> {
    if tag == "device" {
        Some(key.device())
    } else {
        key.label(tag)
    }
}

fn cond_holds(key: &SeriesKey, c: &TagCond) -> bool {
    match c {
        TagCond::Eq(k, v) => tag_value(key, k).unwrap_or("") == v,
        TagCond::Ne(k, v) => tag_value(key, k).unwrap_or("") != v,
        TagCond::Match(k, r) => r.is_match(tag_value(key, k).unwrap_or("")),
        TagCond::NotMatch(k, r) => !r.is_match(tag_value(key, k).unwrap_or("")),
    }
}

/// Runs one statement.
pub fn execute(db: &Tsdb, st: &Statement, opts: &QueryOptions) -> Result<Vec<Series>, Error> {
    match st {
        Statement::Select(s) => select(db, s, opts),
        Statement::CreateDatabase => Ok(Vec::new()),
        Statement::ShowDatabases => Ok(vec![Series {
            name: "databases".into(),
            tags: None,
            columns: vec!["name".into()],
            values: vec![vec![Json::from(opts.database.clone())]],
        }]),
        Statement::ShowRetentionPolicies => Ok(vec![Series {
            name: String::new(),
            tags: None,
            columns: [
                "name",
                "duration",
                "shardGroupDuration",
                "replicaN",
                "default",
            ]
            .map(String::from)
            .to_vec(),
            values: vec![vec![
                Json::from("autogen"),
                Json::from("0s"),
                Json::from("168h0m0s"),
                Json::from(1),
                Json::from(true),
            ]],
        }]),
        Statement::ShowMeasurements(limit) => {
            let ms: BTreeSet<String> = all_series(db)
                .iter()
                .map(|k| split_metric(k.metric()).0.to_string())
                .collect();
            let values: Vec<Vec<Json>> = ms
                .into_iter()
                .take(limit.unwrap_or(usize::MAX))
                .map(|m| vec![Json::from(m)])
                .collect();
            Ok(one_series("measurements", &["name"], values))
        }
        Statement::ShowTagKeys(from) => Ok(per_measurement(db, from, &["tagKey"], |keys| {
            let mut tags = BTreeSet::new();
            for k in keys {
                tags.insert("device".to_string());
                tags.extend(k.labels().iter().map(|(l, _)| l.to_string()));
            }
            tags.into_iter().map(|t| vec![Json::from(t)]).collect()
        })),
        Statement::ShowTagValues(from, tag) => {
            Ok(per_measurement(db, from, &["key", "value"], |keys| {
                let vals: BTreeSet<&str> = keys.iter().filter_map(|k| tag_value(k, tag)).collect();
                vals.into_iter()
                    .map(|v| vec![Json::from(tag.clone()), Json::from(v)])
                    .collect()
            }))
        }
        Statement::ShowFieldKeys(from) => {
            let types: BTreeMap<String, &'static str> = db
                .latest(NAMESPACE, &Filter::All, &Filter::All)
                .into_iter()
                .map(|(k, p)| (k.metric().to_string(), type_name(&p.value)))
                .collect();
            Ok(per_measurement(
                db,
                from,
                &["fieldKey", "fieldType"],
                |keys| {
                    let fields: BTreeMap<&str, &str> = keys
                        .iter()
                        .map(|k| {
                            let t = types.get(k.metric()).copied().unwrap_or("float");
                            (split_metric(k.metric()).1, t)
                        })
                        .collect();
                    fields
                        .into_iter()
                        .map(|(f, t)| vec![Json::from(f), Json::from(t)])
                        .collect()
                },
            ))
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::F64(_) => "float",
        Value::I64(_) => "integer",
        Value::Bool(_) => "boolean",
        Value::Str(_) => "string",
    }
}

fn all_series(db: &Tsdb) -> Vec<SeriesKey> {
    db.list_series(NAMESPACE, None)
}

fn one_series(name: &str, columns: &[&str], values: Vec<Vec<Json>>) -> Vec<Series> {
    if values.is_empty() {
        return Vec::new();
    }
    vec![Series {
        name: name.into(),
        tags: None,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        values,
    }]
}

/// One series per measurement (or only `from`), rows made by `rows` from
/// the measurement's series keys; measurements without rows are left out.
fn per_measurement(
    db: &Tsdb,
    from: &Option<String>,
    columns: &[&str],
    rows: impl Fn(&[SeriesKey]) -> Vec<Vec<Json>>,
) -> Vec<Series> {
    let mut by_m: BTreeMap<String, Vec<SeriesKey>> = BTreeMap::new();
    for k in all_series(db) {
        let m = split_metric(k.metric()).0.to_string();
        if from.as_ref().is_none_or(|f| *f == m) {
            by_m.entry(m).or_default().push(k);
        }
    }
    by_m.into_iter()
        .flat_map(|(m, keys)| one_series(&m, columns, rows(&keys)))
        .collect()
}

/// Points of one column of one group: (ms, value), ascending by time.
type Points = Vec<(i64, Value)>;

fn select(db: &Tsdb, s: &Select, opts: &QueryOptions) -> Result<Vec<Series>, Error> {
    let aggregated = s.fields.iter().filter(|f| f.agg.is_some()).count();
    if aggregated > 0 && aggregated < s.fields.len() {
        return Err(Error::Invalid(
            "mixing aggregate and non-aggregate queries is not supported".into(),
        ));
    }
    if s.interval_ns.is_some() && aggregated == 0 {
        return Err(Error::Invalid(
            "GROUP BY requires at least one aggregate function".into(),
        ));
    }
    let interval_ms = match s.interval_ns {
        Some(ns) if ns % NS_PER_MS != 0 => {
            return Err(Error::Unsupported(
                "GROUP BY time() intervals that are not whole milliseconds".into(),
            ))
        }
        Some(ns) => Some(ns / NS_PER_MS),
        None => None,
    };
    let start = s
        .start_ns
        .map_or(MIN_TIMESTAMP_MS, |ns| {
            ns.div_euclid(NS_PER_MS) + i64::from(ns.rem_euclid(NS_PER_MS) != 0)
        })
        .max(MIN_TIMESTAMP_MS);
    let default_end = if interval_ms.is_some() {
        opts.now_ms
    } else {
        MAX_TIMESTAMP_MS
    };
    let end = s
        .end_ns
        .map_or(default_end, |ns| ns.div_euclid(NS_PER_MS))
        .min(MAX_TIMESTAMP_MS);
    if start > end {
        return Ok(Vec::new());
    }
    if let Some(d) = interval_ms {
        let first = start.div_euclid(d) * d;
        if (end - first) / d >= MAX_BUCKETS {
            return Err(Error::Invalid(format!(
                "too many points in the GROUP BY interval ({} intervals, at most {MAX_BUCKETS}); maybe you forgot to specify a where time clause?",
                (end - first) / d + 1
            )));
        }
    }

    let mut sel = Selector::namespace(NAMESPACE);
    for f in &s.fields {
        for m in metric_names(&s.measurement, &f.field) {
            sel = sel.metric(&m);
        }
    }
    if let Some(TagCond::Eq(_, d)) = s
        .conds
        .iter()
        .find(|c| matches!(c, TagCond::Eq(k, _) if k == "device"))
    {
        sel = sel.device(d);
    }
    let found = db.query_raw(&sel, start, end + 1, usize::MAX)?;

    // Group key -> one list of points per selected column.
    let mut groups: BTreeMap<Vec<String>, Vec<Points>> = BTreeMap::new();
    for sp in found {
        let key = &sp.series;
        if !s.conds.iter().all(|c| cond_holds(key, c)) {
            continue;
        }
        let (m, field) = split_metric(key.metric());
        if m != s.measurement {
            continue;
        }
        let gk: Vec<String> = s
            .group_tags
            .iter()
            .map(|t| tag_value(key, t).unwrap_or("").to_string())
            .collect();
        let cols = groups
            .entry(gk)
            .or_insert_with(|| vec![Vec::new(); s.fields.len()]);
        for (i, f) in s.fields.iter().enumerate() {
            if f.field == field {
                cols[i].extend(sp.points.iter().map(|p| (p.ts, p.value.clone())));
            }
        }
    }

    let columns = column_names(s);
    let mut out = Vec::new();
    for (gk, mut cols) in groups {
        for c in &mut cols {
            c.sort_by_key(|(t, _)| *t);
        }
        let mut values = if s.fields.iter().all(|f| f.agg.is_none()) {
            raw_rows(&cols, opts.epoch)
        } else {
            agg_rows(s, &cols, start, end, interval_ms, opts.epoch)
        };
        if let Some(l) = s.limit {
            values.truncate(l);
        }
        if values.is_empty() {
            continue;
        }
        let tags = (!s.group_tags.is_empty()).then(|| {
            s.group_tags
                .iter()
                .cloned()
                .zip(gk)
                .collect::<BTreeMap<_, _>>()
        });
        out.push(Series {
            name: s.measurement.clone(),
            tags,
            columns: columns.clone(),
            values,
        });
    }
    Ok(out)
}

/// `time` and one name per field: its alias, else the function or field
/// name, repeated names numbered `_1`, `_2`... as InfluxDB does.
fn column_names(s: &Select) -> Vec<String> {
    let mut cols = vec!["time".to_string()];
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &s.fields {
        let base = f.alias.clone().unwrap_or_else(|| {
            f.agg
                .map_or_else(|| f.field.clone(), |a| a.name().to_string())
        });
        let n = seen.entry(base.clone()).or_insert(0);
        cols.push(if *n == 0 { base } else { format!("{base}_{n}") });
        *n += 1;
    }
    cols
}

/// A float as InfluxDB (Go) writes it: whole values without a fraction
/// (`2`, not `2.0`); NaN and infinities as null.
fn float_json(f: f64) -> Json {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Json::from(f as i64)
    } else {
        Json::from(f)
    }
}

fn json(v: &Value) -> Json {
    match v {
        Value::F64(f) => float_json(*f),
        Value::I64(i) => Json::from(*i),
        Value::Bool(b) => Json::from(*b),
        Value::Str(s) => Json::from(s.as_ref()),
    }
}

/// Raw points, one row per time (several rows when several series of the
/// group have a point at the same time).
fn raw_rows(cols: &[Points], epoch: Epoch) -> Vec<Vec<Json>> {
    let mut events: Vec<(i64, usize, Json)> = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        events.extend(c.iter().map(|(t, v)| (*t, i, json(v))));
    }
    events.sort_by_key(|(t, i, _)| (*t, *i));
    let mut rows = Vec::new();
    let mut idx = 0;
    while idx < events.len() {
        let t = events[idx].0;
        let mut per_col: Vec<Vec<Json>> = vec![Vec::new(); cols.len()];
        while idx < events.len() && events[idx].0 == t {
            let (_, c, v) = &events[idx];
            if let Some(pc) = per_col.get_mut(*c) {
                pc.push(v.clone());
            }
            idx += 1;
        }
        let n = per_col.iter().map(Vec::len).max().unwrap_or(0);
        for r in 0..n {
            let mut row = vec![epoch.time(t)];
            row.extend(
                per_col
                    .iter()
                    .map(|pc| pc.get(r).cloned().unwrap_or(Json::Null)),
            );
            rows.push(row);
        }
    }
    rows
}

/// An aggregate of points; selectors also give the chosen point's time.
fn aggregate(agg: Agg, pts: &[(i64, Value)]) -> Option<(Json, Option<i64>)> {
    let nums = || {
        pts.iter()
            .filter(|(_, v)| matches!(v, Value::F64(_) | Value::I64(_)))
    };
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    match agg {
        Agg::Count => (!pts.is_empty()).then(|| (Json::from(pts.len()), None)),
        Agg::Mean => {
            let (n, sum) = nums().fold((0usize, 0.0), |(n, s), (_, v)| (n + 1, s + num(v)));
            (n > 0).then(|| (float_json(sum / n as f64), None))
        }
        Agg::Sum => {
            nums().next()?;
            if nums().all(|(_, v)| matches!(v, Value::I64(_))) {
                let s = nums().fold(0i64, |s, (_, v)| match v {
                    Value::I64(i) => s.wrapping_add(*i),
                    _ => s,
                });
                Some((Json::from(s), None))
            } else {
                Some((float_json(nums().map(|(_, v)| num(v)).sum::<f64>()), None))
            }
        }
        Agg::Min | Agg::Max => {
            let mut best: Option<&(i64, Value)> = None;
            for p in nums() {
                let better = best.is_none_or(|b| {
                    if agg == Agg::Min {
                        num(&p.1) < num(&b.1)
                    } else {
                        num(&p.1) > num(&b.1)
                    }
                });
                if better {
                    best = Some(p);
                }
            }
            best.map(|(t, v)| (json(v), Some(*t)))
        }
        Agg::First => pts.first().map(|(t, v)| (json(v), Some(*t))),
        Agg::Last => {
            let t = pts.last()?.0;
            // The earliest written of the points at the latest time.
            pts.iter()
                .find(|(pt, _)| *pt == t)
                .map(|(t, v)| (json(v), Some(*t)))
        }
    }
}

fn agg_rows(
    s: &Select,
    cols: &[Points],
    start: i64,
    end: i64,
    interval_ms: Option<i64>,
    epoch: Epoch,
) -> Vec<Vec<Json>> {
    let aggs: Vec<Agg> = s.fields.iter().filter_map(|f| f.agg).collect();
    let Some(d) = interval_ms else {
        if cols.iter().all(Vec::is_empty) {
            return Vec::new();
        }
        let results: Vec<Option<(Json, Option<i64>)>> = aggs
            .iter()
            .zip(cols)
            .map(|(a, c)| aggregate(*a, c))
            .collect();
        let default_t = if s.start_ns.is_some() { start } else { 0 };
        // One distinct selector call (repeats are computed once, as in
        // InfluxDB) reports its point's time.
        let one_call = s
            .fields
            .windows(2)
            .all(|w| w[0].agg == w[1].agg && w[0].field == w[1].field);
        let t = match (aggs.first(), results.first()) {
            (Some(a), Some(Some((_, Some(t))))) if one_call && a.is_selector() => *t,
            _ => default_t,
        };
        let mut row = vec![epoch.time(t)];
        row.extend(
            results
                .into_iter()
                .map(|r| r.map_or(Json::Null, |(v, _)| v)),
        );
        return vec![row];
    };
    let first = start.div_euclid(d) * d;
    let mut cursors = vec![0usize; cols.len()];
    let mut previous: Vec<Json> = vec![Json::Null; cols.len()];
    let mut rows = Vec::new();
    let mut b = first;
    while b <= end {
        let hi = b.saturating_add(d);
        let mut row = vec![epoch.time(b)];
        let mut any = false;
        for (i, (a, c)) in aggs.iter().zip(cols).enumerate() {
            let lo_idx = cursors[i];
            let mut hi_idx = lo_idx;
            while hi_idx < c.len() && c[hi_idx].0 < hi {
                hi_idx += 1;
            }
            cursors[i] = hi_idx;
            let v = match aggregate(*a, &c[lo_idx..hi_idx]) {
                Some((v, _)) => {
                    any = true;
                    previous[i] = v.clone();
                    v
                }
                // As InfluxDB: an empty interval counts 0 unless another
                // fill is asked for.
                None if *a == Agg::Count && s.fill == Fill::Null => Json::from(0),
                None => match s.fill {
                    Fill::Null | Fill::None => Json::Null,
                    Fill::Previous => previous[i].clone(),
                    Fill::Value(x) => float_json(x),
                },
            };
            row.push(v);
        }
        if any || s.fill != Fill::None {
            rows.push(row);
        }
        b = hi;
    }
    rows
}
