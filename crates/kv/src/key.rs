//! Key helpers: the one place where a number becomes part of a key a
//! domain crate shows to the outside, so that the stores never lay out
//! key text by hand.

/// The id of sequence number `seq`: `prefix` and 16 lowercase hex digits
/// (`a00000000000000ff` for `('a', 255)`). Fixed width, so ids sort like
/// their sequence numbers; a valid MQTT topic level for an ASCII letter
/// prefix.
pub fn seq_id(prefix: char, seq: u64) -> String {
    format!("{prefix}{seq:016x}")
}

/// The sequence number named by a [`seq_id`] with `prefix`, if `id` is
/// exactly one (upper-case digits, other lengths and other prefixes are
/// not).
pub fn parse_seq_id(prefix: char, id: &str) -> Option<u64> {
    let hex = id.strip_prefix(prefix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_sort_like_their_numbers_and_refuse_lookalikes() {
        assert_eq!(seq_id('a', 255), "a00000000000000ff");
        for n in [0, 1, 255, u64::MAX] {
            assert_eq!(parse_seq_id('c', &seq_id('c', n)), Some(n));
        }
        assert!(seq_id('c', 9) < seq_id('c', 10));
        for bad in [
            "",
            "a",
            "b00000000000000ff",
            "a00000000000000FF",
            "a0ff",
            "a+0000000000000ff",
            "a000000000000000ff",
        ] {
            assert_eq!(parse_seq_id('a', bad), None, "{bad}");
        }
    }
}
