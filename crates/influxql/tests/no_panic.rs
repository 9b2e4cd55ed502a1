//! Random input never panics the parser.

use proptest::prelude::*;

const WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "GROUP",
    "BY",
    "time",
    "(",
    ")",
    "fill",
    "now()",
    "-",
    "+",
    "1h",
    "10ms",
    "'2023-11-14T22:13:00Z'",
    "/re/",
    "=~",
    "!~",
    "=",
    "!=",
    "<",
    ">=",
    "mean",
    "count",
    "usage",
    "\"cpu\"",
    ",",
    ";",
    "SHOW",
    "TAG",
    "VALUES",
    "KEYS",
    "WITH",
    "KEY",
    "FIELD",
    "MEASUREMENTS",
    "DATABASES",
    "CREATE",
    "DATABASE",
    "LIMIT",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "*",
    ".",
    "previous",
    "none",
    "null",
    "AS",
    "µ",
    "106751d",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_never_panic(s in "\\PC{0,80}") {
        let _ = influxql::parse(&s, 1_700_000_000_000);
    }

    #[test]
    fn random_token_soup_never_panics(words in prop::collection::vec(prop::sample::select(WORDS), 0..24), now in any::<i64>()) {
        let _ = influxql::parse(&words.join(" "), now);
    }
}

fn select_query() -> impl Strategy<Value = String> {
    let agg = prop::sample::select(vec![
        "mean(v)", "min(v)", "max(v)", "sum(v)", "count(v)", "first(v)", "last(v)", "s",
        "count(s)", "last(s)", "max(s)",
    ]);
    let time = prop::sample::select(vec![
        "now()",
        "now() - 1h",
        "now() + 9223372036854775807ns",
        "0",
        "-9223372036854775808",
        "9223372036854775807",
        "'1970-01-01T00:00:00Z'",
        "'9999-12-31T23:59:59Z'",
        "1000ms",
    ]);
    let group = prop::sample::select(vec![
        "",
        "GROUP BY time(1ms)",
        "GROUP BY time(1s), device",
        "GROUP BY time(106751d)",
        "GROUP BY time(1h), nosuch fill(previous)",
        "GROUP BY device fill(none)",
        "GROUP BY time(7ms) fill(-1)",
    ]);
    (
        prop::collection::vec(agg, 1..3),
        time.clone(),
        time,
        group,
        prop::sample::select(vec![">", ">=", "<", "<=", "="]),
    )
        .prop_map(|(fields, lo, hi, group, op)| {
            format!(
                "SELECT {} FROM m WHERE device =~ /./ AND time {op} {lo} AND time <= {hi} {group}",
                fields.join(", ")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Generated statements evaluate without panicking, whatever they answer.
    #[test]
    fn evaluation_never_panics(q in select_query(), now in any::<i64>()) {
        let dir = tempfile::tempdir().unwrap();
        let db = tsdb::Tsdb::open(dir.path(), tsdb::Options::default()).unwrap();
        let mut pts = Vec::new();
        for (i, (metric, value)) in [
            ("m.v", tsdb::Value::F64(1.5)),
            ("m.v", tsdb::Value::F64(-2.0)),
            ("m.s", tsdb::Value::Str("x".into())),
        ]
        .into_iter()
        .enumerate()
        {
            pts.push(tsdb::WritePoint {
                series: std::sync::Arc::new(tsdb::SeriesKey::new("default", "d", metric)),
                ts: 1_000 + i as i64 * 500,
                value,
            });
        }
        db.write(&pts).unwrap();
        let opts = influxql::QueryOptions { now_ms: now / 1_000_000, epoch: influxql::Epoch::Rfc3339, database: "db".into() };
        let _ = serde_json::to_string(&influxql::query(&db, &q, &opts)).unwrap();
    }
}
