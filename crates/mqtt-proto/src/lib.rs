//! Sans-io MQTT 3.1.1 and 5.0 codec.
//!
//! This crate turns bytes into [`Packet`]s and back. It knows nothing about
//! sockets, clocks or sessions: the broker, the load generator, the fleet
//! simulator and the tests all share this one codec.
//!
//! "Not enough bytes yet" is a normal state ([`decode`] returns `Ok(None)`),
//! not an error. Every malformed input is a [`DecodeError`] that maps to the
//! MQTT 5 reason code a server sends before closing the connection.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
pub mod topic;
mod wire;

pub use bytestring::ByteString;
pub use decode::{decode, peek_header, FixedHeader};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use reason::ReasonCode;
