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
