//! Query routes: raw points, time-bucket aggregates, latest values, the
//! series of a device, and storage statistics.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use serde::Serialize;
use tsdb::{Agg, Filter, GroupBy, Selector, SeriesPoints};

use crate::error::ApiError;
use crate::params::{list, Params};
use crate::render::{self, CsvWriter, Format, JsonValue, PointDto};
use crate::time::{parse_duration, parse_instant};
use crate::{blocking, ApiState, DEFAULT_RANGE_MS, MAX_POINTS};

const QUERY_PATH: &str = "/api/telemetry/query";

/// `format=json|csv|columnar` wins over `Accept: text/csv` or
/// `Accept: application/vnd.millwright.columnar+json`; JSON by default.
fn format(p: &Params, headers: &HeaderMap) -> Result<Format, ApiError> {
    match p.get("format") {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("columnar") => return Ok(Format::Columnar),
        Some(other) => {
            return Err(ApiError::param(
                "format",
                format!("{other:?} is not one of json, csv, columnar"),
            ))
        }
        None => {}
    }
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(if accept.iter().any(|v| v.contains("text/csv")) {
        Format::Csv
    } else if accept
        .iter()
        .any(|v| v.contains(render::COLUMNAR_MEDIA_TYPE))
    {
        Format::Columnar
    } else {
        Format::Json
    })
}

/// `device` (required: a comma list or `*`), `metric` (a comma list or `*`;
/// all if absent) and `label.<key>=<value>` filters.
fn selector(namespace: &str, p: &Params) -> Result<Selector, ApiError> {
    let devices = match p.required("device")? {
        "*" => Filter::All,
        d => {
            let l = list(d);
            if l.is_empty() {
                return Err(ApiError::param("device", "an empty list"));
            }
            Filter::Only(l)
        }
    };
    let metrics = match p.get("metric") {
        None | Some("*") => Filter::All,
        Some(m) => {
            let l = list(m);
            if l.is_empty() {
                return Err(ApiError::param("metric", "an empty list"));
            }
            Filter::Only(l)
        }
    };
    let mut labels = Vec::new();
    for (k, v) in p.with_prefix("label.") {
        if k.is_empty() {
            return Err(ApiError::param(
                "label.",
                "a label filter needs a key: label.<key>=<value>",
            ));
        }
        labels.push((k.to_string(), v.to_string()));
    }
    Ok(Selector {
        namespace: namespace.to_string(),
        devices,
        metrics,
        labels,
    })
}

/// The half-open range `[start, end)`: `end` defaults to just after now,
/// `start` to one hour before `end`.
fn range(p: &Params, now: i64) -> Result<(i64, i64), ApiError> {
    let instant = |name: &str| {
        p.get(name)
            .map(|s| parse_instant(s, now).map_err(|e| ApiError::param(name, e)))
            .transpose()
    };
    let end = instant("end")?.unwrap_or(now.saturating_add(1));
    let start = instant("start")?.unwrap_or(end.saturating_sub(DEFAULT_RANGE_MS));
    if start >= end {
        return Err(ApiError::param("start", "must be before end"));
    }
    Ok((start, end))
}

fn parse_agg(s: &str) -> Result<Agg, ApiError> {
    Ok(match s {
        "avg" | "mean" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "sum" => Agg::Sum,
        "count" => Agg::Count,
        "first" => Agg::First,
        "last" => Agg::Last,
        other => {
            return Err(ApiError::param(
                "agg",
                format!("{other:?} is not one of avg, min, max, sum, count, first, last"),
            ))
        }
    })
}

fn parse_group_by(s: Option<&str>) -> Result<GroupBy, ApiError> {
    Ok(match s {
        None | Some("series") => GroupBy::Series,
        Some("device") => GroupBy::Device,
        Some("all") => GroupBy::All,
        Some(other) => match other.strip_prefix("label:") {
            Some(k) if !k.is_empty() => GroupBy::Label(k.to_string()),
            _ => {
                return Err(ApiError::param(
                    "group_by",
                    format!("{other:?} is not one of device, series, label:<key>, all"),
                ))
            }
        },
    })
}

