//! Evaluation of every operator and function, null propagation, runtime
//! errors, outputs, and the message / context functions.

use rules::{compile, Context, Evaluation, Message, NoContext, ParsedMessage, RuleState};
use serde_json::{json, Value};

const TOPIC: &str = "devices/d1/telemetry";

fn run_on(rule: &str, topic: &str, payload: &[u8], ctx: &dyn Context) -> Evaluation {
    let rule = compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    let msg = Message {
        topic,
        payload,
        time_ms: 1_700_000_000_123,
    };
    rule.evaluate(&msg, &mut RuleState::new(), ctx)
}

/// `expr` evaluated on `payload` (and whether it recorded an error).
fn eval_full(expr: &str, payload: &str) -> (Value, Option<String>) {
    let e = run_on(
        &format!("SELECT {expr} AS v FROM '#'"),
        TOPIC,
        payload.as_bytes(),
        &NoContext,
    );
    assert!(e.matched);
    (e.outputs["v"].clone(), e.error)
}

/// `expr` on the standard payload, which must not record an error.
fn v(expr: &str) -> Value {
    let (value, error) = eval_full(expr, PAYLOAD);
    assert_eq!(error, None, "{expr}");
    value
}

/// `expr` on the standard payload, which must record an error and yield null.
fn err(expr: &str) -> String {
    let (value, error) = eval_full(expr, PAYLOAD);
    assert_eq!(value, Value::Null, "{expr}");
    error.unwrap_or_else(|| panic!("{expr}: no error recorded"))
}

const PAYLOAD: &str = r#"{"temp": 21.5, "n": 4, "s": "Hello", "b": true, "z": null,
  "a": {"b": {"c": 7}}, "values": [10, 20, 30], "odd name": 1, "from": "kw",
  "tags": ["x", "y"], "num_s": " 12.5 ", "objs": [{"k": 1}, {"k": 2}], "i": 1}"#;

#[test]
fn field_access() {
    assert_eq!(v("temp"), json!(21.5));
    assert_eq!(v("a.b.c"), json!(7));
    assert_eq!(v("a.b"), json!({"c": 7}));
    assert_eq!(v("values[0]"), json!(10));
    assert_eq!(v("values[-1]"), json!(30));
    assert_eq!(v("values[3]"), Value::Null);
    assert_eq!(v("values[-4]"), Value::Null);
    assert_eq!(v("values[i]"), json!(20));
    assert_eq!(v("values[i + 1]"), json!(30));
    assert_eq!(v("objs[1].k"), json!(2));
    assert_eq!(v("a['b'].c"), json!(7));
    assert_eq!(v("\"odd name\""), json!(1));
    assert_eq!(v("\"from\""), json!("kw"));
    assert_eq!(v("missing"), Value::Null);
    assert_eq!(v("missing.deeper[0]"), Value::Null);
    assert_eq!(v("temp.x"), Value::Null);
    assert_eq!(v("s[0]"), Value::Null);
    assert_eq!(v("payload().a.b.c"), json!(7));
    assert!(err("values[b]").contains("an index is a whole number or a string, found boolean"));
}

#[test]
fn literals() {
    assert_eq!(v("1"), json!(1));
    assert_eq!(v("1.5"), json!(1.5));
    assert_eq!(v("2e3"), json!(2000));
    assert_eq!(v("-3"), json!(-3));
    assert_eq!(v("'it''s'"), json!("it's"));
    assert_eq!(v("true"), json!(true));
    assert_eq!(v("false"), json!(false));
    assert_eq!(v("null"), Value::Null);
}

#[test]
fn arithmetic() {
    assert_eq!(v("n + 1"), json!(5));
    assert_eq!(v("n - 6"), json!(-2));
    assert_eq!(v("n * 2.5"), json!(10));
    assert_eq!(v("n / 8"), json!(0.5));
    assert_eq!(v("7 % 4"), json!(3));
    assert_eq!(v("-7 % 4"), json!(-3));
    assert_eq!(v("1 + 2 * 3"), json!(7));
    assert_eq!(v("(1 + 2) * 3"), json!(9));
    assert_eq!(v("-n"), json!(-4));
    assert_eq!(v("- -n"), json!(4));
    assert_eq!(v("temp * 2 + 32"), json!(75));
    assert_eq!(v("1e308 * 10"), Value::Null);
    assert!(err("n / 0").ends_with("division by zero"));
    assert!(err("n % 0").ends_with("division by zero"));
    assert!(err("s + 1").ends_with("cannot add string and number (use || to join strings)"));
    assert!(err("b * 2").ends_with("cannot multiply boolean and number"));
    assert!(err("-s").ends_with("cannot negate a string"));
}

