//! Tokens of the InfluxQL subset.

use crate::error::Error;

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A bare or double-quoted identifier (keywords are bare identifiers).
    Ident { text: String, quoted: bool },
    /// A single-quoted string.
    Str(String),
    /// An integer without unit.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// An integer with a duration unit, in nanoseconds.
    Duration(i64),
    /// A regular expression between slashes.
    Regex(String),
    /// Punctuation or an operator.
    Op(&'static str),
}

const OPS: [&str; 14] = [
    "=~", "!~", "!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", ",", ";", "+",
];

/// Nanoseconds per duration unit; longest units first so `ms` wins over `m`.
const UNITS: [(&str, i64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µ", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];
const WEEK_NS: i64 = 7 * 86_400_000_000_000;

/// Splits a query into tokens.
pub fn lex(src: &str) -> Result<Vec<Tok>, Error> {
    let mut out = Vec::new();
    let mut rest = src;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
            continue;
        }
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        if c == '"' || c == '\'' {
            let (text, r) = quoted(rest, c)?;
            out.push(if c == '"' {
                Tok::Ident { text, quoted: true }
            } else {
                Tok::Str(text)
            });
            rest = r;
        } else if c == '/' {
            let (text, r) = quoted(rest, '/')?;
            out.push(Tok::Regex(text));
            rest = r;
        } else if c.is_ascii_digit()
            || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let (tok, r) = number(rest)?;
            out.push(tok);
            rest = r;
        } else if c.is_alphabetic() || c == '_' {
            let end = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            out.push(Tok::Ident {
                text: rest[..end].to_string(),
                quoted: false,
            });
            rest = &rest[end..];
        } else if c == '-' {
            out.push(Tok::Op("-"));
            rest = &rest[1..];
        } else if c == '*' {
            out.push(Tok::Op("*"));
            rest = &rest[1..];
        } else if c == '.' {
            out.push(Tok::Op("."));
            rest = &rest[1..];
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Tok::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(Error::Parse(format!("unexpected character {c:?}")));
        }
    }
}

/// A token between `q` delimiters, with `\q` and `\\` escapes (a regex
/// keeps other escapes as written).
fn quoted(src: &str, q: char) -> Result<(String, &str), Error> {
    let mut text = String::new();
    let mut chars = src.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((text, &src[i + c.len_utf8()..]));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, n)) if n == q => text.push(n),
                Some((_, '\\')) if q != '/' => text.push('\\'),
                Some((_, n)) => {
                    text.push('\\');
                    text.push(n);
                }
                None => break,
            }
        } else {
            text.push(c);
        }
    }
    Err(Error::Parse(format!("unterminated {q}...{q}")))
}

fn number(src: &str) -> Result<(Tok, &str), Error> {
    let end = src
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(src.len());
    let (digits, rest) = src.split_at(end);
    if digits.contains('.') {
        let v: f64 = digits
            .parse()
            .map_err(|_| Error::Parse(format!("bad number {digits}")))?;
        return Ok((Tok::Float(v), rest));
    }
    let n: i64 = digits
        .parse()
        .map_err(|_| Error::Parse(format!("integer {digits} out of range")))?;
    let word_end = rest
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    if word.is_empty() {
        return Ok((Tok::Int(n), rest));
    }
    let unit = if word == "w" {
        WEEK_NS
    } else if let Some((_, u)) = UNITS.iter().find(|(u, _)| *u == word) {
        *u
    } else {
        return Err(Error::Parse(format!("bad duration {digits}{word}")));
    };
    let ns = n
        .checked_mul(unit)
        .ok_or_else(|| Error::Parse(format!("duration {digits}{word} out of range")))?;
    Ok((Tok::Duration(ns), &rest[word_end..]))
}
