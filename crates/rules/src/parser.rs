//! A recursive-descent parser from tokens to the compiled form
//! ([`Parsed`]), validating as it goes: function names and arities,
//! windows and their durations, the topic filter, output names.
//!
//! Precedence, loosest first: `FOR` (postfix on a whole expression),
//! `OR`, `AND`, `NOT`, comparisons / `IS [NOT] NULL` / `[NOT] IN`, `||`,
//! `+ -`, `* / %`, unary `-`, then `.name` / `[index]` access.

use crate::ast::{Agg, BinOp, Expr, ExprKind, Func, Item, Literal, SlotKind, SlotSpec, Step};
use crate::error::ParseError;
use crate::lexer::{tokenize, Keyword, Span, Tok, Token};
use crate::topic;

/// Longest rule text accepted, in bytes.
pub(crate) const MAX_RULE_LEN: usize = 64 * 1024;
/// Deepest expression tree accepted (evaluation recurses this deep).
pub(crate) const MAX_DEPTH: usize = 128;
/// Deepest parser recursion (parentheses, `NOT`, unary minus, calls).
const MAX_NEST: usize = 64;

/// A parsed, validated rule, before `rule.rs` wraps it.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub filter: String,
    pub items: Vec<Item>,
    pub where_: Option<Expr>,
    pub slots: Vec<SlotSpec>,
}

pub(crate) fn parse(source: &str) -> Result<Parsed, ParseError> {
    if source.len() > MAX_RULE_LEN {
        return Err(ParseError::at(
            source,
            0,
            format!("the rule is longer than {MAX_RULE_LEN} bytes"),
        ));
    }
    let tokens = tokenize(source)?;
    let mut p = Parser {
        source,
        tokens,
        pos: 0,
        nest: 0,
        slots: Vec::new(),
    };
    p.rule()
}

struct Parser<'s> {
    source: &'s str,
    tokens: Vec<Token>,
    pos: usize,
    nest: usize,
    slots: Vec<SlotSpec>,
}

