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