/// `GET /api/telemetry/query`: raw points, or aggregates when `agg` is given.
pub(crate) async fn query(
    State(st): State<Arc<ApiState>>,
    p: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.only(
        &[
            "device", "metric", "start", "end", "limit", "agg", "bucket", "group_by", "format",
        ],
        &["label."],
    )?;
    let fmt = format(&p, &headers)?;
    let sel = selector(&st.namespace, &p)?;
    let (start, end) = range(&p, st.now())?;
    let timing = st.http_metrics.clone();
    let started = std::time::Instant::now();
    let answer = match p.get("agg") {
        Some(agg) => {
            if p.get("limit").is_some() {
                return Err(ApiError::param(
                    "limit",
                    "applies to raw queries only; aggregates are limited by bucket and range",
                ));
            }
            query_agg(Asked(st, &p, fmt, sel, start, end), parse_agg(agg)?).await
        }
        None => {
            for name in ["bucket", "group_by"] {
                if p.get(name).is_some() {
                    return Err(ApiError::param(
                        name,
                        "applies to aggregate queries only: add agg",
                    ));
                }
            }
            query_raw(Asked(st, &p, fmt, sel, start, end)).await
        }
    };
    timing
        .query_seconds
        .observe(started.elapsed().as_secs_f64());
    answer
}

#[derive(Serialize)]
struct RawSeriesDto<'a> {
    device: &'a str,
    metric: &'a str,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    points: Vec<PointDto<'a>>,
}

/// A raw answer: its series as points (`RawSeriesDto`) or as columns
/// (`RawColumnsDto`), and where the next page starts.
#[derive(Serialize)]
struct RawDto<'a, S> {
    start: i64,
    end: i64,
    series: Vec<S>,
    next: Option<&'a str>,
    next_start: Option<i64>,
}

/// A raw series with its timestamps and values as two arrays.
#[derive(Serialize)]
struct RawColumnsDto<'a> {
    device: &'a str,
    metric: &'a str,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    ts: Vec<i64>,
    values: Vec<JsonValue<'a>>,
}

/// A raw JSON answer with each series as `to_dto` shapes it.
fn raw_answer<'a, S: Serialize>(
    start: i64,
    end: i64,
    series: &'a [SeriesPoints],
    next: Option<&'a str>,
    next_start: Option<i64>,
    to_dto: impl Fn(&'a SeriesPoints) -> S,
) -> Result<Response, ApiError> {
    let dto = RawDto {
        start,
        end,
        series: series.iter().map(to_dto).collect(),
        next,
        next_start,
    };
    render::json(&dto, next)
}

/// A telemetry query as checked: the state, its parameters, the answer
/// format, the series, and the range (start, end).
struct Asked<'a>(Arc<ApiState>, &'a Params, Format, Selector, i64, i64);

async fn query_raw(q: Asked<'_>) -> Result<Response, ApiError> {
    let Asked(st, p, fmt, sel, start, end) = q;
    let limit = p.limit(MAX_POINTS, MAX_POINTS)?;
    // One point more per series than a page holds tells where to cut.
    let fetched = blocking(move || Ok(st.tsdb.query_raw(&sel, start, end, limit + 1)?)).await?;
    let (series, next_start) = paginate(fetched, limit)?;
    let next = next_start.map(|t| {
        let qs = p.encode_with(&[("start", t.to_string()), ("end", end.to_string())]);
        format!("{QUERY_PATH}?{qs}")
    });
    let next = next.as_deref();
    match fmt {
        Format::Json => raw_answer(start, end, &series, next, next_start, |s| RawSeriesDto {
            device: s.series.device(),
            metric: s.series.metric(),
            labels: render::labels(&s.series),
            points: s
                .points
                .iter()
                .map(|pt| PointDto {
                    ts: pt.ts,
                    value: JsonValue(&pt.value),
                })
                .collect(),
        }),
        Format::Columnar => raw_answer(start, end, &series, next, next_start, |s| RawColumnsDto {
            device: s.series.device(),
            metric: s.series.metric(),
            labels: render::labels(&s.series),
            ts: s.points.iter().map(|pt| pt.ts).collect(),
            values: s.points.iter().map(|pt| JsonValue(&pt.value)).collect(),
        }),
        Format::Csv => {
            let mut w = CsvWriter::new(&["ts", "device", "metric", "labels", "value"]);
            for s in &series {
                let labels = render::labels_csv(&s.series);
                for pt in &s.points {
                    let ts = pt.ts.to_string();
                    let v = render::value_csv(&pt.value);
                    w.row([
                        ts.as_str(),
                        s.series.device(),
                        s.series.metric(),
                        labels.as_str(),
                        v.as_str(),
                    ]);
                }
            }
            Ok(render::csv(w.finish(), next))
        }
    }
}

