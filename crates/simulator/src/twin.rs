//! The device side of the twin exchange, as pure functions: a document from
//! the platform in, what to apply to the machine and what to report out.
//!
//! Supported desired fields: `speed` (target rpm, a number from 0 to
//! [`MAX_SPEED`]) and `mode` (`"run"`, `"idle"` or `"maintenance"`). Any
//! other field is echoed back as reported so that the delta empties. A
//! supported field with a value the machine cannot take is neither applied
//! nor reported: it stays in the delta, where an operator sees it.
//!
//! Reported values echo the desired JSON value exactly (`1200` stays
//! `1200`, not `1200.0`), so the platform's comparison finds them equal.

use serde_json::{json, Map, Value};

use crate::machine::{Mode, MAX_SPEED};

/// What a twin document asks of the device.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TwinChange {
    /// A new target speed for the machine.
    pub speed: Option<f64>,
    /// A new mode for the machine.
    pub mode: Option<Mode>,
    /// The `state.reported` patch to send (empty: send nothing).
    pub reported: Map<String, Value>,
    /// Desired fields that were not applied, with the reason.
    pub refused: Vec<(String, String)>,
}

/// The device's own reported values, sent after every get.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reported {
    pub speed: f64,
    pub mode: Mode,
    pub firmware: String,
    pub kind: &'static str,
}

impl Reported {
    fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("speed".into(), number(self.speed));
        m.insert("mode".into(), Value::from(self.mode.as_str()));
        m.insert("firmware".into(), Value::from(self.firmware.as_str()));
        m.insert("type".into(), Value::from(self.kind));
        m
    }
}

/// A whole number as an integer, anything else as a float.
pub(crate) fn number(v: f64) -> Value {
    if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
        Value::from(v as u64)
    } else {
        Value::from(v)
    }
}

/// Why a twin document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TwinError {
    #[error("not a JSON document: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(&'static str),
}

fn parse(payload: &[u8]) -> Result<Value, TwinError> {
    serde_json::from_slice(payload).map_err(|e| TwinError::Json(e.to_string()))
}

/// Checks a desired speed: a number from 0 to [`MAX_SPEED`].
pub(crate) fn valid_speed(v: &Value) -> Result<f64, String> {
    match v.as_f64() {
        Some(rpm) if (0.0..=MAX_SPEED).contains(&rpm) => Ok(rpm),
        Some(_) => Err(format!("must be from 0 to {MAX_SPEED}")),
        None => Err("must be a number".into()),
    }
}

