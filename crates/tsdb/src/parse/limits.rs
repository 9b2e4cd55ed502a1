//! Limits the ingest parsers apply to one message: how many metric values
//! it may carry and which timestamps are plausible.

use crate::options::DAY_MS;

/// 2000-01-01T00:00:00Z in milliseconds: the default earliest timestamp.
pub const YEAR_2000_MS: i64 = 946_684_800_000;

/// Limits for [`crate::parse::parse_device_json_with`] and
/// [`crate::parse::parse_line_protocol_with`].
///
/// The time window is absolute: build it for the time the message arrived
/// with [`ParseLimits::at`] (the defaults) or
/// [`ParseLimits::with_window`] (settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most metric values one device JSON message may carry, counted over
    /// every object of the array form (each non-null value is one point).
    /// A message over it is refused whole, and parsing stops there. Line
    /// protocol bodies are not capped by this (the HTTP body limit does).
    pub max_metrics: usize,
    /// Earliest accepted timestamp in ms since the epoch (inclusive).
    pub earliest_ms: i64,
    /// Latest accepted timestamp in ms since the epoch (inclusive).
    pub latest_ms: i64,
}

impl ParseLimits {
    /// Default most metric values per JSON message.
    pub const DEFAULT_MAX_METRICS: usize = 1_000;
    /// Default tolerance for timestamps ahead of the server clock: one day.
    pub const DEFAULT_MAX_AHEAD_MS: i64 = DAY_MS;

    /// The defaults for a message received at `now_ms`: at most 1,000
    /// metric values, timestamps from 2000-01-01 to `now_ms` plus one day.
    pub fn at(now_ms: i64) -> ParseLimits {
        ParseLimits::with_window(now_ms, YEAR_2000_MS, ParseLimits::DEFAULT_MAX_AHEAD_MS)
    }

    /// The default metric cap with timestamps accepted from `earliest_ms`
    /// to `now_ms + max_ahead_ms` (saturating).
    pub fn with_window(now_ms: i64, earliest_ms: i64, max_ahead_ms: i64) -> ParseLimits {
        ParseLimits {
            max_metrics: ParseLimits::DEFAULT_MAX_METRICS,
            earliest_ms,
            latest_ms: now_ms.saturating_add(max_ahead_ms),
        }
    }

    /// No cap and every timestamp the engine stores accepted (what
    /// [`crate::parse_line_protocol`] applies, for callers that scale
    /// timestamps afterwards).
    pub fn unlimited() -> ParseLimits {
        ParseLimits {
            max_metrics: usize::MAX,
            earliest_ms: crate::MIN_TIMESTAMP_MS,
            latest_ms: crate::MAX_TIMESTAMP_MS,
        }
    }

    /// Checks a device-supplied timestamp; the error says why, naming the
    /// window in UTC.
    pub(crate) fn check_ts(&self, ts: i64) -> Result<(), String> {
        if ts >= self.earliest_ms && ts <= self.latest_ms {
            return Ok(());
        }
        Err(format!(
            "timestamp {ts} ms ({}) is outside the accepted window {} ..= {}",
            utc(ts),
            utc(self.earliest_ms),
            utc(self.latest_ms)
        ))
    }
}

/// Renders milliseconds since the epoch as an RFC 3339 UTC time, for
/// messages; years outside 0..=9999 are shown as a year number.
pub(crate) fn utc(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    // Howard Hinnant's civil_from_days; `days` is at most about 1.1e11 in
    // magnitude, so nothing below can overflow.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    if !(0..=9999).contains(&y) {
        return format!("year {y}");
    }
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1_000, rest % 1_000);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_renders_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(YEAR_2000_MS), "2000-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert!(utc(i64::MAX).starts_with("year "));
        assert!(utc(i64::MIN).starts_with("year "));
    }

    #[test]
    fn window_saturates() {
        let l = ParseLimits::at(i64::MAX);
        assert_eq!(l.latest_ms, i64::MAX);
        assert!(l.check_ts(i64::MAX).is_ok());
        assert!(l.check_ts(i64::MIN).is_err());
        let l = ParseLimits::at(1_700_000_000_000);
        assert!(l.check_ts(1_700_000_000_000 + DAY_MS).is_ok());
        assert!(l.check_ts(1_700_000_000_000 + DAY_MS + 1).is_err());
        assert!(l.check_ts(YEAR_2000_MS - 1).is_err());
    }
}
