//! The syntax tree of the supported PromQL subset.

use std::fmt;

use regex::Regex;

use crate::error::Error;

/// A parsed expression.
#[derive(Clone, Debug)]
pub enum Expr {
    /// A number literal (`1`, `-2.5e3`, `0x1f`, `Inf`, `NaN`).
    Number(f64),
    /// An instant vector selector: `metric{label="v"} offset 5m`.
    Vector(VectorSelector),
    /// A range vector selector: `metric{...}[5m] offset 1m`.
    Matrix(MatrixSelector),
    /// A `*_over_time`, `rate` or `increase` call over a range selector.
    Call {
        /// The function.
        func: Function,
        /// Its argument, a range vector selector.
        arg: MatrixSelector,
    },
    /// `sum`, `avg`, `min`, `max` or `count` of an instant vector.
    Aggregate {
        /// The aggregation.
        op: AggOp,
        /// `by (...)`, `without (...)` or neither.
        grouping: Grouping,
        /// The instant vector aggregated.
        arg: Box<Expr>,
    },
    /// `lhs op rhs` where at least one side is a scalar.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `-expr`.
    Neg(Box<Expr>),
}

/// What an expression evaluates to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A single number.
    Scalar,
    /// One value per series at each evaluation time.
    Vector,
    /// Raw points per series over a range.
    Matrix,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Scalar => "scalar",
            ValueKind::Vector => "instant vector",
            ValueKind::Matrix => "range vector",
        })
    }
}

impl Expr {
    /// The kind of value the expression evaluates to.
    pub fn kind(&self) -> ValueKind {
        match self {
            Expr::Number(_) => ValueKind::Scalar,
            Expr::Vector(_) | Expr::Call { .. } | Expr::Aggregate { .. } => ValueKind::Vector,
            Expr::Matrix(_) => ValueKind::Matrix,
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.kind() == ValueKind::Scalar && rhs.kind() == ValueKind::Scalar {
                    ValueKind::Scalar
                } else {
                    ValueKind::Vector
                }
            }
            Expr::Neg(e) => e.kind(),
        }
    }
}

/// An instant vector selector.
#[derive(Clone, Debug)]
pub struct VectorSelector {
    /// Label matchers, the metric name as a `__name__` matcher.
    pub matchers: Vec<Matcher>,
    /// `offset`, in milliseconds (negative looks ahead).
    pub offset_ms: i64,
}