/// Applies the desired fields of `fields` to `change`.
fn apply_fields(fields: &Map<String, Value>, change: &mut TwinChange) {
    for (key, value) in fields {
        match key.as_str() {
            "speed" => match valid_speed(value) {
                Ok(rpm) => {
                    change.speed = Some(rpm);
                    change.reported.insert(key.clone(), value.clone());
                }
                Err(why) => change.refused.push((key.clone(), why)),
            },
            "mode" => match value.as_str().and_then(Mode::parse) {
                Some(mode) => {
                    change.mode = Some(mode);
                    change.reported.insert(key.clone(), value.clone());
                }
                None => change
                    .refused
                    .push((key.clone(), "must be run, idle or maintenance".into())),
            },
            _ => {
                change.reported.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A message on `devices/{id}/twin/delta`: `{"state": {<desired fields
/// that differ>}, "version": n, ...}`.
pub(crate) fn on_delta(payload: &[u8]) -> Result<TwinChange, TwinError> {
    let doc = parse(payload)?;
    let state = doc
        .get("state")
        .and_then(Value::as_object)
        .ok_or(TwinError::Shape("a delta needs a \"state\" object"))?;
    let mut change = TwinChange::default();
    apply_fields(state, &mut change);
    Ok(change)
}

/// A message on `devices/{id}/twin/get/accepted`: the full document. The
/// machine takes every supported desired field (a restarted device learns
/// its settings even when the delta is empty); the report carries the
/// device's own values, then the desired and delta fields it applied on
/// top, so that it always describes the device completely.
pub(crate) fn on_get_accepted(payload: &[u8], current: &Reported) -> Result<TwinChange, TwinError> {
    let doc = parse(payload)?;
    let state = doc
        .get("state")
        .and_then(Value::as_object)
        .ok_or(TwinError::Shape("a twin document needs a \"state\" object"))?;
    let empty = Map::new();
    let section = |name: &str| -> Result<&Map<String, Value>, TwinError> {
        match state.get(name) {
            None | Some(Value::Null) => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(TwinError::Shape("state sections must be objects")),
        }
    };
    let desired = section("desired")?;
    let delta = section("delta")?;
    let mut change = TwinChange::default();
    // Supported desired fields are applied even when already reported.
    let supported: Map<String, Value> = desired
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "speed" | "mode"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    apply_fields(&supported, &mut change);
    apply_fields(delta, &mut change);
    change.refused.sort();
    change.refused.dedup();
    let mut reported = current.to_map();
    reported.extend(std::mem::take(&mut change.reported));
    change.reported = reported;
    Ok(change)
}

/// A message on `devices/{id}/twin/{get,update}/rejected`: `{"code": 409,
/// "message": "..."}` (code 0 and the payload as text if it is not that).
pub(crate) fn on_rejected(payload: &[u8]) -> (i64, String) {
    match serde_json::from_slice::<Value>(payload) {
        Ok(doc) => (
            doc.get("code").and_then(Value::as_i64).unwrap_or(0),
            doc.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| doc.to_string(), str::to_string),
        ),
        Err(_) => (0, String::from_utf8_lossy(payload).into_owned()),
    }
}

/// The payload of `devices/{id}/twin/get`.
pub(crate) fn get_request(client_token: &str) -> Vec<u8> {
    json!({ "clientToken": client_token })
        .to_string()
        .into_bytes()
}

/// The payload of `devices/{id}/twin/update` reporting `reported`.
pub(crate) fn update_request(reported: &Map<String, Value>, client_token: &str) -> Vec<u8> {
    json!({ "state": { "reported": reported }, "clientToken": client_token })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> Reported {
        Reported {
            speed: 1200.0,
            mode: Mode::Run,
            firmware: "1.0.0".into(),
            kind: "press",
        }
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_delta_is_applied_and_reported_back() {
        let change = on_delta(
            br#"{"state": {"speed": 1500, "mode": "idle"}, "version": 7, "timestamp": 1}"#,
        )
        .unwrap();
        assert_eq!(change.speed, Some(1500.0));
        assert_eq!(change.mode, Some(Mode::Idle));
        assert_eq!(change.reported, map(json!({"speed": 1500, "mode": "idle"})));
        assert!(change.refused.is_empty());
    }

    #[test]
    fn unknown_fields_are_echoed_verbatim() {
        let change = on_delta(
            br#"{"state": {"led": "blue", "limits": {"max_temp": 85.5}, "gain": 1.0}, "version": 2}"#,
        )
        .unwrap();
        assert_eq!(change.speed, None);
        assert_eq!(change.mode, None);
        assert_eq!(
            change.reported,
            map(json!({"led": "blue", "limits": {"max_temp": 85.5}, "gain": 1.0}))
        );
        // The exact JSON value: 1.0 stays a float, 1500 an integer.
        let text = String::from_utf8(update_request(&change.reported, "t")).unwrap();
        assert!(text.contains("\"gain\":1.0"), "{text}");
    }

    #[test]
    fn bad_values_are_not_applied_nor_reported() {
        let change =
            on_delta(br#"{"state": {"speed": -5, "mode": "turbo", "x": 1}, "version": 3}"#)
                .unwrap();
        assert_eq!(change.speed, None);
        assert_eq!(change.mode, None);
        assert_eq!(change.reported, map(json!({"x": 1})));
        let mut fields: Vec<&str> = change.refused.iter().map(|(f, _)| f.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["mode", "speed"]);
        assert!(on_delta(br#"{"state": {"speed": "fast"}}"#)
            .unwrap()
            .speed
            .is_none());
    }

    #[test]
    fn malformed_deltas_are_errors() {
        assert!(matches!(on_delta(b"not json"), Err(TwinError::Json(_))));
        assert!(matches!(
            on_delta(br#"{"version": 1}"#),
            Err(TwinError::Shape(_))
        ));
        assert!(matches!(
            on_delta(br#"{"state": 5}"#),
            Err(TwinError::Shape(_))
        ));
    }

    #[test]
    fn get_accepted_with_a_delta_reports_everything() {
        let doc = br#"{
            "state": {
                "desired": {"speed": 1800, "mode": "run", "label": "A"},
                "reported": {"speed": 1200, "mode": "run", "firmware": "1.0.0"},
                "delta": {"speed": 1800, "label": "A"}
            },
            "metadata": {}, "version": 4, "timestamp": 1700000000000
        }"#;
        let change = on_get_accepted(doc, &current()).unwrap();
        assert_eq!(change.speed, Some(1800.0));
        assert_eq!(change.mode, Some(Mode::Run));
        assert_eq!(
            change.reported,
            map(json!({
                "speed": 1800, "mode": "run", "firmware": "1.0.0",
                "type": "press", "label": "A"
            }))
        );
    }

    #[test]
    fn get_accepted_applies_desired_even_without_a_delta() {
        // A restarted device: the twin already agrees, the machine does not.
        let doc = br#"{"state": {"desired": {"speed": 900, "mode": "maintenance"},
            "reported": {"speed": 900, "mode": "maintenance"}, "delta": {}}, "version": 9}"#;
        let change = on_get_accepted(doc, &current()).unwrap();
        assert_eq!(change.speed, Some(900.0));
        assert_eq!(change.mode, Some(Mode::Maintenance));
        assert_eq!(change.reported["speed"], json!(900));
        assert_eq!(change.reported["mode"], json!("maintenance"));
    }

    #[test]
    fn get_accepted_of_a_new_twin_reports_the_device() {
        let doc = br#"{"state": {}, "metadata": {}, "version": 0, "timestamp": 1}"#;
        let change = on_get_accepted(doc, &current()).unwrap();
        assert_eq!(change.speed, None);
        assert_eq!(
            change.reported,
            map(json!({"speed": 1200, "mode": "run", "firmware": "1.0.0", "type": "press"}))
        );
        let with_nulls = br#"{"state": {"desired": null, "delta": null}}"#;
        assert!(on_get_accepted(with_nulls, &current()).is_ok());
        assert!(on_get_accepted(br#"{"state": {"delta": []}}"#, &current()).is_err());
    }

    #[test]
    fn get_accepted_refuses_a_bad_desired_value_once() {
        let doc = br#"{"state": {"desired": {"mode": "warp"}, "delta": {"mode": "warp"}}}"#;
        let change = on_get_accepted(doc, &current()).unwrap();
        assert_eq!(change.mode, None);
        assert_eq!(change.refused.len(), 1);
        assert_eq!(change.reported["mode"], json!("run"));
    }

    #[test]
    fn rejections_and_requests() {
        assert_eq!(
            on_rejected(br#"{"code": 409, "message": "version conflict"}"#),
            (409, "version conflict".to_string())
        );
        assert_eq!(on_rejected(b"oops"), (0, "oops".to_string()));
        let get: Value = serde_json::from_slice(&get_request("sim-1-3")).unwrap();
        assert_eq!(get, json!({"clientToken": "sim-1-3"}));
        let update: Value =
            serde_json::from_slice(&update_request(&map(json!({"speed": 1200})), "sim-1-4"))
                .unwrap();
        assert_eq!(
            update,
            json!({"state": {"reported": {"speed": 1200}}, "clientToken": "sim-1-4"})
        );
    }
}