#[test]
fn concatenation() {
    assert_eq!(v("s || ' ' || 'world'"), json!("Hello world"));
    assert_eq!(v("'n=' || n"), json!("n=4"));
    assert_eq!(v("'t=' || temp || ', ' || b"), json!("t=21.5, true"));
    assert_eq!(v("'a' || values"), json!("a[10,20,30]"));
    assert_eq!(v("'a' || 1 + 2"), json!("a3"));
}

#[test]
fn comparison() {
    for (e, want) in [
        ("n = 4", true),
        ("n = 4.0", true),
        ("n == 4", true),
        ("n != 4", false),
        ("n <> 5", true),
        ("n < 5", true),
        ("n <= 4", true),
        ("n > 4", false),
        ("n >= 4", true),
        ("s = 'Hello'", true),
        ("s < 'World'", true),
        ("s = 1", false),
        ("s != 1", true),
        ("b = true", true),
        ("false < true", true),
        ("a = a", true),
        ("values = values", true),
        ("tags = a", false),
    ] {
        assert_eq!(v(e), json!(want), "{e}");
    }
    assert!(err("s < 1").ends_with("cannot compare string with number"));
    assert!(err("b > 0").ends_with("cannot compare boolean with number"));
}

#[test]
fn logic_is_three_valued() {
    for (e, want) in [
        ("true AND true", json!(true)),
        ("true AND false", json!(false)),
        ("false AND z", json!(false)),
        ("z AND false", json!(false)),
        ("true AND z", Value::Null),
        ("z AND z", Value::Null),
        ("true OR z", json!(true)),
        ("z OR true", json!(true)),
        ("false OR z", Value::Null),
        ("false OR false", json!(false)),
        ("NOT true", json!(false)),
        ("NOT z", Value::Null),
        ("NOT NOT b", json!(true)),
        ("n > 1 AND n < 5 OR false", json!(true)),
        ("NOT n > 5", json!(true)),
    ] {
        assert_eq!(v(e), want, "{e}");
    }
    assert!(err("n AND true").ends_with("AND needs booleans, found number"));
    assert!(err("NOT s").ends_with("NOT needs a boolean, found string"));
}

#[test]
fn is_null_and_in() {
    for (e, want) in [
        ("z IS NULL", json!(true)),
        ("missing IS NULL", json!(true)),
        ("n IS NULL", json!(false)),
        ("n IS NOT NULL", json!(true)),
        ("z + 1 IS NULL", json!(true)),
        ("n IN (1, 4, 9)", json!(true)),
        ("n IN (1, 2)", json!(false)),
        ("n NOT IN (1, 2)", json!(true)),
        ("n NOT IN (4)", json!(false)),
        ("s IN ('Hello')", json!(true)),
        ("n IN ('4')", json!(false)),
        ("n IN (1, null)", Value::Null),
        ("n IN (4, null)", json!(true)),
        ("z IN (1)", Value::Null),
        ("n NOT IN (1, null)", Value::Null),
    ] {
        assert_eq!(v(e), want, "{e}");
    }
}

#[test]
fn null_propagates() {
    for e in [
        "z + 1",
        "1 - z",
        "z * 2",
        "z / 2",
        "z % 2",
        "-z",
        "z || 'a'",
        "z = 1",
        "z != 1",
        "z < 1",
        "abs(z)",
        "round(z)",
        "round(1.5, z)",
        "floor(z)",
        "ceil(z)",
        "min(z, 1)",
        "max(1, z)",
        "lower(z)",
        "upper(z)",
        "length(z)",
        "substring(z, 1)",
        "substring(s, z)",
        "substring(s, 1, z)",
        "contains(z, 'a')",
        "contains(s, z)",
        "starts_with(z, 'a')",
        "ends_with(s, z)",
        "number(z)",
        "string(z)",
        "bool(z)",
        "label(z)",
        "topic(z)",
        "missing.x + 1",
    ] {
        assert_eq!(v(e), Value::Null, "{e}");
    }
}

