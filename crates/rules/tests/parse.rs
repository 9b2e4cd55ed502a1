//! The parser: every construct compiles, and malformed rules fail with
//! the line, column and message a person needs.

use rules::compile;

fn err(src: &str) -> (usize, usize, String) {
    let e = compile(src).expect_err(src);
    (e.line, e.column, e.message)
}

#[test]
fn every_construct_parses() {
    let rules = [
        "SELECT * FROM '#'",
        "select *, temp * 2 as double from 'devices/+/telemetry' where temp > 1;",
        "SELECT a.b.c, values[0], values[-1], \"odd name\", a.\"x y\", a['k'], a[i + 1] FROM 't'",
        "SELECT 1, 2.5, 'str', true, false, null, -3, +4, 1e3 FROM 't'",
        "SELECT a + b - c * d / e % f, -a, a || 'x' || 1 FROM 't'",
        "SELECT 1 FROM 't' WHERE a = 1 AND b != 2 OR c <> 3 AND NOT d < 4",
        "SELECT 1 FROM 't' WHERE a <= 1 OR b >= 2 OR c > 3 OR d == 4",
        "SELECT 1 FROM 't' WHERE a IS NULL OR b IS NOT NULL",
        "SELECT 1 FROM 't' WHERE a IN (1, 2, 'x') AND b NOT IN (3)",
        "SELECT topic(), topic(2), device_id(), timestamp(), payload(), payload().a FROM 't'",
        "SELECT coalesce(a, b, 0), abs(a), round(a), round(a, 2), floor(a), ceil(a) FROM 't'",
        "SELECT min(a, b) AS lo, max(a, b) AS hi, lower(s), upper(s), length(s) FROM 't'",
        "SELECT concat(a, b, c), substring(s, 2), substring(s, 2, 3), contains(s, 'x') FROM 't'",
        "SELECT starts_with(s, 'a'), ends_with(s, 'z'), number(s), string(n), bool(s) FROM 't'",
        "SELECT device_type(), label('line') FROM 't'",
        "SELECT avg(t) OVER 5m, min(t) OVER 30s, max(t) OVER 1h, sum(t) OVER 1d FROM 't'",
        "SELECT count(t) OVER 500ms, count(*) OVER 1m, first(t) OVER 1m, last(t) OVER 1m FROM 't'",
        "SELECT avg(t) OVER TUMBLING 1m AS a FROM 't'",
        "SELECT changed(s), previous(s), delta(t), rate(t), zscore(v), zscore(v, 0.5) FROM 't'",
        "SELECT t > 85 FOR 5m AS hot FROM 't' WHERE (t > 85 FOR 5m) AND NOT (x FOR 1s)",
        "SELECT t FROM 't' WHERE abs(zscore(vibration)) > 3",
        "SELECT t FROM 't' WHERE avg(t) OVER 1m > 80 FOR 5m",
        "-- a comment\nSELECT\n  t AS \"temp C\", -- another\n  t * 1.8 + 32 AS 'temp F'\nFROM 'x/#'\nWHERE t > 0",
        "SELECT \"from\", a.from, a.select FROM 't'",
        "SELECT COUNT(*) OVER 1m FROM 't'",
    ];
    for r in rules {
        if let Err(e) = compile(r) {
            panic!("{r}: {e}");
        }
    }
}

#[test]
fn default_names_are_the_text() {
    let r = compile("SELECT temp * 1.8 + 32, a.b[0], avg(t)\n  OVER 5m FROM 't'").unwrap();
    assert_eq!(
        r.output_names(),
        ["temp * 1.8 + 32", "a.b[0]", "avg(t) OVER 5m"]
    );
}

