//! Parsing of the time parameters: instants (Unix milliseconds, RFC 3339,
//! `now`, `now-1h`) and durations (`30s`, `10m`, `1h30m`, `1d`, or plain
//! milliseconds). Pure functions; "now" is passed in.

const MS_PER_UNIT: [(&str, i64); 6] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 7 * 86_400_000),
];

/// Parses a positive duration: plain milliseconds (`600000`) or one or more
/// number-unit pairs (`10m`, `1h30m`) with units `ms`, `s`, `m`, `h`, `d`,
/// `w`. Returns milliseconds.
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a duration such as 30s, 10m, 1h, 1d or milliseconds");
    if s.is_empty() {
        return Err(bad());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let v: i64 = s.parse().map_err(|_| bad())?;
        return if v > 0 { Ok(v) } else { Err(bad()) };
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (_, ms) = MS_PER_UNIT
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        total = n
            .checked_mul(*ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total > 0 {
        Ok(total)
    } else {
        Err(bad())
    }
}

/// Parses an instant: Unix milliseconds (`1700000000000`, may be negative),
/// RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.250+02:00`;
/// fractions below a millisecond are truncated), `now`, or `now-<duration>`
/// / `now+<duration>`. Returns Unix milliseconds.
pub(crate) fn parse_instant(s: &str, now_ms: i64) -> Result<i64, String> {
    let bad = || {
        format!(
            "{s:?} is not a time: use Unix milliseconds, RFC 3339 (2024-05-01T12:00:00Z) or now-1h"
        )
    };
    if let Some(rel) = s.strip_prefix("now") {
        if rel.is_empty() {
            return Ok(now_ms);
        }
        let (sign, d) = match (rel.strip_prefix('-'), rel.strip_prefix('+')) {
            (Some(d), _) => (-1, d),
            (_, Some(d)) => (1, d),
            _ => return Err(bad()),
        };
        let d = parse_duration(d).map_err(|_| bad())?;
        return now_ms.checked_add(sign * d).ok_or_else(bad);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    iot_types::rfc3339_ms(s).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000));
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("600000"), Ok(600_000));
        for bad in [
            "",
            "0",
            "0s",
            "x",
            "10x",
            "m",
            "-5s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_instant("now", now), Ok(now));
        assert_eq!(parse_instant("now-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_instant("now+10s", now), Ok(now + 10_000));
        assert_eq!(parse_instant("1700000000000", now), Ok(now));
        assert_eq!(parse_instant("-5", now), Ok(-5));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z", 0), Ok(now));
        assert_eq!(parse_instant("2023-11-14T22:13:20.5Z", 0), Ok(now + 500));
        assert_eq!(
            parse_instant("2023-11-14T22:13:20.123456789Z", 0),
            Ok(now + 123)
        );
        assert_eq!(parse_instant("2023-11-15T00:13:20+02:00", 0), Ok(now));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(
            parse_instant("2024-02-29T00:00:00Z", 0),
            Ok(1_709_164_800_000)
        );
        for bad in [
            "",
            "yesterday",
            "now-",
            "now*1h",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T25:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20Zjunk",
            "2023-1é-14T22:13:20Z",
        ] {
            assert!(parse_instant(bad, now).is_err(), "{bad}");
        }
    }
}
