//! Rule actions: their JSON definitions (validated when a rule is saved)
//! and what carrying one out does.

use serde_json::{json, Map, Value};

use crate::AutomationError;

/// One action of a rule, as defined in its JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish to a templated topic; payload a JSON template (default: the
    /// rule's outputs).
    Republish {
        topic: String,
        payload: Option<Value>,
        qos: u8,
        retain: bool,
    },
    /// Store a derived value as telemetry of the device.
    Store {
        metric: String,
        value: String,
        device: Option<String>,
    },
    /// Merge into the device's desired twin state.
    Twin { name: String, desired: Value },
    /// Send the device a command.
    Command {
        method: String,
        params: Value,
        timeout_ms: u64,
        ttl_ms: Option<u64>,
    },
    /// HTTP POST through the disk-backed outbox.
    Webhook {
        url: String,
        body: Option<Value>,
        headers: Vec<(String, String)>,
    },
    /// Raise (or update) an alarm of the device; with `auto_clear`, the
    /// alarm is cleared when the rule no longer matches for that device.
    Alarm {
        alarm_type: String,
        severity: alarms::Severity,
        details: Option<Value>,
        auto_clear: bool,
    },
    /// Clear the device's active alarm of a type.
    ClearAlarm { alarm_type: String },
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Republish { .. } => "republish",
            Action::Store { .. } => "store",
            Action::Twin { .. } => "twin",
            Action::Command { .. } => "command",
            Action::Webhook { .. } => "webhook",
            Action::Alarm { .. } => "alarm",
            Action::ClearAlarm { .. } => "clear_alarm",
        }
    }
}

fn invalid(i: usize, field: &str, msg: impl Into<String>) -> AutomationError {
    AutomationError::Invalid {
        field: format!("actions[{i}].{field}"),
        message: msg.into(),
    }
}

fn string(o: &Map<String, Value>, i: usize, key: &str) -> Result<Option<String>, AutomationError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(i, key, "expected a string")),
    }
}

fn required(o: &Map<String, Value>, i: usize, key: &str) -> Result<String, AutomationError> {
    match string(o, i, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(i, key, "required")),
    }
}

fn seconds(o: &Map<String, Value>, i: usize, key: &str) -> Result<Option<u64>, AutomationError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= 30.0 * 86_400.0 => Ok(Some((s * 1000.0) as u64)),
            _ => Err(invalid(
                i,
                key,
                "expected seconds, more than 0 and at most 30 days",
            )),
        },
    }
}

fn only(o: &Map<String, Value>, i: usize, keys: &[&str]) -> Result<(), AutomationError> {
    for k in o.keys() {
        if k != "type" && !keys.contains(&k.as_str()) {
            return Err(invalid(
                i,
                k,
                format!("unknown field (expected one of {keys:?})"),
            ));
        }
    }
    Ok(())
}

/// Parses and validates a rule's `actions` array.
pub fn parse_actions(v: &Value) -> Result<Vec<Action>, AutomationError> {
    let Some(list) = v.as_array() else {
        return Err(AutomationError::Invalid {
            field: "actions".into(),
            message: "expected an array".into(),
        });
    };
    if list.len() > 16 {
        return Err(AutomationError::Invalid {
            field: "actions".into(),
            message: "at most 16 actions".into(),
        });
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| parse_action(i, a))
        .collect()
}

