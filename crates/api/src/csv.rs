//! Reading CSV (RFC 4180: comma separated, `"` quoting with `""` for a
//! quote, CRLF or LF line ends). Pure; used by the device import.

/// One record with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) line: usize,
    pub(crate) fields: Vec<String>,
}

/// Splits `text` into records. Blank lines are skipped, a leading UTF-8 BOM
/// is ignored. An unterminated quote or a quote in the middle of an
/// unquoted field is an error naming its line.
pub(crate) fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    // Whether the current field began with a quote, and whether we are
    // inside the quotes now.
    let mut quoted = false;
    let mut in_quotes = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                in_quotes = true;
                at_field_start = false;
            }
            '"' => return Err((line, "a quote inside an unquoted field".into())),
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                if !(fields.len() == 1 && fields[0].is_empty() && !quoted) {
                    records.push(Record {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                fields.clear();
                quoted = false;
                at_field_start = true;
                line += 1;
                start_line = line;
            }
            _ if quoted => {
                return Err((line, "text after the closing quote of a field".into()));
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err((start_line, "a quoted field is not closed".into()));
    }
    if !at_field_start || !field.is_empty() || !fields.is_empty() || quoted {
        fields.push(field);
        records.push(Record {
            line: start_line,
            fields,
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &str) -> Vec<Vec<String>> {
        parse(t)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    #[test]
    fn records_and_quotes() {
        assert_eq!(
            rows("id,name\r\na,\"x, \"\"y\"\"\"\n\nb,\n"),
            vec![vec!["id", "name"], vec!["a", "x, \"y\""], vec!["b", ""]]
        );
        assert_eq!(rows("\u{feff}a,b"), vec![vec!["a", "b"]]);
        assert_eq!(
            rows("a,\"multi\nline\"\nc,d"),
            vec![vec!["a", "multi\nline"], vec!["c", "d"]]
        );
        let lines: Vec<usize> = parse("a\n\"b\nc\"\nd")
            .unwrap_or_default()
            .iter()
            .map(|r| r.line)
            .collect();
        assert_eq!(lines, vec![1, 2, 4]);
        assert_eq!(rows("a,"), vec![vec!["a", ""]]);
        assert_eq!(parse("a,\"b").unwrap_err().0, 1);
        assert_eq!(parse("x\na,b\"c").unwrap_err().0, 2);
        assert!(parse("\"a\"b").is_err());
    }
}
