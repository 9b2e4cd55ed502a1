//! Queries over twin values: "which devices report firmware 1.2.0".
//!
//! ```text
//! query  = clause { "and" clause }
//! clause = path op value
//! path   = ("desired" | "reported") "." key { "." key }
//! op     = "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
//! value  = JSON number | JSON string (double quotes) | true | false | null
//! ```
//!
//! Keys are any characters but whitespace, `.`, `"`, `=`, `!`, `<`, `>`; a
//! key that is a decimal number also indexes into an array
//! (`reported.sensors.0.temp`). `and` is case-insensitive.
//!
//! Matching: a missing path is `null`. `= null` matches a missing or null
//! value and `!= null` any other value. Otherwise a comparison between
//! different types is false, whatever the operator (so `reported.mode !=
//! "idle"` is false when `mode` is missing or a number). Numbers compare by
//! value, strings byte-wise; `<`, `<=`, `>`, `>=` apply to numbers and
//! strings only; `=` and `!=` also to booleans.

use std::cmp::Ordering;
use std::str::FromStr;

use serde_json::Value;

use crate::delta::cmp_numbers;
use crate::document::Twin;

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most clauses in one query.
pub const MAX_QUERY_CLAUSES: usize = 32;

/// A parsed query: every clause must match.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinQuery {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    reported: bool,
    path: Vec<String>,
    op: Op,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl TwinQuery {
    /// Parses a query; the error message names the column (1-based, in
    /// characters) where the problem is.
    pub fn parse(text: &str) -> Result<TwinQuery, String> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(format!("query longer than {MAX_QUERY_BYTES} bytes"));
        }
        let mut p = Parser { s: text, pos: 0 };
        let mut clauses = Vec::new();
        loop {
            p.skip_ws();
            clauses.push(p.clause()?);
            if clauses.len() > MAX_QUERY_CLAUSES {
                return Err(format!("more than {MAX_QUERY_CLAUSES} clauses"));
            }
            let had_ws = p.skip_ws();
            if p.rest().is_empty() {
                break;
            }
            if !had_ws || !p.keyword_and() {
                return Err(p.error("expected `and` or the end of the query"));
            }
        }
        Ok(TwinQuery { clauses })
    }

    /// Whether `twin` satisfies every clause.
    pub fn matches(&self, twin: &Twin) -> bool {
        self.clauses.iter().all(|c| c.matches(twin))
    }
}

impl FromStr for TwinQuery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TwinQuery::parse(s)
    }
}

impl Clause {
    fn matches(&self, twin: &Twin) -> bool {
        let root = if self.reported {
            &twin.reported
        } else {
            &twin.desired
        };
        let mut keys = self.path.iter();
        let mut current = keys.next().and_then(|k| root.get(k));
        for key in keys {
            current = match current {
                Some(Value::Object(m)) => m.get(key),
                Some(Value::Array(a)) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
        }
        let actual = current.unwrap_or(&Value::Null);
        compare(actual, self.op, &self.value)
    }
}

fn compare(actual: &Value, op: Op, literal: &Value) -> bool {
    if literal.is_null() {
        return match op {
            Op::Eq => actual.is_null(),
            Op::Ne => !actual.is_null(),
            _ => false,
        };
    }
    let ordering = match (actual, literal) {
        (Value::Number(a), Value::Number(b)) => cmp_numbers(a, b),
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::Bool(a), Value::Bool(b)) => {
            return match op {
                Op::Eq => a == b,
                Op::Ne => a != b,
                _ => false,
            }
        }
        _ => None,
    };
    let Some(ord) = ordering else {
        // Different types (or a NaN-like number comparison): false.
        return false;
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn ends_path(c: char) -> bool {
    c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | '"')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn error_at(&self, pos: usize, what: &str) -> String {
        let column = self.s[..pos].chars().count() + 1;
        format!("{what} at column {column}")
    }

    fn error(&self, what: &str) -> String {
        self.error_at(self.pos, what)
    }

    /// Skips whitespace; returns whether there was any.
    fn skip_ws(&mut self) -> bool {
        let rest = self.rest();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        rest.len() != trimmed.len()
    }

    /// Consumes `and` followed by whitespace or the end.
    fn keyword_and(&mut self) -> bool {
        let rest = self.rest();
        let is_and = rest.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("and"))
            && rest[3..].chars().next().is_none_or(char::is_whitespace);
        if is_and {
            self.pos += 3;
        }
        is_and
    }

    fn clause(&mut self) -> Result<Clause, String> {
        let start = self.pos;
        let rest = self.rest();
        let len = rest.find(ends_path).unwrap_or(rest.len());
        let text = &rest[..len];
        if text.is_empty() {
            return Err(self.error("expected a path such as reported.firmware"));
        }
        let mut path = Vec::new();
        let mut offset = start;
        for key in text.split('.') {
            if key.is_empty() {
                return Err(self.error_at(offset, "empty key in path"));
            }
            path.push(key.to_string());
            offset += key.len() + 1;
        }
        let reported = match path.first().map(String::as_str) {
            Some("reported") => true,
            Some("desired") => false,
            _ => {
                return Err(self.error_at(start, "a path starts with `desired.` or `reported.`"));
            }
        };
        path.remove(0);
        if path.is_empty() {
            return Err(self.error_at(start + len, "expected `.` and a key after the side"));
        }
        self.pos += len;
        self.skip_ws();
        let op = self.op()?;
        self.skip_ws();
        let value = self.value()?;
        Ok(Clause {
            reported,
            path,
            op,
            value,
        })
    }

