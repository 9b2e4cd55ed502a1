//! Statements of the subset and their parser.

use regex::Regex;

use crate::error::Error;
use crate::lexer::{lex, Tok};

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    /// Arithmetic mean of numeric values.
    Mean,
    /// Smallest numeric value.
    Min,
    /// Largest numeric value.
    Max,
    /// Sum of numeric values.
    Sum,
    /// Number of values.
    Count,
    /// Value with the earliest timestamp.
    First,
    /// Value with the latest timestamp.
    Last,
}

impl Agg {
    fn from_name(s: &str) -> Option<Agg> {
        Some(match s.to_ascii_lowercase().as_str() {
            "mean" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "sum" => Agg::Sum,
            "count" => Agg::Count,
            "first" => Agg::First,
            "last" => Agg::Last,
            _ => return None,
        })
    }

    /// The function's name, the default column name.
    pub fn name(self) -> &'static str {
        match self {
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Count => "count",
            Agg::First => "first",
            Agg::Last => "last",
        }
    }

    /// Whether it picks one point (whose time it can report).
    pub fn is_selector(self) -> bool {
        matches!(self, Agg::Min | Agg::Max | Agg::First | Agg::Last)
    }
}

/// One selected column.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The aggregate, or `None` for raw values.
    pub agg: Option<Agg>,
    /// The field name.
    pub field: String,
    /// The column name (`AS` or the default).
    pub alias: Option<String>,
}

/// A condition on a tag.
#[derive(Clone, Debug)]
pub enum TagCond {
    /// `tag = 'v'`.
    Eq(String, String),
    /// `tag != 'v'`.
    Ne(String, String),
    /// `tag =~ /re/`.
    Match(String, Regex),
    /// `tag !~ /re/`.
    NotMatch(String, Regex),
}

/// How empty `GROUP BY time` intervals are filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fill {
    /// `null` (the default).
    Null,
    /// `none`: the row is left out.
    None,
    /// `previous`: the previous interval's value.
    Previous,
    /// A number.
    Value(f64),
}

/// A `SELECT` statement.
#[derive(Clone, Debug)]
pub struct Select {
    /// Selected columns.
    pub fields: Vec<Field>,
    /// The measurement.
    pub measurement: String,
    /// Tag conditions, all of which must hold.
    pub conds: Vec<TagCond>,
    /// Inclusive lower time bound, ns since the epoch.
    pub start_ns: Option<i64>,
    /// Inclusive upper time bound, ns since the epoch.
    pub end_ns: Option<i64>,
    /// `GROUP BY time(...)` interval in ns.
    pub interval_ns: Option<i64>,
    /// `GROUP BY` tags.
    pub group_tags: Vec<String>,
    /// The fill option.
    pub fill: Fill,
    /// `LIMIT`: rows per series.
    pub limit: Option<usize>,
}

/// A statement of the subset.
#[derive(Clone, Debug)]
pub enum Statement {
    /// `SELECT ...`.
    Select(Box<Select>),
    /// `SHOW DATABASES`.
    ShowDatabases,
    /// `SHOW MEASUREMENTS [LIMIT n]`.
    ShowMeasurements(Option<usize>),
    /// `SHOW TAG KEYS [FROM m]`.
    ShowTagKeys(Option<String>),
    /// `SHOW TAG VALUES [FROM m] WITH KEY = "k"`.
    ShowTagValues(Option<String>, String),
    /// `SHOW FIELD KEYS [FROM m]`.
    ShowFieldKeys(Option<String>),
    /// `SHOW RETENTION POLICIES [ON db]`: the one policy, `autogen`.
    ShowRetentionPolicies,
    /// `CREATE DATABASE x`: accepted, does nothing.
    CreateDatabase,
}

