//! A recursive-descent parser (precedence climbing for binary operators)
//! of the supported PromQL subset. Constructs of PromQL outside the subset
//! are recognised and refused with [`Error::Unsupported`] naming them.

use crate::ast::{
    AggOp, BinOp, Expr, Function, Grouping, MatchOp, Matcher, MatrixSelector, ValueKind,
    VectorSelector,
};
use crate::error::Error;
use crate::lexer::{lex, Tok, Token};

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;
/// Deepest nesting of parentheses, calls and unary operators accepted.
const MAX_DEPTH: usize = 128;

/// Aggregations PromQL has and this subset does not evaluate.
const OTHER_AGGREGATIONS: &[&str] = &[
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "group",
    "limitk",
    "limit_ratio",
];

/// Parses a query of the supported subset.
pub fn parse(src: &str) -> Result<Expr, Error> {
    if src.len() > MAX_QUERY_LEN {
        return Err(Error::Invalid(format!(
            "query longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    let e = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(e),
        t => Err(p.err_here(format!("unexpected {}", t.describe()))),
    }
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

/// Binding power of the supported binary operators.
fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    Some(match t {
        Tok::Plus => (BinOp::Add, 1),
        Tok::Minus => (BinOp::Sub, 1),
        Tok::Star => (BinOp::Mul, 2),
        Tok::Slash => (BinOp::Div, 2),
        _ => return None,
    })
}

/// The name of a binary operator of PromQL outside the subset.
fn other_binop(t: &Tok) -> Option<&'static str> {
    Some(match t {
        Tok::Percent => "%",
        Tok::Caret => "^",
        Tok::EqEq => "==",
        Tok::Neq => "!=",
        Tok::Lt => "<",
        Tok::Gt => ">",
        Tok::Le => "<=",
        Tok::Ge => ">=",
        Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
            "and" => "and",
            "or" => "or",
            "unless" => "unless",
            "atan2" => "atan2",
            _ => return None,
        },
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let last = self.toks.len().saturating_sub(1);
        self.toks
            .get((self.i + n).min(last))
            .map(|t| &t.kind)
            .unwrap_or(&Tok::Eof)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|t| t.pos).unwrap_or(0)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn err_at(pos: usize, msg: impl Into<String>) -> Error {
        Error::Parse {
            pos: pos + 1,
            msg: msg.into(),
        }
    }

    fn err_here(&self, msg: impl Into<String>) -> Error {
        Self::err_at(self.pos(), msg)
    }

    fn expect(&mut self, want: Tok, context: &str) -> Result<(), Error> {
        if *self.peek() == want {
            self.next();
            Ok(())
        } else {
            Err(self.err_here(format!(
                "unexpected {} in {context}, expected {}",
                self.peek().describe(),
                want.describe()
            )))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here(format!("expression nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn expr(&mut self, min_power: u8) -> Result<Expr, Error> {
        self.enter()?;
        let mut lhs = self.unary()?;
        loop {
            if let Some(name) = other_binop(self.peek()) {
                return Err(Error::unsupported(format!("binary operator \"{name}\"")));
            }
            let Some((op, power)) = binop(self.peek()) else {
                break;
            };
            if power < min_power {
                break;
            }
            let pos = self.pos();
            self.next();
            if let Tok::Ident(kw) = self.peek() {
                let kw = kw.to_ascii_lowercase();
                if matches!(
                    kw.as_str(),
                    "bool" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    return Err(Error::unsupported(format!("the \"{kw}\" modifier")));
                }
            }
            let rhs = self.expr(power + 1)?;
            lhs = binary(op, lhs, rhs, pos)?;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, Error> {
        match self.peek() {
            Tok::Minus | Tok::Plus => {
                let neg = *self.peek() == Tok::Minus;
                let pos = self.pos();
                self.next();
                self.enter()?;
                let e = self.unary()?;
                self.depth -= 1;
                if e.kind() == ValueKind::Matrix {
                    return Err(Self::err_at(
                        pos,
                        "unary expression only allowed on expressions of type scalar or instant vector",
                    ));
                }
                Ok(match (neg, e) {
                    (false, e) => e,
                    (true, Expr::Number(n)) => Expr::Number(-n),
                    (true, e) => Expr::Neg(Box::new(e)),
                })
            }
            Tok::LParen => {
                // A parenthesised expression is no selector: `(up)[5m]` and
                // `(up) offset 5m` are refused, as in Prometheus.
                let e = self.primary()?;
                self.postfix(e, false)
            }
            _ => {
                let e = self.primary()?;
                self.postfix(e, true)
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let pos = self.pos();
        match self.next() {
            Tok::Number(n) => Ok(Expr::Number(n)),
            Tok::Str(_) => Err(Error::unsupported("string literals")),
            Tok::LParen => {
                let e = self.expr(0)?;
                self.expect(Tok::RParen, "parenthesized expression")?;
                Ok(e)
            }
            Tok::LBrace => {
                let matchers = self.matchers(None)?;
                Ok(Expr::Vector(selector(matchers, pos)?))
            }
            Tok::Ident(name) => self.identifier(name, pos),
            t => Err(Self::err_at(pos, format!("unexpected {}", t.describe()))),
        }
    }

    /// An identifier at the start of an expression: an aggregation, a
    /// function call or a metric name.
    fn identifier(&mut self, name: String, pos: usize) -> Result<Expr, Error> {
        let grouping_next = matches!(self.peek(),
            Tok::Ident(k) if k.eq_ignore_ascii_case("by") || k.eq_ignore_ascii_case("without"));
        // Keywords are case-insensitive, as in Prometheus; function names
        // are not.
        let lower = name.to_ascii_lowercase();
        let call_next = *self.peek() == Tok::LParen;
        if let Some(op) = AggOp::from_name(&lower) {
            if grouping_next || call_next {
                return self.aggregate(op, &name);
            }
        }
        if OTHER_AGGREGATIONS.contains(&lower.as_str()) && (grouping_next || call_next) {
            return Err(Error::unsupported(format!("aggregation \"{lower}\"")));
        }
        if call_next {
            return self.call(&name, pos);
        }
        let matchers = if *self.peek() == Tok::LBrace {
            self.next();
            self.matchers(Some(&name))?
        } else {
            vec![Matcher::new("__name__", MatchOp::Equal, &name)?]
        };
        Ok(Expr::Vector(selector(matchers, pos)?))
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, Error> {
        let Some(func) = Function::from_name(name) else {
            return Err(Error::unsupported(format!("function \"{name}\"")));
        };
        self.expect(Tok::LParen, "function call")?;
        let args = self.args()?;
        if args.len() != 1 {
            return Err(Self::err_at(
                pos,
                format!(
                    "expected 1 argument(s) in call to \"{name}\", got {}",
                    args.len()
                ),
            ));
        }
        match args.into_iter().next() {
            Some(Expr::Matrix(arg)) => Ok(Expr::Call { func, arg }),
            Some(other) => Err(Error::Invalid(format!(
                "expected type range vector in call to function \"{name}\", got {}",
                other.kind()
            ))),
            None => Err(Self::err_at(pos, "missing argument")),
        }
    }

    /// Comma-separated expressions up to and including `)`.
    fn args(&mut self) -> Result<Vec<Expr>, Error> {
        let mut args = Vec::new();
        if *self.peek() == Tok::RParen {
            self.next();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            match self.next() {
                Tok::Comma => continue,
                Tok::RParen => return Ok(args),
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in argument list, expected \",\" or \")\"",
                        t.describe()
                    )))
                }
            }
        }
    }

    fn aggregate(&mut self, op: AggOp, name: &str) -> Result<Expr, Error> {
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "aggregation")?;
        let args = self.args()?;
        let after = self.grouping()?;
        if after != Grouping::None {
            if grouping != Grouping::None {
                return Err(self.err_here("aggregation has two grouping clauses"));
            }
            grouping = after;
        }
        let n = args.len();
        let mut args = args.into_iter();
        let (Some(arg), None) = (args.next(), args.next()) else {
            return Err(Error::Invalid(format!(
                "wrong number of arguments for aggregate expression \"{name}\" provided, expected 1, got {n}"
            )));
        };
        if arg.kind() != ValueKind::Vector {
            return Err(Error::Invalid(format!(
                "expected type instant vector in aggregation expression, got {}",
                arg.kind()
            )));
        }
        Ok(Expr::Aggregate {
            op,
            grouping,
            arg: Box::new(arg),
        })
    }

    /// An optional `by (...)` or `without (...)`.
    fn grouping(&mut self) -> Result<Grouping, Error> {
        let by = match self.peek() {
            Tok::Ident(k) if k.eq_ignore_ascii_case("by") => true,
            Tok::Ident(k) if k.eq_ignore_ascii_case("without") => false,
            _ => return Ok(Grouping::None),
        };
        self.next();
        self.expect(Tok::LParen, "grouping")?;
        let mut labels = Vec::new();
        loop {
            match self.next() {
                Tok::RParen => break,
                Tok::Ident(l) if !l.contains(':') => labels.push(l),
                Tok::Str(l) => labels.push(l),
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in grouping opts, expected label",
                        t.describe()
                    )))
                }
            }
            match self.next() {
                Tok::Comma => {}
                Tok::RParen => break,
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in grouping opts, expected \",\" or \")\"",
                        t.describe()
                    )))
                }
            }
        }
        Ok(if by {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        })
    }

    /// Matchers after `{`, up to and including `}`; `name` is the metric
    /// name written before the braces.
    fn matchers(&mut self, name: Option<&str>) -> Result<Vec<Matcher>, Error> {
        let mut out = Vec::new();
        let mut name = name.map(str::to_string);
        loop {
            let pos = self.pos();
            let label = match self.next() {
                Tok::RBrace => break,
                Tok::Ident(l) if !l.contains(':') => l,
                // A quoted name alone is the metric name (Prometheus 3).
                Tok::Str(s) if matches!(self.peek(), Tok::Comma | Tok::RBrace) => {
                    if name.is_some() {
                        return Err(Self::err_at(pos, "metric name must not be set twice"));
                    }
                    name = Some(s);
                    if *self.peek() == Tok::Comma {
                        self.next();
                    }
                    continue;
                }
                Tok::Str(s) => s,
                t => {
                    return Err(Self::err_at(
                        pos,
                        format!(
                            "unexpected {} in label matching, expected label",
                            t.describe()
                        ),
                    ))
                }
            };
            let op = match self.next() {
                Tok::Assign => MatchOp::Equal,
                Tok::Neq => MatchOp::NotEqual,
                Tok::ReMatch => MatchOp::Regex,
                Tok::ReNoMatch => MatchOp::NotRegex,
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in label matching, expected label matching operator",
                        t.describe()
                    )))
                }
            };
            let value = match self.next() {
                Tok::Str(v) => v,
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in label matching, expected string",
                        t.describe()
                    )))
                }
            };
            if label == "__name__" && name.is_some() {
                return Err(Self::err_at(pos, "metric name must not be set twice"));
            }
            out.push(Matcher::new(&label, op, &value)?);
            match self.next() {
                Tok::Comma => {}
                Tok::RBrace => break,
                t => {
                    return Err(self.err_here(format!(
                        "unexpected {} in label matching, expected \",\" or \"}}\"",
                        t.describe()
                    )))
                }
            }
        }
        if let Some(n) = name {
            out.insert(0, Matcher::new("__name__", MatchOp::Equal, &n)?);
        }
        Ok(out)
    }

    /// `[range]`, `offset` and `@` after a primary expression.
    fn postfix(&mut self, mut e: Expr, selector_allowed: bool) -> Result<Expr, Error> {
        loop {
            let pos = self.pos();
            match self.peek().clone() {
                Tok::LBracket => {
                    self.next();
                    let range = match self.next() {
                        Tok::Duration(ms) => ms,
                        Tok::Colon => return Err(Error::unsupported("subqueries")),
                        t => {
                            return Err(self.err_here(format!(
                                "unexpected {} in range, expected duration",
                                t.describe()
                            )))
                        }
                    };
                    if *self.peek() == Tok::Colon {
                        return Err(Error::unsupported("subqueries"));
                    }
                    self.expect(Tok::RBracket, "range")?;
                    e = match e {
                        Expr::Vector(sel) if selector_allowed => {
                            if sel.offset_ms != 0 {
                                return Err(Self::err_at(
                                    pos,
                                    "no offset modifiers allowed before range",
                                ));
                            }
                            if range <= 0 {
                                return Err(Self::err_at(pos, "range must be greater than 0"));
                            }
                            Expr::Matrix(MatrixSelector {
                                selector: sel,
                                range_ms: range,
                            })
                        }
                        _ => {
                            return Err(Self::err_at(
                                pos,
                                "ranges only allowed for vector selectors",
                            ))
                        }
                    };
                }
                Tok::Ident(k) if k.eq_ignore_ascii_case("offset") => {
                    self.next();
                    let neg = match self.peek() {
                        Tok::Minus => {
                            self.next();
                            true
                        }
                        Tok::Plus => {
                            self.next();
                            false
                        }
                        _ => false,
                    };
                    let ms = match self.next() {
                        Tok::Duration(ms) => ms,
                        t => {
                            return Err(self.err_here(format!(
                                "unexpected {} in offset, expected duration",
                                t.describe()
                            )))
                        }
                    };
                    let ms = if neg { -ms } else { ms };
                    let sel = match &mut e {
                        Expr::Vector(s) if selector_allowed => s,
                        Expr::Matrix(m) if selector_allowed => &mut m.selector,
                        _ => {
                            return Err(Self::err_at(
                                pos,
                                "offset modifier must be preceded by an instant vector selector or range vector selector",
                            ))
                        }
                    };
                    if sel.offset_ms != 0 {
                        return Err(Self::err_at(pos, "offset may not be set multiple times"));
                    }
                    sel.offset_ms = ms;
                }
                Tok::At => return Err(Error::unsupported("the @ modifier")),
                _ => return Ok(e),
            }
        }
    }
}

fn selector(matchers: Vec<Matcher>, pos: usize) -> Result<VectorSelector, Error> {
    if !matchers.iter().any(|m| !m.matches("")) {
        return Err(Parser::err_at(
            pos,
            "vector selector must contain at least one non-empty matcher",
        ));
    }
    Ok(VectorSelector {
        matchers,
        offset_ms: 0,
    })
}

fn binary(op: BinOp, lhs: Expr, rhs: Expr, pos: usize) -> Result<Expr, Error> {
    let (l, r) = (lhs.kind(), rhs.kind());
    if l == ValueKind::Matrix || r == ValueKind::Matrix {
        return Err(Parser::err_at(
            pos,
            "binary expression must contain only scalar and instant vector types",
        ));
    }
    if l == ValueKind::Vector && r == ValueKind::Vector {
        return Err(Error::unsupported(
            "binary operations between two instant vectors",
        ));
    }
    if let (Expr::Number(a), Expr::Number(b)) = (&lhs, &rhs) {
        return Ok(Expr::Number(op.apply(*a, *b)));
    }
    Ok(Expr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}