/// Cuts the answer at a timestamp so that at most `limit` points remain
/// (every point before the cut, of every series) and returns the cut as the
/// next page's start. Each series was fetched with `limit + 1` points, so
/// every point before the cut is known.
fn paginate(
    mut series: Vec<SeriesPoints>,
    limit: usize,
) -> Result<(Vec<SeriesPoints>, Option<i64>), ApiError> {
    let total: usize = series.iter().map(|s| s.points.len()).sum();
    if total <= limit {
        return Ok((series, None));
    }
    let mut all: Vec<i64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.ts))
        .collect();
    let (_, &mut cut, _) = all.select_nth_unstable(limit);
    let first = series
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.ts))
        .min();
    if first.is_some_and(|f| f >= cut) {
        return Err(ApiError::TooLarge {
            field: Some("limit".into()),
            reason: format!(
                "more than {limit} points share the first timestamp {cut}: raise limit or select fewer series"
            ),
        });
    }
    for s in &mut series {
        let keep = s.points.partition_point(|p| p.ts < cut);
        s.points.truncate(keep);
    }
    series.retain(|s| !s.points.is_empty());
    Ok((series, Some(cut)))
}

#[derive(Serialize)]
struct AggSeriesDto<'a> {
    group: serde_json::Value,
    points: render::AggPointsJson<'a>,
}

/// An aggregated series, columnar: dense (`t0` and one value per bucket,
/// `null` when empty) or, when more than half of those would be empty,
/// sparse (`ts` and `values` of the non-empty buckets).
#[derive(Serialize)]
struct AggColumnsDto<'a> {
    group: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    t0: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<Vec<i64>>,
    values: render::DenseValuesJson<'a>,
}

/// An aggregate answer: its series as points (`AggSeriesDto`) or as
/// columns (`AggColumnsDto`).
#[derive(Serialize)]
struct AggDto<'a, S> {
    start: i64,
    end: i64,
    agg: &'a str,
    bucket_ms: i64,
    group_by: &'a str,
    series: S,
}

impl<'a> AggDto<'a, ()> {
    /// This answer with `series`.
    fn with<S>(&self, series: Vec<S>) -> AggDto<'a, Vec<S>> {
        AggDto {
            start: self.start,
            end: self.end,
            agg: self.agg,
            bucket_ms: self.bucket_ms,
            group_by: self.group_by,
            series,
        }
    }
}