    fn op(&mut self) -> Result<Op, String> {
        const OPS: [(&str, Op); 7] = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        for (text, op) in OPS {
            if self.rest().starts_with(text) {
                self.pos += text.len();
                return Ok(op);
            }
        }
        Err(self.error("expected an operator (= != < <= > >=)"))
    }

    fn value(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let rest = self.rest();
        let len = if rest.starts_with('"') {
            string_len(rest).ok_or_else(|| self.error("unterminated string"))?
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let text = &rest[..len];
        if text.is_empty() {
            return Err(
                self.error("expected a value (a number, a \"string\", true, false or null)")
            );
        }
        let value: Value = serde_json::from_str(text).map_err(|e| {
            self.error_at(
                start,
                &format!("invalid value {text:?} ({e}; strings need double quotes)"),
            )
        })?;
        if value.is_array() || value.is_object() {
            return Err(self.error_at(start, "arrays and objects cannot be compared"));
        }
        self.pos += len;
        Ok(value)
    }
}

/// Length in bytes of the JSON string literal at the start of `s`
/// (quotes included), or `None` if it does not end.
fn string_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn twin(desired: Value, reported: Value) -> Twin {
        let (Value::Object(d), Value::Object(r)) = (desired, reported) else {
            panic!("objects expected")
        };
        Twin {
            desired: d,
            reported: r,
            ..Twin::default()
        }
    }

    fn q(s: &str) -> TwinQuery {
        TwinQuery::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_clauses() {
        let query =
            q(r#"reported.firmware = "1.2.0" AND desired.speed>10 and reported.a.b <= -1.5e2"#);
        assert_eq!(query.clauses.len(), 3);
        assert_eq!(query.clauses[1].op, Op::Gt);
        assert_eq!(query.clauses[2].path, ["a", "b"]);
        assert_eq!(query.clauses[2].value, json!(-150.0));
        let query = q(r#"  reported.name == "a \"quoted\" and spaced"  "#);
        assert_eq!(query.clauses[0].value, json!("a \"quoted\" and spaced"));
        assert_eq!(
            "reported.on != true".parse::<TwinQuery>().unwrap().clauses[0].value,
            json!(true)
        );
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            ("", "expected a path such as reported.firmware at column 1"),
            (
                "reported.x",
                "expected an operator (= != < <= > >=) at column 11",
            ),
            ("reported.x =", "expected a value"),
            ("reported.x = idle", "invalid value \"idle\""),
            ("reported.x = \"idle", "unterminated string at column 14"),
            (
                "state.x = 1",
                "a path starts with `desired.` or `reported.` at column 1",
            ),
            (
                "reported = 1",
                "expected `.` and a key after the side at column 9",
            ),
            ("reported..x = 1", "empty key in path at column 10"),
            (
                "reported.x = 1 or reported.y = 2",
                "expected `and` or the end of the query at column 16",
            ),
            ("reported.x = 1 and", "expected a path"),
            (
                "reported.x = [1]",
                "arrays and objects cannot be compared at column 14",
            ),
            ("reported.x = 1and reported.y = 2", "invalid value \"1and\""),
        ];
        for (text, want) in cases {
            let e = TwinQuery::parse(text).unwrap_err();
            let want_prefix = want.split(" at column").next().unwrap_or(want);
            assert!(e.contains(want_prefix), "{text:?}: {e}");
            if want.contains("column") {
                assert!(e.contains(want), "{text:?}: {e}");
            }
        }
        let long = format!("reported.x = \"{}\"", "a".repeat(MAX_QUERY_BYTES));
        assert!(TwinQuery::parse(&long).unwrap_err().contains("longer"));
        let many = vec!["reported.x = 1"; MAX_QUERY_CLAUSES + 1].join(" and ");
        assert!(TwinQuery::parse(&many).unwrap_err().contains("clauses"));
    }

    #[test]
    fn matching() {
        let t = twin(
            json!({"speed": 12, "mode": "eco"}),
            json!({"firmware": "1.2.0", "mode": "idle", "temp": 21.5, "on": true,
                   "sensors": [{"t": 1}, {"t": 2}], "n": null}),
        );
        let yes = [
            r#"reported.firmware = "1.2.0""#,
            "desired.speed > 10",
            "desired.speed >= 12.0",
            "desired.speed = 12.0",
            r#"reported.mode != "eco""#,
            "reported.temp < 22 and reported.temp > 21",
            "reported.on = true",
            "reported.on != false",
            "reported.missing = null",
            "reported.n = null",
            "reported.temp != null",
            "reported.sensors.1.t = 2",
            r#"reported.firmware >= "1.10.0""#,
        ];
        for s in yes {
            assert!(q(s).matches(&t), "{s}");
        }
        let no = [
            r#"reported.firmware = "1.3.0""#,
            "desired.speed > 12",
            r#"reported.mode != "idle""#,
            // Mismatched types are false whatever the operator.
            r#"desired.speed != "12""#,
            r#"reported.missing != "idle""#,
            "reported.on > false",
            "reported.missing < 1",
            "reported.missing != null",
            "reported.sensors = null",
            "reported.sensors.5.t = 2",
            "reported.temp < 22 and reported.temp > 22",
            "desired.firmware = \"1.2.0\"",
        ];
        for s in no {
            assert!(!q(s).matches(&t), "{s}");
        }
    }
}
