//! Commands, as a pure function: the payload of `devices/{id}/commands/
//! {cmd_id}` and a view of the device in, the payload of `.../response` and
//! what the device must do out.
//!
//! Methods: `reboot` (answered first, then the device goes offline for a
//! few seconds), `set_speed {"rpm": n}`, `ping`, `get_state`. Status 0 is
//! success; failures carry `{"error": "..."}` with 400 (bad request) or
//! 404 (unknown method).

use serde_json::{json, Value};

use crate::machine::{Mode, Reading};
use crate::twin::{number, valid_speed};

/// Success.
pub(crate) const STATUS_OK: i64 = 0;
/// The payload or its parameters are not valid.
pub(crate) const STATUS_BAD_REQUEST: i64 = 400;
/// No such method.
pub(crate) const STATUS_UNKNOWN_METHOD: i64 = 404;

/// What the device does after answering.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    None,
    /// Set the target speed; `value` is the JSON value to report.
    SetSpeed {
        rpm: f64,
        value: Value,
    },
    /// Disconnect once the response is acknowledged, stay offline a few
    /// seconds, connect again.
    Reboot,
}

/// What a command may look at.
#[derive(Debug, Clone)]
pub(crate) struct DeviceView<'a> {
    pub uptime_s: u64,
    pub reading: Reading,
    pub target_rpm: f64,
    pub mode: Mode,
    pub firmware: &'a str,
    pub kind: &'a str,
    pub fault: bool,
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub status: i64,
    /// The response payload, `{"status": n, "result": {...}}`.
    pub response: Value,
    pub action: Action,
}

fn ok(result: Value, action: Action) -> Outcome {
    Outcome {
        status: STATUS_OK,
        response: json!({ "status": STATUS_OK, "result": result }),
        action,
    }
}

fn failure(status: i64, error: String) -> Outcome {
    Outcome {
        status,
        response: json!({ "status": status, "result": { "error": error } }),
        action: Action::None,
    }
}

/// Handles one command payload `{"method": "...", "params": {...}}`.
pub(crate) fn handle(payload: &[u8], view: &DeviceView<'_>) -> Outcome {
    let doc: Value = match serde_json::from_slice(payload) {
        Ok(doc) => doc,
        Err(e) => return failure(STATUS_BAD_REQUEST, format!("not a JSON document: {e}")),
    };
    let Some(method) = doc.get("method").and_then(Value::as_str) else {
        return failure(
            STATUS_BAD_REQUEST,
            "a command needs a \"method\" string".into(),
        );
    };
    let params = doc.get("params").unwrap_or(&Value::Null);
    if !(params.is_null() || params.is_object()) {
        return failure(STATUS_BAD_REQUEST, "\"params\" must be an object".into());
    }
    match method {
        "ping" => ok(
            json!({ "pong": true, "uptime_s": view.uptime_s }),
            Action::None,
        ),
        "reboot" => ok(json!({ "rebooting": true }), Action::Reboot),
        "get_state" => ok(state(view), Action::None),
        "set_speed" => match params.get("rpm") {
            None => failure(STATUS_BAD_REQUEST, "set_speed needs params.rpm".into()),
            Some(value) => match valid_speed(value) {
                Ok(rpm) => ok(
                    json!({ "rpm": value }),
                    Action::SetSpeed {
                        rpm,
                        value: value.clone(),
                    },
                ),
                Err(why) => failure(STATUS_BAD_REQUEST, format!("params.rpm {why}")),
            },
        },
        other => failure(
            STATUS_UNKNOWN_METHOD,
            format!("unknown method {other:?}; known: reboot, set_speed, ping, get_state"),
        ),
    }
}

/// The current values, for `get_state`.
fn state(view: &DeviceView<'_>) -> Value {
    let mut v = view.reading.to_json();
    if let Value::Object(m) = &mut v {
        m.insert("speed".into(), number(view.target_rpm));
        m.insert("mode".into(), Value::from(view.mode.as_str()));
        m.insert("firmware".into(), Value::from(view.firmware));
        m.insert("type".into(), Value::from(view.kind));
        m.insert("fault".into(), Value::from(view.fault));
        m.insert("uptime_s".into(), Value::from(view.uptime_s));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> DeviceView<'static> {
        DeviceView {
            uptime_s: 42,
            reading: Reading {
                temp: 61.23,
                vibration: 2.314,
                rpm: 1480.2,
                power: 7.91,
            },
            target_rpm: 1480.0,
            mode: Mode::Run,
            firmware: "1.0.0",
            kind: "pump",
            fault: false,
        }
    }

    #[test]
    fn ping_answers_with_uptime() {
        let out = handle(br#"{"method": "ping", "params": {}}"#, &view());
        assert_eq!(out.status, 0);
        assert_eq!(
            out.response,
            json!({"status": 0, "result": {"pong": true, "uptime_s": 42}})
        );
        assert_eq!(out.action, Action::None);
        // params may be left out.
        assert_eq!(handle(br#"{"method": "ping"}"#, &view()).status, 0);
    }

    #[test]
    fn reboot_answers_then_acts() {
        let out = handle(br#"{"method": "reboot"}"#, &view());
        assert_eq!(out.response["status"], json!(0));
        assert_eq!(out.action, Action::Reboot);
    }

    #[test]
    fn set_speed_checks_its_parameter() {
        let out = handle(
            br#"{"method": "set_speed", "params": {"rpm": 900}}"#,
            &view(),
        );
        assert_eq!(out.response, json!({"status": 0, "result": {"rpm": 900}}));
        assert_eq!(
            out.action,
            Action::SetSpeed {
                rpm: 900.0,
                value: json!(900)
            }
        );
        for bad in [
            &br#"{"method": "set_speed", "params": {}}"#[..],
            br#"{"method": "set_speed", "params": {"rpm": "fast"}}"#,
            br#"{"method": "set_speed", "params": {"rpm": 1e9}}"#,
        ] {
            let out = handle(bad, &view());
            assert_eq!(out.status, STATUS_BAD_REQUEST);
            assert!(out.response["result"]["error"].is_string());
            assert_eq!(out.action, Action::None);
        }
    }

    #[test]
    fn get_state_reports_current_values() {
        let out = handle(br#"{"method": "get_state", "params": {}}"#, &view());
        assert_eq!(
            out.response["result"],
            json!({
                "temp": 61.2, "vibration": 2.31, "rpm": 1480, "power": 7.9,
                "speed": 1480, "mode": "run", "firmware": "1.0.0", "type": "pump",
                "fault": false, "uptime_s": 42
            })
        );
    }

    #[test]
    fn unknown_and_malformed_commands_fail() {
        let out = handle(br#"{"method": "self_destruct"}"#, &view());
        assert_eq!(out.status, STATUS_UNKNOWN_METHOD);
        assert_eq!(out.response["status"], json!(404));
        let error = out.response["result"]["error"].as_str().unwrap();
        assert!(error.contains("self_destruct"), "{error}");
        for bad in [
            &b"reboot"[..],
            br#"{"params": {}}"#,
            br#"{"method": 5}"#,
            br#"{"method": "ping", "params": [1]}"#,
        ] {
            let out = handle(bad, &view());
            assert_eq!(out.status, STATUS_BAD_REQUEST, "{}", out.response);
            assert_eq!(out.action, Action::None);
        }
    }
}