async fn query_agg(q: Asked<'_>, agg: Agg) -> Result<Response, ApiError> {
    let Asked(st, p, fmt, sel, start, end) = q;
    let bucket_text = p.get("bucket").ok_or_else(|| {
        ApiError::param(
            "bucket",
            "required with agg: a duration such as 30s, 10m, 1h, 1d",
        )
    })?;
    let bucket = parse_duration(bucket_text).map_err(|e| ApiError::param("bucket", e))?;
    // Buckets are aligned to the Unix epoch; count those the range touches.
    let buckets =
        i128::from((end - 1).div_euclid(bucket)) - i128::from(start.div_euclid(bucket)) + 1;
    if buckets > MAX_POINTS as i128 {
        return Err(ApiError::TooLarge {
            field: Some("bucket".into()),
            reason: format!(
                "the range holds {buckets} buckets of {bucket_text}, at most {MAX_POINTS}: widen bucket or narrow the range"
            ),
        });
    }
    let group_text = p.get("group_by").unwrap_or("series");
    let group = parse_group_by(Some(group_text))?;
    let label_key = match &group {
        GroupBy::Label(k) => Some(k.clone()),
        _ => None,
    };
    let result =
        blocking(move || Ok(st.tsdb.query_agg(&sel, start, end, bucket, agg, group)?)).await?;
    let total: usize = result.iter().map(|s| s.points.len()).sum();
    if total > MAX_POINTS {
        return Err(ApiError::TooLarge {
            field: None,
            reason: format!(
                "the answer holds {total} buckets, at most {MAX_POINTS}: widen bucket, narrow the range or select fewer series"
            ),
        });
    }
    let head = AggDto {
        start,
        end,
        agg: p.get("agg").unwrap_or(""),
        bucket_ms: bucket,
        group_by: group_text,
        series: (),
    };
    match fmt {
        Format::Json => {
            let dto = head.with(
                result
                    .iter()
                    .map(|s| AggSeriesDto {
                        group: render::group_json(&s.group, label_key.as_deref()),
                        points: render::AggPointsJson(&s.points),
                    })
                    .collect(),
            );
            // About 36 bytes per point and 64 per series.
            render::json_sized(&dto, 256 + 64 * result.len() + 40 * total)
        }
        Format::Columnar => {
            let dto = head.with(
                result
                    .iter()
                    .map(|s| {
                        let mut values = render::DenseValuesJson {
                            points: &s.points,
                            bucket_ms: bucket,
                            dense: true,
                        };
                        values.dense = values.slots() <= 2 * s.points.len();
                        AggColumnsDto {
                            group: render::group_json(&s.group, label_key.as_deref()),
                            t0: values
                                .dense
                                .then(|| s.points.first().map(|p| p.ts))
                                .flatten(),
                            ts: (!values.dense).then(|| s.points.iter().map(|p| p.ts).collect()),
                            values,
                        }
                    })
                    .collect(),
            );
            // About 18 bytes per point and 64 per series.
            render::json_sized(&dto, 256 + 64 * result.len() + 20 * total)
        }
        Format::Csv => {
            let label_col = label_key.as_ref().map(|k| format!("label.{k}"));
            let header: Vec<&str> = match &label_col {
                Some(c) => vec!["ts", c.as_str(), "value"],
                None if group_text == "series" => vec!["ts", "device", "metric", "labels", "value"],
                None if group_text == "device" => vec!["ts", "device", "value"],
                None => vec!["ts", "value"],
            };
            let mut w = CsvWriter::new(&header);
            for s in &result {
                let group_cols: Vec<String> = match &s.group {
                    tsdb::GroupKey::Series(k) => vec![
                        k.device().to_string(),
                        k.metric().to_string(),
                        render::labels_csv(k),
                    ],
                    tsdb::GroupKey::Device(d) => vec![d.clone()],
                    tsdb::GroupKey::Label(v) => vec![v.clone().unwrap_or_default()],
                    tsdb::GroupKey::All => vec![],
                };
                for pt in &s.points {
                    let ts = pt.ts.to_string();
                    let v = render::f64_csv(pt.value);
                    let row = std::iter::once(ts.as_str())
                        .chain(group_cols.iter().map(String::as_str))
                        .chain(std::iter::once(v.as_str()));
                    w.row(row);
                }
            }
            Ok(render::csv(w.finish(), None))
        }
    }
}

#[derive(Serialize)]
struct LatestItemDto<'a> {
    device: &'a str,
    metric: &'a str,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
    ts: i64,
    value: JsonValue<'a>,
}

#[derive(Serialize)]
struct LatestDto<'a> {
    latest: Vec<LatestItemDto<'a>>,
}

/// `GET /api/telemetry/latest?device=d1[,d2]&metric=temp[,rpm]`.
pub(crate) async fn latest(
    State(st): State<Arc<ApiState>>,
    p: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.only(&["device", "metric", "format"], &["label."])?;
    let fmt = format(&p, &headers)?;
    let sel = selector(&st.namespace, &p)?;
    let found = blocking(move || {
        let mut v = st.tsdb.latest(&sel.namespace, &sel.devices, &sel.metrics);
        v.retain(|(k, _)| {
            sel.labels
                .iter()
                .all(|(lk, lv)| k.label(lk) == Some(lv.as_str()))
        });
        Ok(v)
    })
    .await?;
    match fmt {
        Format::Json | Format::Columnar => {
            let dto = LatestDto {
                latest: found
                    .iter()
                    .map(|(k, pt)| LatestItemDto {
                        device: k.device(),
                        metric: k.metric(),
                        labels: render::labels(k),
                        ts: pt.ts,
                        value: JsonValue(&pt.value),
                    })
                    .collect(),
            };
            render::json(&dto, None)
        }
        Format::Csv => {
            let mut w = CsvWriter::new(&["device", "metric", "labels", "ts", "value"]);
            for (k, pt) in &found {
                let (labels, ts, v) = (
                    render::labels_csv(k),
                    pt.ts.to_string(),
                    render::value_csv(&pt.value),
                );
                w.row([k.device(), k.metric(), &labels, &ts, &v]);
            }
            Ok(render::csv(w.finish(), None))
        }
    }
}

#[derive(Serialize)]
struct SeriesItemDto<'a> {
    metric: &'a str,
    labels: std::collections::BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct DeviceSeriesDto<'a> {
    device: &'a str,
    series: Vec<SeriesItemDto<'a>>,
}