impl Parser<'_> {
    // ---- token helpers ----

    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let i = (self.pos + ahead).min(self.tokens.len() - 1);
        &self.tokens[i].tok
    }

    fn span(&self) -> Span {
        self.tokens[self.pos].span
    }

    /// The span of the token just consumed.
    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, k: Keyword) -> bool {
        self.eat(&Tok::Keyword(k))
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.source, offset, message)
    }

    /// "expected {what}, found {the current token}" at the current token.
    fn expected(&self, what: &str) -> ParseError {
        self.error_at(
            self.span().start,
            format!("expected {what}, found {}", self.peek().describe()),
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Span, ParseError> {
        if self.peek() == &tok {
            Ok(self.advance().span)
        } else {
            Err(self.expected(what))
        }
    }

    fn text(&self, span: Span) -> &str {
        &self.source[span.start..span.end]
    }

    /// Builds a node, refusing trees deeper than [`MAX_DEPTH`].
    fn node(&self, kind: ExprKind, span: Span) -> Result<Expr, ParseError> {
        let depth = 1 + kind.children().iter().map(|c| c.depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.error_at(
                span.start,
                format!("the expression is nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        Ok(Expr { kind, span, depth })
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nest >= MAX_NEST {
            return Err(self.error_at(
                self.span().start,
                format!("the expression is nested too deeply (more than {MAX_NEST} levels)"),
            ));
        }
        self.nest += 1;
        let r = f(self);
        self.nest -= 1;
        r
    }

    // ---- the rule ----

    fn rule(&mut self) -> Result<Parsed, ParseError> {
        if !self.eat_keyword(Keyword::Select) {
            return Err(self.expected("SELECT"));
        }
        let mut items = Vec::new();
        let mut names: Vec<(String, bool)> = Vec::new();
        loop {
            let start = self.span();
            if self.eat(&Tok::Star) {
                items.push(Item::Star);
            } else {
                let expr = self.expr()?;
                let (name, explicit) = if self.eat_keyword(Keyword::As) {
                    match self.advance().tok {
                        Tok::Ident(n) | Tok::QuotedIdent(n) | Tok::Str(n) if !n.is_empty() => {
                            (n, true)
                        }
                        Tok::Ident(_) | Tok::QuotedIdent(_) | Tok::Str(_) => {
                            return Err(
                                self.error_at(self.prev_span().start, "an output name is empty")
                            )
                        }
                        other => {
                            return Err(self.error_at(
                                self.prev_span().start,
                                format!("expected a name after AS, found {}", other.describe()),
                            ))
                        }
                    }
                } else {
                    (default_name(self.text(expr.span)), false)
                };
                if names.iter().any(|(n, _)| *n == name) {
                    let hint = if explicit { "" } else { " (use AS to name it)" };
                    return Err(
                        self.error_at(start.start, format!("duplicate output name '{name}'{hint}"))
                    );
                }
                names.push((name.clone(), explicit));
                items.push(Item::Expr { expr, name });
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if !self.eat_keyword(Keyword::From) {
            return Err(self.expected("',' or FROM"));
        }
        let filter = match self.peek().clone() {
            Tok::Str(s) => s,
            _ => {
                return Err(
                    self.expected("a quoted topic filter after FROM (like 'devices/+/telemetry')")
                )
            }
        };
        if let Some(problem) = topic::filter_problem(&filter) {
            return Err(self.error_at(self.span().start, problem));
        }
        self.advance();
        let where_ = if self.eat_keyword(Keyword::Where) {
            Some(self.expr()?)
        } else {
            None
        };
        self.eat(&Tok::Semicolon);
        if self.peek() != &Tok::Eof {
            let what = if where_.is_some() {
                "end of rule"
            } else {
                "WHERE or end of rule"
            };
            return Err(self.expected(what));
        }
        Ok(Parsed {
            filter,
            items,
            where_,
            slots: std::mem::take(&mut self.slots),
        })
    }

    // ---- expressions, loosest first ----

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.nested(|p| {
            let cond = p.or()?;
            if !p.eat_keyword(Keyword::For) {
                return Ok(cond);
            }
            let ms = p.duration("FOR")?;
            let span = cond.span.to(p.prev_span());
            p.slot(SlotKind::For(ms), cond, span)
        })
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.eat_keyword(Keyword::Or) {
            let right = self.and()?;
            let span = left.span.to(right.span);
            left = self.node(ExprKind::Binary(BinOp::Or, left.into(), right.into()), span)?;
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while self.eat_keyword(Keyword::And) {
            let right = self.not()?;
            let span = left.span.to(right.span);
            left = self.node(
                ExprKind::Binary(BinOp::And, left.into(), right.into()),
                span,
            )?;
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == &Tok::Keyword(Keyword::Not) {
            let start = self.advance().span;
            let inner = self.nested(Self::not)?;
            let span = start.to(inner.span);
            return self.node(ExprKind::Not(inner.into()), span);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let left = self.concat()?;
        let op = match self.peek() {
            Tok::Eq => Some(BinOp::Eq),
            Tok::NotEq => Some(BinOp::NotEq),
            Tok::Lt => Some(BinOp::Lt),
            Tok::LtEq => Some(BinOp::LtEq),
            Tok::Gt => Some(BinOp::Gt),
            Tok::GtEq => Some(BinOp::GtEq),
            _ => None,
        };
        let result = if let Some(op) = op {
            self.advance();
            let right = self.concat()?;
            let span = left.span.to(right.span);
            self.node(ExprKind::Binary(op, left.into(), right.into()), span)?
        } else if self.eat_keyword(Keyword::Is) {
            let negated = self.eat_keyword(Keyword::Not);
            if !self.eat_keyword(Keyword::Null) {
                return Err(self.expected(if negated { "NULL" } else { "NULL or NOT NULL" }));
            }
            let span = left.span.to(self.prev_span());
            self.node(
                ExprKind::IsNull {
                    expr: left.into(),
                    negated,
                },
                span,
            )?
        } else if self.peek() == &Tok::Keyword(Keyword::In)
            || (self.peek() == &Tok::Keyword(Keyword::Not)
                && self.peek_at(1) == &Tok::Keyword(Keyword::In))
        {
            let negated = self.eat_keyword(Keyword::Not);
            self.advance();
            self.expect(Tok::LParen, "'(' after IN")?;
            let list = self.nested(|p| p.list(Tok::RParen))?;
            if list.is_empty() {
                return Err(self.error_at(self.prev_span().start, "IN needs at least one value"));
            }
            let span = left.span.to(self.prev_span());
            self.node(
                ExprKind::In {
                    expr: left.into(),
                    list,
                    negated,
                },
                span,
            )?
        } else {
            return Ok(left);
        };
        if matches!(
            self.peek(),
            Tok::Eq | Tok::NotEq | Tok::Lt | Tok::LtEq | Tok::Gt | Tok::GtEq
        ) || self.peek() == &Tok::Keyword(Keyword::Is)
        {
            return Err(self.error_at(
                self.span().start,
                "comparisons cannot be chained: join them with AND",
            ));
        }
        Ok(result)
    }

    fn concat(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.additive()?;
        while self.eat(&Tok::Concat) {
            let right = self.additive()?;
            let span = left.span.to(right.span);
            left = self.node(
                ExprKind::Binary(BinOp::Concat, left.into(), right.into()),
                span,
            )?;
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.multiplicative()?;
            let span = left.span.to(right.span);
            left = self.node(ExprKind::Binary(op, left.into(), right.into()), span)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Percent => BinOp::Rem,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            let span = left.span.to(right.span);
            left = self.node(ExprKind::Binary(op, left.into(), right.into()), span)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Minus => {
                let start = self.advance().span;
                let inner = self.nested(Self::unary)?;
                let span = start.to(inner.span);
                // Fold `-<number>` so that `[-1]` and `-5` are literals.
                if let ExprKind::Lit(Literal::Num(n)) = inner.kind {
                    return self.node(ExprKind::Lit(Literal::Num(-n)), span);
                }
                self.node(ExprKind::Neg(inner.into()), span)
            }
            Tok::Plus => {
                self.advance();
                self.nested(Self::unary)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let base = self.primary()?;
        let mut steps = Vec::new();
        let mut end = base.span;
        loop {
            if self.eat(&Tok::Dot) {
                let dot = self.prev_span();
                let t = self.advance();
                let name = match &t.tok {
                    Tok::Ident(n) | Tok::QuotedIdent(n) => n.clone(),
                    // `a.from`: a reserved word right after the dot is a name.
                    Tok::Keyword(_) if t.span.start == dot.end => self.text(t.span).to_string(),
                    other => {
                        return Err(self.error_at(
                            t.span.start,
                            format!(
                                "expected a field name after '.', found {}",
                                other.describe()
                            ),
                        ))
                    }
                };
                steps.push(Step::Key(name));
                end = t.span;
            } else if self.eat(&Tok::LBracket) {
                let index = self.nested(Self::expr)?;
                end = self.expect(Tok::RBracket, "']'")?;
                steps.push(match index.kind {
                    ExprKind::Lit(Literal::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
                        Step::Index(n as i64)
                    }
                    ExprKind::Lit(Literal::Str(s)) => Step::Key(s),
                    ExprKind::Lit(_) => {
                        return Err(self
                            .error_at(index.span.start, "an index is a whole number or a 'key'"))
                    }
                    _ => Step::Dyn(index.into()),
                });
            } else {
                break;
            }
        }
        if steps.is_empty() {
            return Ok(base);
        }
        let span = base.span.to(end);
        match base.kind {
            ExprKind::Field(mut path) => {
                path.extend(steps);
                self.node(ExprKind::Field(path), span)
            }
            _ => self.node(ExprKind::Get(base.into(), steps), span),
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.advance();
        let lit = |l: Literal| ExprKind::Lit(l);
        match t.tok {
            Tok::Number(n) => self.node(lit(Literal::Num(n)), t.span),
            Tok::Str(s) => self.node(lit(Literal::Str(s)), t.span),
            Tok::Keyword(Keyword::True) => self.node(lit(Literal::Bool(true)), t.span),
            Tok::Keyword(Keyword::False) => self.node(lit(Literal::Bool(false)), t.span),
            Tok::Keyword(Keyword::Null) => self.node(lit(Literal::Null), t.span),
            Tok::QuotedIdent(name) => self.node(ExprKind::Field(vec![Step::Key(name)]), t.span),
            Tok::Ident(name) if self.peek() == &Tok::LParen => self.call(name, t.span),
            Tok::Ident(name) => self.node(ExprKind::Field(vec![Step::Key(name)]), t.span),
            Tok::LParen => {
                let inner = self.expr()?;
                let end = self.expect(Tok::RParen, "')'")?;
                Ok(Expr {
                    span: t.span.to(end),
                    ..inner
                })
            }
            Tok::Duration(_) => {
                Err(self.error_at(t.span.start, "a duration is only valid after OVER or FOR"))
            }
            other => Err(self.error_at(
                t.span.start,
                format!("expected an expression, found {}", other.describe()),
            )),
        }
    }

    /// Comma-separated expressions up to `close` (consumed).
    fn list(&mut self, close: Tok) -> Result<Vec<Expr>, ParseError> {
        let mut list = Vec::new();
        if self.eat(&close) {
            return Ok(list);
        }
        loop {
            list.push(self.expr()?);
            if self.eat(&close) {
                return Ok(list);
            }
            if !self.eat(&Tok::Comma) {
                let what = if close == Tok::RParen {
                    "',' or ')'"
                } else {
                    "','"
                };
                return Err(self.expected(what));
            }
        }
    }

    /// A positive duration after `after` (OVER, TUMBLING or FOR).
    fn duration(&mut self, after: &str) -> Result<u64, ParseError> {
        match *self.peek() {
            Tok::Duration(0) => {
                Err(self.error_at(self.span().start, "a duration must be greater than zero"))
            }
            Tok::Duration(ms) => {
                self.advance();
                Ok(ms)
            }
            _ => Err(self.expected(&format!("a duration after {after} (like 30s, 5m or 1h)"))),
        }
    }

    fn slot(&mut self, kind: SlotKind, arg: Expr, span: Span) -> Result<Expr, ParseError> {
        self.slots.push(SlotSpec { kind, arg });
        self.node(ExprKind::Slot(self.slots.len() - 1), span)
    }

    /// `name(args) [OVER [TUMBLING] duration]`; the `(` is next.
    fn call(&mut self, name: String, name_span: Span) -> Result<Expr, ParseError> {
        let lower = name.to_ascii_lowercase();
        self.advance(); // (
        let args =
            if lower == "count" && self.peek() == &Tok::Star && self.peek_at(1) == &Tok::RParen {
                let star = self.advance().span;
                self.advance();
                vec![self.node(ExprKind::Lit(Literal::Bool(true)), star)?]
            } else {
                self.nested(|p| p.list(Tok::RParen))?
            };
        let mut span = name_span.to(self.prev_span());
        let over = self.peek() == &Tok::Keyword(Keyword::Over);
        let arity_error = |p: &Self, expected: &str| {
            let n = args.len();
            let plural = if n == 1 { "" } else { "s" };
            Err(p.error_at(
                name_span.start,
                format!("{lower} takes {expected}, found {n} argument{plural}"),
            ))
        };

        let aggregate = Agg::lookup(&lower)
            .filter(|_| !(matches!(lower.as_str(), "min" | "max") && args.len() != 1 && !over));
        if let Some(agg) = aggregate {
            if args.len() != 1 {
                return arity_error(self, "1 argument");
            }
            if !over {
                let mut message =
                    format!("{lower} needs a window: {lower}(...) OVER 5m or OVER TUMBLING 5m");
                if matches!(agg, Agg::Min | Agg::Max) {
                    message.push_str(&format!(" (the scalar {lower} takes two arguments)"));
                }
                return Err(self.error_at(name_span.start, message));
            }
            self.advance(); // OVER
            let tumbling = self.eat_keyword(Keyword::Tumbling);
            let ms = self.duration(if tumbling { "TUMBLING" } else { "OVER" })?;
            span = span.to(self.prev_span());
            let kind = if tumbling {
                SlotKind::Tumbling(agg, ms)
            } else {
                SlotKind::Sliding(agg, ms)
            };
            let arg = args
                .into_iter()
                .next()
                .ok_or_else(|| self.expected("argument"))?;
            return self.slot(kind, arg, span);
        }
        if over {
            return Err(self.error_at(
                self.span().start,
                format!(
                    "OVER follows an aggregate (avg, sum, count, min, max, first, last), not {lower}"
                ),
            ));
        }

        let change = match lower.as_str() {
            "changed" => Some(SlotKind::Changed),
            "previous" => Some(SlotKind::Previous),
            "delta" => Some(SlotKind::Delta),
            "rate" => Some(SlotKind::Rate),
            _ => None,
        };
        if let Some(kind) = change {
            if args.len() != 1 {
                return arity_error(self, "1 argument");
            }
            let arg = args
                .into_iter()
                .next()
                .ok_or_else(|| self.expected("argument"))?;
            return self.slot(kind, arg, span);
        }
        if lower == "zscore" {
            if args.is_empty() || args.len() > 2 {
                return arity_error(self, "1 or 2 arguments");
            }
            let mut args = args.into_iter();
            let value = args.next().ok_or_else(|| self.expected("argument"))?;
            let alpha = match args.next() {
                None => 0.1,
                Some(Expr {
                    kind: ExprKind::Lit(Literal::Num(a)),
                    ..
                }) if a > 0.0 && a <= 1.0 => a,
                Some(other) => {
                    return Err(self.error_at(
                        other.span.start,
                        "zscore's alpha is a number greater than 0 and at most 1 (like 0.1)",
                    ))
                }
            };
            return self.slot(SlotKind::ZScore(alpha.to_bits()), value, span);
        }

        let Some((func, min, max)) = Func::lookup(&lower) else {
            return Err(self.error_at(name_span.start, format!("unknown function '{name}'")));
        };
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (1, 1) => "1 argument".to_string(),
                (a, b) if a == b => format!("{a} arguments"),
                (a, usize::MAX) => {
                    format!("at least {a} argument{}", if a == 1 { "" } else { "s" })
                }
                (a, b) => format!("{a} to {b} arguments"),
            };
            return arity_error(self, &expected);
        }
        self.node(ExprKind::Call(func, args), span)
    }
}

/// The output name of an unnamed SELECT item: its text, on one line.
fn default_name(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_binds_loosest_and_slots_are_post_order() {
        let p = parse("SELECT 1 FROM 't' WHERE changed(avg(t) OVER 1m) AND a > 1 FOR 5m").unwrap();
        assert_eq!(p.slots.len(), 3);
        assert!(matches!(
            p.slots[0].kind,
            SlotKind::Sliding(Agg::Avg, 60_000)
        ));
        assert!(matches!(p.slots[1].kind, SlotKind::Changed));
        assert!(matches!(p.slots[2].kind, SlotKind::For(300_000)));
        assert!(matches!(p.where_.unwrap().kind, ExprKind::Slot(2)));
    }
}
