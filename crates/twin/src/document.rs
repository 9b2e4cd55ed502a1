//! The twin document: its state, how an update merges into it, and the
//! JSON shapes served to devices and the API.

use std::io;

use serde_json::{json, Map, Value};

use crate::delta::{delta, metadata_of};
use crate::error::TwinError;

/// Bounds on one twin. `Default` gives 64 KiB, depth 8 and 16 twins per
/// device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinLimits {
    /// Largest twin: desired, reported and both metadata objects
    /// serialised as compact JSON, in bytes.
    pub max_document_bytes: usize,
    /// Deepest nesting of desired or reported: `{"a": 1}` has depth 1,
    /// `{"a": {"b": [1]}}` depth 3 (objects and arrays each count).
    pub max_depth: usize,
    /// Most twins (the classic one and named ones) a device may have;
    /// enforced by [`crate::DeviceStateStore::update_twin`] when an update
    /// would create a twin.
    pub max_twins_per_device: usize,
}

impl Default for TwinLimits {
    fn default() -> Self {
        TwinLimits {
            max_document_bytes: 64 * 1024,
            max_depth: 8,
            max_twins_per_device: 16,
        }
    }
}

/// One twin. `Default` is the empty twin at version 0, which is what a
/// twin that was never written looks like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Twin {
    pub desired: Map<String, Value>,
    pub reported: Map<String, Value>,
    /// The structure of `desired` with each leaf replaced by
    /// `{"timestamp": ms}` (when it was last written).
    pub meta_desired: Map<String, Value>,
    /// The same for `reported`.
    pub meta_reported: Map<String, Value>,
    /// 0 for a twin never written; +1 for every accepted update.
    pub version: u64,
    pub updated_at_ms: u64,
}

impl Twin {
    /// The desired fields that differ from reported; see [`delta`].
    pub fn delta(&self) -> Map<String, Value> {
        delta(&self.desired, &self.reported)
    }
}

/// A change to a twin, as a device (`state.reported`) or an operator
/// (`state.desired`) sends it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinUpdate {
    /// A JSON merge patch for desired: an object, or `null` to clear it.
    pub desired: Option<Value>,
    /// A JSON merge patch for reported: an object, or `null` to clear it.
    pub reported: Option<Value>,
    /// When set, the update applies only if the twin is at this version.
    pub expected_version: Option<u64>,
}

/// Why an update is refused. [`UpdateError::code`] gives the HTTP-like code
/// used in MQTT replies (`{"code": 409, "message": ...}`) and by the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// `expected_version` is not the twin's version (409).
    #[error("version conflict: the twin is at version {current}")]
    VersionConflict { current: u64 },
    /// The twin would exceed `max_document_bytes` (413).
    #[error("the twin would be {bytes} bytes, more than the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    /// The patch or the result nests deeper than `max_depth` (400).
    #[error("the state nests {depth} levels deep, more than the limit of {limit}")]
    TooDeep { depth: usize, limit: usize },
    /// `side` (`"desired"` or `"reported"`) is neither an object nor null
    /// (400).
    #[error("state.{side} must be a JSON object (or null to clear it)")]
    NotAnObject { side: &'static str },
    /// The update has neither desired nor reported state (400).
    #[error("the update has neither desired nor reported state")]
    Empty,
    /// The update would create a twin beyond `max_twins_per_device` (400).
    #[error("the device already has the most twins allowed ({limit})")]
    TooManyTwins { limit: usize },
}

impl UpdateError {
    /// The HTTP-like status code of the refusal.
    pub fn code(&self) -> u16 {
        match self {
            UpdateError::VersionConflict { .. } => 409,
            UpdateError::TooLarge { .. } => 413,
            UpdateError::TooDeep { .. }
            | UpdateError::NotAnObject { .. }
            | UpdateError::Empty
            | UpdateError::TooManyTwins { .. } => 400,
        }
    }
}

