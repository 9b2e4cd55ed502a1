//! Evaluating an expression against one message: field access, operators
//! and three-valued logic. Functions are in `functions.rs`; stateful
//! expressions were computed before (their values are read from slots).
//!
//! Nothing here panics or fails: a missing field is null, null propagates
//! through operators, and a runtime error (division by zero, a type
//! mismatch, a failed cast) yields null and is recorded, first one wins,
//! with its line and column.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;

use crate::ast::{BinOp, Expr, ExprKind, Literal, Step};
use crate::error::line_column;
use crate::functions;
use crate::lexer::Span;
use crate::message::{Context, ParsedMessage};
use crate::value::Val;

/// What an expression can see while one message is evaluated.
pub(crate) struct Env<'a> {
    pub msg: &'a ParsedMessage<'a>,
    pub ctx: &'a dyn Context,
    source: &'a str,
    /// Values of the stateful expressions computed so far.
    slots: Vec<Val<'a>>,
    error: OnceCell<String>,
}

impl<'a> Env<'a> {
    pub fn new(msg: &'a ParsedMessage<'a>, ctx: &'a dyn Context, source: &'a str) -> Self {
        Env {
            msg,
            ctx,
            source,
            slots: Vec::new(),
            error: OnceCell::new(),
        }
    }

    pub fn push_slot(&mut self, v: Val<'a>) {
        self.slots.push(v);
    }

    pub fn into_error(self) -> Option<String> {
        self.error.into_inner()
    }