#[test]
fn where_null_does_not_match() {
    let e = run_on(
        "SELECT temp FROM '#' WHERE missing > 1",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert!(!e.matched);
    assert!(e.outputs.is_empty());
    let e = run_on(
        "SELECT temp FROM '#' WHERE n",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert!(!e.matched, "a number is not true");
    let e = run_on(
        "SELECT temp FROM '#' WHERE temp > 20",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert!(e.matched);
    assert_eq!(e.outputs["temp"], json!(21.5));
}

#[test]
fn numeric_functions() {
    assert_eq!(v("abs(-3.5)"), json!(3.5));
    assert_eq!(v("round(2.5)"), json!(3));
    assert_eq!(v("round(-2.5)"), json!(-3));
    assert_eq!(v("round(temp)"), json!(22));
    assert_eq!(v("round(2.71828, 2)"), json!(2.72));
    assert_eq!(v("round(1234, -2)"), json!(1200));
    assert_eq!(v("floor(-1.5)"), json!(-2));
    assert_eq!(v("ceil(1.2)"), json!(2));
    assert_eq!(v("min(3, n)"), json!(3));
    assert_eq!(v("max(3, n)"), json!(4));
    assert_eq!(v("min('b', 'a')"), json!("a"));
    assert!(err("abs(s)").ends_with("abs needs a number, found string"));
    assert!(err("round(1, 0.5)").ends_with("round needs a whole number of digits, found number"));
    assert!(err("min(1, 'a')").ends_with("min cannot compare number with string"));
}

#[test]
fn string_functions() {
    assert_eq!(v("lower(s)"), json!("hello"));
    assert_eq!(v("upper(s)"), json!("HELLO"));
    assert_eq!(v("length(s)"), json!(5));
    assert_eq!(v("length('héllo')"), json!(5));
    assert_eq!(v("length(values)"), json!(3));
    assert_eq!(v("length(a)"), json!(1));
    assert_eq!(v("concat(s, '-', n, z, b)"), json!("Hello-4true"));
    assert_eq!(v("concat(z)"), json!(""));
    assert_eq!(v("substring(s, 2)"), json!("ello"));
    assert_eq!(v("substring(s, 2, 3)"), json!("ell"));
    assert_eq!(v("substring(s, 0, 2)"), json!("H"));
    assert_eq!(v("contains(s, 'ell')"), json!(true));
    assert_eq!(v("contains(s, 'xyz')"), json!(false));
    assert_eq!(v("contains(tags, 'y')"), json!(true));
    assert_eq!(v("contains(values, 20)"), json!(true));
    assert_eq!(v("contains(values, 21)"), json!(false));
    assert_eq!(v("starts_with(s, 'He')"), json!(true));
    assert_eq!(v("starts_with(s, 'he')"), json!(false));
    assert_eq!(v("ends_with(s, 'llo')"), json!(true));
    assert_eq!(v("coalesce(z, missing, n, 5)"), json!(4));
    assert_eq!(v("coalesce(z, missing)"), Value::Null);
    assert!(err("upper(n)").ends_with("upper needs a string, found number"));
    assert!(err("length(n)").ends_with("length needs a string, array or object, found number"));
    assert!(
        err("substring(s, 1, -1)").ends_with("substring needs a length of 0 or more, found number")
    );
    assert!(err("contains(n, 'a')").ends_with("contains needs a string or an array, found number"));
    assert!(err("starts_with(s, 1)").ends_with("starts_with needs strings, found number"));
}

#[test]
fn casts() {
    assert_eq!(v("number(num_s)"), json!(12.5));
    assert_eq!(v("number('42')"), json!(42));
    assert_eq!(v("number(b)"), json!(1));
    assert_eq!(v("number(n)"), json!(4));
    assert_eq!(v("string(n)"), json!("4"));
    assert_eq!(v("string(temp)"), json!("21.5"));
    assert_eq!(v("string(b)"), json!("true"));
    assert_eq!(v("string(a)"), json!("{\"b\":{\"c\":7}}"));
    assert_eq!(v("bool('TRUE')"), json!(true));
    assert_eq!(v("bool('false')"), json!(false));
    assert_eq!(v("bool(0)"), json!(false));
    assert_eq!(v("bool(n)"), json!(true));
    assert!(err("number(s)").ends_with("cannot convert 'Hello' to a number"));
    assert!(err("number('inf')").ends_with("cannot convert 'inf' to a number"));
    assert!(err("bool(s)").ends_with("cannot convert 'Hello' to a boolean"));
    assert!(
        err("number(values)").ends_with("number needs a number, string or boolean, found array")
    );
}

#[test]
fn message_functions() {
    let e = run_on(
        "SELECT topic() AS t, topic(1) AS t1, topic(3) AS t3, topic(4) AS t4, device_id() AS d,
                timestamp() AS ts, payload() AS p FROM 'devices/+/telemetry'",
        TOPIC,
        br#"{"x": 1}"#,
        &NoContext,
    );
    assert_eq!(
        Value::Object(e.outputs),
        json!({"t": TOPIC, "t1": "devices", "t3": "telemetry", "t4": null, "d": "d1",
               "ts": 1_700_000_000_123u64, "p": {"x": 1}})
    );
    assert_eq!(e.group, "d1");
    assert_eq!(e.device_id.as_deref(), Some("d1"));
    assert_eq!(e.topic, TOPIC);
    assert_eq!(e.time_ms, 1_700_000_000_123);

    let e = run_on(
        "SELECT device_id() AS d, payload() AS p, x FROM 'plant/#'",
        "plant/line1/raw",
        b"not json \xff",
        &NoContext,
    );
    assert_eq!(e.outputs["d"], Value::Null);
    assert_eq!(e.outputs["p"], json!("not json \u{fffd}"));
    assert_eq!(e.outputs["x"], Value::Null);
    assert_eq!(e.group, "plant/line1/raw");
    assert_eq!(e.device_id, None);
    assert_eq!(e.error, None);
    assert!(
        run_on("SELECT topic(0) AS t FROM '#'", TOPIC, b"{}", &NoContext)
            .error
            .is_some()
    );
}

struct Registry;

impl Context for Registry {
    fn device_type(&self, device_id: &str) -> Option<String> {
        (device_id == "d1").then(|| "press".to_string())
    }
    fn label(&self, device_id: &str, key: &str) -> Option<String> {
        (device_id == "d1" && key == "line").then(|| "L1".to_string())
    }
}

#[test]
fn device_attributes_come_from_the_context() {
    let rule = "SELECT device_type() AS t, label('line') AS l, label('other') AS o FROM '#'
                WHERE device_type() = 'press'";
    let e = run_on(rule, TOPIC, b"{}", &Registry);
    assert!(e.matched);
    assert_eq!(
        Value::Object(e.outputs),
        json!({"t": "press", "l": "L1", "o": null})
    );
    let e = run_on(rule, "devices/d2/telemetry", b"{}", &Registry);
    assert!(!e.matched);
    let e = run_on(
        "SELECT device_type() AS t FROM '#'",
        TOPIC,
        b"{}",
        &NoContext,
    );
    assert_eq!(e.outputs["t"], Value::Null);
    let e = run_on(
        "SELECT label('line') AS t FROM '#'",
        "other/d1",
        b"{}",
        &Registry,
    );
    assert_eq!(e.outputs["t"], Value::Null);
}

#[test]
fn outputs_are_named_and_star_expands() {
    let e = run_on(
        "SELECT *, temp * 2 AS temp, n + 1, \"x y\" FROM '#'",
        TOPIC,
        br#"{"temp": 2, "n": 1, "x y": "q"}"#,
        &NoContext,
    );
    assert_eq!(
        Value::Object(e.outputs),
        json!({"temp": 4, "n": 1, "x y": "q", "n + 1": 2, "\"x y\"": "q"})
    );
    let e = run_on("SELECT * FROM '#'", TOPIC, b"[1, 2]", &NoContext);
    assert_eq!(Value::Object(e.outputs), json!({"payload": [1, 2]}));
    let e = run_on("SELECT * FROM '#'", TOPIC, b"raw", &NoContext);
    assert_eq!(Value::Object(e.outputs), json!({"payload": "raw"}));
    let rule = compile("SELECT *, a AS x, b + 1 FROM '#'").unwrap();
    assert_eq!(rule.output_names(), ["*", "x", "b + 1"]);
}

#[test]
fn runtime_errors_carry_positions_and_the_first_wins() {
    let e = run_on(
        "SELECT n / 0 AS a,\n  s + 1 AS b FROM '#' WHERE true",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert!(e.matched);
    assert_eq!(
        e.error.as_deref(),
        Some("line 1, column 8: division by zero")
    );
    assert_eq!(e.outputs["a"], Value::Null);
    assert_eq!(e.outputs["b"], Value::Null);
    let e = run_on(
        "SELECT 1 AS a FROM '#'\nWHERE s > 1",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert!(!e.matched);
    assert_eq!(
        e.error.as_deref(),
        Some("line 2, column 7: cannot compare string with number")
    );
}

#[test]
fn rule_accessors() {
    let r = compile("SELECT temp FROM 'devices/+/telemetry' WHERE temp > 1").unwrap();
    assert_eq!(r.filter(), "devices/+/telemetry");
    assert!(r.matches_topic("devices/a/telemetry"));
    assert!(!r.matches_topic("devices/a/status"));
    assert!(!r.is_stateful());
    assert!(r.text().starts_with("SELECT temp"));
    for stateful in [
        "SELECT avg(t) OVER 1m FROM '#'",
        "SELECT t FROM '#' WHERE t > 1 FOR 1m",
        "SELECT changed(t) FROM '#'",
        "SELECT zscore(t) FROM '#'",
    ] {
        assert!(compile(stateful).unwrap().is_stateful(), "{stateful}");
    }
    let e = compile("SELECT\n  temp FRM 't'").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 8: expected ',' or FROM, found identifier 'FRM'"
    );
}

#[test]
fn shared_parse_gives_the_same_result() {
    let rules: Vec<_> = [
        "SELECT temp FROM '#' WHERE temp > 1",
        "SELECT avg(temp) OVER 1m AS a FROM '#'",
        "SELECT * FROM '#'",
    ]
    .iter()
    .map(|r| compile(r).unwrap())
    .collect();
    let mut states_a: Vec<_> = rules.iter().map(|_| RuleState::new()).collect();
    let mut states_b: Vec<_> = rules.iter().map(|_| RuleState::new()).collect();
    for i in 0..20u64 {
        let payload = format!(r#"{{"temp": {}}}"#, i % 7);
        let msg = Message {
            topic: TOPIC,
            payload: payload.as_bytes(),
            time_ms: i * 1_000,
        };
        let parsed = ParsedMessage::new(msg);
        for (j, r) in rules.iter().enumerate() {
            let a = r.evaluate(&msg, &mut states_a[j], &NoContext);
            let b = r.evaluate_parsed(&parsed, &mut states_b[j], &NoContext);
            assert_eq!(a, b);
        }
    }
}

#[test]
fn templates() {
    let e = run_on(
        "SELECT temp, s AS name, a, z FROM '#'",
        TOPIC,
        PAYLOAD.as_bytes(),
        &NoContext,
    );
    assert_eq!(
        rules::render("alerts/${device_id}/${temp}/${name}/${missing}", &e),
        "alerts/d1/21.5/Hello/"
    );
    assert_eq!(
        rules::render("${topic} @${timestamp} ${group} ${a} ${z}|${ name }", &e),
        "devices/d1/telemetry @1700000000123 d1 {\"b\":{\"c\":7}} |Hello"
    );
    assert_eq!(rules::render("no ${closing", &e), "no ${closing");
    assert_eq!(rules::render("$temp ${}", &e), "$temp ");
    let body = json!({
        "value": "${temp}", "text": "t=${temp}", "nested": ["${a}", {"n": "${name}"}],
        "missing": "${nope}", "device": "${device_id}", "ts": "${timestamp}", "k": 3
    });
    assert_eq!(
        rules::render_json(&body, &e),
        json!({
            "value": 21.5, "text": "t=21.5", "nested": [{"b": {"c": 7}}, {"n": "Hello"}],
            "missing": null, "device": "d1", "ts": 1_700_000_000_123u64, "k": 3
        })
    );
}

#[test]
fn types_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<rules::Rule>();
    send_sync::<RuleState>();
    send_sync::<ParsedMessage<'static>>();
    send_sync::<Evaluation>();
    send_sync::<rules::ParseError>();
}
