//! Extreme timestamps and values through the parsers and the engine: no
//! arithmetic overflows (these tests run with overflow checks on), every
//! input is either refused with a clear error or converted exactly.

use std::sync::Arc;

use proptest::prelude::*;
use tsdb::{
    parse_device_json_with, parse_line_protocol, parse_line_protocol_with, Error,
    LineProtocolOptions, Options, ParseLimits, Precision, SeriesKey, Tsdb, Value, WritePoint,
    MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS,
};

fn precision() -> impl Strategy<Value = Precision> {
    prop_oneof![
        Just(Precision::Nanoseconds),
        Just(Precision::Microseconds),
        Just(Precision::Milliseconds),
        Just(Precision::Seconds),
        Just(Precision::Minutes),
        Just(Precision::Hours),
    ]
}

fn units_per_ms(p: Precision) -> (i128, i128) {
    // (divide by, multiply by)
    match p {
        Precision::Nanoseconds => (1_000_000, 1),
        Precision::Microseconds => (1_000, 1),
        Precision::Milliseconds => (1, 1),
        Precision::Seconds => (1, 1_000),
        Precision::Minutes => (1, 60_000),
        Precision::Hours => (1, 3_600_000),
    }
}

fn edge_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        Just(MIN_TIMESTAMP_MS),
        Just(MAX_TIMESTAMP_MS),
        Just(MAX_TIMESTAMP_MS + 1),
        -10_000_000_000_000i64..10_000_000_000_000,
    ]
}

fn edge_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(-0.0),
        Just(1e308),
        Just(9.2e18),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn line_protocol_timestamps_convert_exactly_or_are_refused(
        ts in edge_i64(), p in precision(), now in edge_i64(), ahead in edge_i64(), earliest in edge_i64(),
    ) {
        let o = LineProtocolOptions { precision: p, ..LineProtocolOptions::default() };
        let (div, mul) = units_per_ms(p);
        let exact = (ts as i128).div_euclid(div) * mul;
        let representable = exact >= MIN_TIMESTAMP_MS as i128 && exact <= MAX_TIMESTAMP_MS as i128;
        let text = format!("m f=1i 1\nm f={ts}i {ts}");
        // Unlimited: exact, or refused naming line 2 when not representable.
        let first = format!("m f=1i {ts}");
        match parse_line_protocol(&first, &o, now) {
            Ok(pts) => {
                prop_assert!(representable);
                prop_assert_eq!(pts[0].ts as i128, exact);
            }
            Err(Error::LineProtocol { line: 1, reason }) => {
                prop_assert!(!representable, "{}", reason);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
        let limits = ParseLimits::with_window(now, earliest, ahead);
        match parse_line_protocol_with(&text, &o, now, &limits) {
            Ok(pts) => {
                prop_assert!(representable);
                prop_assert!(pts[1].ts >= limits.earliest_ms && pts[1].ts <= limits.latest_ms);
                prop_assert_eq!(pts[1].value.clone(), Value::I64(ts));
            }
            Err(Error::LineProtocol { line, reason }) => {
                // Line 1 has timestamp 1 in any unit, which may be outside a window too.
                prop_assert!(line == 1 || line == 2, "{}: {}", line, reason);
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn json_extremes_never_panic(ts in edge_i64(), v in edge_f64(), u in any::<u64>(), now in edge_i64()) {
        let limits = ParseLimits::at(now);
        let text = format!(r#"[{{"ts": {ts}, "values": {{"a": {v:?}, "b": {u}, "c": {ts}}}}}, {{"ts": {u}, "values": {{"a": 1}}}}]"#);
        match parse_device_json_with(text.as_bytes(), "n", "d", now, &limits) {
            Ok(pts) => {
                for p in &pts {
                    prop_assert!(p.ts >= limits.earliest_ms && p.ts <= limits.latest_ms);
                    if let Value::F64(x) = p.value { prop_assert!(x.is_finite()); }
                }
            }
            Err(Error::Json(m)) => prop_assert!(!m.is_empty()),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_refuses_unstorable_timestamps_without_panicking(ts in edge_i64(), v in edge_f64()) {
        let dir = tempfile::tempdir().unwrap();
        let db = Tsdb::open(dir.path(), Options { head_max_points: 4, ..Options::default() }).unwrap();
        let k = Arc::new(SeriesKey::new("n", "d", "x"));
        let batch = vec![
            WritePoint { series: k.clone(), ts, value: Value::F64(v) },
            WritePoint { series: k.clone(), ts: 0, value: Value::F64(1.0) },
        ];
        let storable = (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ts) && v.is_finite();
        prop_assert_eq!(db.write(&batch).is_ok(), storable);
        // Flushing (chunks, rollups) and querying extreme data must not
        // overflow; a "now" of i64::MIN expires nothing.
        db.flush(i64::MIN).unwrap();
        db.compact().unwrap();
        let got = db.query_raw(&tsdb::Selector::namespace("n"), i64::MIN, i64::MAX, usize::MAX).unwrap();
        let n: usize = got.iter().map(|s| s.points.len()).sum();
        prop_assert_eq!(n, if storable { if ts == 0 { 1 } else { 2 } } else { 0 });
        db.enforce_retention(i64::MAX).unwrap();
    }
}
