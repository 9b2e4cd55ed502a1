//! JSON request bodies of the management routes, read member by member so
//! that every error names the offending member (`labels.zone`,
//! `template.groups[2]`). `null` counts as absent.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::{Map, Value as Json};

use crate::body;
use crate::error::ApiError;
use crate::time::parse_instant;

/// Reads a whole body (gzip allowed) of at most `limit` bytes; a gzip
/// body is decompressed on the blocking pool.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let enc = body::encoding(headers)?;
    let raw = body::read(headers, body, limit).await?;
    match enc {
        body::Encoding::Identity => Ok(raw),
        body::Encoding::Gzip => crate::blocking(move || body::decode(raw, enc, limit)).await,
    }
}

/// Reads a JSON object body; an empty body is an empty object.
pub(crate) async fn read_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Fields, ApiError> {
    let data = read_body(headers, body, limit).await?;
    Fields::parse(&data)
}

/// The members of one JSON object; `prefix` is its path (`""` at the root,
/// `"template."` inside a member).
#[derive(Debug)]
pub(crate) struct Fields {
    map: Map<String, Json>,
    prefix: String,
}

impl Fields {
    /// Parses a body that must be a JSON object (or empty).
    pub(crate) fn parse(data: &[u8]) -> Result<Fields, ApiError> {
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields {
                map: Map::new(),
                prefix: String::new(),
            });
        }
        let doc: Json = serde_json::from_slice(data).map_err(|e| ApiError::BadBody {
            field: None,
            reason: format!("not valid JSON: {e}"),
        })?;
        Fields::from_value(doc, "")
    }

    /// Wraps a value that must be an object; `path` names it in errors.
    pub(crate) fn from_value(v: Json, path: &str) -> Result<Fields, ApiError> {
        match v {
            Json::Object(map) => Ok(Fields {
                map,
                prefix: if path.is_empty() {
                    String::new()
                } else {
                    format!("{path}.")
                },
            }),
            _ if path.is_empty() => Err(ApiError::BadBody {
                field: None,
                reason: "expected a JSON object".into(),
            }),
            _ => Err(ApiError::body(path, "expected an object")),
        }
    }

    /// The path of member `name`, for errors.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> ApiError {
        ApiError::body(self.path(name), reason)
    }

    fn get(&self, name: &str) -> Option<&Json> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// Refuses members not in `known`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(self.err(k, format!("unknown member; known: {}", known.join(", ")))),
            None => Ok(()),
        }
    }

    /// A string member.
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(name, "must be a string")),
        }
    }

    /// A string member that must be present and not empty.
    pub(crate) fn required_string(&self, name: &str) -> Result<String, ApiError> {
        match self.string(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.err(name, "required: a non-empty string")),
        }
    }

    /// A boolean member.
    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.err(name, "must be true or false")),
        }
    }

    /// A non-negative integer member of at most `max`.
    pub(crate) fn uint(&self, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(self.err(name, format!("must be an integer from 0 to {max}"))),
            },
            Some(_) => Err(self.err(name, "must be an integer")),
        }
    }

    /// An object of string values (labels).
    pub(crate) fn string_map(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Object(m)) => {
                let mut out = BTreeMap::new();
                for (k, v) in m {
                    let Json::String(v) = v else {
                        return Err(self.err(&format!("{name}.{k}"), "must be a string"));
                    };
                    out.insert(k.clone(), v.clone());
                }
                Ok(Some(out))
            }
            Some(_) => Err(self.err(name, "must be an object of strings")),
        }
    }

    /// An array of strings.
    pub(crate) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(self.err(&format!("{name}[{i}]"), "must be a string")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.err(name, "must be an array of strings")),
        }
    }

    /// An object member, kept as JSON (device metadata).
    pub(crate) fn object(&self, name: &str) -> Result<Option<Map<String, Json>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(self.err(name, "must be an object")),
        }
    }

    /// A member as it was sent, any JSON value, `null` included (where
    /// `null` means something, e.g. "clear" in a merge patch).
    pub(crate) fn raw(&self, name: &str) -> Option<Json> {
        self.map.get(name).cloned()
    }

    /// A duration in seconds (fractions allowed), returned in milliseconds:
    /// at least 1 ms, at most `max_ms`.
    pub(crate) fn seconds(&self, name: &str, max_ms: u64) -> Result<Option<u64>, ApiError> {
        let max_s = max_ms as f64 / 1000.0;
        match self.get(name) {
            None => Ok(None),
            Some(Json::Number(n)) => match n.as_f64() {
                Some(s) if s.is_finite() && s >= 0.001 && s <= max_s => {
                    Ok(Some((s * 1000.0).round() as u64))
                }
                _ => Err(self.err(name, format!("must be from 0.001 to {max_s} seconds"))),
            },
            Some(_) => Err(self.err(name, "must be a number of seconds")),
        }
    }

    /// An object member as [`Fields`] of its own.
    pub(crate) fn nested(&self, name: &str) -> Result<Option<Fields>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => Fields::from_value(v.clone(), &self.path(name)).map(Some),
        }
    }

    /// An instant: Unix milliseconds or an RFC 3339 string, not before 0.
    /// An [`Fields::instant`] that must lie after `now_ms` (an expiry).
    pub(crate) fn future_instant(&self, name: &str, now_ms: u64) -> Result<Option<u64>, ApiError> {
        let t = self.instant(name, i64::try_from(now_ms).unwrap_or(i64::MAX))?;
        if t.is_some_and(|t| t <= now_ms) {
            return Err(self.err(name, "is in the past"));
        }
        Ok(t)
    }

    pub(crate) fn instant(&self, name: &str, now_ms: i64) -> Result<Option<u64>, ApiError> {
        let ms = match self.get(name) {
            None => return Ok(None),
            Some(Json::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.err(name, "must be integer Unix milliseconds"))?,
            Some(Json::String(s)) => {
                parse_instant(s, now_ms).map_err(|reason| self.err(name, reason))?
            }
            Some(_) => {
                return Err(self.err(name, "must be Unix milliseconds or an RFC 3339 string"))
            }
        };
        u64::try_from(ms)
            .map(Some)
            .map_err(|_| self.err(name, "must not be before 1970"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ApiError) -> Option<String> {
        match e {
            ApiError::BadBody { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_member() {
        let f = Fields::parse(
            br#"{"a": 1, "labels": {"x": 2}, "g": ["a", 3], "t": {"n": true}, "z": null}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(field_of(f.string("a").unwrap_err()).as_deref(), Some("a"));
        assert_eq!(
            field_of(f.string_map("labels").unwrap_err()).as_deref(),
            Some("labels.x")
        );
        assert_eq!(
            field_of(f.string_list("g").unwrap_err()).as_deref(),
            Some("g[1]")
        );
        let t = f
            .nested("t")
            .unwrap_or_default()
            .unwrap_or_else(|| panic!());
        assert_eq!(field_of(t.string("n").unwrap_err()).as_deref(), Some("t.n"));
        assert_eq!(f.string("z").ok(), Some(None));
        assert_eq!(
            field_of(f.only(&["a", "labels", "g", "t"]).unwrap_err()).as_deref(),
            Some("z")
        );
        assert_eq!(f.uint("a", 5).ok(), Some(Some(1)));
        assert!(f.uint("a", 0).is_err());
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"  ").is_ok());
        let i = Fields::parse(br#"{"t": "1970-01-01T00:00:01Z", "m": 5, "n": -1}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.instant("t", 0).ok(), Some(Some(1000)));
        assert_eq!(i.instant("m", 0).ok(), Some(Some(5)));
        assert!(i.instant("n", 0).is_err());
    }
}
