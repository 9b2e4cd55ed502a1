//! Turns rule text into tokens, each with its byte span, so that the
//! parser can point at the line and column of anything it refuses.

use crate::error::ParseError;

/// A byte range of the rule text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end,
        }
    }
}

/// Reserved words (case-insensitive). Fields with these names are written
/// in double quotes: `"from"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Select,
    As,
    From,
    Where,
    And,
    Or,
    Not,
    Is,
    Null,
    In,
    True,
    False,
    Over,
    Tumbling,
    For,
}

impl Keyword {
    fn parse(word: &str) -> Option<Keyword> {
        const ALL: [(&str, Keyword); 15] = [
            ("SELECT", Keyword::Select),
            ("AS", Keyword::As),
            ("FROM", Keyword::From),
            ("WHERE", Keyword::Where),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("NOT", Keyword::Not),
            ("IS", Keyword::Is),
            ("NULL", Keyword::Null),
            ("IN", Keyword::In),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
            ("OVER", Keyword::Over),
            ("TUMBLING", Keyword::Tumbling),
            ("FOR", Keyword::For),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, k)| k)
    }

    pub fn name(self) -> &'static str {
        match self {
            Keyword::Select => "SELECT",
            Keyword::As => "AS",
            Keyword::From => "FROM",
            Keyword::Where => "WHERE",
            Keyword::And => "AND",
            Keyword::Or => "OR",
            Keyword::Not => "NOT",
            Keyword::Is => "IS",
            Keyword::Null => "NULL",
            Keyword::In => "IN",
            Keyword::True => "TRUE",
            Keyword::False => "FALSE",
            Keyword::Over => "OVER",
            Keyword::Tumbling => "TUMBLING",
            Keyword::For => "FOR",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Keyword(Keyword),
    /// A bare name: a field or, before `(`, a function.
    Ident(String),
    /// A `"double quoted"` name (always a field or an output name).
    QuotedIdent(String),
    /// A `'single quoted'` string.
    Str(String),
    Number(f64),
    /// A duration such as `5m`, in milliseconds.
    Duration(u64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Semicolon,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Eof,
}

impl Tok {
    /// How an error message names this token.
    pub fn describe(&self) -> String {
        match self {
            Tok::Keyword(k) => k.name().to_string(),
            Tok::Ident(name) => format!("identifier '{name}'"),
            Tok::QuotedIdent(name) => format!("name \"{name}\""),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Duration(ms) => format!("duration {ms}ms"),
            Tok::Eof => "end of input".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::Semicolon => ";",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Concat => "||",
            Tok::Eq => "=",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::LtEq => "<=",
            Tok::Gt => ">",
            Tok::GtEq => ">=",
            _ => "?",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Splits `source` into tokens; the last one is always [`Tok::Eof`].
/// `--` starts a comment that runs to the end of the line.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &source[start..i];
            match Keyword::parse(word) {
                Some(k) => Tok::Keyword(k),
                None => Tok::Ident(word.to_string()),
            }
        } else if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (tok, end) = number(source, start)?;
            i = end;
            tok
        } else if c == b'\'' || c == b'"' {
            let (text, end) = quoted(source, start, c)?;
            i = end;
            if c == b'\'' {
                Tok::Str(text)
            } else {
                Tok::QuotedIdent(text)
            }
        } else {
            let two = bytes.get(i + 1).copied();
            let (tok, len) = match (c, two) {
                (b'|', Some(b'|')) => (Tok::Concat, 2),
                (b'!', Some(b'=')) => (Tok::NotEq, 2),
                (b'<', Some(b'>')) => (Tok::NotEq, 2),
                (b'<', Some(b'=')) => (Tok::LtEq, 2),
                (b'>', Some(b'=')) => (Tok::GtEq, 2),
                (b'=', Some(b'=')) => (Tok::Eq, 2),
                (b'(', _) => (Tok::LParen, 1),
                (b')', _) => (Tok::RParen, 1),
                (b'[', _) => (Tok::LBracket, 1),
                (b']', _) => (Tok::RBracket, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'.', _) => (Tok::Dot, 1),
                (b';', _) => (Tok::Semicolon, 1),
                (b'+', _) => (Tok::Plus, 1),
                (b'-', _) => (Tok::Minus, 1),
                (b'*', _) => (Tok::Star, 1),
                (b'/', _) => (Tok::Slash, 1),
                (b'%', _) => (Tok::Percent, 1),
                (b'=', _) => (Tok::Eq, 1),
                (b'<', _) => (Tok::Lt, 1),
                (b'>', _) => (Tok::Gt, 1),
                _ => {
                    let ch = source[start..].chars().next().unwrap_or('?');
                    return Err(ParseError::at(
                        source,
                        start,
                        format!("unexpected character '{ch}'"),
                    ));
                }
            };
            i += len;
            tok
        };
        tokens.push(Token {
            tok,
            span: Span { start, end: i },
        });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        span: Span {
            start: source.len(),
            end: source.len(),
        },
    });
    Ok(tokens)
}

