//! The difference between what a twin wants (desired) and what the device
//! says it has (reported), and the comparison of JSON values it rests on.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// The desired fields whose value differs from reported.
///
/// Objects are compared recursively and only their differing leaves are
/// kept, inside the same object structure. A leaf (any value that is not
/// an object: a number, string, boolean or array) is included when
/// reported has no value at its path or a different one; arrays compare
/// whole. A desired object facing a non-object in reported is therefore
/// included with all its leaves. Empty objects have no leaves and never
/// appear. Numbers compare by value (`10` equals `10.0`). An empty map
/// means the device is in sync.
pub fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let empty = Map::new();
    let mut out = Map::new();
    for (key, want) in desired {
        let have = reported.get(key);
        match want {
            Value::Object(want_obj) => {
                let have_obj = match have {
                    Some(Value::Object(h)) => h,
                    _ => &empty,
                };
                let sub = delta(want_obj, have_obj);
                if !sub.is_empty() {
                    out.insert(key.clone(), Value::Object(sub));
                }
            }
            _ => {
                if !have.is_some_and(|h| json_eq(want, h)) {
                    out.insert(key.clone(), want.clone());
                }
            }
        }
    }
    out
}

/// The metadata of the leaves of `delta` (a sub-structure of a document),
/// taken from that document's metadata `meta`.
pub(crate) fn metadata_of(
    delta: &Map<String, Value>,
    meta: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in delta {
        let Some(m) = meta.get(key) else { continue };
        match (value, m) {
            (Value::Object(sub), Value::Object(msub)) if !is_leaf_meta(msub) => {
                out.insert(key.clone(), Value::Object(metadata_of(sub, msub)));
            }
            _ => {
                out.insert(key.clone(), m.clone());
            }
        }
    }
    out
}

/// Whether a metadata node is a leaf's `{"timestamp": n}` rather than the
/// mirror of an object (whose children are all objects).
pub(crate) fn is_leaf_meta(node: &Map<String, Value>) -> bool {
    node.get("timestamp").is_some_and(Value::is_number)
}

/// JSON equality with numbers compared by value.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Orders two JSON numbers by value: exactly for integers, as `f64`
/// otherwise.
pub(crate) fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn only_differing_leaves_keep_their_structure() {
        let desired = obj(json!({
            "speed": 10, "mode": "eco", "net": {"ssid": "a", "dhcp": true}, "tags": [1, 2]
        }));
        let reported = obj(json!({
            "speed": 10.0, "mode": "fast", "net": {"ssid": "a", "dhcp": false}, "tags": [1, 2],
            "extra": 1
        }));
        assert_eq!(
            Value::Object(delta(&desired, &reported)),
            json!({"mode": "eco", "net": {"dhcp": true}})
        );
    }

    #[test]
    fn missing_or_different_type_is_included_whole() {
        let desired = obj(json!({"net": {"ssid": "a", "ip": {"v4": "x"}}, "n": 1, "e": {}}));
        let reported = obj(json!({"net": 5, "n": "1"}));
        assert_eq!(
            Value::Object(delta(&desired, &reported)),
            json!({"net": {"ssid": "a", "ip": {"v4": "x"}}, "n": 1})
        );
        assert!(delta(&Map::new(), &reported).is_empty());
    }

    #[test]
    fn metadata_follows_the_delta() {
        let d = obj(json!({"net": {"dhcp": true}, "mode": "eco"}));
        let meta = obj(json!({
            "net": {"dhcp": {"timestamp": 5}, "ssid": {"timestamp": 4}},
            "mode": {"timestamp": 3}, "speed": {"timestamp": 2}
        }));
        assert_eq!(
            Value::Object(metadata_of(&d, &meta)),
            json!({"net": {"dhcp": {"timestamp": 5}}, "mode": {"timestamp": 3}})
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2.0}])));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert_eq!(
            cmp_numbers(&Number::from(u64::MAX), &Number::from(-1)),
            Some(Ordering::Greater)
        );
    }
}