/// A range vector selector.
#[derive(Clone, Debug)]
pub struct MatrixSelector {
    /// The series and offset.
    pub selector: VectorSelector,
    /// The range, in milliseconds (> 0).
    pub range_ms: i64,
}

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`, anchored at both ends.
    Regex,
    /// `!~`, anchored at both ends.
    NotRegex,
}

/// One label matcher. A missing label matches as the empty string.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name (`__name__` for the metric name).
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or the regular expression as written.
    pub value: String,
    re: Option<Regex>,
}

/// Largest compiled regex the parser accepts, in bytes: a query is input.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Matcher {
    /// A matcher; for `=~` and `!~` the value is compiled as a regular
    /// expression anchored at both ends (`^(?s:value)$`), as Prometheus does.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, Error> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?s:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        Error::Invalid(format!("invalid regular expression {value:?}: {e}"))
                    })?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether a label value (`""` when the label is missing) matches.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // Regex matchers are only built with their regex.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }
}

/// The supported functions; each takes one range vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// `avg_over_time`
    AvgOverTime,
    /// `min_over_time`
    MinOverTime,
    /// `max_over_time`
    MaxOverTime,
    /// `sum_over_time`
    SumOverTime,
    /// `count_over_time`
    CountOverTime,
    /// `last_over_time`
    LastOverTime,
    /// `rate`
    Rate,
    /// `increase`
    Increase,
}

impl Function {
    pub(crate) fn from_name(s: &str) -> Option<Function> {
        Some(match s {
            "avg_over_time" => Function::AvgOverTime,
            "min_over_time" => Function::MinOverTime,
            "max_over_time" => Function::MaxOverTime,
            "sum_over_time" => Function::SumOverTime,
            "count_over_time" => Function::CountOverTime,
            "last_over_time" => Function::LastOverTime,
            "rate" => Function::Rate,
            "increase" => Function::Increase,
            _ => return None,
        })
    }

    /// The function's PromQL name.
    pub fn name(self) -> &'static str {
        match self {
            Function::AvgOverTime => "avg_over_time",
            Function::MinOverTime => "min_over_time",
            Function::MaxOverTime => "max_over_time",
            Function::SumOverTime => "sum_over_time",
            Function::CountOverTime => "count_over_time",
            Function::LastOverTime => "last_over_time",
            Function::Rate => "rate",
            Function::Increase => "increase",
        }
    }
}

/// The supported aggregations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `count`
    Count,
}

impl AggOp {
    pub(crate) fn from_name(s: &str) -> Option<AggOp> {
        Some(match s {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            _ => return None,
        })
    }
}

/// Which labels an aggregation groups by.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Grouping {
    /// One group of everything; the result has no labels.
    #[default]
    None,
    /// `by (labels)`: groups by these labels, the result keeps only them.
    By(Vec<String>),
    /// `without (labels)`: groups by every label but these and `__name__`.
    Without(Vec<String>),
}

/// The supported arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

impl BinOp {
    pub(crate) fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

/// Writes a duration in milliseconds the way PromQL reads it (`1h30m`).
pub(crate) fn fmt_duration(ms: i64) -> String {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if ms < 0 {
        out.push('-');
    }
    let mut rest = ms.unsigned_abs();
    for (u, size) in UNITS {
        let size = size.unsigned_abs();
        if rest >= size {
            out.push_str(&format!("{}{u}", rest / size));
            rest %= size;
        }
    }
    out
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// Whether `s` can be written bare: `[a-zA-Z_][a-zA-Z0-9_]*`, and `:` too
/// in metric names.
fn is_ident(s: &str, metric: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':'))
}

/// `s` as a double-quoted PromQL string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A label name, quoted when it is not an identifier (Prometheus 3 syntax).
fn label(s: &str) -> String {
    if is_ident(s, false) {
        s.to_string()
    } else {
        quote(s)
    }
}

impl fmt::Display for VectorSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = &self.matchers[..];
        if let Some(m) = rest.first() {
            if m.name == "__name__" && m.op == MatchOp::Equal && is_ident(&m.value, true) {
                f.write_str(&m.value)?;
                rest = &rest[1..];
            }
        }
        if !rest.is_empty() || self.matchers.is_empty() {
            f.write_str("{")?;
            for (i, m) in rest.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{}{}{}", label(&m.name), m.op, quote(&m.value))?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MatrixSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.selector, fmt_duration(self.range_ms))?;
        if self.selector.offset_ms != 0 {
            write!(f, " offset {}", fmt_duration(self.selector.offset_ms))?;
        }
        Ok(())
    }
}

fn labels(l: &[String]) -> String {
    l.iter().map(|x| label(x)).collect::<Vec<_>>().join(", ")
}

/// Writes the expression back as PromQL, every binary operation in
/// parentheses (so tests can check precedence).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => f.write_str(&crate::result::format_value(*n)),
            Expr::Vector(s) => {
                write!(f, "{s}")?;
                if s.offset_ms != 0 {
                    write!(f, " offset {}", fmt_duration(s.offset_ms))?;
                }
                Ok(())
            }
            Expr::Matrix(m) => write!(f, "{m}"),
            Expr::Call { func, arg } => write!(f, "{}({arg})", func.name()),
            Expr::Aggregate { op, grouping, arg } => {
                let name = match op {
                    AggOp::Sum => "sum",
                    AggOp::Avg => "avg",
                    AggOp::Min => "min",
                    AggOp::Max => "max",
                    AggOp::Count => "count",
                };
                f.write_str(name)?;
                match grouping {
                    Grouping::None => {}
                    Grouping::By(l) => write!(f, " by ({})", labels(l))?,
                    Grouping::Without(l) => write!(f, " without ({})", labels(l))?,
                }
                write!(f, " ({arg})")
            }
            Expr::Binary { op, lhs, rhs } => {
                let o = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                };
                write!(f, "({lhs} {o} {rhs})")
            }
            Expr::Neg(e) => write!(f, "-({e})"),
        }
    }
}
