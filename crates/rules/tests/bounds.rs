//! The state of a rule is bounded: groups (least recently used evicted)
//! and window samples (merged by time slot).

use rules::{compile, Limits, Message, NoContext, Rule, RuleState};
use serde_json::Value;

fn eval(rule: &Rule, state: &mut RuleState, device: &str, v: f64, t: u64) -> Value {
    let topic = format!("devices/{device}/telemetry");
    let payload = format!(r#"{{"v": {v}}}"#);
    let msg = Message {
        topic: &topic,
        payload: payload.as_bytes(),
        time_ms: t,
    };
    let e = rule.evaluate(&msg, state, &NoContext);
    assert_eq!(e.error, None);
    Value::Object(e.outputs)
}

#[test]
fn groups_beyond_the_limit_evict_the_least_recently_used() {
    let rule = compile("SELECT count(*) OVER 1h AS c FROM 'devices/+/telemetry'").unwrap();
    let mut state = RuleState::with_limits(Limits {
        max_groups: 3,
        ..Limits::default()
    });
    for (i, d) in ["a", "b", "c"].iter().enumerate() {
        eval(&rule, &mut state, d, 1.0, i as u64);
    }
    assert_eq!(state.groups(), 3);
    // Touch "a": "b" is now the least recently used.
    assert_eq!(eval(&rule, &mut state, "a", 1.0, 10)["c"], 2);
    eval(&rule, &mut state, "d", 1.0, 11);
    assert_eq!(state.groups(), 3);
    assert!(state.has_group("a") && !state.has_group("b"));
    assert!(state.has_group("c") && state.has_group("d"));
    // "b" comes back with fresh state, evicting "c".
    assert_eq!(eval(&rule, &mut state, "b", 1.0, 12)["c"], 1);
    assert!(!state.has_group("c"));
    assert_eq!(eval(&rule, &mut state, "a", 1.0, 13)["c"], 3);
    for i in 0..1_000 {
        eval(&rule, &mut state, &format!("x{i}"), 1.0, 100 + i);
        assert!(state.groups() <= 3);
    }
    assert!(state.remove_group("x999"));
    assert!(!state.remove_group("x999"));
    assert_eq!(state.groups(), 2);
    state.clear();
    assert_eq!(state.groups(), 0);
}

#[test]
fn stateless_rules_keep_no_state() {
    let rule = compile("SELECT v FROM 'devices/+/telemetry' WHERE v > 0").unwrap();
    let mut state = RuleState::new();
    for i in 0..100 {
        eval(&rule, &mut state, &format!("d{i}"), 1.0, i);
    }
    assert_eq!(state.groups(), 0);
}

#[test]
fn window_samples_are_bounded_and_aggregates_stay_close() {
    let max = 64;
    let rule = compile(
        "SELECT count(v) OVER 1h AS c, sum(v) OVER 1h AS s, min(v) OVER 1h AS lo,
                max(v) OVER 1h AS hi, first(v) OVER 1h AS f, avg(v) OVER 1h AS a
         FROM 'devices/+/telemetry'",
    )
    .unwrap();
    let mut state = RuleState::with_limits(Limits {
        max_samples_per_window: max,
        max_groups: 10,
    });
    // One sample a second for three hours: 3,600 in any window, 56x the bound.
    let slot = (2 * 3_600_000u64).div_ceil(max as u64);
    let mut samples = Vec::new();
    for i in 0..3 * 3_600u64 {
        let t = i * 1_000;
        let v = (i % 100) as f64;
        samples.push((t, v));
        let o = eval(&rule, &mut state, "a", v, t);
        assert!(state.samples() <= 6 * max, "{} entries", state.samples());
        if !i.is_multiple_of(97) {
            continue;
        }
        // Exactly the samples of the window, plus at most one slot older.
        let exact: Vec<f64> = samples
            .iter()
            .filter(|(s, _)| t - s < 3_600_000)
            .map(|x| x.1)
            .collect();
        let wide: Vec<f64> = samples
            .iter()
            .filter(|(s, _)| t - s < 3_600_000 + slot)
            .map(|x| x.1)
            .collect();
        let c = o["c"].as_f64().unwrap();
        assert!(
            exact.len() as f64 <= c && c <= wide.len() as f64,
            "count {c}"
        );
        let s = o["s"].as_f64().unwrap();
        assert!(
            exact.iter().sum::<f64>() <= s && s <= wide.iter().sum::<f64>(),
            "sum {s}"
        );
        assert!(o["lo"].as_f64().unwrap() <= exact.iter().copied().fold(f64::INFINITY, f64::min));
        assert!(
            o["hi"].as_f64().unwrap() >= exact.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
        let f = o["f"].as_f64().unwrap();
        assert!(
            wide[..wide.len() - exact.len() + 1].contains(&f),
            "first {f}"
        );
        let a = o["a"].as_f64().unwrap();
        assert!((a - s / c).abs() < 1e-9);
    }
}

#[test]
fn limits_deserialise_with_defaults() {
    let l: Limits = serde_json::from_str(r#"{"max_groups": 5}"#).unwrap();
    assert_eq!(
        l,
        Limits {
            max_groups: 5,
            max_samples_per_window: 10_000
        }
    );
    assert!(serde_json::from_str::<Limits>(r#"{"nope": 1}"#).is_err());
    let s = RuleState::with_limits(Limits {
        max_groups: 0,
        max_samples_per_window: 0,
    });
    assert_eq!(
        s.limits(),
        Limits {
            max_groups: 1,
            max_samples_per_window: 1
        }
    );
}
