//! The one embedded store layer (redb), and the broker's session store.
//!
//! - [`Db`]: a redb file with a named, versioned [`Schema`]; a newer file
//!   is refused, an older one is brought up by ordered [`Migration`]s.
//!   [`Db::read`] / [`Db::write`] run a closure in a [`ReadTx`] /
//!   [`WriteTx`] (a write that changed nothing or failed is aborted;
//!   one that returns `Ok` is fsynced). Typed tables: [`Table`] for plain
//!   values (`u64` counters with [`TableMut::add`], `()` index entries,
//!   raw bytes) under tuple keys, [`Records`] for [`Versioned`] serde
//!   records. Domain reads are written once, generic over [`Read`].
//! - [`Versioned<T>`]: the record codec, a JSON object whose first field
//!   is its format version (`{"v":1,...}`), with [`Record::upgrade`] for
//!   older versions.
//! - [`Error`]: the one error of this layer; domain stores wrap it.
//! - Key helpers: [`seq_id`] / [`parse_seq_id`], the fixed-width ids
//!   (`a00000000000000ff`) that name records by sequence number.
//! - The broker's sessions: the broker emits [`broker::PersistOp`]s;
//!   [`SessionStore::apply`] makes a batch of them durable in one
//!   transaction (one fsync for many operations: group commit).
//!   [`SessionStore::load`] hands everything back at start-up. It is a
//!   [`Db`] (schema `session`) whose values have their own binary layout
//!   (see `codec.rs`); every value starts with a format version byte.
//!
//! Domain crates (alarms, rules, ...) keep their tables and typed methods
//! and put each store behind a trait whose embedded implementation is
//! built on this crate, so that another backend is another `impl`:
//! [`store_trait!`] declares such a trait from the embedded store's
//! methods, [`store_error!`] the store's error enum (the variants every
//! store has, and the wrapping of [`Error`]), and `conformance` (feature
//! `conformance`) is the harness of the suites every implementation must
//! pass.

mod codec;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod db;
mod error;
mod key;
mod record;
mod store;
mod store_error;
mod store_trait;

pub use db::{
    Db, Migration, Order, Read, ReadTx, Records, RecordsMut, RecordsRef, Schema, Table, TableMut,
    TableRef, TableSpec, WriteTx,
};
pub use error::Error;
pub use key::{parse_seq_id, seq_id};
pub use record::{Record, Versioned};
pub use store::{KvError, RedbSessionStore, SessionStore};
