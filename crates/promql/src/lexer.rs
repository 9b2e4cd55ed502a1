//! The lexer: query text to tokens. Durations (`5m`, `1h30m`) are tokens of
//! their own, as in Prometheus.

use crate::error::Error;

/// One token and the byte offset where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: Tok,
    pub(crate) pos: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Number(f64),
    /// A duration in milliseconds.
    Duration(i64),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    At,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    /// `=`
    Assign,
    EqEq,
    Neq,
    Lt,
    Gt,
    Le,
    Ge,
    /// `=~`
    ReMatch,
    /// `!~`
    ReNoMatch,
    Eof,
}

impl Tok {
    /// How a message shows the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Duration(_) => "duration".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Eof => "end of input".into(),
            other => format!("\"{}\"", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::At => "@",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Caret => "^",
            Tok::Assign => "=",
            Tok::EqEq => "==",
            Tok::Neq => "!=",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::ReMatch => "=~",
            Tok::ReNoMatch => "!~",
            _ => "",
        }
    }
}

fn err(pos: usize, msg: impl Into<String>) -> Error {
    Error::Parse {
        pos: pos + 1,
        msg: msg.into(),
    }
}

/// Splits a query into tokens, ending with [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Within `[...]` a `:` separates a subquery's range and step; elsewhere
    // it may start a metric name (`:recorded`).
    let mut in_brackets = false;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |s: &[u8]| b[i..].starts_with(s);
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => single(&mut i, Tok::LParen),
            b')' => single(&mut i, Tok::RParen),
            b'{' => single(&mut i, Tok::LBrace),
            b'}' => single(&mut i, Tok::RBrace),
            b'[' => {
                in_brackets = true;
                single(&mut i, Tok::LBracket)
            }
            b']' => {
                in_brackets = false;
                single(&mut i, Tok::RBracket)
            }
            b',' => single(&mut i, Tok::Comma),
            b':' if in_brackets => single(&mut i, Tok::Colon),
            b'@' => single(&mut i, Tok::At),
            b'+' => single(&mut i, Tok::Plus),
            b'-' => single(&mut i, Tok::Minus),
            b'*' => single(&mut i, Tok::Star),
            b'/' => single(&mut i, Tok::Slash),
            b'%' => single(&mut i, Tok::Percent),
            b'^' => single(&mut i, Tok::Caret),
            b'=' if two(b"==") => double(&mut i, Tok::EqEq),
            b'=' if two(b"=~") => double(&mut i, Tok::ReMatch),
            b'=' => single(&mut i, Tok::Assign),
            b'!' if two(b"!=") => double(&mut i, Tok::Neq),
            b'!' if two(b"!~") => double(&mut i, Tok::ReNoMatch),
            b'<' if two(b"<=") => double(&mut i, Tok::Le),
            b'<' => single(&mut i, Tok::Lt),
            b'>' if two(b">=") => double(&mut i, Tok::Ge),
            b'>' => single(&mut i, Tok::Gt),
            b'"' | b'\'' | b'`' => {
                let (s, next) = string(src, i)?;
                i = next;
                Tok::Str(s)
            }
            b'0'..=b'9' | b'.' => {
                let (t, next) = number_or_duration(src, i)?;
                i = next;
                t
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &src[start..i];
                if word.eq_ignore_ascii_case("inf") {
                    Tok::Number(f64::INFINITY)
                } else if word.eq_ignore_ascii_case("nan") {
                    Tok::Number(f64::NAN)
                } else {
                    Tok::Ident(word.to_string())
                }
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(i, format!("unexpected character {ch:?}")));
            }
        };
        out.push(Token { kind, pos: start });
    }
    out.push(Token {
        kind: Tok::Eof,
        pos: b.len(),
    });
    Ok(out)
}

fn single(i: &mut usize, t: Tok) -> Tok {
    *i += 1;
    t
}

fn double(i: &mut usize, t: Tok) -> Tok {
    *i += 2;
    t
}

