//! InfluxDB 1.x `/query` response shapes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

/// The whole response: `{"results":[...]}` or `{"error":"..."}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Response {
    /// One result per statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<StatementResult>>,
    /// Why the whole query was refused (a parse error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to one statement.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatementResult {
    /// The statement's index in the query.
    pub statement_id: usize,
    /// Series found (left out when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<Series>>,
    /// Why the statement failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One series of a result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Series {
    /// The measurement (or `measurements`, `databases` for SHOW; left out
    /// when empty, as for SHOW RETENTION POLICIES).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `GROUP BY` tag values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub values: Vec<Vec<Json>>,
}

/// How times are written: RFC 3339 strings, or integers in a unit (the
/// `epoch` query parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Epoch {
    /// RFC 3339 strings (no `epoch` parameter).
    #[default]
    Rfc3339,
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes.
    M,
    /// Hours.
    H,
}

impl Epoch {
    /// The `epoch` parameter's value (`ns`, `u`, `µ`, `ms`, `s`, `m`, `h`).
    pub fn parse(s: &str) -> Option<Epoch> {
        Some(match s {
            "ns" | "n" => Epoch::Ns,
            "u" | "µ" | "us" => Epoch::Us,
            "ms" => Epoch::Ms,
            "s" => Epoch::S,
            "m" => Epoch::M,
            "h" => Epoch::H,
            _ => return None,
        })
    }

    /// A time given in ms, as written in a response.
    pub fn time(self, ms: i64) -> Json {
        match self {
            Epoch::Rfc3339 => Json::String(rfc3339(ms)),
            Epoch::Ns => Json::from(ms.saturating_mul(1_000_000)),
            Epoch::Us => Json::from(ms.saturating_mul(1_000)),
            Epoch::Ms => Json::from(ms),
            Epoch::S => Json::from(ms.div_euclid(1_000)),
            Epoch::M => Json::from(ms.div_euclid(60_000)),
            Epoch::H => Json::from(ms.div_euclid(3_600_000)),
        }
    }
}

/// `ms` as RFC 3339 in UTC, with the fraction's trailing zeros dropped as
/// InfluxDB writes it (`2023-11-14T22:13:20.5Z`, `2023-11-14T22:13:20Z`).
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil(days);
    let (h, mi, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let mut out = format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(Epoch::S.time(1_700_000_000_500), Json::from(1_700_000_000));
    }
}
