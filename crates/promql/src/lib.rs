//! `promql`: a subset of PromQL over Millwright's telemetry store, with
//! results in the shapes of the Prometheus HTTP API, so that Grafana's
//! built-in Prometheus data source can read Millwright's telemetry.
//!
//! What it is: a parser ([`parse`]), an evaluator ([`instant_query`],
//! [`range_query`]) reading raw points through the [`Storage`] trait
//! ([`TsdbStorage`] over [`tsdb::Tsdb`]), serde types producing exactly
//! Prometheus' JSON ([`Response`], [`QueryData`]), and what a thin HTTP
//! handler needs besides: the API's parameters ([`parse_time`],
//! [`parse_step`], [`parse_selector`] for `match[]`) and the metadata
//! answers Grafana's metric browser asks for ([`series`], [`label_names`],
//! [`label_values`]).
//!
//! What it is not: it serves no HTTP (the API crate does, with a thin
//! handler), never reads the clock (every query takes its times as
//! arguments, in milliseconds since the Unix epoch), starts no threads and
//! opens no sockets. It is not all of PromQL.
//!
//! # Serving it
//!
//! What an `/api/v1/query` handler does, end to end:
//!
//! ```
//! use promql::{instant_query, parse_time, EvalOptions, Response, TsdbStorage};
//!
//! let dir = tempfile::tempdir()?;
//! let db = tsdb::Tsdb::open(dir.path(), tsdb::Options::default())?;
//! let lp = "readings,device=m1 velocity=1.5 1700000000000000000";
//! db.write(&tsdb::parse_line_protocol(lp, &Default::default(), 0)?)?;
//!
//! // `query` and `time` as the request carries them.
//! let t = parse_time("time", "1700000000")?;
//! let answer = instant_query(&TsdbStorage::new(&db), "readings_velocity", t, &EvalOptions::default());
//! let body: Response = answer.into();
//! assert_eq!(
//!     serde_json::to_string(&body)?,
//!     r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"readings_velocity","device":"m1"},"value":[1700000000,"1.5"]}]}}"#
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `/api/v1/query_range` is the same with [`range_query`] and
//! [`parse_step`]; an error becomes `{"status":"error","errorType":...}`
//! through the same [`Response`].
//!
//! # Naming
//!
//! A telemetry series is (namespace, device, metric, labels). In PromQL it
//! is the series with
//! - `__name__`: the metric name with every character outside
//!   `[a-zA-Z0-9_:]` replaced by `_`, so the line-protocol field `velocity`
//!   of measurement `readings` (metric `readings.velocity`) is
//!   `readings_velocity`, as VictoriaMetrics names InfluxDB
//!   measurement + field;
//! - `device`: the device id;
//! - the series' labels, each name with every character outside
//!   `[a-zA-Z0-9_]` replaced by `_`; a label named `device` or `__name__`
//!   becomes `exported_device` / `exported___name__`.
//!
//! Two metrics of a device whose names differ only in replaced characters
//! (`a.b` and `a_b`) become two series with the same labels; a function
//! or arithmetic over both at once is refused as a duplicate label set.
//!
//! Only namespace `default` is visible. Only numeric values are read:
//! floats and integers as they are, booleans as 0 and 1; string series are
//! skipped.
//!
//! # Supported
//!
//! - Selectors `name{label="v", l!="v", l=~"re", l!~"re"}` on `__name__`,
//!   `device` and labels; regexes anchored at both ends as in Prometheus.
//!   At least one matcher must not match the empty string.
//! - Range selectors `[5m]` (units `y w d h m s ms`, combinable: `1h30m`)
//!   and `offset 5m` (negative offsets too).
//! - Functions `avg_over_time`, `min_over_time`, `max_over_time`,
//!   `sum_over_time`, `count_over_time`, `last_over_time`, `rate`,
//!   `increase` (Prometheus' extrapolation and counter-reset rules).
//! - Aggregations `sum`, `avg`, `min`, `max`, `count`, with `by (...)` or
//!   `without (...)` before or after the argument.
//! - `+ - * /` between scalars and between a vector and a scalar; unary
//!   minus; number literals (`1`, `2.5e3`, `0x1f`, `Inf`, `NaN`);
//!   parentheses; `#` comments.
//!
//! Semantics follow Prometheus 3: an instant vector selector at time `t`
//! takes each series' latest point in `(t - lookback, t]` (lookback 5
//! minutes by default, [`EvalOptions::lookback_ms`]); a range selector
//! covers `(t - range, t]`; a range query evaluates at `start`,
//! `start + step`, ... up to `end` inclusive. Functions and arithmetic drop
//! the metric name (`last_over_time` keeps it).
//!
//! Everything else PromQL has (other functions and aggregations,
//! comparison and set operators, binary operations between two vectors,
//! `bool`/`on`/`ignoring`/`group_left`, subqueries, `@`, string literals,
//! histograms) is refused with [`Error::Unsupported`], whose message names
//! the construct; [`Response`] turns any error into Prometheus' error body
//! (`{"status":"error","errorType":"bad_data","error":"..."}`).

mod ast;
mod error;
mod eval;
mod lexer;
mod meta;
mod params;
mod parser;
mod result;
mod storage;

pub use ast::{
    AggOp, BinOp, Expr, Function, Grouping, MatchOp, Matcher, MatrixSelector, ValueKind,
    VectorSelector,
};
pub use error::Error;
pub use eval::{eval_instant, eval_range, instant_query, range_query, EvalOptions};
pub use lexer::parse_duration;
pub use meta::{label_names, label_values, parse_selector, series};
pub use params::{parse_step, parse_time};
pub use parser::{parse, MAX_QUERY_LEN};
pub use result::{format_value, InstantSample, QueryData, RangeSeries, Response, SamplePair};
pub use storage::{
    label_name, matches_all, metric_name, series_labels, Labels, Sample, Storage, TsdbStorage,
    NAMESPACE,
};
