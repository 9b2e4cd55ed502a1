//! The rule's FROM filter (MQTT topic filter semantics) and the topic
//! conventions the functions read (`topic(n)`, `device_id()`).
//!
//! Validation and matching are `mqtt_proto::topic`'s (the one definition
//! of MQTT filter semantics); this module adds the rule language's own
//! refusals and the messages that name what is wrong.

use mqtt_proto::topic::{valid_topic_filter, MAX_TOPIC_LEN};

/// Whether `topic` matches `filter` (MQTT rules: `+` one level, `#` the
/// rest; topics starting with `$` do not match filters starting with a
/// wildcard).
pub(crate) use mqtt_proto::topic::matches;

/// Why a FROM filter is refused, or `None` if it is a valid filter.
pub(crate) fn filter_problem(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("the topic filter is empty");
    }
    if filter.contains('\0') {
        return Some("the topic filter contains a NUL character");
    }
    if filter.starts_with("$share/") {
        return Some(
            "a shared subscription ($share/...) is not a rule filter: use the topic filter itself",
        );
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Some("the topic filter is longer than 65535 bytes");
    }
    if valid_topic_filter(filter) {
        return None;
    }
    // Invalid: name the first level at fault, a level mixing a wildcard
    // with other characters or a '#' that is not the last level.
    let mixed = filter
        .split('/')
        .position(|level| level.len() > 1 && level.contains(['+', '#']));
    let hash = filter.split('/').position(|level| level == "#");
    match (hash, mixed) {
        (Some(hash), mixed) if mixed.is_none_or(|mixed| hash < mixed) => {
            Some("'#' must be the last level of the topic filter")
        }
        _ => Some("'+' and '#' must be whole levels of the topic filter"),
    }
}

/// The `{id}` of `devices/{id}` or `devices/{id}/...`, if not empty (the
/// device contract's one parser).
pub(crate) use iot_types::device_topics::device_of as device_id;

/// Level `n` (1-based) of `topic`.
pub(crate) fn level(topic: &str, n: usize) -> Option<&str> {
    n.checked_sub(1).and_then(|i| topic.split('/').nth(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        for ok in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "$SYS/#", "a//b",
        ] {
            assert_eq!(filter_problem(ok), None, "{ok}");
        }
        for bad in ["", "a+", "a/#/b", "#/a", "a/b#", "++", "a\0b", "$share/g/a"] {
            assert!(filter_problem(bad).is_some(), "{bad}");
        }
        let last = Some("'#' must be the last level of the topic filter");
        let whole = Some("'+' and '#' must be whole levels of the topic filter");
        assert_eq!(filter_problem("a/#/b+"), last);
        assert_eq!(filter_problem("a+/#/b"), whole);
        assert_eq!(filter_problem("a/b#"), whole);
    }

    #[test]
    fn conventions() {
        assert_eq!(device_id("devices/d1/telemetry"), Some("d1"));
        assert_eq!(device_id("devices/d1"), Some("d1"));
        assert_eq!(device_id("devices//x"), None);
        assert_eq!(device_id("devices"), None);
        assert_eq!(device_id("other/d1"), None);
        assert_eq!(level("a/b/c", 1), Some("a"));
        assert_eq!(level("a/b/c", 3), Some("c"));
        assert_eq!(level("a/b/c", 4), None);
        assert_eq!(level("a/b/c", 0), None);
    }
}