/// Parses `;`-separated statements; `now_ms` is what `now()` means.
pub fn parse(src: &str, now_ms: i64) -> Result<Vec<Statement>, Error> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        now_ns: now_ms.saturating_mul(1_000_000),
    };
    let mut out = Vec::new();
    loop {
        while p.eat_op(";") {}
        if p.peek().is_none() {
            break;
        }
        out.push(p.statement()?);
        if p.peek().is_some() && !p.eat_op(";") {
            return Err(p.unexpected("; or end of query"));
        }
    }
    if out.is_empty() {
        return Err(Error::Parse("empty query".into()));
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    now_ns: i64,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn unexpected(&self, want: &str) -> Error {
        match self.peek() {
            Some(t) => Error::Parse(format!("found {}, expected {want}", show(t))),
            None => Error::Parse(format!("found end of query, expected {want}")),
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Error> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.unexpected(op))
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident { text, quoted: false }) if text.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), Error> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn ident(&mut self) -> Result<String, Error> {
        match self.peek() {
            Some(Tok::Ident { text, .. }) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.unexpected("identifier")),
        }
    }

    fn int(&mut self) -> Result<usize, Error> {
        match self.peek() {
            Some(Tok::Int(n)) if *n >= 0 => {
                let n = usize::try_from(*n).unwrap_or(usize::MAX);
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected("non-negative integer")),
        }
    }

    /// A measurement, possibly qualified as `db.rp.m` or `rp.m`: the last
    /// part is kept.
    fn measurement(&mut self) -> Result<String, Error> {
        if matches!(self.peek(), Some(Tok::Regex(_))) {
            return Err(Error::Unsupported("FROM with a regular expression".into()));
        }
        let mut m = self.ident()?;
        while self.eat_op(".") {
            m = self.ident()?;
        }
        Ok(m)
    }

    /// `ON <db>`: there is one database, so the name is not checked.
    fn opt_on(&mut self) -> Result<(), Error> {
        if self.eat_kw("ON") {
            self.ident()?;
        }
        Ok(())
    }

    fn opt_from(&mut self) -> Result<Option<String>, Error> {
        self.opt_on()?;
        if self.eat_kw("FROM") {
            Ok(Some(self.measurement()?))
        } else {
            Ok(None)
        }
    }

    fn statement(&mut self) -> Result<Statement, Error> {
        if self.eat_kw("SELECT") {
            return Ok(Statement::Select(Box::new(self.select()?)));
        }
        if self.eat_kw("CREATE") {
            self.expect_kw("DATABASE")?;
            self.ident()?;
            return Ok(Statement::CreateDatabase);
        }
        if self.eat_kw("SHOW") {
            if self.eat_kw("DATABASES") {
                return Ok(Statement::ShowDatabases);
            }
            if self.eat_kw("RETENTION") {
                self.expect_kw("POLICIES")?;
                self.opt_on()?;
                return Ok(Statement::ShowRetentionPolicies);
            }
            if self.eat_kw("MEASUREMENTS") {
                self.opt_on()?;
                let limit = if self.eat_kw("LIMIT") {
                    Some(self.int()?)
                } else {
                    None
                };
                return Ok(Statement::ShowMeasurements(limit));
            }
            if self.eat_kw("FIELD") {
                self.expect_kw("KEYS")?;
                return Ok(Statement::ShowFieldKeys(self.opt_from()?));
            }
            if self.eat_kw("TAG") {
                if self.eat_kw("KEYS") {
                    return Ok(Statement::ShowTagKeys(self.opt_from()?));
                }
                self.expect_kw("VALUES")?;
                let from = self.opt_from()?;
                self.expect_kw("WITH")?;
                self.expect_kw("KEY")?;
                if !self.eat_op("=") {
                    return Err(Error::Unsupported(
                        "SHOW TAG VALUES WITH KEY other than = \"key\"".into(),
                    ));
                }
                let key = self.ident()?;
                return Ok(Statement::ShowTagValues(from, key));
            }
            return Err(match self.peek() {
                Some(t) => Error::Unsupported(format!("SHOW {}", show(t))),
                None => self.unexpected("what to SHOW"),
            });
        }
        match self.peek() {
            Some(Tok::Ident {
                text,
                quoted: false,
            }) => Err(Error::Unsupported(format!(
                "{} statements",
                text.to_uppercase()
            ))),
            _ => Err(self.unexpected("SELECT, SHOW or CREATE")),
        }
    }

    fn field(&mut self) -> Result<Field, Error> {
        if self.eat_op("*") {
            return Err(Error::Unsupported("SELECT *".into()));
        }
        let name = self.ident()?;
        let (agg, field) = if self.eat_op("(") {
            let Some(agg) = Agg::from_name(&name) else {
                return Err(Error::Unsupported(format!("function {name}()")));
            };
            if self.eat_op("*") {
                return Err(Error::Unsupported(format!("{name}(*)")));
            }
            let f = self.ident()?;
            if !self.eat_op(")") {
                return Err(Error::Unsupported(format!(
                    "arguments to {name}() other than one field"
                )));
            }
            (Some(agg), f)
        } else {
            (None, name)
        };
        if let Some(Tok::Op(o)) = self.peek() {
            if matches!(*o, "+" | "-" | "*") {
                return Err(Error::Unsupported("arithmetic in SELECT".into()));
            }
        }
        let alias = if self.eat_kw("AS") {
            Some(self.ident()?)
        } else {
            None
        };
        Ok(Field { agg, field, alias })
    }

    fn select(&mut self) -> Result<Select, Error> {
        let mut fields = vec![self.field()?];
        while self.eat_op(",") {
            fields.push(self.field()?);
        }
        if self.is_kw("INTO") {
            return Err(Error::Unsupported("SELECT INTO".into()));
        }
        self.expect_kw("FROM")?;
        let measurement = self.measurement()?;
        if self.eat_op(",") {
            return Err(Error::Unsupported("several measurements in FROM".into()));
        }
        let mut s = Select {
            fields,
            measurement,
            conds: Vec::new(),
            start_ns: None,
            end_ns: None,
            interval_ns: None,
            group_tags: Vec::new(),
            fill: Fill::Null,
            limit: None,
        };
        if self.eat_kw("WHERE") {
            self.conjunction(&mut s, 0)?;
        }
        if self.eat_kw("GROUP") {
            self.expect_kw("BY")?;
            loop {
                if self.is_kw("time") && matches!(self.toks.get(self.pos + 1), Some(Tok::Op("("))) {
                    self.pos += 2;
                    let d = match self.next() {
                        Some(Tok::Duration(d)) if d > 0 => d,
                        _ => {
                            return Err(Error::Parse(
                                "GROUP BY time() needs a positive duration".into(),
                            ))
                        }
                    };
                    if self.eat_op(",") {
                        return Err(Error::Unsupported("GROUP BY time() offsets".into()));
                    }
                    self.expect_op(")")?;
                    if s.interval_ns.replace(d).is_some() {
                        return Err(Error::Parse("GROUP BY time() given twice".into()));
                    }
                } else if self.eat_op("*") {
                    return Err(Error::Unsupported("GROUP BY *".into()));
                } else {
                    if matches!(self.peek(), Some(Tok::Regex(_))) {
                        return Err(Error::Unsupported("GROUP BY a regular expression".into()));
                    }
                    s.group_tags.push(self.ident()?);
                }
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        if self.eat_kw("fill") {
            self.expect_op("(")?;
            let neg = self.eat_op("-");
            let sign = if neg { -1.0 } else { 1.0 };
            s.fill = match self.next() {
                Some(Tok::Ident {
                    text,
                    quoted: false,
                }) if !neg => match text.to_ascii_lowercase().as_str() {
                    "null" => Fill::Null,
                    "none" => Fill::None,
                    "previous" => Fill::Previous,
                    "linear" => return Err(Error::Unsupported("fill(linear)".into())),
                    _ => return Err(Error::Parse(format!("bad fill option {text}"))),
                },
                Some(Tok::Int(n)) => Fill::Value(sign * n as f64),
                Some(Tok::Float(f)) => Fill::Value(sign * f),
                _ => return Err(Error::Parse("bad fill option".into())),
            };
            self.expect_op(")")?;
        }
        if self.is_kw("ORDER") {
            return Err(Error::Unsupported("ORDER BY".into()));
        }
        if self.eat_kw("LIMIT") {
            s.limit = Some(self.int()?);
        }
        for kw in ["OFFSET", "SLIMIT", "SOFFSET", "TZ"] {
            if self.is_kw(kw) {
                return Err(Error::Unsupported(kw.into()));
            }
        }
        Ok(s)
    }

    /// Conditions joined by AND, possibly in parentheses.
    fn conjunction(&mut self, s: &mut Select, depth: usize) -> Result<(), Error> {
        if depth > 32 {
            return Err(Error::Parse("parentheses nested too deeply".into()));
        }
        loop {
            if self.eat_op("(") {
                self.conjunction(s, depth + 1)?;
                self.expect_op(")")?;
            } else {
                self.condition(s)?;
            }
            if self.is_kw("OR") {
                return Err(Error::Unsupported("OR in WHERE".into()));
            }
            if !self.eat_kw("AND") {
                return Ok(());
            }
        }
    }

    fn condition(&mut self, s: &mut Select) -> Result<(), Error> {
        let name = self.ident()?;
        let op = match self.next() {
            Some(Tok::Op(o))
                if matches!(o, "=" | "!=" | "<>" | "=~" | "!~" | "<" | "<=" | ">" | ">=") =>
            {
                o
            }
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("comparison operator"));
            }
        };
        if name.eq_ignore_ascii_case("time") {
            let t = self.time_expr()?;
            let (lo, hi) = match op {
                ">=" => (Some(t), None),
                ">" => (Some(t.saturating_add(1)), None),
                "<=" => (None, Some(t)),
                "<" => (None, Some(t.saturating_sub(1))),
                "=" => (Some(t), Some(t)),
                _ => return Err(Error::Unsupported(format!("time {op}"))),
            };
            if let Some(lo) = lo {
                s.start_ns = Some(s.start_ns.map_or(lo, |x| x.max(lo)));
            }
            if let Some(hi) = hi {
                s.end_ns = Some(s.end_ns.map_or(hi, |x| x.min(hi)));
            }
            return Ok(());
        }
        let cond = match (op, self.next()) {
            ("=", Some(Tok::Str(v))) => TagCond::Eq(name, v),
            ("!=" | "<>", Some(Tok::Str(v))) => TagCond::Ne(name, v),
            ("=~", Some(Tok::Regex(r))) => TagCond::Match(name, regex(&r)?),
            ("!~", Some(Tok::Regex(r))) => TagCond::NotMatch(name, regex(&r)?),
            _ => {
                return Err(Error::Unsupported(format!(
                    "condition on {name} other than a tag compared with a string or regex (field conditions are not supported)"
                )))
            }
        };
        s.conds.push(cond);
        Ok(())
    }

    /// A time: `now()`, an RFC 3339 string, an integer (ns) or a duration
    /// literal (since the epoch), plus or minus durations.
    fn time_expr(&mut self) -> Result<i64, Error> {
        let mut t = match self.next() {
            Some(Tok::Ident {
                text,
                quoted: false,
            }) if text.eq_ignore_ascii_case("now") => {
                self.expect_op("(")?;
                self.expect_op(")")?;
                self.now_ns
            }
            Some(Tok::Str(s)) => rfc3339_ns(&s)?,
            Some(Tok::Int(n)) | Some(Tok::Duration(n)) => n,
            _ => {
                self.pos -= 1;
                return Err(self.unexpected("time"));
            }
        };
        loop {
            let sign = if self.eat_op("+") {
                1
            } else if self.eat_op("-") {
                -1
            } else {
                return Ok(t);
            };
            match self.next() {
                Some(Tok::Duration(d)) | Some(Tok::Int(d)) => {
                    t = t.saturating_add(d.saturating_mul(sign));
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected("duration"));
                }
            }
        }
    }
}

fn regex(r: &str) -> Result<Regex, Error> {
    regex::RegexBuilder::new(r)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::Parse(format!("bad regex /{r}/: {e}")))
}

/// An RFC 3339 time (or `YYYY-MM-DD[ HH:MM:SS]`), in ns; sub-millisecond
/// digits are dropped.
fn rfc3339_ns(s: &str) -> Result<i64, Error> {
    let ms = iot_types::rfc3339_ms(s)
        .or_else(|| iot_types::rfc3339_ms(&format!("{s}T00:00:00Z")))
        .or_else(|| iot_types::rfc3339_ms(&format!("{}Z", s.replacen(' ', "T", 1))))
        .ok_or_else(|| Error::Parse(format!("bad time '{s}'")))?;
    ms.checked_mul(1_000_000)
        .ok_or_else(|| Error::Parse(format!("time '{s}' out of range")))
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Ident { text, .. } => text.clone(),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Int(n) => n.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Duration(d) => format!("{d}ns"),
        Tok::Regex(r) => format!("/{r}/"),
        Tok::Op(o) => (*o).to_string(),
    }
}
