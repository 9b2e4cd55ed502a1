//! The compile error of a rule, and turning byte offsets into the line and
//! column a person reads.

/// Why a rule text did not compile: where (1-based line and column,
/// counted in characters) and what was expected.
///
/// Displays as `line 1, column 42: expected FROM, found end of input`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (a tab counts as one).
    pub column: usize,
    /// What went wrong, e.g. `expected FROM, found end of input`.
    pub message: String,
}

impl ParseError {
    /// An error at byte offset `offset` of `source`.
    pub(crate) fn at(source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, offset);
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// The 1-based (line, column) of byte offset `offset` in `source`; an
/// offset past the end points just after the last character.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("abc", 2), (1, 3));
        assert_eq!(line_column("abc", 3), (1, 4));
        assert_eq!(line_column("ab\ncd", 3), (2, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nxé y", 7), (2, 4));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
