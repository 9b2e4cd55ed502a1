//! Encoding: packets -> bytes. (Skeleton: the full encoder is being written.)

use bytes::BytesMut;

use crate::{EncodeError, Packet, Protocol};

/// Appends the encoding of `packet` for `protocol` to `buf`.
pub fn encode(_packet: &Packet, _protocol: Protocol, _buf: &mut BytesMut) -> Result<(), EncodeError> {
    todo!()
}

/// The total number of bytes `encode` would append (fixed header included).
pub fn encoded_len(_packet: &Packet, _protocol: Protocol) -> usize {
    todo!()
}
