//! The scalar functions. Null in gives null out (except `coalesce`,
//! `concat` and the message functions); a wrong type gives null and a
//! recorded error.

use std::borrow::Cow;

use crate::ast::{Expr, Func};
use crate::eval::Env;
use crate::lexer::Span;
use crate::topic;
use crate::value::Val;

pub(crate) fn call<'a>(f: Func, args: &'a [Expr], span: Span, env: &Env<'a>) -> Val<'a> {
    let arg = |i: usize| args.get(i).map_or(Val::Null, |e| env.eval(e));
    let name = func_name(f);
    let wrong = |what: &str, v: &Val<'_>| {
        let found = v.type_name();
        env.fail(span, || format!("{name} needs {what}, found {found}"))
    };
    let msg = env.msg;
    match f {
        Func::Topic => {
            let topic = msg.message().topic;
            if args.is_empty() {
                return Val::Str(Cow::Borrowed(topic));
            }
            match arg(0) {
                Val::Null => Val::Null,
                Val::Num(n) if n.fract() == 0.0 && (1.0..1e9).contains(&n) => {
                    topic::level(topic, n as usize)
                        .map_or(Val::Null, |l| Val::Str(Cow::Borrowed(l)))
                }
                other => wrong("a level number (1 or more)", &other),
            }
        }
        Func::DeviceId => msg
            .device_id()
            .map_or(Val::Null, |id| Val::Str(Cow::Borrowed(id))),
        Func::Timestamp => Val::Num(msg.message().time_ms as f64),
        Func::Payload => match msg.json() {
            Some(v) => Val::from_json(v),
            None => Val::Str(String::from_utf8_lossy(msg.message().payload)),
        },
        Func::Coalesce => args
            .iter()
            .map(|e| env.eval(e))
            .find(|v| !v.is_null())
            .unwrap_or(Val::Null),
        Func::Abs | Func::Floor | Func::Ceil => match arg(0) {
            Val::Null => Val::Null,
            Val::Num(n) => Val::Num(match f {
                Func::Abs => n.abs(),
                Func::Floor => n.floor(),
                _ => n.ceil(),
            }),
            other => wrong("a number", &other),
        },
        Func::Round => {
            let digits = if args.len() > 1 {
                arg(1)
            } else {
                Val::Num(0.0)
            };
            match (arg(0), digits) {
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                (Val::Num(x), Val::Num(d)) if d.fract() == 0.0 => Val::Num(round(x, d)),
                (Val::Num(_), other) => wrong("a whole number of digits", &other),
                (other, _) => wrong("a number", &other),
            }
        }
        Func::Min | Func::Max => {
            let (a, b) = (arg(0), arg(1));
            if a.is_null() || b.is_null() {
                return Val::Null;
            }
            match a.order(&b) {
                Some(o) if (o.is_le()) == (f == Func::Min) => a,
                Some(_) => b,
                None => {
                    let (ta, tb) = (a.type_name(), b.type_name());
                    env.fail(span, || format!("{name} cannot compare {ta} with {tb}"))
                }
            }
        }
        Func::Lower | Func::Upper => match arg(0) {
            Val::Null => Val::Null,
            Val::Str(s) => Val::Str(Cow::Owned(if f == Func::Lower {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            })),
            other => wrong("a string", &other),
        },
        Func::Length => match arg(0) {
            Val::Null => Val::Null,
            Val::Str(s) => Val::Num(s.chars().count() as f64),
            Val::Json(j) => Val::Num(match j.as_ref() {
                serde_json::Value::Array(a) => a.len(),
                serde_json::Value::Object(o) => o.len(),
                _ => 0,
            } as f64),
            other => wrong("a string, array or object", &other),
        },
        Func::Concat => {
            let mut s = String::new();
            for e in args {
                if let Some(t) = env.eval(e).to_text() {
                    s.push_str(&t);
                }
            }
            Val::Str(Cow::Owned(s))
        }
        Func::Substring => substring(arg(0), arg(1), args.get(2).map(|e| env.eval(e)))
            .unwrap_or_else(|(what, v)| wrong(what, &v)),
        Func::Contains => match (arg(0), arg(1)) {
            (Val::Null, _) | (_, Val::Null) => Val::Null,
            (Val::Str(s), Val::Str(sub)) => Val::Bool(s.contains(sub.as_ref())),
            (Val::Json(j), needle) if j.is_array() => Val::Bool(
                j.as_array()
                    .is_some_and(|a| a.iter().any(|x| Val::from_json(x).same(&needle))),
            ),
            (Val::Str(_), other) => wrong("a string to look for", &other),
            (other, _) => wrong("a string or an array", &other),
        },
        Func::StartsWith | Func::EndsWith => match (arg(0), arg(1)) {
            (Val::Null, _) | (_, Val::Null) => Val::Null,
            (Val::Str(s), Val::Str(p)) => Val::Bool(if f == Func::StartsWith {
                s.starts_with(p.as_ref())
            } else {
                s.ends_with(p.as_ref())
            }),
            (Val::Str(_), other) | (other, _) => wrong("strings", &other),
        },
        Func::Number => match arg(0) {
            Val::Null => Val::Null,
            Val::Num(n) => Val::Num(n),
            Val::Bool(b) => Val::Num(if b { 1.0 } else { 0.0 }),
            Val::Str(s) => match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Val::Num(n),
                _ => env.fail(span, || format!("cannot convert '{s}' to a number")),
            },
            other => wrong("a number, string or boolean", &other),
        },
        Func::String => {
            let v = arg(0);
            match v.to_text() {
                None => Val::Null,
                Some(t) => Val::Str(Cow::Owned(t.into_owned())),
            }
        }
        Func::Bool => match arg(0) {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Num(n) => Val::Bool(n != 0.0),
            Val::Str(s) if s.trim().eq_ignore_ascii_case("true") => Val::Bool(true),
            Val::Str(s) if s.trim().eq_ignore_ascii_case("false") => Val::Bool(false),
            Val::Str(s) => env.fail(span, || format!("cannot convert '{s}' to a boolean")),
            other => wrong("a boolean, number or string", &other),
        },
        Func::DeviceType => msg
            .device_id()
            .and_then(|id| env.ctx.device_type(id))
            .map_or(Val::Null, |t| Val::Str(Cow::Owned(t))),
        Func::Label => match arg(0) {
            Val::Null => Val::Null,
            Val::Str(key) => msg
                .device_id()
                .and_then(|id| env.ctx.label(id, &key))
                .map_or(Val::Null, |l| Val::Str(Cow::Owned(l))),
            other => wrong("a label name (a string)", &other),
        },
    }
}