/// A number (`12`, `1.5`, `.5`, `2e-3`) or a duration (`500ms`, `30s`,
/// `5m`, `2h`, `1d`: a whole number glued to its unit).
fn number(source: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let bytes = source.as_bytes();
    let digits = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    let mut whole = true;
    if bytes.get(i) == Some(&b'.') {
        whole = false;
        i = digits(i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            whole = false;
            i = digits(j);
        }
    }
    let text = &source[start..i];
    let mut end = i;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    if end == i {
        let value: f64 = text
            .parse()
            .map_err(|_| ParseError::at(source, start, format!("invalid number '{text}'")))?;
        if !value.is_finite() {
            return Err(ParseError::at(
                source,
                start,
                format!("number '{text}' is too large"),
            ));
        }
        return Ok((Tok::Number(value), end));
    }
    let unit = &source[i..end];
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(ParseError::at(
                source,
                i,
                format!("invalid duration unit '{unit}' (use ms, s, m, h or d)"),
            ))
        }
    };
    if !whole {
        return Err(ParseError::at(
            source,
            start,
            "a duration is a whole number followed by ms, s, m, h or d",
        ));
    }
    let ms = text
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| ParseError::at(source, start, "duration is too large"))?;
    Ok((Tok::Duration(ms), end))
}

/// A quoted string or name; the quote is doubled to include it (`'it''s'`).
fn quoted(source: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let bytes = source.as_bytes();
    let mut text = String::new();
    let mut i = start + 1;
    let mut run = i;
    loop {
        match bytes.get(i) {
            None => {
                let what = if quote == b'\'' { "string" } else { "name" };
                return Err(ParseError::at(
                    source,
                    start,
                    format!("unterminated {what}: missing closing {}", quote as char),
                ));
            }
            Some(&b) if b == quote => {
                text.push_str(&source[run..i]);
                if bytes.get(i + 1) == Some(&quote) {
                    text.push(quote as char);
                    i += 2;
                    run = i;
                } else {
                    return Ok((text, i + 1));
                }
            }
            Some(_) => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn basic_tokens() {
        assert_eq!(
            toks("select a.b, 'it''s' -- comment\n FROM \"x y\" >= 1.5e1 <> 5m 500ms"),
            vec![
                Tok::Keyword(Keyword::Select),
                Tok::Ident("a".into()),
                Tok::Dot,
                Tok::Ident("b".into()),
                Tok::Comma,
                Tok::Str("it's".into()),
                Tok::Keyword(Keyword::From),
                Tok::QuotedIdent("x y".into()),
                Tok::GtEq,
                Tok::Number(15.0),
                Tok::NotEq,
                Tok::Duration(300_000),
                Tok::Duration(500),
                Tok::Eof,
            ]
        );
        assert_eq!(
            toks("1d 2h 30s .5 a||b"),
            vec![
                Tok::Duration(86_400_000),
                Tok::Duration(7_200_000),
                Tok::Duration(30_000),
                Tok::Number(0.5),
                Tok::Ident("a".into()),
                Tok::Concat,
                Tok::Ident("b".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn lexer_errors() {
        let e = tokenize("a 5x").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(e.message.contains("invalid duration unit 'x'"));
        let e = tokenize("'abc").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let e = tokenize("1.5m").unwrap_err();
        assert!(e.message.contains("whole number"));
        let e = tokenize("a ~").unwrap_err();
        assert_eq!(e.message, "unexpected character '~'");
        let e = tokenize("99999999999999999999d").unwrap_err();
        assert_eq!(e.message, "duration is too large");
    }
}
