//! `influxql`: an InfluxQL subset over Millwright's telemetry store, for an
//! InfluxDB 1.x compatible `/query` route (Grafana's InfluxDB data source,
//! the official Python clients).
//!
//! Pure: it parses a query, reads [`tsdb::Tsdb`] and builds the response;
//! `now()` and the output time format are parameters ([`QueryOptions`]); no
//! clock, threads or sockets.
//!
//! # Mapping
//!
//! Line protocol `m,device=d,tag=v field=1` is stored as device `d`, metric
//! `m.field` and label `tag=v`, in namespace `default`. So in InfluxQL:
//! - a measurement is a metric's part before its first `.` and the field is
//!   the rest (a metric without `.` is measurement `metric`, field `value`);
//! - tag `device` is the device id (usable in `WHERE` and `GROUP BY`), other
//!   tags are labels; a missing tag compares as `""`.
//!
//! # Subset
//!
//! - `SELECT <agg>(<field>) [AS a][, ...] FROM <m> [WHERE ...] [GROUP BY
//!   time(<d>)[, <tag>...]] [fill(null|none|previous|<number>)] [LIMIT n]`
//!   with `mean`, `min`, `max`, `sum`, `count`, `first`, `last`; or raw
//!   `SELECT <field>[, ...] FROM ...` (optionally `GROUP BY <tag>`).
//! - `WHERE`: `AND`ed (optionally parenthesised) `tag = 'v'`, `!=`, `=~
//!   /re/`, `!~ /re/`, and `time` compared (`>=`, `>`, `<=`, `<`, `=`) with
//!   `now()`, RFC 3339 strings, integers (ns) or duration literals
//!   (`1700000000000ms`), plus or minus durations.
//! - `GROUP BY time()` intervals start at multiples of the interval since
//!   the epoch; without an upper bound it ends at now; at most
//!   [`MAX_BUCKETS`] intervals. Empty intervals are `null` by default
//!   (`count` is 0 then, as in InfluxDB).
//! - Output as InfluxDB 1.6 writes it (answers checked against `influxd`
//!   1.6 by hand): whole floats without a fraction (`2`, not `2.0`), a lone
//!   selector (`max`, `min`, `first`, `last`) without `GROUP BY time` at its
//!   point's time, other aggregates at the lower time bound (or epoch 0).
//! - `SHOW DATABASES | MEASUREMENTS [LIMIT n] | TAG KEYS [FROM m] | TAG
//!   VALUES [FROM m] WITH KEY = "k" | FIELD KEYS [FROM m] | RETENTION
//!   POLICIES` (`ON db` accepted and ignored: there is one database; the
//!   one policy is `autogen`), `CREATE DATABASE x` (a no-op). Statements
//!   are separated by `;`.
//! - Times are stored in ms: sub-millisecond parts of bounds are rounded
//!   inwards.
//!
//! Anything else (OR, field conditions, `SELECT *`, arithmetic, other
//! functions, `ORDER BY`, ...) is an error naming the construct.

mod error;
mod eval;
mod lexer;
mod parser;
mod result;

pub use error::Error;
pub use eval::{execute, split_metric, tag_value, QueryOptions, MAX_BUCKETS, NAMESPACE};
pub use parser::{parse, Agg, Field, Fill, Select, Statement, TagCond};
pub use result::{rfc3339, Epoch, Response, Series, StatementResult};

use tsdb::Tsdb;

/// Runs a query: one result per statement, each an answer or an error; a
/// query that does not parse is one error for the whole.
pub fn query(db: &Tsdb, q: &str, opts: &QueryOptions) -> Response {
    let stmts = match parse(q, opts.now_ms) {
        Ok(s) => s,
        Err(e) => {
            return Response {
                results: None,
                error: Some(e.to_string()),
            }
        }
    };
    let results = stmts
        .iter()
        .enumerate()
        .map(|(i, st)| match execute(db, st, opts) {
            Ok(series) => StatementResult {
                statement_id: i,
                series: (!series.is_empty()).then_some(series),
                error: None,
            },
            Err(e) => StatementResult {
                statement_id: i,
                series: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    Response {
        results: Some(results),
        error: None,
    }
}