fn func_name(f: Func) -> &'static str {
    match f {
        Func::Topic => "topic",
        Func::DeviceId => "device_id",
        Func::Timestamp => "timestamp",
        Func::Payload => "payload",
        Func::Coalesce => "coalesce",
        Func::Abs => "abs",
        Func::Round => "round",
        Func::Floor => "floor",
        Func::Ceil => "ceil",
        Func::Min => "min",
        Func::Max => "max",
        Func::Lower => "lower",
        Func::Upper => "upper",
        Func::Length => "length",
        Func::Concat => "concat",
        Func::Substring => "substring",
        Func::Contains => "contains",
        Func::StartsWith => "starts_with",
        Func::EndsWith => "ends_with",
        Func::Number => "number",
        Func::String => "string",
        Func::Bool => "bool",
        Func::DeviceType => "device_type",
        Func::Label => "label",
    }
}

/// Rounds half away from zero to `digits` decimals (negative: tens,
/// hundreds...). Beyond what an `f64` resolves, the value is unchanged.
fn round(x: f64, digits: f64) -> f64 {
    let d = digits.clamp(-308.0, 308.0) as i32;
    let factor = 10f64.powi(d.abs());
    let r = if d >= 0 {
        (x * factor).round() / factor
    } else {
        (x / factor).round() * factor
    };
    if r.is_finite() {
        r
    } else {
        x
    }
}

type ArgError<'a> = (&'static str, Val<'a>);

/// SQL `substring(s, start[, len])`: characters from position `start`
/// (1-based; positions before 1 count but hold nothing) for `len`
/// characters, or to the end.
fn substring<'a>(
    s: Val<'a>,
    start: Val<'a>,
    len: Option<Val<'a>>,
) -> Result<Val<'a>, ArgError<'a>> {
    let s = match s {
        Val::Null => return Ok(Val::Null),
        Val::Str(s) => s,
        other => return Err(("a string", other)),
    };
    let start = match start {
        Val::Null => return Ok(Val::Null),
        Val::Num(n) if n.fract() == 0.0 => n,
        other => return Err(("a whole start position", other)),
    };
    let end = match len {
        None => f64::INFINITY,
        Some(Val::Null) => return Ok(Val::Null),
        Some(Val::Num(n)) if n.fract() == 0.0 && n >= 0.0 => start + n,
        Some(other) => return Err(("a length of 0 or more", other)),
    };
    let out: String = s
        .chars()
        .enumerate()
        .filter(|(i, _)| {
            let pos = (*i + 1) as f64;
            pos >= start && pos < end
        })
        .map(|(_, c)| c)
        .collect();
    Ok(Val::Str(Cow::Owned(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round(2.5, 0.0), 3.0);
        assert_eq!(round(-2.5, 0.0), -3.0);
        assert_eq!(round(1.23456, 2.0), 1.23);
        assert_eq!(round(1234.0, -2.0), 1200.0);
        assert_eq!(round(1e300, 100.0), 1e300);
    }

    #[test]
    fn substrings() {
        let s = |v: &str, a: f64, l: Option<f64>| match substring(
            Val::Str(v.to_string().into()),
            Val::Num(a),
            l.map(Val::Num),
        ) {
            Ok(Val::Str(s)) => s.into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(s("hello", 2.0, None), "ello");
        assert_eq!(s("hello", 2.0, Some(3.0)), "ell");
        assert_eq!(s("hello", 0.0, Some(3.0)), "he");
        assert_eq!(s("hello", 9.0, None), "");
        assert_eq!(s("héllo", 2.0, Some(1.0)), "é");
    }
}
