//! Fuzz target for the twin JSON paths a device reaches: update documents
//! (`{"state": {"desired", "reported"}, "version"}` as the fleet reads them
//! from `devices/{id}/twin/update`), JSON merge patches applied by
//! `twin::apply` under small limits, then `delta`, `document` and
//! `delta_document`. The input is one or more JSON documents separated by
//! NUL bytes, applied in order. Nothing may panic; an accepted update
//! leaves both sides objects within the depth limit, bumps the version by
//! one, and its delta holds only keys desired has.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use twin::{apply, delta, delta_document, document, Twin, TwinLimits, TwinUpdate};

/// The fleet's reading of an update document (crates/fleet/src/events.rs,
/// `parse_update`), repeated here: the fleet crate is not a fuzz
/// dependency.
fn parse_update(doc: &Value) -> Option<TwinUpdate> {
    let obj = doc.as_object()?;
    let state = match obj.get("state") {
        Some(Value::Object(s)) => s.clone(),
        Some(_) => return None,
        None => Map::new(),
    };
    let expected_version = match obj.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64()?),
    };
    Some(TwinUpdate {
        desired: state.get("desired").cloned(),
        reported: state.get("reported").cloned(),
        expected_version,
    })
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn keys_within(delta: &Map<String, Value>, desired: &Map<String, Value>) -> bool {
    delta.iter().all(|(k, v)| match (desired.get(k), v) {
        (Some(Value::Object(d)), Value::Object(sub)) => keys_within(sub, d),
        (Some(_), _) => true,
        (None, _) => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = TwinLimits {
        max_document_bytes: 4096,
        max_depth: 4,
        max_twins_per_device: 4,
    };
    let mut twin = Twin::default();
    let mut now = 1_700_000_000_000u64;
    for part in data.split(|&b| b == 0).take(8) {
        let Ok(doc) = serde_json::from_slice::<Value>(part) else {
            continue;
        };
        let Some(update) = parse_update(&doc) else {
            continue;
        };
        now += 1;
        match apply(&twin, &update, &limits, now) {
            Ok(next) => {
                assert_eq!(next.version, twin.version + 1);
                let d = Value::Object(next.desired.clone());
                let r = Value::Object(next.reported.clone());
                assert!(depth(&d) <= limits.max_depth, "desired too deep: {d}");
                assert!(depth(&r) <= limits.max_depth, "reported too deep: {r}");
                let dl = delta(&next.desired, &next.reported);
                assert!(keys_within(&dl, &next.desired), "delta {dl:?} not in desired");
                assert_eq!(dl, next.delta());
                let doc = document(&next);
                assert!(doc.is_object());
                let _ = delta_document(&next);
                twin = next;
            }
            Err(e) => {
                assert!(matches!(e.code(), 400 | 409 | 413));
            }
        }
    }
});
