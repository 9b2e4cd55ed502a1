//! Query-string parameters: decoded once, then read by name with errors
//! that name the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::ApiError;

/// The decoded parameters of one request, in order.
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// The request's query string, as a handler argument.
impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query()))
    }
}

impl Params {
    /// Decodes a raw query string (`a=1&b=x%20y`).
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Params { pairs }
    }

    /// These parameters followed by those of a form body
    /// (`application/x-www-form-urlencoded`, as POST queries send them).
    pub(crate) fn with_form(mut self, body: &[u8]) -> Params {
        self.pairs
            .extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        self
    }

    /// Rejects any parameter not in `known` and not starting with one of
    /// `prefixes`, and any known parameter given twice.
    pub(crate) fn only(&self, known: &[&str], prefixes: &[&str]) -> Result<(), ApiError> {
        for (i, (k, _)) in self.pairs.iter().enumerate() {
            let is_known = known.contains(&k.as_str());
            if !is_known && !prefixes.iter().any(|p| k.starts_with(p)) {
                return Err(ApiError::param(
                    k.as_str(),
                    format!("unknown parameter; known: {}", known.join(", ")),
                ));
            }
            if self.pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(ApiError::param(k.as_str(), "given more than once"));
            }
        }
        Ok(())
    }

    /// Like [`Params::only`] without prefixes, but the `repeatable`
    /// parameters may be given more than once.
    pub(crate) fn only_repeating(
        &self,
        known: &[&str],
        repeatable: &[&str],
    ) -> Result<(), ApiError> {
        for (i, (k, _)) in self.pairs.iter().enumerate() {
            if repeatable.contains(&k.as_str()) {
                continue;
            }
            if !known.contains(&k.as_str()) {
                let all: Vec<&str> = known.iter().chain(repeatable).copied().collect();
                return Err(ApiError::param(
                    k.as_str(),
                    format!("unknown parameter; known: {}", all.join(", ")),
                ));
            }
            if self.pairs[..i].iter().any(|(p, _)| p == k) {
                return Err(ApiError::param(k.as_str(), "given more than once"));
            }
        }
        Ok(())
    }

    /// Every non-empty value of a parameter, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a parameter; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present.
    /// `limit`: `default` when absent, else an integer from 1 to `max`.
    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::param(
                    "limit",
                    format!("must be an integer from 1 to {max}"),
                )),
            },
        }
    }

    /// A two-valued parameter: `Some(true)` for `yes`, `Some(false)` for
    /// `no`, `None` when absent; anything else is refused naming both.
    pub(crate) fn either(&self, name: &str, yes: &str, no: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v == yes => Ok(Some(true)),
            Some(v) if v == no => Ok(Some(false)),
            Some(o) => Err(ApiError::param(name, format!("{o:?} is not {yes} or {no}"))),
        }
    }

    /// The link to the next page of a listing at `path`: this query with
    /// `cursor` set to `next`.
    pub(crate) fn next_link(
        &self,
        path: &str,
        cursor: &str,
        next: Option<&String>,
    ) -> Option<String> {
        next.map(|n| format!("{path}?{}", self.encode_with(&[(cursor, n.clone())])))
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::param(name, "required"))
    }

    /// Every `prefix<key>=<value>` pair as `(key, value)`.
    pub(crate) fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.pairs
            .iter()
            .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|k| (k, v.as_str())))
    }

    /// The parameters re-encoded with `replace` values substituted (or
    /// appended), for `next` links.
    pub(crate) fn encode_with(&self, replace: &[(&str, String)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            match replace.iter().find(|(r, _)| r == k) {
                Some(_) => {}
                None => {
                    ser.append_pair(k, v);
                }
            }
        }
        for (k, v) in replace {
            ser.append_pair(k, v);
        }
        ser.finish()
    }
}

/// Splits a comma list, trimming blanks and dropping empty items.
pub(crate) fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_two_valued_parameters() {
        let p = Params::parse(Some("limit=5&on=yes&bad=maybe"));
        assert_eq!(p.limit(100, 10).ok(), Some(5));
        assert!(p.limit(100, 4).is_err());
        assert_eq!(Params::parse(None).limit(100, 1000).ok(), Some(100));
        assert!(Params::parse(Some("limit=0")).limit(1, 10).is_err());
        assert!(Params::parse(Some("limit=x")).limit(1, 10).is_err());
        assert_eq!(p.either("on", "yes", "no").ok(), Some(Some(true)));
        assert_eq!(p.either("off", "yes", "no").ok(), Some(None));
        match p.either("bad", "yes", "no") {
            Err(ApiError::BadParameter { field, reason }) => {
                assert_eq!(
                    (field.as_str(), reason.as_str()),
                    ("bad", "\"maybe\" is not yes or no")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decode_and_check() {
        let p = Params::parse(Some("device=d1,d2&metric=te%20mp&label.fleet=North&x="));
        assert_eq!(p.get("metric"), Some("te mp"));
        assert_eq!(p.get("x"), None);
        assert_eq!(list(p.get("device").unwrap_or("")), vec!["d1", "d2"]);
        assert_eq!(
            p.with_prefix("label.").collect::<Vec<_>>(),
            vec![("fleet", "North")]
        );
        assert!(p.only(&["device", "metric", "x"], &["label."]).is_ok());
        match p.only(&["device", "metric"], &["label."]) {
            Err(ApiError::BadParameter { field, .. }) => assert_eq!(field, "x"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.next_link("/x", "after", None), None);
        assert_eq!(
            p.next_link("/api/q", "metric", Some(&"n".to_string()))
                .as_deref(),
            Some("/api/q?device=d1%2Cd2&label.fleet=North&x=&metric=n")
        );
        let twice = Params::parse(Some("a=1&a=2"));
        assert!(twice.only(&["a"], &[]).is_err());
        assert_eq!(
            p.encode_with(&[("metric", "m".into()), ("start", "5".into())]),
            "device=d1%2Cd2&label.fleet=North&x=&metric=m&start=5"
        );
    }
}