    /// Records a runtime error at `span` (if none is recorded yet) and
    /// yields null.
    pub fn fail(&self, span: Span, message: impl FnOnce() -> String) -> Val<'a> {
        if self.error.get().is_none() {
            let (line, column) = line_column(self.source, span.start);
            let _ = self
                .error
                .set(format!("line {line}, column {column}: {}", message()));
        }
        Val::Null
    }

    pub fn eval(&self, e: &'a Expr) -> Val<'a> {
        match &e.kind {
            ExprKind::Lit(l) => match l {
                Literal::Null => Val::Null,
                Literal::Bool(b) => Val::Bool(*b),
                Literal::Num(n) => Val::Num(*n),
                Literal::Str(s) => Val::Str(Cow::Borrowed(s)),
            },
            ExprKind::Field(steps) => {
                let msg: &'a ParsedMessage<'a> = self.msg;
                match msg.json() {
                    Some(root) => self.walk(Val::Json(Cow::Borrowed(root)), steps),
                    None => Val::Null,
                }
            }
            ExprKind::Get(base, steps) => {
                let base = self.eval(base);
                self.walk(base, steps)
            }
            ExprKind::Slot(i) => self.slots.get(*i).cloned().unwrap_or(Val::Null),
            ExprKind::Neg(inner) => match self.eval(inner) {
                Val::Null => Val::Null,
                Val::Num(n) => Val::Num(-n),
                other => self.fail(e.span, || format!("cannot negate a {}", other.type_name())),
            },
            ExprKind::Not(inner) => match self.eval(inner) {
                Val::Null => Val::Null,
                Val::Bool(b) => Val::Bool(!b),
                other => self.fail(e.span, || {
                    format!("NOT needs a boolean, found {}", other.type_name())
                }),
            },
            ExprKind::IsNull { expr, negated } => Val::Bool(self.eval(expr).is_null() != *negated),
            ExprKind::In {
                expr,
                list,
                negated,
            } => {
                let v = self.eval(expr);
                if v.is_null() {
                    return Val::Null;
                }
                let mut saw_null = false;
                for item in list {
                    let w = self.eval(item);
                    if w.is_null() {
                        saw_null = true;
                    } else if v.same(&w) {
                        return Val::Bool(!*negated);
                    }
                }
                if saw_null {
                    Val::Null
                } else {
                    Val::Bool(*negated)
                }
            }
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, e.span),
            ExprKind::Call(f, args) => functions::call(*f, args, e.span, self),
        }
    }

    /// A boolean operand of AND / OR: null for null, and for a
    /// non-boolean (recorded as an error).
    fn logic(&self, v: Val<'a>, op: &str, span: Span) -> Option<bool> {
        match v {
            Val::Bool(b) => Some(b),
            Val::Null => None,
            other => {
                self.fail(span, || {
                    format!("{op} needs booleans, found {}", other.type_name())
                });
                None
            }
        }
    }

    fn binary(&self, op: BinOp, a: &'a Expr, b: &'a Expr, span: Span) -> Val<'a> {
        match op {
            BinOp::And | BinOp::Or => {
                let name = if op == BinOp::And { "AND" } else { "OR" };
                // The value that decides the result on its own.
                let decisive = op == BinOp::Or;
                let left = self.logic(self.eval(a), name, a.span);
                if left == Some(decisive) {
                    return Val::Bool(decisive);
                }
                let right = self.logic(self.eval(b), name, b.span);
                match (left, right) {
                    (_, Some(r)) if r == decisive => Val::Bool(decisive),
                    (Some(_), Some(_)) => Val::Bool(!decisive),
                    _ => Val::Null,
                }
            }
            _ => {
                let left = self.eval(a);
                let right = self.eval(b);
                if left.is_null() || right.is_null() {
                    return Val::Null;
                }
                self.strict(op, left, right, span)
            }
        }
    }

    /// Operators that are null when an operand is null (checked before).
    fn strict(&self, op: BinOp, left: Val<'a>, right: Val<'a>, span: Span) -> Val<'a> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let cmp = |want: &[std::cmp::Ordering]| match left.order(&right) {
            Some(o) => Val::Bool(want.contains(&o)),
            None => self.fail(span, || {
                format!(
                    "cannot compare {} with {}",
                    left.type_name(),
                    right.type_name()
                )
            }),
        };
        match op {
            BinOp::Eq => Val::Bool(left.same(&right)),
            BinOp::NotEq => Val::Bool(!left.same(&right)),
            BinOp::Lt => cmp(&[Less]),
            BinOp::LtEq => cmp(&[Less, Equal]),
            BinOp::Gt => cmp(&[Greater]),
            BinOp::GtEq => cmp(&[Greater, Equal]),
            BinOp::Concat => {
                let mut s = left.to_text().unwrap_or_default().into_owned();
                s.push_str(&right.to_text().unwrap_or_default());
                Val::Str(Cow::Owned(s))
            }
            _ => {
                let (Val::Num(x), Val::Num(y)) = (&left, &right) else {
                    let verb = match op {
                        BinOp::Add => "add",
                        BinOp::Sub => "subtract",
                        BinOp::Mul => "multiply",
                        BinOp::Div => "divide",
                        _ => "take the remainder of",
                    };
                    let hint = if op == BinOp::Add
                        && matches!((&left, &right), (Val::Str(_), _) | (_, Val::Str(_)))
                    {
                        " (use || to join strings)"
                    } else {
                        ""
                    };
                    return self.fail(span, || {
                        format!(
                            "cannot {verb} {} and {}{hint}",
                            left.type_name(),
                            right.type_name()
                        )
                    });
                };
                let (x, y) = (*x, *y);
                let n = match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div | BinOp::Rem if y == 0.0 => {
                        return self.fail(span, || "division by zero".to_string())
                    }
                    BinOp::Div => x / y,
                    _ => x % y,
                };
                if n.is_nan() {
                    Val::Null
                } else {
                    Val::Num(n)
                }
            }
        }
    }

    /// Follows a path from a value; any step that does not apply (a key of
    /// a non-object, an index out of range) gives null.
    fn walk(&self, base: Val<'a>, steps: &'a [Step]) -> Val<'a> {
        match base {
            Val::Json(Cow::Borrowed(mut v)) => {
                for step in steps {
                    match self.step(v, step) {
                        Some(next) => v = next,
                        None => return Val::Null,
                    }
                }
                Val::from_json(v)
            }
            Val::Json(Cow::Owned(v)) => {
                // Rare (a path into a value kept in state): walk by
                // reference, then copy the result out.
                let mut cur = &v;
                for step in steps {
                    match self.step(cur, step) {
                        Some(next) => cur = next,
                        None => return Val::Null,
                    }
                }
                Val::from_owned_json(cur.clone())
            }
            _ => Val::Null,
        }
    }

    fn step<'v>(&self, v: &'v Value, step: &'a Step) -> Option<&'v Value> {
        match step {
            Step::Key(k) => v.as_object()?.get(k.as_str()),
            Step::Index(i) => index(v, *i),
            Step::Dyn(e) => match self.eval(e) {
                Val::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => index(v, n as i64),
                Val::Str(k) => v.as_object()?.get(k.as_ref()),
                Val::Null => None,
                other => {
                    self.fail(e.span, || {
                        format!(
                            "an index is a whole number or a string, found {}",
                            other.type_name()
                        )
                    });
                    None
                }
            },
        }
    }
}

/// Element `i` of an array; negative counts from the end (`-1` is last).
fn index(v: &Value, i: i64) -> Option<&Value> {
    let arr = v.as_array()?;
    let i = if i < 0 {
        arr.len().checked_sub(i.unsigned_abs() as usize)?
    } else {
        i as usize
    };
    arr.get(i)
}