/// Applies `update` to `twin` and returns the new twin.
///
/// Each side is a JSON merge patch (RFC 7386): objects merge recursively,
/// `null` deletes a field, anything else (arrays included) replaces. A side
/// given as `null` clears that side. Every leaf written gets
/// `{"timestamp": now_ms}` at the same path in its metadata, even when its
/// value did not change; deleted leaves lose their metadata.
///
/// Checks, in order: the expected version (409), the shape of the patch
/// (400), its depth and the result's depth (400), the result's size
/// (413). Every accepted update increments the version and sets
/// `updated_at_ms`, whether or not a value changed.
pub fn apply(
    twin: &Twin,
    update: &TwinUpdate,
    limits: &TwinLimits,
    now_ms: u64,
) -> Result<Twin, UpdateError> {
    if let Some(expected) = update.expected_version {
        if expected != twin.version {
            return Err(UpdateError::VersionConflict {
                current: twin.version,
            });
        }
    }
    if update.desired.is_none() && update.reported.is_none() {
        return Err(UpdateError::Empty);
    }
    let desired = side_patch(update.desired.as_ref(), "desired")?;
    let reported = side_patch(update.reported.as_ref(), "reported")?;
    // A patch deeper than the limit would give a result at least as deep;
    // refusing it first also bounds the recursion below.
    for patch in [desired, reported].into_iter().flatten().flatten() {
        check_depth(patch, limits)?;
    }
    let mut next = twin.clone();
    if let Some(patch) = desired {
        patch_side(&mut next.desired, &mut next.meta_desired, patch, now_ms);
    }
    if let Some(patch) = reported {
        patch_side(&mut next.reported, &mut next.meta_reported, patch, now_ms);
    }
    check_depth(&next.desired, limits)?;
    check_depth(&next.reported, limits)?;
    let bytes = stored_size(&next);
    if bytes > limits.max_document_bytes {
        return Err(UpdateError::TooLarge {
            bytes,
            limit: limits.max_document_bytes,
        });
    }
    next.version = twin.version.saturating_add(1);
    next.updated_at_ms = now_ms;
    Ok(next)
}

/// `None`: side untouched; `Some(None)`: clear it; `Some(Some(p))`: merge.
type SidePatch<'a> = Option<Option<&'a Map<String, Value>>>;

fn side_patch<'a>(v: Option<&'a Value>, side: &'static str) -> Result<SidePatch<'a>, UpdateError> {
    match v {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Object(m)) => Ok(Some(Some(m))),
        Some(_) => Err(UpdateError::NotAnObject { side }),
    }
}

fn patch_side(
    doc: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: Option<&Map<String, Value>>,
    now_ms: u64,
) {
    match patch {
        None => {
            doc.clear();
            meta.clear();
        }
        Some(p) => merge(doc, meta, p, now_ms),
    }
}

/// RFC 7386 merge of `patch` into `target`, keeping `meta` the mirror of
/// `target` with written leaves stamped `now_ms`.
fn merge(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    now_ms: u64,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
                meta.remove(key);
            }
            Value::Object(sub) => {
                let t = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !t.is_object() {
                    *t = Value::Object(Map::new());
                }
                let m = meta
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                // A leaf's `{"timestamp"}` (or anything unexpected) gives
                // way to the mirror of the new object.
                if !matches!(m, Value::Object(mm) if !crate::delta::is_leaf_meta(mm)) {
                    *m = Value::Object(Map::new());
                }
                if let (Value::Object(t), Value::Object(m)) = (t, m) {
                    merge(t, m, sub, now_ms);
                }
            }
            leaf => {
                target.insert(key.clone(), leaf.clone());
                meta.insert(key.clone(), json!({ "timestamp": now_ms }));
            }
        }
    }
}

fn check_depth(map: &Map<String, Value>, limits: &TwinLimits) -> Result<(), UpdateError> {
    let depth = depth_of(map);
    if depth > limits.max_depth {
        return Err(UpdateError::TooDeep {
            depth,
            limit: limits.max_depth,
        });
    }
    Ok(())
}

