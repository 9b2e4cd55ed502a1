//! Templates for actions: `"alerts/${device_id}/${temp}"` and JSON
//! bodies, filled from an [`Evaluation`].

use serde_json::Value;

use crate::rule::Evaluation;

/// The value `${name}` stands for: an output of that name, else one of
/// `topic`, `device_id`, `group`, `timestamp` (the message's).
fn lookup(name: &str, eval: &Evaluation) -> Option<Value> {
    if let Some(v) = eval.outputs.get(name) {
        return Some(v.clone());
    }
    match name {
        "topic" => Some(Value::String(eval.topic.clone())),
        "device_id" => eval.device_id.clone().map(Value::String),
        "group" => Some(Value::String(eval.group.clone())),
        "timestamp" => Some(Value::from(eval.time_ms)),
        _ => None,
    }
}

/// The text a value takes in a template: strings as they are, null (and
/// anything missing) as nothing, other values as JSON.
fn text(v: Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// Replaces every `${name}` in `template` with the output `name` (or
/// `topic`, `device_id`, `group`, `timestamp`); a missing name becomes the
/// empty string, and a `${` without its `}` is kept as it is.
///
/// The host decides whether a value may contain `/`, `+` or `#` when the
/// result is a topic.
pub fn render(template: &str, eval: &Evaluation) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&text(lookup(name.trim(), eval)));
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Fills a JSON template: a string that is exactly `"${name}"` becomes the
/// value itself (a number stays a number; missing becomes null); other
/// strings are rendered with [`render`]; arrays and objects are filled
/// recursively (object keys are kept as they are).
pub fn render_json(template: &Value, eval: &Evaluation) -> Value {
    match template {
        Value::String(s) => {
            let whole = s
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .filter(|name| !name.contains('}') && !name.contains("${"));
            match whole {
                Some(name) => lookup(name.trim(), eval).unwrap_or(Value::Null),
                None => Value::String(render(s, eval)),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, eval)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), render_json(v, eval)))
                .collect(),
        ),
        other => other.clone(),
    }
}