fn parse_action(i: usize, v: &Value) -> Result<Action, AutomationError> {
    let Some(o) = v.as_object() else {
        return Err(invalid(i, "type", "expected an object with a type"));
    };
    let kind = required(o, i, "type")?;
    Ok(match kind.as_str() {
        "republish" => {
            only(o, i, &["topic", "payload", "qos", "retain"])?;
            let topic = required(o, i, "topic")?;
            if topic.contains(['+', '#']) {
                return Err(invalid(i, "topic", "a topic name, not a filter"));
            }
            let qos = match o.get("qos") {
                None => 0,
                Some(q) => match q.as_u64() {
                    Some(q @ 0..=1) => q as u8,
                    _ => return Err(invalid(i, "qos", "0 or 1")),
                },
            };
            Action::Republish {
                topic,
                payload: o.get("payload").cloned(),
                qos,
                retain: o.get("retain").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        "store" => {
            only(o, i, &["metric", "value", "device"])?;
            Action::Store {
                metric: required(o, i, "metric")?,
                value: required(o, i, "value")?,
                device: string(o, i, "device")?,
            }
        }
        "twin" => {
            only(o, i, &["name", "desired"])?;
            let desired = o.get("desired").cloned().unwrap_or(Value::Null);
            if !desired.is_object() {
                return Err(invalid(i, "desired", "expected an object (a merge patch)"));
            }
            Action::Twin {
                name: string(o, i, "name")?.unwrap_or_default(),
                desired,
            }
        }
        "command" => {
            only(o, i, &["method", "params", "timeout", "ttl"])?;
            let params = o.get("params").cloned().unwrap_or(Value::Null);
            if !(params.is_object() || params.is_null()) {
                return Err(invalid(i, "params", "expected an object"));
            }
            Action::Command {
                method: required(o, i, "method")?,
                params,
                timeout_ms: seconds(o, i, "timeout")?.unwrap_or(30_000),
                ttl_ms: seconds(o, i, "ttl")?,
            }
        }
        "webhook" => {
            only(o, i, &["url", "body", "headers"])?;
            let url = required(o, i, "url")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(i, "url", "expected an http:// or https:// URL"));
            }
            let mut headers = Vec::new();
            if let Some(h) = o.get("headers") {
                let Some(h) = h.as_object() else {
                    return Err(invalid(i, "headers", "expected an object of strings"));
                };
                for (k, v) in h {
                    let Some(v) = v.as_str() else {
                        return Err(invalid(i, "headers", "expected an object of strings"));
                    };
                    headers.push((k.clone(), v.to_string()));
                }
            }
            Action::Webhook {
                url,
                body: o.get("body").cloned(),
                headers,
            }
        }
        "alarm" => {
            only(o, i, &["alarm_type", "severity", "details", "auto_clear"])?;
            let sev = string(o, i, "severity")?.unwrap_or_else(|| "major".into());
            let severity = alarms::Severity::parse(&sev).ok_or_else(|| {
                invalid(
                    i,
                    "severity",
                    "critical, major, minor, warning or indeterminate",
                )
            })?;
            Action::Alarm {
                alarm_type: required(o, i, "alarm_type")?,
                severity,
                details: o.get("details").cloned(),
                auto_clear: o
                    .get("auto_clear")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        }
        "clear_alarm" => {
            only(o, i, &["alarm_type"])?;
            Action::ClearAlarm {
                alarm_type: required(o, i, "alarm_type")?,
            }
        }
        other => return Err(invalid(i, "type", format!("unknown action type {other:?}"))),
    })
}

/// The value shown instead of a secret.
pub const REDACTED: &str = "***";

/// A rule's `actions` JSON with the header values of its webhook actions
/// replaced by [`REDACTED`] (they often carry credentials), for readers who
/// may see a rule but not change it. Header names stay visible.
pub fn redact_headers(actions: &Value) -> Value {
    let mut out = actions.clone();
    if let Some(list) = out.as_array_mut() {
        for a in list {
            if a.get("type").and_then(Value::as_str) != Some("webhook") {
                continue;
            }
            if let Some(h) = a.get_mut("headers").and_then(Value::as_object_mut) {
                for v in h.values_mut() {
                    *v = Value::String(REDACTED.into());
                }
            }
        }
    }
    out
}

/// The outcome of one action in a trace.
#[derive(Debug, Clone)]
pub struct ActionResult {
    pub kind: &'static str,
    pub ok: bool,
    pub detail: Value,
}

impl ActionResult {
    pub fn ok(kind: &'static str, detail: Value) -> ActionResult {
        ActionResult {
            kind,
            ok: true,
            detail,
        }
    }

    pub fn failed(kind: &'static str, error: impl std::fmt::Display) -> ActionResult {
        ActionResult {
            kind,
            ok: false,
            detail: json!({ "error": error.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_type_parses() {
        let v = json!([
            {"type": "republish", "topic": "alerts/${device}", "qos": 1},
            {"type": "store", "metric": "temp_f", "value": "${f}"},
            {"type": "twin", "desired": {"speed": 600}},
            {"type": "command", "method": "slow_down", "params": {"rpm": 600}, "timeout": 5},
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "headers": {"X-Key": "k"}},
            {"type": "alarm", "alarm_type": "overheat", "severity": "critical", "auto_clear": true},
            {"type": "clear_alarm", "alarm_type": "overheat"},
        ]);
        let a = parse_actions(&v).unwrap();
        let kinds: Vec<&str> = a.iter().map(Action::kind).collect();
        assert_eq!(
            kinds,
            [
                "republish",
                "store",
                "twin",
                "command",
                "webhook",
                "alarm",
                "clear_alarm"
            ]
        );
        assert!(matches!(
            &a[3],
            Action::Command {
                timeout_ms: 5000,
                ..
            }
        ));
        assert!(matches!(
            &a[5],
            Action::Alarm {
                severity: alarms::Severity::Critical,
                auto_clear: true,
                ..
            }
        ));
    }

    #[test]
    fn webhook_header_values_are_redacted() {
        let v = json!([
            {"type": "webhook", "url": "https://x/h", "headers": {"Authorization": "Bearer s3cret", "X-Key": "k"}},
            {"type": "republish", "topic": "t", "payload": {"headers": {"keep": "me"}}},
            {"type": "webhook", "url": "https://x/h"},
        ]);
        let r = redact_headers(&v);
        assert_eq!(
            r[0]["headers"],
            json!({"Authorization": "***", "X-Key": "***"})
        );
        assert_eq!(r[0]["url"], v[0]["url"]);
        assert_eq!(r[1], v[1]);
        assert_eq!(r[2], v[2]);
        assert!(!r.to_string().contains("s3cret"));
    }

    #[test]
    fn bad_actions_name_the_field() {
        let cases = [
            (json!({"actions": 1}), "actions"),
            (json!([{"type": "fly"}]), "actions[0].type"),
            (json!([{"type": "republish"}]), "actions[0].topic"),
            (
                json!([{"type": "republish", "topic": "a/+"}]),
                "actions[0].topic",
            ),
            (
                json!([{"type": "webhook", "url": "ftp://x"}]),
                "actions[0].url",
            ),
            (
                json!([{"type": "alarm", "alarm_type": "x", "severity": "dire"}]),
                "actions[0].severity",
            ),
            (
                json!([{"type": "twin", "desired": 3}]),
                "actions[0].desired",
            ),
            (
                json!([{"type": "command", "method": "m", "timeout": -1}]),
                "actions[0].timeout",
            ),
            (
                json!([{"type": "store", "metric": "m", "value": "1", "extra": 1}]),
                "actions[0].extra",
            ),
        ];
        for (v, field) in cases {
            let v = if field == "actions" {
                v["actions"].clone()
            } else {
                v
            };
            match parse_actions(&v) {
                Err(AutomationError::Invalid { field: f, .. }) => assert_eq!(f, field, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }
}
