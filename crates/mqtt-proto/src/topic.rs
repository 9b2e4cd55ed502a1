//! Topic names and topic filters: validation and matching (MQTT 5 §4.7).

/// Longest topic or filter in bytes (a UTF-8 string field's limit).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// A topic name a client may publish to: non-empty, no wildcards, no NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| b == b'+' || b == b'#' || b == 0)
}

/// A topic filter: `+` only as a whole level, `#` only as the whole last
/// level; non-empty; no NUL. Shared filters are checked with
/// [`parse_shared`] first.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if last => {}
            "+" => {}
            l if l.contains('+') || l.contains('#') => return false,
            _ => {}
        }
    }
    true
}

/// Splits `$share/{group}/{filter}` into (group, filter). Returns `None` for
/// a non-shared filter and `Some(Err(()))` for a malformed shared one
/// (empty or wildcard group name, missing filter).
pub fn parse_shared(filter: &str) -> Option<Result<(&str, &str), ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if group.is_empty() || group.contains('+') || group.contains('#') || !valid_topic_filter(inner)
    {
        return Some(Err(()));
    }
    Some(Ok((group, inner)))
}

/// Whether `topic` matches `filter`. Topics starting with `$` do not match
/// filters starting with a wildcard.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Number of levels in a topic (`a/b/c` has 3).
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_validation() {
        for ok in [
            "a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "$SYS/#", "a//b",
        ] {
            assert!(valid_topic_filter(ok), "{ok}");
        }
        for bad in ["", "a+", "a/#/b", "#/a", "a/b#", "++", "a\0b"] {
            assert!(!valid_topic_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("$events/#", "$events/alarms/x"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(matches("+/+", "/x"));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/b", "a"));
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("$share/g/a/#"), Some(Ok(("g", "a/#"))));
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g"), Some(Err(())));
        assert_eq!(parse_shared("$share//a"), Some(Err(())));
        assert_eq!(parse_shared("$share/g+/a"), Some(Err(())));
    }
}
