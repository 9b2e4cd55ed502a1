//! The compiled form of a rule: expressions, the scalar functions, and the
//! stateful expressions ("slots") whose values are computed once per
//! message before the rest of the rule is evaluated.

use crate::lexer::Span;

/// An expression with its source span (for runtime error positions and
/// default output names) and its nesting depth (bounded at compile time
/// so that evaluation can recurse without risking the stack).
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    pub depth: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum ExprKind {
    Lit(Literal),
    /// A path from the payload's root: `temp`, `a.b[0]`, `"odd name"`.
    Field(Vec<Step>),
    /// A path applied to the value of another expression: `payload().a`.
    Get(Box<Expr>, Vec<Step>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `x IS NULL` (`negated`: `IS NOT NULL`).
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `x IN (a, b)` (`negated`: `NOT IN`).
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Call(Func, Vec<Expr>),
    /// A stateful expression: its value for this message is computed by
    /// the pre-pass and read from slot `n`.
    Slot(usize),
}

fn dyn_steps(steps: &[Step]) -> Vec<&Expr> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Dyn(e) => Some(&**e),
            _ => None,
        })
        .collect()
}

impl ExprKind {
    /// The sub-expressions evaluated as part of this one (not the
    /// arguments of slots, which are evaluated by the pre-pass).
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            ExprKind::Lit(_) | ExprKind::Slot(_) => Vec::new(),
            ExprKind::Field(path) => dyn_steps(path),
            ExprKind::Get(base, path) => {
                let mut v = vec![&**base];
                v.extend(dyn_steps(path));
                v
            }
            ExprKind::Neg(e) | ExprKind::Not(e) | ExprKind::IsNull { expr: e, .. } => vec![e],
            ExprKind::Binary(_, a, b) => vec![a, b],
            ExprKind::In { expr, list, .. } => {
                let mut v = vec![&**expr];
                v.extend(list.iter());
                v
            }
            ExprKind::Call(_, args) => args.iter().collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

/// One step of a path.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// `.name`, `."odd name"` or `['name']`.
    Key(String),
    /// `[3]`, or `[-1]` for the last element.
    Index(i64),
    /// `[expr]`: a number indexes an array, a string names a key.
    Dyn(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Concat,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The scalar (stateless) functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Topic,
    DeviceId,
    Timestamp,
    Payload,
    Coalesce,
    Abs,
    Round,
    Floor,
    Ceil,
    Min,
    Max,
    Lower,
    Upper,
    Length,
    Concat,
    Substring,
    Contains,
    StartsWith,
    EndsWith,
    Number,
    String,
    Bool,
    DeviceType,
    Label,
}

impl Func {
    /// The function called `name` (lower case), with its accepted numbers
    /// of arguments (min, max; `usize::MAX` for "any").
    pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
        Some(match name {
            "topic" => (Func::Topic, 0, 1),
            "device_id" => (Func::DeviceId, 0, 0),
            "timestamp" => (Func::Timestamp, 0, 0),
            "payload" => (Func::Payload, 0, 0),
            "coalesce" => (Func::Coalesce, 1, usize::MAX),
            "abs" => (Func::Abs, 1, 1),
            "round" => (Func::Round, 1, 2),
            "floor" => (Func::Floor, 1, 1),
            "ceil" => (Func::Ceil, 1, 1),
            "min" => (Func::Min, 2, 2),
            "max" => (Func::Max, 2, 2),
            "lower" => (Func::Lower, 1, 1),
            "upper" => (Func::Upper, 1, 1),
            "length" => (Func::Length, 1, 1),
            "concat" => (Func::Concat, 1, usize::MAX),
            "substring" => (Func::Substring, 2, 3),
            "contains" => (Func::Contains, 2, 2),
            "starts_with" => (Func::StartsWith, 2, 2),
            "ends_with" => (Func::EndsWith, 2, 2),
            "number" => (Func::Number, 1, 1),
            "string" => (Func::String, 1, 1),
            "bool" => (Func::Bool, 1, 1),
            "device_type" => (Func::DeviceType, 0, 0),
            "label" => (Func::Label, 1, 1),
            _ => return None,
        })
    }
}

/// The aggregates a window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Agg {
    Avg,
    Sum,
    Count,
    Min,
    Max,
    First,
    Last,
}

impl Agg {
    pub fn lookup(name: &str) -> Option<Agg> {
        Some(match name {
            "avg" => Agg::Avg,
            "sum" => Agg::Sum,
            "count" => Agg::Count,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            _ => return None,
        })
    }
}

/// What a stateful expression computes; the state it keeps per group is
/// in `slot.rs` and `window.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Hash)]
pub(crate) enum SlotKind {
    /// `agg(x) OVER <ms>`: the last `ms` milliseconds.
    Sliding(Agg, u64),
    /// `agg(x) OVER TUMBLING <ms>`: the current epoch-aligned window.
    Tumbling(Agg, u64),
    /// `cond FOR <ms>`.
    For(u64),
    Changed,
    Previous,
    Delta,
    Rate,
    /// `zscore(x, alpha)`; alpha stored as bits so that the kind hashes.
    ZScore(u64),
}

/// A stateful expression: its kind and the argument evaluated on every
/// message (before the rest of the rule, never short-circuited).
#[derive(Debug, Clone)]
pub(crate) struct SlotSpec {
    pub kind: SlotKind,
    pub arg: Expr,
}

/// One item of the SELECT list.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// `*`: the payload object's fields.
    Star,
    Expr {
        expr: Expr,
        name: String,
    },
}
