//! The embedded metadata store: broker sessions, queued messages, in-flight
//! state and retained messages in one crash-safe `redb` file.
//!
//! The broker emits [`broker::PersistOp`]s; [`SessionStore::apply`] makes a
//! batch of them durable in one transaction (one fsync for many
//! operations: group commit). [`SessionStore::load`] hands everything back
//! at start-up. This crate owns the byte layout (see `codec.rs`); every
//! value starts with a format version byte and the file records its schema
//! version, so a newer binary opens an older data directory.

mod codec;
mod store;

pub use store::{KvError, RedbSessionStore, SessionStore};
