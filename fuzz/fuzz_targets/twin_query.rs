//! Fuzz target for the twin query parser (`twin::TwinQuery::parse`, the
//! `q` of `GET /api/devices?twin=...`): arbitrary text must parse or fail
//! with a message, never panic; a query that parses is matched against a
//! few twins without panicking, and parses the same way twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use twin::{Twin, TwinQuery};

fn twin_of(desired: Value, reported: Value) -> Twin {
    Twin {
        desired: desired.as_object().cloned().unwrap_or_default(),
        reported: reported.as_object().cloned().unwrap_or_default(),
        version: 3,
        updated_at_ms: 1_700_000_000_000,
        ..Twin::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match TwinQuery::parse(text) {
        Ok(q) => {
            let twins = [
                Twin::default(),
                twin_of(
                    json!({"speed": 10, "mode": "eco", "a": {"b": {"c": true}}}),
                    json!({"speed": 5.5, "firmware": "1.2.0", "n": null, "big": 1e300, "neg": -9007199254740993i64}),
                ),
                twin_of(json!({"x": [1, 2, 3]}), json!({"x": u64::MAX})),
            ];
            let first: Vec<bool> = twins.iter().map(|t| q.matches(t)).collect();
            let again = TwinQuery::parse(text).expect("parses twice");
            let second: Vec<bool> = twins.iter().map(|t| again.matches(t)).collect();
            assert_eq!(first, second);
        }
        Err(msg) => assert!(!msg.is_empty()),
    }
});