/// `GET /api/devices/{device}/series`.
pub(crate) async fn device_series(
    State(st): State<Arc<ApiState>>,
    device: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(device) = device.map_err(|e| ApiError::param("device", e.body_text()))?;
    let dev = device.clone();
    let keys = blocking(move || Ok(st.tsdb.list_series(&st.namespace, Some(&dev)))).await?;
    let dto = DeviceSeriesDto {
        device: &device,
        series: keys
            .iter()
            .map(|k| SeriesItemDto {
                metric: k.metric(),
                labels: render::labels(k),
            })
            .collect(),
    };
    render::json(&dto, None)
}

#[derive(Serialize)]
struct QueryWorkDto {
    chunk_series_decoded: u64,
    chunk_summaries_used: u64,
    rollup_series_read: u64,
}

#[derive(Serialize)]
struct StatsDto {
    series: usize,
    raw_chunks: usize,
    raw_chunk_bytes: u64,
    raw_chunk_points: u64,
    rollup_chunks: usize,
    rollup_chunk_bytes: u64,
    wal_bytes: u64,
    head_points: usize,
    head_bytes: usize,
    query_work: QueryWorkDto,
    writes_refused: WritesRefusedDto,
}

/// Batches the engine refused on their own (`Tsdb::write_stats`).
#[derive(Serialize)]
struct WritesRefusedDto {
    batches: u64,
    type_conflicts: u64,
    series_over_cap: u64,
}

/// `GET /api/telemetry/stats`.
pub(crate) async fn stats(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let (s, q, w) = blocking(move || {
        Ok((
            st.tsdb.storage_stats(),
            st.tsdb.query_stats(),
            st.tsdb.write_stats(),
        ))
    })
    .await?;
    render::json(
        &StatsDto {
            series: s.series,
            raw_chunks: s.raw_chunks,
            raw_chunk_bytes: s.raw_chunk_bytes,
            raw_chunk_points: s.raw_chunk_points,
            rollup_chunks: s.rollup_chunks,
            rollup_chunk_bytes: s.rollup_chunk_bytes,
            wal_bytes: s.wal_bytes,
            head_points: s.head_points,
            head_bytes: s.head_bytes,
            query_work: QueryWorkDto {
                chunk_series_decoded: q.chunk_series_decoded,
                chunk_summaries_used: q.chunk_summaries_used,
                rollup_series_read: q.rollup_series_read,
            },
            writes_refused: WritesRefusedDto {
                batches: w.batches_refused,
                type_conflicts: w.type_conflicts,
                series_over_cap: w.series_refused,
            },
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb::{Point, SeriesKey, Value};

    fn s(dev: &str, ts: &[i64]) -> SeriesPoints {
        SeriesPoints {
            series: SeriesKey::new("default", dev, "m"),
            points: ts
                .iter()
                .map(|&t| Point {
                    ts: t,
                    value: Value::F64(1.0),
                })
                .collect(),
        }
    }

    #[test]
    fn pages_cut_at_a_timestamp() {
        // Fits: no cut.
        let (out, next) = paginate(vec![s("a", &[1, 2]), s("b", &[1])], 3).unwrap_or_default();
        assert_eq!((out.len(), next), (2, None));
        // Limit 3, fetched with 4 per series: cut at the 4th smallest.
        let (out, next) =
            paginate(vec![s("a", &[1, 2, 3, 4]), s("b", &[2, 5])], 3).unwrap_or_default();
        assert_eq!(next, Some(3));
        let n: usize = out.iter().map(|s| s.points.len()).sum();
        assert_eq!(n, 3);
        // Too many points on the first timestamp.
        assert!(paginate(vec![s("a", &[1]), s("b", &[1]), s("c", &[1])], 2).is_err());
    }

    #[test]
    fn bad_params_are_named() {
        let p = Params::parse(Some("device=&metric=x"));
        match selector("default", &p) {
            Err(ApiError::BadParameter { field, .. }) => assert_eq!(field, "device"),
            other => panic!("{other:?}"),
        }
        let p = Params::parse(Some("start=2&end=1"));
        match range(&p, 0) {
            Err(ApiError::BadParameter { field, .. }) => assert_eq!(field, "start"),
            other => panic!("{other:?}"),
        }
        assert!(parse_group_by(Some("label:")).is_err());
        assert_eq!(
            parse_group_by(Some("label:fleet")).ok(),
            Some(GroupBy::Label("fleet".into()))
        );
    }
}