/// A number (decimal, float, exponent, hexadecimal) or, when digits run
/// straight into duration units, a duration.
fn number_or_duration(src: &str, start: usize) -> Result<(Tok, usize), Error> {
    let b = src.as_bytes();
    // A run of digits and letters: `5m`, `1h30m`, `0x1f`, `1e3`.
    let mut end = start;
    while end < b.len() && b[end].is_ascii_alphanumeric() {
        end += 1;
    }
    let word = &src[start..end];
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        return match digits_value(hex, 16) {
            Some(v) => Ok((Tok::Number(v as f64), end)),
            None => Err(err(start, format!("bad number {word:?}"))),
        };
    }
    if word.bytes().any(|c| c.is_ascii_alphabetic())
        && word.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && !word.contains(['e', 'E'])
    {
        return match parse_duration(word) {
            Some(ms) => Ok((Tok::Duration(ms), end)),
            None => Err(err(start, format!("bad duration {word:?}"))),
        };
    }
    // A float: digits, optional fraction, optional exponent.
    let mut i = start;
    let digits = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
    };
    digits(&mut i);
    if i < b.len() && b[i] == b'.' {
        i += 1;
        digits(&mut i);
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = j;
            digits(&mut i);
        }
    }
    let text = &src[start..i];
    if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        return Err(err(
            start,
            format!("bad number or duration {:?}", &src[start..end.max(i + 1)]),
        ));
    }
    match text.parse::<f64>() {
        Ok(v) => Ok((Tok::Number(v), i)),
        Err(_) => Err(err(start, format!("bad number {text:?}"))),
    }
}

/// The value of a non-empty run of digits in `radix`; `None` on overflow or
/// a stray character.
fn digits_value(s: &str, radix: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.chars().try_fold(0u64, |acc, c| {
        acc.checked_mul(u64::from(radix))?
            .checked_add(u64::from(c.to_digit(radix)?))
    })
}

/// Parses a Prometheus duration: units `y w d h m s ms`, each at most once,
/// largest first (`1h30m`, `90s`, `500ms`). Returns milliseconds; `None` if
/// malformed or out of range.
pub fn parse_duration(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let ds = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if ds == i {
            return None;
        }
        let n: i64 = s[ds..i].parse().ok()?;
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[us..i];
        let idx = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

/// Reads a quoted string starting at `start` (its quote): Go escapes in
/// `"..."` and `'...'`, none in `` `...` ``.
fn string(src: &str, start: usize) -> Result<(String, usize), Error> {
    let b = src.as_bytes();
    let quote = b[start];
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let at = start + 1 + off;
        if c as u32 == quote as u32 {
            return Ok((out, at + 1));
        }
        if quote == b'`' {
            out.push(c);
            continue;
        }
        if c == '\n' {
            return Err(err(start, "unterminated quoted string"));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            break;
        };
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '"' if quote == b'"' => Some('"'),
            '\'' if quote == b'\'' => Some('\''),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (len, radix) = match e {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return Err(err(at, format!("unknown escape sequence \\{e}"))),
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(e);
        }
        for _ in 0..len {
            match chars.next() {
                Some((_, d)) if d.is_digit(radix) => digits.push(d),
                _ => return Err(err(at, "bad escape sequence")),
            }
        }
        let code = digits_value(&digits, radix)
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| err(at, "bad escape"))?;
        if e == 'x' || radix == 8 {
            if code > 255 {
                return Err(err(at, "octal escape value > 255"));
            }
            // A byte escape: only ASCII keeps the string valid UTF-8.
            if code > 127 {
                return Err(err(at, "non-ASCII byte escape"));
            }
        }
        match char::from_u32(code) {
            Some(ch) => out.push(ch),
            None => return Err(err(at, "escape sequence is an invalid Unicode code point")),
        }
    }
    Err(err(start, "unterminated quoted string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Some(300_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("1m500ms"), Some(60_500));
        assert_eq!(parse_duration("2w"), Some(14 * 86_400_000));
        assert_eq!(parse_duration("1y"), Some(365 * 86_400_000));
        assert_eq!(parse_duration("30m1h"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("99999999999999999999y"), None);
    }

    #[test]
    fn tokens() {
        let t: Vec<Tok> = lex("rate(a:b{x=~'1\\n'}[5m]) # c\n* 0x10 + 1.5e3 != !~")
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(
            t,
            vec![
                Tok::Ident("rate".into()),
                Tok::LParen,
                Tok::Ident("a:b".into()),
                Tok::LBrace,
                Tok::Ident("x".into()),
                Tok::ReMatch,
                Tok::Str("1\n".into()),
                Tok::RBrace,
                Tok::LBracket,
                Tok::Duration(300_000),
                Tok::RBracket,
                Tok::RParen,
                Tok::Star,
                Tok::Number(16.0),
                Tok::Plus,
                Tok::Number(1500.0),
                Tok::Neq,
                Tok::ReNoMatch,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings() {
        let s = |q: &str| match lex(q).unwrap()[0].kind.clone() {
            Tok::Str(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(s(r#""a\"b\x41\u00e9""#), "a\"bAé");
        assert_eq!(s(r"`a\b`"), "a\\b");
        assert!(lex("\"abc").is_err());
        assert!(lex(r#""\q""#).is_err());
        assert!(lex(r#""\xff""#).is_err());
    }
}
