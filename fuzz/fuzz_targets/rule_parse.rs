//! Fuzz target for the rule language (`rules::compile`): arbitrary text
//! must compile or fail with an error whose line and column lie inside the
//! text, never panic; every rule that compiles is then evaluated (and
//! dry-run) on a few messages — JSON, not JSON, device and non-device
//! topics — over a virtual clock with tiny state limits, which must not
//! panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::{compile, render, Limits, Message, NoContext, RuleState};

const MESSAGES: [(&str, &[u8]); 6] = [
    ("devices/d1/telemetry", br#"{"temp": 90, "a": {"b": [1, 2, {"c": "x"}]}, "s": "hi"}"#),
    ("devices/d2/telemetry", br#"{"temp": -1.5e3, "s": null, "v": [true, false]}"#),
    ("devices/d1/telemetry", b"not json \xff"),
    ("plant/line1/raw", br#"[1, 2, 3]"#),
    ("$events/twin/d1", br#""just a string""#),
    ("devices/d1/telemetry", br#"{"temp": 1e308, "s": "", "n": 0}"#),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match compile(text) {
        Err(e) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(e.line >= 1 && e.line <= lines.len(), "{e}");
            let width = lines[e.line - 1].chars().count();
            assert!(e.column >= 1 && e.column <= width + 1, "{e}");
            assert!(!e.message.is_empty());
        }
        Ok(rule) => {
            assert_eq!(rule.text(), text);
            let mut state = RuleState::with_limits(Limits {
                max_samples_per_window: 4,
                max_groups: 2,
            });
            for (i, (topic, payload)) in MESSAGES.iter().enumerate() {
                let msg = Message {
                    topic,
                    payload,
                    time_ms: i as u64 * 7_000,
                };
                let _ = rule.matches_topic(topic);
                let e = rule.evaluate(&msg, &mut state, &NoContext);
                let _ = render("${topic}/${temp}/${device_id}", &e);
                let _ = rule.dry_run(&msg, &state, &NoContext);
            }
            assert!(state.groups() <= 2);
        }
    }
});
