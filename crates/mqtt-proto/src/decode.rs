//! Decoding: bytes -> packets. (Skeleton: the full decoder is being written.)

use bytes::BytesMut;

use crate::{DecodeError, Packet, Protocol};

/// The fixed header of the packet at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Control packet type, 1..=15.
    pub packet_type: u8,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// The remaining length field's value.
    pub remaining_length: usize,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
}

/// Reads the fixed header at the front of `buf` without consuming it.
/// `Ok(None)` means more bytes are needed.
pub fn peek_header(_buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
    todo!()
}

/// Decodes one packet from the front of `buf`, consuming its bytes.
pub fn decode(
    _buf: &mut BytesMut,
    _protocol: Protocol,
    _max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    todo!()
}
