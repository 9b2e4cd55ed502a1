//! The one MQTT client: a sans-io state machine and a thin tokio driver.
//!
//! [`ClientState`] is the protocol core. It owns the session (packet ids,
//! in-flight QoS 1/2 publishes, the server's receive maximum, incoming QoS 2
//! state) and the keep-alive timer, but it opens no sockets and never reads
//! the clock: time comes in as an `Instant` argument, packets come in through
//! [`ClientState::handle_packet`] and go out through
//! [`ClientState::poll_transmit`], and what the application should learn
//! comes out of [`ClientState::poll_event`]. Tests drive it with a virtual
//! clock.
//!
//! Two drivers sit on top of it:
//! - [`Connection`]: one TCP connection driven by the caller's own task
//!   (read into a large buffer, decode every complete packet, coalesce
//!   writes). It is the pipelined API the load generator uses: queue many
//!   publishes, then drive the socket, with no round trip per message.
//! - [`Client`]: a spawned task around a [`Connection`] with async methods
//!   (`publish` completes when acknowledged, `subscribe`, `recv`,
//!   `disconnect`).
//!
//! This crate does not encode or decode bytes itself (that is `mqtt-proto`),
//! does not reconnect on its own (a caller keeps the [`ClientState`] and
//! resumes it with [`Connection::resume`]), and knows no TLS or WebSocket.

mod client;
mod connection;
mod error;
mod event;
mod options;
mod state;

pub use client::Client;
pub use connection::{Connection, TcpTarget};
pub use error::ClientError;
pub use event::{DisconnectReason, Event, Phase};
pub use options::ConnectOptions;
pub use state::ClientState;

pub use mqtt_proto::{ByteString, Protocol, Publish, QoS, ReasonCode};
