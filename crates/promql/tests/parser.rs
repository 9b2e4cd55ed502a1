//! Parser tests: each construct, precedence, and errors that name what is
//! unsupported.

use promql::{parse, Error, Expr, ValueKind};

fn show(q: &str) -> String {
    match parse(q) {
        Ok(e) => e.to_string(),
        Err(e) => panic!("{q:?}: {e}"),
    }
}

fn fails(q: &str) -> Error {
    match parse(q) {
        Ok(e) => panic!("{q:?} parsed as {e}"),
        Err(e) => e,
    }
}

fn unsupported(q: &str, construct: &str) {
    match fails(q) {
        Error::Unsupported { construct: c } => assert_eq!(c, construct, "{q}"),
        other => panic!("{q:?}: expected unsupported {construct}, got {other:?}"),
    }
}

#[test]
fn selectors() {
    assert_eq!(show("up"), "up");
    assert_eq!(
        show("readings_velocity{device=\"m1\"}"),
        "readings_velocity{device=\"m1\"}"
    );
    assert_eq!(
        show("a:b{x!=\"1\",y=~'r.*', z!~`q\\d`,}"),
        "a:b{x!=\"1\", y=~\"r.*\", z!~\"q\\\\d\"}"
    );
    assert_eq!(show("{__name__=~\"a|b\"}"), "{__name__=~\"a|b\"}");
    assert_eq!(show(":job:rate5m"), ":job:rate5m");
    assert_eq!(show("{\"up\", job=\"x\"}"), "up{job=\"x\"}");
    assert_eq!(show("up offset 5m"), "up offset 5m");
    assert_eq!(show("up offset -1h30m"), "up offset -1h30m");
    assert_eq!(show("up[5m]"), "up[5m]");
    assert_eq!(
        show("up{a=\"b\"}[1h30m] offset 10s"),
        "up{a=\"b\"}[1h30m] offset 10s"
    );
    assert_eq!(show("up[500ms]"), "up[500ms]");
    assert_eq!(show("up # a comment\n"), "up");
    assert_eq!(
        show("{\"a.b\", \"x-y\"=\"q\\\"\\n\\u0001\"}"),
        "{__name__=\"a.b\", \"x-y\"=\"q\\\"\\n\\u0001\"}"
    );
    assert_eq!(show("sum by (\"a.b\") (up)"), "sum by (\"a.b\") (up)");
    assert_eq!(parse("up[5m]").unwrap().kind(), ValueKind::Matrix);
    assert_eq!(parse("up").unwrap().kind(), ValueKind::Vector);
}

#[test]
fn regexes_are_anchored() {
    let Expr::Vector(sel) = parse("up{d=~\"ab|c\"}").unwrap() else {
        panic!()
    };
    let m = &sel.matchers[1];
    assert!(m.matches("ab"));
    assert!(m.matches("c"));
    assert!(!m.matches("abc"));
    assert!(!m.matches("xab"));
    let Expr::Vector(sel) = parse("up{d=~\"a.b\"}").unwrap() else {
        panic!()
    };
    assert!(sel.matchers[1].matches("a\nb"), "(?s): dot matches newline");
}

#[test]
fn functions_and_aggregations() {
    for f in [
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "rate",
        "increase",
    ] {
        assert_eq!(show(&format!("{f}(x[5m])")), format!("{f}(x[5m])"));
    }
    assert_eq!(show("sum(up)"), "sum (up)");
    assert_eq!(show("sum by (a, b) (up)"), "sum by (a, b) (up)");
    assert_eq!(show("avg(up) by (a,)"), "avg by (a) (up)");
    assert_eq!(
        show("max without (device) (up)"),
        "max without (device) (up)"
    );
    assert_eq!(show("min(up) without ()"), "min without () (up)");
    assert_eq!(
        show("count by (by) (rate(x[1m]))"),
        "count by (by) (rate(x[1m]))"
    );
    // Keywords are case-insensitive, function names are not.
    assert_eq!(show("SUM BY (a) (up) "), "sum by (a) (up)");
    assert_eq!(show("Max(up) Without (a)"), "max without (a) (up)");
    assert_eq!(show("up OFFSET 1m"), "up offset 1m");
    unsupported("RATE(x[5m])", "function \"RATE\"");
    unsupported("up AND up", "binary operator \"and\"");
    unsupported("TopK(1, up)", "aggregation \"topk\"");
    // An aggregation's name alone is a metric name.
    assert_eq!(show("sum"), "sum");
}