/// Nesting depth of an object (1 for `{}` or `{"a": 1}`); iterative, so
/// any input is safe.
pub(crate) fn depth_of(map: &Map<String, Value>) -> usize {
    let mut max = 1;
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 1)).collect();
    while let Some((value, level)) = stack.pop() {
        match value {
            Value::Object(m) => {
                max = max.max(level + 1);
                stack.extend(m.values().map(|v| (v, level + 1)));
            }
            Value::Array(a) => {
                max = max.max(level + 1);
                stack.extend(a.iter().map(|v| (v, level + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Bytes of desired, reported and both metadata objects as compact JSON.
pub(crate) fn stored_size(twin: &Twin) -> usize {
    [
        &twin.desired,
        &twin.reported,
        &twin.meta_desired,
        &twin.meta_reported,
    ]
    .into_iter()
    .map(json_len)
    .fold(0usize, usize::saturating_add)
}

fn json_len(map: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, map) {
        Ok(()) => c.0,
        // Cannot happen for a map of JSON values; counting it as too large
        // refuses rather than stores something unmeasured.
        Err(_) => usize::MAX,
    }
}

/// The twin as served to devices (`.../twin/get/accepted`) and the API:
///
/// ```json
/// {"state": {"desired": {..}, "reported": {..}, "delta": {..}},
///  "metadata": {"desired": {..}, "reported": {..}},
///  "version": 3, "timestamp": 1700000000000}
/// ```
///
/// `delta` is always present (`{}` when in sync); `timestamp` is
/// `updated_at_ms`.
pub fn document(twin: &Twin) -> Value {
    json!({
        "state": {
            "desired": twin.desired,
            "reported": twin.reported,
            "delta": twin.delta(),
        },
        "metadata": {
            "desired": twin.meta_desired,
            "reported": twin.meta_reported,
        },
        "version": twin.version,
        "timestamp": twin.updated_at_ms,
    })
}

/// The message for a device's `.../twin/delta` topic: `{"state": delta,
/// "metadata": <the desired metadata of the delta's leaves>, "version",
/// "timestamp"}`. Callers publish it only when the delta is not empty.
pub fn delta_document(twin: &Twin) -> Value {
    let d = twin.delta();
    let meta = metadata_of(&d, &twin.meta_desired);
    json!({
        "state": d,
        "metadata": meta,
        "version": twin.version,
        "timestamp": twin.updated_at_ms,
    })
}

/// Longest twin name.
pub const MAX_TWIN_NAME_CHARS: usize = 64;

/// A twin name: `""` (the classic twin) or 1..=64 characters from
/// `[A-Za-z0-9_-]`, not one of the topic words `get`, `update`, `delta`,
/// `accepted`, `rejected`, `documents`. Such a name is a safe MQTT topic
/// level.
pub fn validate_twin_name(name: &str) -> Result<(), TwinError> {
    if name.is_empty() {
        return Ok(());
    }
    if name.len() > MAX_TWIN_NAME_CHARS {
        return Err(TwinError::invalid(
            "twin name",
            format!("longer than {MAX_TWIN_NAME_CHARS} characters"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(TwinError::invalid(
            "twin name",
            format!("character {c:?} not allowed (use A-Z a-z 0-9 _ -)"),
        ));
    }
    // Names that would be ambiguous in `devices/{id}/twin/{name}/...`.
    if iot_types::device_topics::is_reserved_twin_name(name) {
        return Err(TwinError::invalid(
            "twin name",
            format!("{name:?} is reserved for the twin topics"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(desired: Option<Value>, reported: Option<Value>) -> TwinUpdate {
        TwinUpdate {
            desired,
            reported,
            expected_version: None,
        }
    }

    #[test]
    fn merge_patch_and_metadata() {
        let l = TwinLimits::default();
        let t = apply(
            &Twin::default(),
            &upd(Some(json!({"a": 1, "n": {"x": 1, "y": 2}})), None),
            &l,
            10,
        )
        .unwrap();
        assert_eq!(t.version, 1);
        assert_eq!(t.updated_at_ms, 10);
        let t = apply(
            &t,
            &upd(Some(json!({"a": null, "n": {"y": 3, "z": [1]}})), None),
            &l,
            20,
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.desired.clone()),
            json!({"n": {"x": 1, "y": 3, "z": [1]}})
        );
        assert_eq!(
            Value::Object(t.meta_desired.clone()),
            json!({"n": {"x": {"timestamp": 10}, "y": {"timestamp": 20}, "z": {"timestamp": 20}}})
        );
        assert_eq!(t.version, 2);
        // A leaf replaced by an object, and an object by a leaf.
        let t = apply(
            &t,
            &upd(Some(json!({"n": 5, "a": {"b": true}})), None),
            &l,
            30,
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.desired.clone()),
            json!({"n": 5, "a": {"b": true}})
        );
        assert_eq!(
            Value::Object(t.meta_desired.clone()),
            json!({"n": {"timestamp": 30}, "a": {"b": {"timestamp": 30}}})
        );
        // Null clears a side.
        let t = apply(&t, &upd(Some(Value::Null), None), &l, 40).unwrap();
        assert!(t.desired.is_empty() && t.meta_desired.is_empty());
    }

    #[test]
    fn a_field_named_timestamp_is_not_confused_with_metadata() {
        let l = TwinLimits::default();
        let t = apply(
            &Twin::default(),
            &upd(None, Some(json!({"timestamp": 1, "o": {"timestamp": 2}}))),
            &l,
            7,
        )
        .unwrap();
        let t = apply(&t, &upd(None, Some(json!({"o": {"v": 1}}))), &l, 8).unwrap();
        assert_eq!(
            Value::Object(t.meta_reported.clone()),
            json!({"timestamp": {"timestamp": 7}, "o": {"timestamp": {"timestamp": 7}, "v": {"timestamp": 8}}})
        );
    }

    #[test]
    fn refusals_and_codes() {
        let l = TwinLimits::default();
        let t = apply(&Twin::default(), &upd(Some(json!({"a": 1})), None), &l, 1).unwrap();
        let stale = TwinUpdate {
            expected_version: Some(0),
            ..upd(Some(json!({"a": 2})), None)
        };
        let e = apply(&t, &stale, &l, 2).unwrap_err();
        assert_eq!(e, UpdateError::VersionConflict { current: 1 });
        assert_eq!(e.code(), 409);
        // The version is checked before the shape.
        let bad = TwinUpdate {
            expected_version: Some(5),
            ..upd(Some(json!(3)), None)
        };
        assert_eq!(apply(&t, &bad, &l, 2).unwrap_err().code(), 409);
        let e = apply(&t, &upd(Some(json!(3)), None), &l, 2).unwrap_err();
        assert_eq!(e, UpdateError::NotAnObject { side: "desired" });
        assert_eq!(e.code(), 400);
        let e = apply(&t, &upd(None, Some(json!([1]))), &l, 2).unwrap_err();
        assert_eq!(e, UpdateError::NotAnObject { side: "reported" });
        assert_eq!(
            apply(&t, &upd(None, None), &l, 2).unwrap_err(),
            UpdateError::Empty
        );
        assert_eq!(UpdateError::TooManyTwins { limit: 1 }.code(), 400);
        assert!(UpdateError::TooLarge { bytes: 9, limit: 8 }
            .to_string()
            .contains("9 bytes"));
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(depth_of(&Map::new()), 1);
        let Value::Object(m) = json!({"a": 1, "b": {"c": [1, {"d": 2}]}}) else {
            unreachable!()
        };
        assert_eq!(depth_of(&m), 4);
    }

    #[test]
    fn twin_names() {
        for ok in ["", "config", "a-b_C9", &"x".repeat(64)] {
            assert!(validate_twin_name(ok).is_ok(), "{ok}");
        }
        for bad in ["get", "delta", "a/b", "a.b", "+", &"x".repeat(65), "é"] {
            assert!(validate_twin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents() {
        let l = TwinLimits::default();
        let t = apply(
            &Twin::default(),
            &upd(
                Some(json!({"speed": 10, "mode": "eco"})),
                Some(json!({"speed": 10})),
            ),
            &l,
            5,
        )
        .unwrap();
        let doc = document(&t);
        assert_eq!(doc["state"]["delta"], json!({"mode": "eco"}));
        assert_eq!(
            doc["metadata"]["reported"],
            json!({"speed": {"timestamp": 5}})
        );
        assert_eq!(doc["version"], json!(1));
        assert_eq!(doc["timestamp"], json!(5));
        assert_eq!(
            delta_document(&t),
            json!({"state": {"mode": "eco"}, "metadata": {"mode": {"timestamp": 5}},
                   "version": 1, "timestamp": 5})
        );
    }
}
