//! The query parameters of the Prometheus HTTP API, parsed the way
//! Prometheus reads them, so the API handler stays thin: times (`time`,
//! `start`, `end`) as Unix seconds with an optional fraction or as RFC 3339,
//! and durations (`step`) as seconds or as a PromQL duration.

use crate::error::Error;
use crate::lexer::parse_duration;

/// Parses a time parameter to milliseconds since the Unix epoch:
/// `1700000000`, `1700000000.123`, `-1.5`, `1.7e9`, or RFC 3339
/// (`2023-11-14T22:13:20Z`, `2023-11-14T23:13:20.5+01:00`). Fractions are
/// rounded to the millisecond. `name` is the parameter's name, for the
/// message.
pub fn parse_time(name: &str, s: &str) -> Result<i64, Error> {
    let bad = || {
        Error::Invalid(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"
        ))
    };
    let ms = if s.contains('T') || s.contains('t') {
        iot_types::rfc3339_ms(s)
    } else {
        seconds_ms(s)
    };
    ms.filter(|ms| (tsdb::MIN_TIMESTAMP_MS..=tsdb::MAX_TIMESTAMP_MS).contains(ms))
        .ok_or_else(bad)
}

/// Parses a duration parameter (`step`) to milliseconds: `15`, `0.5`, or a
/// PromQL duration (`15s`, `1m30s`). Must be positive.
pub fn parse_step(name: &str, s: &str) -> Result<i64, Error> {
    let ms = seconds_ms(s).or_else(|| parse_duration(s));
    match ms {
        Some(ms) if ms > 0 => Ok(ms),
        Some(_) => Err(Error::Invalid(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        )),
        None => Err(Error::Invalid(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration"
        ))),
    }
}

/// Decimal seconds, exactly (no float rounding for plain decimals).
fn seconds_ms(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let plain = !body.is_empty()
        && (int.is_empty() || int.bytes().all(|b| b.is_ascii_digit()))
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(int.is_empty() && frac.is_empty());
    if !plain {
        // Exponent forms go through a float.
        let v: f64 = s.parse().ok()?;
        let ms = (v * 1000.0).round();
        return (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64);
    }
    let mut ms: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    ms = ms.checked_mul(1000)?;
    let mut digits = frac.bytes().map(|b| i64::from(b - b'0'));
    let mut part = 0;
    for scale in [100, 10, 1] {
        part += digits.next().unwrap_or(0) * scale;
    }
    // Round half up on the first digit past milliseconds.
    if digits.next().is_some_and(|d| d >= 5) {
        part += 1;
    }
    ms = ms.checked_add(part)?;
    Some(if neg { -ms } else { ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = |s: &str| parse_time("time", s);
        assert_eq!(t("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(t("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(t("1700000000.1236"), Ok(1_700_000_000_124));
        assert_eq!(t("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(t(".5"), Ok(500));
        assert_eq!(t("-1.5"), Ok(-1500));
        assert_eq!(t("1.7e9"), Ok(1_700_000_000_000));
        assert_eq!(t("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(t("2023-11-14T23:13:20.25+01:00"), Ok(1_700_000_000_250));
        assert_eq!(t("2023-11-14T21:43:20-00:30"), Ok(1_700_000_000_000));
        assert_eq!(t("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
        assert_eq!(t("1969-12-31T23:59:59Z"), Ok(-1000));
        for bad in [
            "",
            "abc",
            "1.2.3",
            "NaN",
            "inf",
            "1e300",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T24:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14 22:13:20Z",
            "9999999999999999999",
            "2023-11-14T22:13:20+1:00",
            "٣",
        ] {
            let e = t(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid parameter \"time\""),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn steps() {
        assert_eq!(parse_step("step", "15"), Ok(15_000));
        assert_eq!(parse_step("step", "0.5"), Ok(500));
        assert_eq!(parse_step("step", "1m30s"), Ok(90_000));
        assert!(parse_step("step", "0").is_err());
        assert!(parse_step("step", "-15").is_err());
        assert!(parse_step("step", "abc").is_err());
        assert!(parse_step("step", "").is_err());
    }
}