#[test]
fn errors_point_at_line_and_column() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("", 1, 1, "expected SELECT, found end of input"),
        ("SELEC temp FROM 't'", 1, 1, "expected SELECT, found identifier 'SELEC'"),
        ("SELECT FROM 't'", 1, 8, "expected an expression, found FROM"),
        ("SELECT temp 't'", 1, 13, "expected ',' or FROM, found string 't'"),
        (
            "SELECT temp FROM devices",
            1,
            18,
            "expected a quoted topic filter after FROM (like 'devices/+/telemetry'), found identifier 'devices'",
        ),
        (
            "SELECT temp FROM 'a/#/b'",
            1,
            18,
            "'#' must be the last level of the topic filter",
        ),
        ("SELECT temp FROM 'a+'", 1, 18, "'+' and '#' must be whole levels of the topic filter"),
        ("SELECT temp FROM 't' WHERE", 1, 27, "expected an expression, found end of input"),
        ("SELECT (temp FROM 't'", 1, 14, "expected ')', found FROM"),
        ("SELECT foo(1) FROM 't'", 1, 8, "unknown function 'foo'"),
        ("SELECT abs(1, 2) FROM 't'", 1, 8, "abs takes 1 argument, found 2 arguments"),
        ("SELECT substring('x') FROM 't'", 1, 8, "substring takes 2 to 3 arguments, found 1 argument"),
        (
            "SELECT avg(temp) FROM 't'",
            1,
            8,
            "avg needs a window: avg(...) OVER 5m or OVER TUMBLING 5m",
        ),
        (
            "SELECT min(temp) FROM 't'",
            1,
            8,
            "min needs a window: min(...) OVER 5m or OVER TUMBLING 5m (the scalar min takes two arguments)",
        ),
        ("SELECT avg(a, b) OVER 1m FROM 't'", 1, 8, "avg takes 1 argument, found 2 arguments"),
        (
            "SELECT abs(t) OVER 1m FROM 't'",
            1,
            15,
            "OVER follows an aggregate (avg, sum, count, min, max, first, last), not abs",
        ),
        ("SELECT avg(t) OVER 5x FROM 't'", 1, 21, "invalid duration unit 'x' (use ms, s, m, h or d)"),
        ("SELECT avg(t) OVER 0s FROM 't'", 1, 20, "a duration must be greater than zero"),
        (
            "SELECT avg(t) OVER FROM 't'",
            1,
            20,
            "expected a duration after OVER (like 30s, 5m or 1h), found FROM",
        ),
        (
            "SELECT t FROM 't' WHERE t > 5 FOR",
            1,
            34,
            "expected a duration after FOR (like 30s, 5m or 1h), found end of input",
        ),
        ("SELECT 'abc FROM t", 1, 8, "unterminated string: missing closing '"),
        ("SELECT t\nFROM 't'\nWHERE t >> 3", 3, 10, "expected an expression, found '>'"),
        ("SELECT t AS FROM 't'", 1, 13, "expected a name after AS, found FROM"),
        ("SELECT t FROM 't' WHERE t > 1 extra", 1, 31, "expected end of rule, found identifier 'extra'"),
        ("SELECT t FROM 't' extra", 1, 19, "expected WHERE or end of rule, found identifier 'extra'"),
        (
            "SELECT zscore(v, 2) FROM 't'",
            1,
            18,
            "zscore's alpha is a number greater than 0 and at most 1 (like 0.1)",
        ),
        ("SELECT t, t FROM 't'", 1, 11, "duplicate output name 't' (use AS to name it)"),
        ("SELECT a AS x, b AS x FROM 't'", 1, 16, "duplicate output name 'x'"),
        ("SELECT 1 FROM 't' WHERE a IN ()", 1, 31, "IN needs at least one value"),
        ("SELECT 1 FROM 't' WHERE a IS 3", 1, 30, "expected NULL or NOT NULL, found number 3"),
        ("SELECT 1 FROM 't' WHERE 1 < 2 < 3", 1, 31, "comparisons cannot be chained: join them with AND"),
        ("SELECT # FROM 't'", 1, 8, "unexpected character '#'"),
        ("SELECT 5m FROM 't'", 1, 8, "a duration is only valid after OVER or FOR"),
        ("SELECT a. FROM 't'", 1, 11, "expected a field name after '.', found FROM"),
        ("SELECT a[true] FROM 't'", 1, 10, "an index is a whole number or a 'key'"),
        ("SELECT f(1 FROM 't'", 1, 12, "expected ',' or ')', found FROM"),
        ("SELECT t AS '' FROM 't'", 1, 13, "an output name is empty"),
        ("SELECT t FROM ''", 1, 15, "the topic filter is empty"),
    ];
    for &(src, line, column, message) in cases {
        assert_eq!(err(src), (line, column, message.to_string()), "rule: {src}");
    }
}

#[test]
fn depth_is_bounded() {
    let deep = format!("SELECT {}1{} FROM 't'", "(".repeat(200), ")".repeat(200));
    assert!(err(&deep).2.contains("nested too deeply"));
    let long = format!("SELECT 1{} FROM 't'", " + 1".repeat(300));
    assert!(err(&long).2.contains("nested too deeply"));
    let nots = format!("SELECT {} true FROM 't'", "NOT ".repeat(300));
    assert!(err(&nots).2.contains("nested too deeply"));
    let negs = format!("SELECT {}1 FROM 't'", "- ".repeat(300));
    assert!(err(&negs).2.contains("nested too deeply"));
    let huge = format!("SELECT 1 FROM 't' -- {}", "x".repeat(64 * 1024));
    assert!(err(&huge).2.contains("longer than"));
    // Wide is fine.
    let wide = format!(
        "SELECT 1 FROM 't' WHERE a IN ({})",
        vec!["1"; 2000].join(", ")
    );
    compile(&wide).unwrap();
}
