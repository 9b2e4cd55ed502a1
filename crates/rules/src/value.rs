//! The values expressions compute: JSON's, with numbers as `f64`, and
//! strings, arrays and objects borrowed from the message wherever possible
//! so that a field access copies nothing.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// A value during evaluation. Arrays and objects are kept as JSON
/// (`Json` never holds a scalar).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Json(Cow<'a, Value>),
}

/// A value kept in state between messages.
pub(crate) type Owned = Val<'static>;

impl<'a> Val<'a> {
    pub fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(Cow::Borrowed(v)),
        }
    }

    pub fn from_owned_json(v: Value) -> Owned {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(b),
            Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            Value::String(s) => Val::Str(Cow::Owned(s)),
            v => Val::Json(Cow::Owned(v)),
        }
    }

    pub fn into_owned(self) -> Owned {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Num(n),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Json(j) => Val::Json(Cow::Owned(j.into_owned())),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Only `true` is true: a WHERE that yields anything else (null, a
    /// number, a string) does not match.
    pub fn is_true(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// A finite number, or `None`.
    pub fn as_num(&self) -> Option<f64> {
        match *self {
            Val::Num(n) if n.is_finite() => Some(n),
            _ => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Json(j) if j.is_array() => "array",
            Val::Json(_) => "object",
        }
    }

    /// The JSON form of an output: integral numbers below 2^53 become
    /// integers, non-finite numbers become null.
    pub fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Num(n) => num_to_json(*n),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Json(j) => j.as_ref().clone(),
        }
    }

    pub fn into_json(self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.into_owned()),
            Val::Json(j) => j.into_owned(),
            other => other.to_json(),
        }
    }

    /// The text form used by `||`, `concat`, `string()` and templates:
    /// strings as they are, numbers as in JSON (integers without `.0`),
    /// arrays and objects as compact JSON, null as `None`.
    pub fn to_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Val::Null => None,
            Val::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Val::Num(n) => Some(Cow::Owned(num_to_json(*n).to_string())),
            Val::Str(s) => Some(Cow::Borrowed(s)),
            Val::Json(j) => Some(Cow::Owned(j.to_string())),
        }
    }

    /// Equality for `=`, `IN`, `changed()`: numbers by value (`1 = 1.0`),
    /// values of different types are unequal. Null is handled by callers.
    pub fn same(&self, other: &Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Json(a), Val::Json(b)) => json_same(a, b),
            _ => false,
        }
    }

    /// Ordering for `< <= > >=`: numbers with numbers, strings with
    /// strings (by code point), booleans with booleans; `None` otherwise.
    pub fn order(&self, other: &Val<'_>) -> Option<Ordering> {
        match (self, other) {
            (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
            (Val::Str(a), Val::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// JSON equality with numbers compared as `f64` (`1` equals `1.0`).
fn json_same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_same(v, w)))
        }
        _ => a == b,
    }
}

/// Largest integer an `f64` holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

pub(crate) fn num_to_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_forms() {
        assert_eq!(Val::Num(21.0).to_json(), json!(21));
        assert_eq!(Val::Num(-0.0).to_json(), json!(0));
        assert_eq!(Val::Num(21.5).to_json(), json!(21.5));
        assert_eq!(Val::Num(1e300).to_json(), json!(1e300));
        assert_eq!(Val::Num(f64::INFINITY).to_json(), Value::Null);
        assert_eq!(Val::Num(f64::NAN).to_json(), Value::Null);
        assert_eq!(Val::Num(3.0).to_text().unwrap(), "3");
        assert_eq!(Val::Num(0.1).to_text().unwrap(), "0.1");
        let arr = json!([1, "a"]);
        assert_eq!(Val::from_json(&arr).to_text().unwrap(), "[1,\"a\"]");
    }

    #[test]
    fn equality_and_order() {
        let a = json!({"x": 1, "y": [1.0]});
        let b = json!({"y": [1], "x": 1.0});
        assert!(Val::from_json(&a).same(&Val::from_json(&b)));
        assert!(!Val::Num(1.0).same(&Val::Str("1".into())));
        assert_eq!(
            Val::Str("a".into()).order(&Val::Str("b".into())),
            Some(Ordering::Less)
        );
        assert_eq!(Val::Num(1.0).order(&Val::Str("b".into())), None);
    }
}
