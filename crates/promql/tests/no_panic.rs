//! A query string is input: no string makes the parser or the evaluator
//! panic.

use promql::{eval_instant, eval_range, parse, EvalOptions, Labels, Matcher, Sample, Storage};
use proptest::prelude::*;

/// A few series in memory.
struct Mem(Vec<(Labels, Vec<Sample>)>);

impl Storage for Mem {
    type Series = usize;

    fn select(&self, matchers: &[Matcher]) -> Result<Vec<(Labels, usize)>, promql::Error> {
        Ok(self
            .0
            .iter()
            .enumerate()
            .filter(|(_, (l, _))| promql::matches_all(l, matchers))
            .map(|(i, (l, _))| (l.clone(), i))
            .collect())
    }

    fn points(&self, s: &usize, start: i64, end: i64) -> Result<Vec<Sample>, promql::Error> {
        Ok(self.0[*s]
            .1
            .iter()
            .filter(|p| p.ts >= start && p.ts <= end)
            .copied()
            .collect())
    }
}

fn mem() -> Mem {
    let series = |name: &str, dev: &str, vals: &[f64]| {
        let mut l = Labels::new();
        l.insert("__name__".into(), name.into());
        l.insert("device".into(), dev.into());
        let pts = vals
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                ts: i as i64 * 15_000,
                value,
            })
            .collect();
        (l, pts)
    };
    Mem(vec![
        series("up", "a", &[1.0, 0.0, 1.0, f64::NAN, 1.0]),
        series("up", "b", &[5.0, 3.0, f64::INFINITY, 2.0, -1.0]),
        series("c", "a", &[0.0, 10.0, 5.0, 1e300, 0.0]),
    ])
}

const FRAGMENTS: &[&str] = &[
    "up",
    "c",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "5m",
    "1s",
    "0s",
    ":",
    ",",
    "device",
    "=",
    "!=",
    "=~",
    "!~",
    "\"a\"",
    "\".*\"",
    "'(('",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "1",
    "0",
    "NaN",
    "Inf",
    "1e308",
    "offset",
    "-1h",
    "@",
    "by",
    "without",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "rate",
    "increase",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "abs",
    "bool",
    "on",
    "and",
    "#",
    "\n",
    "`",
    "__name__",
    " ",
    "0x",
    "1y",
    "99999999999999999999y",
    "\\",
    "é",
];

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|v| v.join(" "))
}

fn query_tight() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..16).prop_map(|v| v.concat())
}

/// Queries built from the grammar, so that most parse and get evaluated.
fn grammar() -> impl Strategy<Value = String> {
    let sel = prop::sample::select(vec![
        "up",
        "c",
        "up{device=\"a\"}",
        "{__name__=~\"u.*|c\"}",
        "up{device!~\"b\"}",
        "nothing",
    ]);
    let dur = prop::sample::select(vec!["1ms", "15s", "1m", "5m", "1h", "1y"]);
    let off = prop::sample::select(vec!["", " offset 30s", " offset -1m", " offset 1y"]);
    let num = prop::sample::select(vec!["1", "0", "-2.5", "NaN", "Inf", "1e308", "0x10"]);
    let func = prop::sample::select(vec![
        "rate",
        "increase",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
    ]);
    let leaf = prop_oneof![
        (sel.clone(), off.clone()).prop_map(|(s, o)| format!("{s}{o}")),
        num.prop_map(str::to_string),
        (func, sel, dur, off).prop_map(|(f, s, d, o)| format!("{f}({s}[{d}]{o})")),
    ];
    leaf.prop_recursive(4, 32, 2, |inner| {
        let agg = prop::sample::select(vec!["sum", "avg", "min", "max", "count"]);
        let grouping =
            prop::sample::select(vec!["", " by (device)", " without (device)", " by ()"]);
        let op = prop::sample::select(vec!["+", "-", "*", "/"]);
        prop_oneof![
            (agg, grouping, inner.clone()).prop_map(|(a, g, e)| format!("{a}{g} ({e})")),
            (inner.clone(), op, inner.clone()).prop_map(|(l, o, r)| format!("{l} {o} {r}")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.prop_map(|e| format!("({e})")),
        ]
    })
}

fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        -100_000i64..200_000,
        Just(i64::MIN),
        Just(i64::MAX),
        any::<i64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn grammar_queries_mostly_parse(q in grammar()) {
        // Only vector-vector arithmetic and aggregations of scalars are
        // refused among these.
        if let Err(e) = parse(&q) {
            let vv = matches!(&e, promql::Error::Unsupported { construct }
                if construct == "binary operations between two instant vectors");
            let agg = e.to_string() == "expected type instant vector in aggregation expression, got scalar";
            prop_assert!(vv || agg, "{q:?}: {e}");
        }
    }

    #[test]
    fn random_strings_never_panic(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn selectors_print_back(
        name in "[a-z_:.][a-z0-9_:.]{0,6}",
        label in "[a-z_.-][a-z0-9_.-]{0,6}",
        value in any::<String>(),
    ) {
        let mut q = String::from("{");
        for (i, c) in [name.as_str(), label.as_str(), value.as_str()].into_iter().enumerate() {
            // A Go-escaped double-quoted string.
            q.push('"');
            for ch in c.chars() {
                match ch {
                    '"' | '\\' => { q.push('\\'); q.push(ch) }
                    '\n' => q.push_str("\\n"),
                    _ => q.push(ch),
                }
            }
            q.push('"');
            q.push_str(if i == 0 { ", " } else if i == 1 { "=" } else { "}" });
        }
        let e = parse(&q);
        prop_assert!(e.is_ok(), "{:?}: {:?}", q, e.err());
        let shown = e.map(|e| e.to_string()).unwrap_or_default();
        let again = parse(&shown).map(|e| e.to_string());
        prop_assert_eq!(again, Ok(shown));
    }

    #[test]
    fn api_parameters_never_panic(s in any::<String>(), t in "[0-9T:.+Z-]{0,32}") {
        let _ = promql::parse_time("time", &s);
        let _ = promql::parse_time("time", &t);
        let _ = promql::parse_step("step", &s);
        let _ = promql::parse_selector(&s);
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn promql_like_queries_never_panic(
        q in prop_oneof![query(), query_tight(), grammar()],
        t in time(),
        start in time(),
        len in 0i64..400_000,
        step in prop_oneof![1i64..100_000, any::<i64>()],
    ) {
        if let Ok(e) = parse(&q) {
            let st = mem();
            let o = EvalOptions::default();
            let _ = eval_instant(&st, &e, t, &o);
            let _ = eval_range(&st, &e, start, start.saturating_add(len), step, &o);
            // Whatever parses prints as a query that parses again to the
            // same expression.
            let again = e.to_string();
            match parse(&again) {
                Ok(e2) => prop_assert_eq!(e2.to_string(), again),
                Err(err) => prop_assert!(false, "{:?} printed as {:?}: {}", q, again, err),
            }
        }
    }
}