#[test]
fn arithmetic_and_precedence() {
    assert_eq!(show("1 + 2 * 3"), "7");
    assert_eq!(show("(1 + 2) * 3"), "9");
    assert_eq!(show("2 - 1 - 1"), "0");
    assert_eq!(show("8 / 2 / 2"), "2");
    assert_eq!(show("0x10 + 1e1 + .5"), "26.5");
    assert_eq!(show("-Inf"), "-Inf");
    assert_eq!(show("nan"), "NaN");
    assert_eq!(show("1 + up * 2"), "(1 + (up * 2))");
    assert_eq!(show("up * 2 + 1"), "((up * 2) + 1)");
    assert_eq!(show("up - 1 - 2"), "((up - 1) - 2)");
    assert_eq!(show("-up * 2"), "(-(up) * 2)");
    assert_eq!(show("2 * -up"), "(2 * -(up))");
    assert_eq!(show("sum(up) / 2"), "(sum (up) / 2)");
    assert_eq!(show("--1"), "1");
    assert_eq!(show("+up"), "up");
    assert_eq!(parse("1 + 2").unwrap().kind(), ValueKind::Scalar);
    assert_eq!(parse("1 + up").unwrap().kind(), ValueKind::Vector);
}

#[test]
fn unsupported_constructs_are_named() {
    unsupported("abs(up)", "function \"abs\"");
    unsupported(
        "histogram_quantile(0.9, rate(x[5m]))",
        "function \"histogram_quantile\"",
    );
    unsupported("irate(x[5m])", "function \"irate\"");
    unsupported("topk(3, up)", "aggregation \"topk\"");
    unsupported("quantile by (a) (0.5, up)", "aggregation \"quantile\"");
    unsupported("up + up", "binary operations between two instant vectors");
    unsupported(
        "sum(up) / count(up)",
        "binary operations between two instant vectors",
    );
    unsupported("up > 1", "binary operator \">\"");
    unsupported("up == 1", "binary operator \"==\"");
    unsupported("up % 2", "binary operator \"%\"");
    unsupported("2 ^ 2", "binary operator \"^\"");
    unsupported("up and up", "binary operator \"and\"");
    unsupported("up or up", "binary operator \"or\"");
    unsupported("up unless up", "binary operator \"unless\"");
    unsupported("up * on (a) up", "the \"on\" modifier");
    unsupported("up / ignoring (a) up", "the \"ignoring\" modifier");
    unsupported("up + bool 1", "the \"bool\" modifier");
    unsupported("rate(x[5m:1m])", "subqueries");
    unsupported("max_over_time(rate(x[5m])[1h:])", "subqueries");
    unsupported("up @ 1700000000", "the @ modifier");
    unsupported("\"hello\"", "string literals");
    let e = fails("abs(up)");
    assert_eq!(e.to_string(), "function \"abs\" is not supported");
    assert_eq!(e.error_type(), "bad_data");
}

#[test]
fn malformed_queries_are_errors() {
    for q in [
        "",
        "(",
        "up{",
        "up{a}",
        "up{a=}",
        "up{a=\"b\"",
        "up{a==\"b\"}",
        "up[",
        "up[5]",
        "up[5m",
        "up[0s]",
        "up[5x]",
        "up[30m1h]",
        "up offset",
        "up offset 5m offset 5m",
        "up offset 5m [5m]",
        "sum(up)[5m]",
        "(up)[5m]",
        "(up) offset 5m",
        "sum(up) offset 5m",
        "1 +",
        "* 2",
        "up up",
        "rate(up)",
        "rate(x[5m], x[5m])",
        "rate()",
        "sum(x[5m])",
        "sum(1)",
        "sum(up, up)",
        "sum by (a) (up) by (b)",
        "sum by a (up)",
        "up[5m] + 1",
        "-up[5m]",
        "{}",
        "{a=\"\"}",
        "{a=~\".*\"}",
        "up{__name__=\"x\"}",
        "up{a=~\"(\"}",
        "1.5m",
        "up ]",
        "\"unterminated",
        "up{a=\"\\q\"}",
        "up{a:b=\"c\"}",
        "$",
    ] {
        let e = fails(q);
        assert!(!e.to_string().is_empty());
        assert_eq!(e.error_type(), "bad_data", "{q}: {e}");
    }
    assert!(matches!(fails("up{"), Error::Parse { .. }));
    assert_eq!(
        fails("rate(up)").to_string(),
        "expected type range vector in call to function \"rate\", got instant vector"
    );
    assert!(fails("{a=\"\"}").to_string().contains("non-empty matcher"));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let q = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&q).is_err());
    let q = format!("{}1", "-".repeat(10_000));
    assert!(parse(&q).is_err());
    let q = "1+".repeat(40_000) + "1";
    assert!(parse(&q).is_err(), "longer than the limit");
}
