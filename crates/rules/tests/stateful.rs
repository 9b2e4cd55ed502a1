//! Stateful expressions against naive recomputations, driven by a virtual
//! clock (message times; no sleeps): sliding and tumbling windows, `FOR`,
//! change detection and the z-score, each per group.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use rules::{compile, Evaluation, Message, NoContext, Rule, RuleState};
use serde_json::Value;

/// One generated message: time advance, device, value (None: field missing).
type Step = (u64, usize, Option<i32>);

fn steps(max_dt: u64) -> impl Strategy<Value = Vec<Step>> {
    steps_from(max_dt, -1000)
}

/// Values in `low..1000` (a high `low` makes long runs of positives).
fn steps_from(max_dt: u64, low: i32) -> impl Strategy<Value = Vec<Step>> {
    vec(
        (0..max_dt, 0usize..3, option::weighted(0.9, low..1000)),
        1..150,
    )
}

/// Runs `rule` over the steps; values are `x / 8` (exact in binary, so
/// sums do not depend on the order of additions). Returns, per message,
/// (time, device, value, evaluation).
fn run(rule: &Rule, steps: &[Step]) -> Vec<(u64, usize, Option<f64>, Evaluation)> {
    let mut state = RuleState::new();
    let mut t = 1_700_000_000_000u64;
    steps
        .iter()
        .map(|&(dt, dev, x)| {
            t += dt;
            let v = x.map(|x| f64::from(x) / 8.0);
            let payload = match v {
                Some(v) => format!(r#"{{"v": {v}}}"#),
                None => r#"{"other": 1}"#.to_string(),
            };
            let topic = format!("devices/d{dev}/telemetry");
            let msg = Message {
                topic: &topic,
                payload: payload.as_bytes(),
                time_ms: t,
            };
            (t, dev, v, rule.evaluate(&msg, &mut state, &NoContext))
        })
        .collect()
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The earlier samples of the same device, this one included.
fn history(out: &[(u64, usize, Option<f64>, Evaluation)], i: usize) -> Vec<(u64, Option<f64>)> {
    let dev = out[i].1;
    out[..=i]
        .iter()
        .filter(|o| o.1 == dev)
        .map(|o| (o.0, o.2))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn sliding_windows_equal_naive(steps in steps(4_000)) {
        let rule = compile(
            "SELECT avg(v) OVER 10s AS avg, min(v) OVER 10s AS min, max(v) OVER 10s AS max,
                    sum(v) OVER 10s AS sum, count(v) OVER 10s AS count, count(*) OVER 10s AS msgs,
                    first(v) OVER 10s AS first, last(v) OVER 10s AS last
             FROM 'devices/+/telemetry'",
        ).unwrap();
        let out = run(&rule, &steps);
        for i in 0..out.len() {
            let now = out[i].0;
            let hist = history(&out, i);
            let inside: Vec<(u64, Option<f64>)> =
                hist.iter().copied().filter(|(t, _)| now - t < 10_000).collect();
            let vals: Vec<f64> = inside.iter().filter_map(|(_, v)| *v).collect();
            let o = &out[i].3.outputs;
            prop_assert_eq!(num(&o["count"]), Some(vals.len() as f64));
            prop_assert_eq!(num(&o["msgs"]), Some(inside.len() as f64));
            if vals.is_empty() {
                for k in ["avg", "min", "max", "sum", "first", "last"] {
                    prop_assert_eq!(&o[k], &Value::Null, "{}", k);
                }
            } else {
                let sum: f64 = vals.iter().sum();
                prop_assert_eq!(num(&o["sum"]), Some(sum));
                prop_assert_eq!(num(&o["avg"]), Some(sum / vals.len() as f64));
                prop_assert_eq!(num(&o["min"]), Some(vals.iter().copied().fold(f64::INFINITY, f64::min)));
                prop_assert_eq!(num(&o["max"]), Some(vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
                prop_assert_eq!(num(&o["first"]), Some(vals[0]));
                prop_assert_eq!(num(&o["last"]), Some(vals[vals.len() - 1]));
            }
        }
    }

    #[test]
    fn tumbling_windows_reset_at_boundaries(steps in steps(3_000)) {
        let rule = compile(
            "SELECT avg(v) OVER TUMBLING 5s AS avg, sum(v) OVER TUMBLING 5s AS sum,
                    count(v) OVER TUMBLING 5s AS count, min(v) OVER TUMBLING 5s AS min,
                    max(v) OVER TUMBLING 5s AS max, first(v) OVER TUMBLING 5s AS first,
                    last(v) OVER TUMBLING 5s AS last
             FROM 'devices/+/telemetry'",
        ).unwrap();
        let out = run(&rule, &steps);
        for i in 0..out.len() {
            let window = out[i].0 / 5_000;
            let vals: Vec<f64> = history(&out, i)
                .iter()
                .filter(|(t, _)| t / 5_000 == window)
                .filter_map(|(_, v)| *v)
                .collect();
            let o = &out[i].3.outputs;
            prop_assert_eq!(num(&o["count"]), Some(vals.len() as f64));
            if vals.is_empty() {
                prop_assert_eq!(&o["avg"], &Value::Null);
                prop_assert_eq!(&o["first"], &Value::Null);
            } else {
                let sum: f64 = vals.iter().sum();
                prop_assert_eq!(num(&o["sum"]), Some(sum));
                prop_assert_eq!(num(&o["avg"]), Some(sum / vals.len() as f64));
                prop_assert_eq!(num(&o["min"]), Some(vals.iter().copied().fold(f64::INFINITY, f64::min)));
                prop_assert_eq!(num(&o["max"]), Some(vals.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
                prop_assert_eq!(num(&o["first"]), Some(vals[0]));
                prop_assert_eq!(num(&o["last"]), Some(vals[vals.len() - 1]));
            }
        }
    }

    #[test]
    fn for_is_true_iff_the_condition_held_long_enough(steps in steps_from(2_000, -60)) {
        let rule = compile(
            "SELECT v > 0 FOR 5s AS held FROM 'devices/+/telemetry' WHERE v > 0 FOR 5s",
        ).unwrap();
        let out = run(&rule, &steps);
        for i in 0..out.len() {
            let hist = history(&out, i);
            let now = out[i].0;
            // The earliest sample of the current unbroken run of true conditions.
            let mut run_start = None;
            for (t, v) in hist.iter().rev() {
                if v.is_some_and(|v| v > 0.0) {
                    run_start = Some(*t);
                } else {
                    break;
                }
            }
            let want = run_start.is_some_and(|s| now - s >= 5_000);
            prop_assert_eq!(out[i].3.matched, want);
            if want {
                prop_assert_eq!(&out[i].3.outputs["held"], &Value::Bool(true));
            }
        }
    }

    #[test]
    fn change_detection_equals_naive(steps in steps(2_000)) {
        let rule = compile(
            "SELECT changed(v) AS changed, previous(v) AS previous, delta(v) AS delta,
                    rate(v) AS rate FROM 'devices/+/telemetry'",
        ).unwrap();
        let out = run(&rule, &steps);
        for i in 0..out.len() {
            let hist = history(&out, i);
            let (now, cur) = hist[hist.len() - 1];
            let prev = hist[..hist.len() - 1].iter().rev().find(|(_, v)| v.is_some());
            let o = &out[i].3.outputs;
            prop_assert_eq!(num(&o["previous"]), prev.and_then(|p| p.1));
            match (cur, prev) {
                (None, _) => {
                    prop_assert_eq!(&o["changed"], &Value::Null);
                    prop_assert_eq!(&o["delta"], &Value::Null);
                    prop_assert_eq!(&o["rate"], &Value::Null);
                }
                (Some(_), None) => {
                    prop_assert_eq!(&o["changed"], &Value::Bool(false));
                    prop_assert_eq!(&o["delta"], &Value::Null);
                    prop_assert_eq!(&o["rate"], &Value::Null);
                }
                (Some(c), Some(&(pt, Some(p)))) => {
                    prop_assert_eq!(&o["changed"], &Value::Bool(c != p));
                    prop_assert_eq!(num(&o["delta"]), Some(c - p));
                    if now > pt {
                        let want = (c - p) * 1000.0 / (now - pt) as f64;
                        let got = num(&o["rate"]).unwrap();
                        prop_assert!((got - want).abs() <= 1e-9 * (1.0 + want.abs()));
                    } else {
                        prop_assert_eq!(&o["rate"], &Value::Null);
                    }
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn zscore_equals_a_naive_ewma(steps in steps(1_000), alpha in 0.01f64..1.0) {
        let rule = compile(&format!(
            "SELECT zscore(v, {alpha}) AS z FROM 'devices/+/telemetry' WHERE abs(zscore(v, {alpha})) > 2"
        )).unwrap();
        let out = run(&rule, &steps);
        // Per device: (n, mean, var).
        let mut ewma = [(0u64, 0.0f64, 0.0f64); 3];
        for (_, dev, v, e) in &out {
            let Some(x) = *v else {
                prop_assert!(!e.matched);
                continue;
            };
            let (n, mean, var) = &mut ewma[*dev];
            let want = if *n < 5 {
                None
            } else if *var > 0.0 {
                Some((x - *mean) / var.sqrt())
            } else if x == *mean {
                Some(0.0)
            } else {
                Some(f64::INFINITY.copysign(x - *mean))
            };
            if *n == 0 {
                *mean = x;
            } else {
                let d = x - *mean;
                let incr = alpha * d;
                *mean += incr;
                *var = (1.0 - alpha) * (*var + d * incr);
            }
            *n += 1;
            let matched = want.is_some_and(|z| z.abs() > 2.0);
            prop_assert_eq!(e.matched, matched);
            if matched {
                match want {
                    Some(z) if z.is_finite() => {
                        let got = num(&e.outputs["z"]).unwrap();
                        prop_assert!((got - z).abs() <= 1e-9 * (1.0 + z.abs()), "{} vs {}", got, z);
                    }
                    _ => prop_assert_eq!(&e.outputs["z"], &Value::Null),
                }
            }
        }
    }
}

fn eval(rule: &Rule, state: &mut RuleState, topic: &str, payload: &str, t: u64) -> Evaluation {
    let msg = Message {
        topic,
        payload: payload.as_bytes(),
        time_ms: t,
    };
    rule.evaluate(&msg, state, &NoContext)
}

#[test]
fn stateful_expressions_see_every_message_whatever_where_decides() {
    // WHERE short-circuits on `gate`, yet the window counts every message.
    let rule = compile("SELECT count(*) OVER 1h AS c FROM '#' WHERE gate AND count(*) OVER 1h > 0")
        .unwrap();
    let mut state = RuleState::new();
    for t in 0..4 {
        assert!(!eval(&rule, &mut state, "a", r#"{"gate": false}"#, t).matched);
    }
    let e = eval(&rule, &mut state, "a", r#"{"gate": true}"#, 5);
    assert!(e.matched);
    assert_eq!(e.outputs["c"], 5);
}

#[test]
fn messages_from_the_past_count_at_the_latest_time() {
    let rule = compile("SELECT count(*) OVER 10s AS c, rate(v) AS r FROM '#'").unwrap();
    let mut state = RuleState::new();
    eval(&rule, &mut state, "a", r#"{"v": 1}"#, 100_000);
    // 50 s older than the newest: counted at 100 s, no negative time.
    let e = eval(&rule, &mut state, "a", r#"{"v": 2}"#, 50_000);
    assert_eq!(e.outputs["c"], 2);
    assert_eq!(e.outputs["r"], Value::Null);
    assert_eq!(e.time_ms, 50_000);
    let e = eval(&rule, &mut state, "a", r#"{"v": 4}"#, 102_000);
    assert_eq!(e.outputs["r"], 1.0);
}

#[test]
fn for_after_a_gap_and_nested_stateful_expressions() {
    let rule = compile(
        "SELECT changed(avg(v) OVER 10s) AS moved, delta(v) AS d FROM '#' WHERE avg(v) OVER 10s > 5 FOR 20s",
    )
    .unwrap();
    let mut state = RuleState::new();
    let e = eval(&rule, &mut state, "a", r#"{"v": 10}"#, 0);
    assert!(!e.matched);
    let e = eval(&rule, &mut state, "a", r#"{"v": 10}"#, 10_000);
    assert!(!e.matched);
    let e = eval(&rule, &mut state, "a", r#"{"v": 20}"#, 20_000);
    assert!(e.matched);
    assert_eq!(e.outputs["moved"], true);
    assert_eq!(e.outputs["d"], 10);
}

#[test]
fn dry_run_leaves_the_state_alone() {
    let rule = compile("SELECT count(*) OVER 1h AS c FROM 'devices/+/t'").unwrap();
    let mut state = RuleState::new();
    for t in 0..3 {
        eval(&rule, &mut state, "devices/a/t", "{}", t);
    }
    let msg = Message {
        topic: "devices/a/t",
        payload: b"{}",
        time_ms: 10,
    };
    let dry = rule.dry_run(&msg, &state, &NoContext);
    assert_eq!(dry.outputs["c"], 4);
    let dry = rule.dry_run(&msg, &state, &NoContext);
    assert_eq!(dry.outputs["c"], 4);
    let other = Message {
        topic: "devices/b/t",
        ..msg
    };
    assert_eq!(rule.dry_run(&other, &state, &NoContext).outputs["c"], 1);
    assert_eq!(state.groups(), 1);
    assert_eq!(
        eval(&rule, &mut state, "devices/a/t", "{}", 11).outputs["c"],
        4
    );
}

#[test]
fn editing_a_rule_keeps_or_resets_its_state() {
    let v1 = compile("SELECT count(*) OVER 1h AS c FROM '#' WHERE true").unwrap();
    let v2 = compile("SELECT count(*) OVER 1h AS c, 1 AS x FROM '#' WHERE false").unwrap();
    let v3 = compile("SELECT count(*) OVER 2h AS c FROM '#'").unwrap();
    let mut state = RuleState::new();
    eval(&v1, &mut state, "a", "{}", 0);
    eval(&v1, &mut state, "a", "{}", 1);
    // Same stateful expressions: the window goes on.
    eval(&v2, &mut state, "a", "{}", 2);
    assert_eq!(eval(&v1, &mut state, "a", "{}", 3).outputs["c"], 4);
    // A different window: afresh.
    assert_eq!(eval(&v3, &mut state, "a", "{}", 4).outputs["c"], 1);
}
