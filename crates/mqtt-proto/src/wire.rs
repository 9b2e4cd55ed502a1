//! Wire primitives shared by the decoder and the encoder: a bounds-checked
//! reader over a frozen packet buffer, and the [`Sink`] trait through which
//! every packet body is described once and then either measured
//! ([`Counter`]) or written ([`Writer`]).
//!
//! Describing a body once and running it through two sinks keeps
//! `encoded_len` and `encode` in agreement by construction.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{DecodeError, EncodeError};

/// Largest value a Variable Byte Integer can hold (four bytes).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// Longest UTF-8 string or binary field (a two-byte length prefix).
pub(crate) const MAX_FIELD: usize = 65_535;

/// Bytes a Variable Byte Integer takes for `v` (values above
/// [`MAX_VARINT`] are reported as 4; the encoder rejects them separately).
#[inline]
pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Parses a Variable Byte Integer from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` ends before the last byte, and the value
/// with the number of bytes it took otherwise. More than four bytes and
/// non-minimal encodings ([MQTT-1.5.5-1]) are malformed.
#[inline]
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of zero after at least one continuation byte means
            // the value fitted in fewer bytes.
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "variable byte integer not minimally encoded",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
        if i == 3 {
            return Err(DecodeError::Malformed(
                "variable byte integer longer than four bytes",
            ));
        }
    }
    Ok(None)
}

/// A cursor over the body of one complete packet. Every read is checked
/// against the end of the body; running past it is a malformed packet
/// (the remaining length promised more than the content holds).
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

const SHORT: DecodeError = DecodeError::Malformed("packet shorter than its fields");

impl<'a> Reader<'a> {
    /// A reader over `buf[start..]`.
    pub(crate) fn new(buf: &'a Bytes, start: usize) -> Reader<'a> {
        let end = buf.len();
        Reader {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Bytes left before the end of this reader.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    #[inline]
    fn bytes_left(&self) -> &'a [u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes_left().first().ok_or(SHORT)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        match *self.bytes_left() {
            [a, b, ..] => {
                self.pos += 2;
                Ok(u16::from_be_bytes([a, b]))
            }
            _ => Err(SHORT),
        }
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        match *self.bytes_left() {
            [a, b, c, d, ..] => {
                self.pos += 4;
                Ok(u32::from_be_bytes([a, b, c, d]))
            }
            _ => Err(SHORT),
        }
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let (v, n) = parse_varint(self.bytes_left())?.ok_or(SHORT)?;
        self.pos += n;
        Ok(v)
    }

    /// The next `n` bytes as a zero-copy slice of the packet buffer.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(SHORT);
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Everything up to the end of this reader.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// Binary Data: a two-byte length, then that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 without U+0000
    /// ([MQTT-1.5.4-1], [MQTT-1.5.4-2]); anything else is malformed.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::Malformed("string contains U+0000"));
        }
        ByteString::try_from(raw).map_err(|_| DecodeError::Malformed("string is not valid UTF-8"))
    }

    /// Splits off the next `n` bytes as their own reader (a property block).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Malformed("property length exceeds the packet"));
        }
        let sub = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + n,
        };
        self.pos += n;
        Ok(sub)
    }

    /// Fails unless every byte has been read: trailing bytes mean the
    /// remaining length disagrees with the content.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "trailing bytes after packet content",
            ))
        }
    }
}

/// A property list (one of the `*Properties` structs): it lists its
/// present properties, identifier first, into a [`Sink`].
pub(crate) trait Properties {
    fn describe<S: Sink>(&self, s: &mut S);

    /// Bytes of the property list without its length prefix.
    #[inline]
    fn content_len(&self) -> usize {
        let mut c = Counter::default();
        self.describe(&mut c);
        c.len
    }
}

/// Where a packet body goes: measured by [`Counter`] or written by
/// [`Writer`]. Strings and binary fields carry their two-byte prefix.
pub(crate) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn varint(&mut self, v: u32);
    /// A length-prefixed binary field.
    fn binary(&mut self, v: &[u8]);
    /// Raw bytes with no prefix (the PUBLISH payload).
    fn raw(&mut self, v: &[u8]);
    /// A property block: its Variable Byte Integer length, then the
    /// properties themselves.
    fn properties<P: Properties>(&mut self, p: &P);

    /// A length-prefixed UTF-8 string.
    #[inline]
    fn string(&mut self, v: &str) {
        self.binary(v.as_bytes());
    }
}

/// Measures a body and remembers the first field that cannot be encoded.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) len: usize,
    pub(crate) error: Option<EncodeError>,
}

impl Counter {
    fn fail(&mut self, e: EncodeError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

impl Sink for Counter {
    #[inline]
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }
    #[inline]
    fn u16(&mut self, _: u16) {
        self.len += 2;
    }
    #[inline]
    fn u32(&mut self, _: u32) {
        self.len += 4;
    }
    #[inline]
    fn varint(&mut self, v: u32) {
        if v > MAX_VARINT {
            self.fail(EncodeError::InvalidValue(
                "variable byte integer above 268435455",
            ));
        }
        self.len += varint_len(v as usize);
    }
    #[inline]
    fn binary(&mut self, v: &[u8]) {
        if v.len() > MAX_FIELD {
            self.fail(EncodeError::FieldTooLong);
        }
        self.len += 2 + v.len();
    }
    #[inline]
    fn raw(&mut self, v: &[u8]) {
        self.len += v.len();
    }
    #[inline]
    fn properties<P: Properties>(&mut self, p: &P) {
        let start = self.len;
        p.describe(self);
        let n = self.len - start;
        if n > MAX_VARINT as usize {
            self.fail(EncodeError::PacketTooLarge(n));
        }
        self.len += varint_len(n);
    }
}

/// Appends a Variable Byte Integer (the caller keeps `v <= MAX_VARINT`).
#[inline]
pub(crate) fn put_varint(buf: &mut BytesMut, mut v: u32) {
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

/// Writes a body that a [`Counter`] has already accepted.
pub(crate) struct Writer<'a> {
    pub(crate) buf: &'a mut BytesMut,
}

impl Sink for Writer<'_> {
    #[inline]
    fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }
    #[inline]
    fn varint(&mut self, v: u32) {
        put_varint(self.buf, v);
    }
    #[inline]
    fn binary(&mut self, v: &[u8]) {
        // The counting pass has rejected longer fields.
        self.buf.put_u16(v.len() as u16);
        self.buf.put_slice(v);
    }
    #[inline]
    fn raw(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }
    #[inline]
    fn properties<P: Properties>(&mut self, p: &P) {
        put_varint(self.buf, p.content_len() as u32);
        p.describe(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_examples_from_the_spec() {
        for (v, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(&buf[..], bytes, "{v}");
            assert_eq!(varint_len(v as usize), bytes.len());
            assert_eq!(parse_varint(bytes), Ok(Some((v, bytes.len()))));
            assert_eq!(parse_varint(&bytes[..bytes.len() - 1]), Ok(None));
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_padding() {
        assert!(parse_varint(&[0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        assert!(parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(parse_varint(&[0x80, 0x00]).is_err());
        assert!(parse_varint(&[0x81, 0x80, 0x00]).is_err());
    }
}
