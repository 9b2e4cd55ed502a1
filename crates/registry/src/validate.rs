//! Input rules shared by every object: ids, labels, groups, names, metadata.

use std::collections::BTreeMap;

use crate::error::RegistryError;

/// Longest display name or label value.
pub(crate) const MAX_TEXT_CHARS: usize = 256;
/// Longest label key.
pub(crate) const MAX_LABEL_KEY: usize = 64;
/// Largest metadata object, serialised as JSON.
pub(crate) const MAX_METADATA_BYTES: usize = 16 * 1024;

/// An id (device id, namespace, group, device type, username): the one
/// rule of [`iot_types::check_id`], 1..=128 characters from
/// `[A-Za-z0-9._:-]`, not `.` or `..`. Such an id is safe as an MQTT topic
/// level and as an MQTT user name.
pub(crate) fn id(field: &str, s: &str) -> Result<(), RegistryError> {
    iot_types::check_id(s).map_err(|e| RegistryError::invalid(field, e.to_string()))
}

/// Display text: 1..=256 characters, no control characters.
pub(crate) fn text(field: &str, s: &str) -> Result<(), RegistryError> {
    if s.is_empty() {
        return Err(RegistryError::invalid(field, "must not be empty"));
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(RegistryError::invalid(
            field,
            format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(RegistryError::invalid(
            field,
            "control characters not allowed",
        ));
    }
    Ok(())
}

/// Labels: keys `[A-Za-z0-9._-]{1,64}`, values at most 256 characters.
pub(crate) fn labels(labels: &BTreeMap<String, String>) -> Result<(), RegistryError> {
    for (k, v) in labels {
        let field = format!("labels.{k}");
        if k.is_empty() || k.len() > MAX_LABEL_KEY {
            return Err(RegistryError::invalid(
                field,
                format!("label keys have 1 to {MAX_LABEL_KEY} characters"),
            ));
        }
        if let Some(c) = k
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(RegistryError::invalid(
                field,
                format!("character {c:?} not allowed in a label key (use A-Z a-z 0-9 . _ -)"),
            ));
        }
        if v.chars().count() > MAX_TEXT_CHARS {
            return Err(RegistryError::invalid(
                field,
                format!("label value longer than {MAX_TEXT_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

/// Groups: each like an id; returned sorted without duplicates.
pub(crate) fn groups(mut groups: Vec<String>) -> Result<Vec<String>, RegistryError> {
    for g in &groups {
        id(&format!("groups.{g}"), g).map_err(|e| match e {
            RegistryError::Invalid { message, .. } => {
                RegistryError::invalid("groups", format!("group {g:?}: {message}"))
            }
            other => other,
        })?;
    }
    groups.sort();
    groups.dedup();
    Ok(groups)
}

/// Metadata: a JSON object of at most 16 KiB serialised.
pub(crate) fn metadata(
    m: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), RegistryError> {
    let len = serde_json::to_vec(m)
        .map_err(|e| RegistryError::invalid("metadata", e.to_string()))?
        .len();
    if len > MAX_METADATA_BYTES {
        return Err(RegistryError::invalid(
            "metadata",
            format!("{len} bytes serialised, more than {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(())
}

/// A certificate serial as stored and looked up: hex digits (an optional
/// `0x` prefix and `:` separators are accepted), lower case, without
/// leading zeros (DER may add a `00` byte to keep a serial positive).
pub(crate) fn serial(s: &str) -> Result<String, RegistryError> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let mut out = String::with_capacity(digits.len());
    for c in digits.chars() {
        if c == ':' {
            continue;
        }
        if !c.is_ascii_hexdigit() {
            return Err(RegistryError::invalid(
                "serial",
                format!("character {c:?} is not a hex digit"),
            ));
        }
        if out.is_empty() && c == '0' {
            continue;
        }
        out.push(c.to_ascii_lowercase());
    }
    if digits.is_empty() {
        return Err(RegistryError::invalid("serial", "must not be empty"));
    }
    if out.len() > 64 {
        return Err(RegistryError::invalid("serial", "longer than 32 bytes"));
    }
    if out.is_empty() {
        out.push('0');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<(), RegistryError>) -> String {
        match r {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn ids() {
        for ok in ["a", "press-0042", "A.b_c:d-e", "..a", &"x".repeat(128)] {
            id("id", ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a+b",
            "a#",
            "$SYS",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert_eq!(field_of(id("id", bad)), "id", "{bad:?}");
        }
    }

    #[test]
    fn label_errors_name_the_key() {
        let mut l = BTreeMap::new();
        l.insert("zone".to_string(), "x".repeat(257));
        assert_eq!(field_of(labels(&l)), "labels.zone");
        let mut l = BTreeMap::new();
        l.insert("a:b".to_string(), "v".to_string());
        assert_eq!(field_of(labels(&l)), "labels.a:b");
        let mut l = BTreeMap::new();
        l.insert("ok.key-1_x".to_string(), "x".repeat(256));
        labels(&l).unwrap();
    }

    #[test]
    fn groups_sorted_dedup() {
        let g = groups(vec!["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(g, vec!["a", "b"]);
        assert!(groups(vec!["a/b".into()]).is_err());
    }

    #[test]
    fn metadata_limit() {
        let mut m = serde_json::Map::new();
        m.insert("k".into(), serde_json::Value::String("x".repeat(16 * 1024)));
        assert_eq!(field_of(metadata(&m)), "metadata");
        m.insert("k".into(), serde_json::Value::String("x".repeat(100)));
        metadata(&m).unwrap();
    }

    #[test]
    fn text_rules() {
        text("name", "Press 42 — hall B").unwrap();
        assert!(text("name", "").is_err());
        assert!(text("name", "a\nb").is_err());
        assert!(text("name", &"é".repeat(257)).is_err());
        text("name", &"é".repeat(256)).unwrap();
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(serial("00AB:cd").unwrap(), "abcd");
        assert_eq!(serial("0x01").unwrap(), "1");
        assert_eq!(serial("000").unwrap(), "0");
        assert!(serial("").is_err());
        assert!(serial("xyz").is_err());
    }
}
