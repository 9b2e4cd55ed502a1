//! The glob dialect of provisioning templates' `id_pattern`.

/// Whether `s` matches `pattern`, where `*` matches any run of characters
/// (including none), `?` exactly one character, and every other character
/// itself. Matching is by Unicode scalar value and linear-ish (one
/// backtracking point), so hostile patterns cannot blow up.
///
/// ```
/// use registry::glob_match;
/// assert!(glob_match("press-*", "press-0042"));
/// assert!(glob_match("line?-*", "line3-press"));
/// assert!(!glob_match("press-*", "pump-1"));
/// ```
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last '*' seen, and the text position it resumes at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use proptest::prelude::*;

    #[test]
    fn cases() {
        let yes = [
            ("", ""),
            ("*", ""),
            ("*", "abc"),
            ("a*", "a"),
            ("a*c", "abbbc"),
            ("a?c", "abc"),
            ("*-*", "press-1"),
            ("**a", "a"),
            ("a*b*c", "aXbYbZc"),
            ("?", "é"),
        ];
        for (p, s) in yes {
            assert!(glob_match(p, s), "{p:?} should match {s:?}");
        }
        let no = [
            ("", "a"),
            ("a", ""),
            ("?", ""),
            ("a?c", "ac"),
            ("a*c", "abcd"),
            ("press-*", "pump-1"),
            ("abc", "abd"),
            ("a*b*c", "aXbY"),
        ];
        for (p, s) in no {
            assert!(!glob_match(p, s), "{p:?} should not match {s:?}");
        }
    }

    /// Reference: the obvious exponential recursion.
    fn naive(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|i| naive(rest, &s[i..])),
            Some((&c, rest)) => match s.split_first() {
                Some((&d, srest)) if c == '?' || c == d => naive(rest, srest),
                _ => false,
            },
        }
    }

    proptest! {
        #[test]
        fn agrees_with_naive(p in "[ab*?]{0,8}", s in "[abc]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let sc: Vec<char> = s.chars().collect();
            prop_assert_eq!(glob_match(&p, &s), naive(&pc, &sc));
        }
    }
}
