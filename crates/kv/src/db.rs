//! `Db`: one redb file with a named, versioned schema, and the typed
//! tables and transactions the domain stores are written with.
//!
//! A file's `meta` table (`&str -> u64`) holds its schema version (under
//! the schema's version key, `schema_version` unless a store chose another
//! before this crate existed) and its sequences ([`WriteTx::next_seq`]).
//! [`Db::open`] creates a new file at the current version, refuses a newer
//! one ([`Error::TooNew`]) and brings an older one up by running the
//! [`Migration`]s in order, each in the opening transaction, so a file is
//! either migrated completely or not at all.
//!
//! Every write transaction that changed something commits with redb's
//! default durability (immediate, fsynced): when [`Db::write`] returns
//! `Ok`, the change is on disk. One that changed nothing, or whose closure
//! failed, is aborted and costs no fsync.

use std::borrow::Borrow;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, RangeBounds};
use std::path::Path;

use redb::{
    AccessGuard, Database, Key, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition,
    Value, WriteTransaction,
};

use crate::record::{Record, Versioned};
use crate::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// The `meta` table of every file: name -> u64.
const META: Table<&str, u64> = Table::new("meta");

/// A table of `K -> V`, where `V` is a plain redb value (`u64`, `()`,
/// `&[u8]`). Keys are tuples for composite keys; a range over a prefix is
/// a range over the tuple.
pub struct Table<K: Key + 'static, V: Value + 'static> {
    def: TableDefinition<'static, K, V>,
}

impl<K: Key + 'static, V: Value + 'static> Table<K, V> {
    pub const fn new(name: &'static str) -> Self {
        Table {
            def: TableDefinition::new(name),
        }
    }
}

/// A table of `K -> T` records, stored as [`Versioned`] JSON (`&[u8]` to
/// redb).
pub struct Records<K: Key + 'static, T> {
    table: Table<K, &'static [u8]>,
    _t: PhantomData<fn() -> T>,
}

impl<K: Key + 'static, T> Records<K, T> {
    pub const fn new(name: &'static str) -> Self {
        Records {
            table: Table::new(name),
            _t: PhantomData,
        }
    }

    /// The table of stored bytes (for callers that skip unreadable
    /// records, and for tests of the stored layout).
    pub fn raw(&self) -> &Table<K, &'static [u8]> {
        &self.table
    }
}

/// A table a [`Schema`] creates when the file is opened, so that readers
/// never meet a missing table.
pub trait TableSpec: Sync {
    #[doc(hidden)]
    fn create(&self, txn: &WriteTransaction) -> Result<()>;
}

impl<K: Key + Sync + 'static, V: Value + Sync + 'static> TableSpec for Table<K, V> {
    fn create(&self, txn: &WriteTransaction) -> Result<()> {
        txn.open_table(self.def)?;
        Ok(())
    }
}

impl<K: Key + Sync + 'static, T> TableSpec for Records<K, T> {
    fn create(&self, txn: &WriteTransaction) -> Result<()> {
        self.table.create(txn)
    }
}

/// What a file holds: its name (for messages), the version this binary
/// writes, and its tables.
#[derive(Clone, Copy)]
pub struct Schema {
    name: &'static str,
    version: u64,
    version_key: &'static str,
    tables: &'static [&'static dyn TableSpec],
}

impl Schema {
    pub const fn new(
        name: &'static str,
        version: u64,
        tables: &'static [&'static dyn TableSpec],
    ) -> Schema {
        Schema {
            name,
            version,
            version_key: "schema_version",
            tables,
        }
    }

    /// Records the version under `key` in `meta` instead of
    /// `schema_version` (for files older than this crate).
    pub const fn version_key(self, key: &'static str) -> Schema {
        Schema {
            version_key: key,
            ..self
        }
    }
}

/// Brings a file from schema version `from` to `from + 1`.
pub struct Migration {
    pub from: u64,
    pub run: fn(&WriteTx) -> Result<()>,
}

/// One open store file. `Send + Sync`; readers see snapshots, writers
/// take turns.
pub struct Db {
    db: Database,
    schema: Schema,
}

impl Db {
    /// Opens or creates the file at `path`; see the module documentation.
    pub fn open(path: &Path, schema: Schema, migrations: &[Migration]) -> Result<Db> {
        let shown = || path.display().to_string();
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::AlreadyOpen { path: shown() },
            other => Error::Open {
                path: shown(),
                source: Box::new(other.into()),
            },
        })?;
        let tx = WriteTx::new(db.begin_write()?);
        {
            let mut meta = tx.table(&META)?;
            let version = meta.get(schema.version_key)?.map(|v| v.value());
            match version {
                None => {
                    meta.insert(schema.version_key, schema.version)?;
                }
                Some(found) if found > schema.version => {
                    return Err(Error::TooNew {
                        path: shown(),
                        schema: schema.name,
                        found,
                        supported: schema.version,
                    });
                }
                Some(found) => {
                    drop(meta);
                    for from in found..schema.version {
                        let m = migrations.iter().find(|m| m.from == from).ok_or_else(|| {
                            Error::NoMigration {
                                path: shown(),
                                schema: schema.name,
                                found: from,
                            }
                        })?;
                        (m.run)(&tx)?;
                        tx.table(&META)?.insert(schema.version_key, from + 1)?;
                        tracing::info!(
                            path = %path.display(),
                            schema = schema.name,
                            from,
                            to = from + 1,
                            "store migrated"
                        );
                    }
                }
            }
        }
        for t in schema.tables {
            t.create(&tx.txn)?;
        }
        tx.txn.commit()?;
        Ok(Db { db, schema })
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T, E: From<Error>>(&self, f: impl FnOnce(&ReadTx) -> Result<T, E>) -> Result<T, E> {
        let tx = ReadTx {
            txn: self.db.begin_read().map_err(Error::from)?,
        };
        f(&tx)
    }

    /// Runs `f` in a write transaction (writers take turns, so a
    /// read-modify-write inside `f` loses no update) and commits (fsync)
    /// if it returns `Ok` and wrote something; otherwise nothing is
    /// written.
    pub fn write<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&WriteTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().map_err(Error::from)?;
        Self::run_write(txn, f)
    }

    /// Like [`Db::write`] but without an fsync (redb `Durability::None`):
    /// the change is visible at once and reaches the disk with the next
    /// durable commit; a crash before that loses it. Only for changes
    /// whose loss is harmless (a cache-like rewrite of a stored value).
    pub fn write_unsynced<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&WriteTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut txn = self.db.begin_write().map_err(Error::from)?;
        // No persistent savepoints are ever made, so lowering the
        // durability cannot panic.
        txn.set_durability(redb::Durability::None);
        Self::run_write(txn, f)
    }

    fn run_write<T, E: From<Error>>(
        txn: WriteTransaction,
        f: impl FnOnce(&WriteTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = WriteTx::new(txn);
        match f(&tx) {
            Ok(v) if tx.dirty.get() => {
                tx.txn.commit().map_err(Error::from)?;
                Ok(v)
            }
            Ok(v) => {
                tx.txn.abort().map_err(Error::from)?;
                Ok(v)
            }
            Err(e) => {
                if let Err(abort) = tx.txn.abort() {
                    tracing::warn!(error = %abort, "aborting a failed write transaction failed");
                }
                Err(e)
            }
        }
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META.def)?;
        Ok(meta.get(self.schema.version_key)?.map_or(0, |v| v.value()))
    }

    /// Overwrites the recorded schema version (tests of version checks).
    #[doc(hidden)]
    pub fn set_schema_version(&self, version: u64) -> Result<()> {
        let key = self.schema.version_key;
        self.write(|tx| {
            tx.table(&META)?.insert(key, version)?;
            Ok(())
        })
    }
}

/// A read snapshot.
pub struct ReadTx {
    txn: ReadTransaction,
}

/// A write transaction; see [`Db::write`].
pub struct WriteTx {
    txn: WriteTransaction,
    /// Whether anything was written (else the transaction is aborted).
    dirty: Cell<bool>,
}

impl WriteTx {
    fn new(txn: WriteTransaction) -> WriteTx {
        WriteTx {
            txn,
            dirty: Cell::new(false),
        }
    }

    /// Opens `t` for reading and writing.
    pub fn table<K: Key + 'static, V: Value + 'static>(
        &self,
        t: &Table<K, V>,
    ) -> Result<TableMut<'_, K, V>> {
        Ok(TableMut {
            r: TableRef::new(self.txn.open_table(t.def)?),
            dirty: &self.dirty,
        })
    }

    /// Opens the records `t` for reading and writing.
    pub fn records<K: Key + 'static, T: Record>(
        &self,
        t: &Records<K, T>,
    ) -> Result<RecordsMut<'_, K, T>> {
        Ok(RecordsMut {
            r: RecordsRef {
                t: TableRef::new(self.txn.open_table(t.table.def)?),
                _t: PhantomData,
            },
            dirty: &self.dirty,
        })
    }

    /// Takes the next number of the sequence `key` in `meta` (from 1,
    /// never reused once committed).
    pub fn next_seq(&self, key: &str) -> Result<u64> {
        let mut meta = self.table(&META)?;
        let seq = meta.get(key)?.map_or(1, |v| v.value());
        let next = seq
            .checked_add(1)
            .ok_or_else(|| Error::SequenceExhausted(key.to_string()))?;
        meta.insert(key, next)?;
        Ok(seq)
    }
}

/// Reading, the same in both kinds of transaction: domain reads are
/// written once, generic over `R: Read`.
pub trait Read {
    #[doc(hidden)]
    type Handle<'a, K: Key + 'static, V: Value + 'static>: ReadableTable<K, V>
    where
        Self: 'a;

    /// Opens `t` for reading.
    fn open<'a, K: Key + 'static, V: Value + 'static>(
        &'a self,
        t: &Table<K, V>,
    ) -> Result<TableRef<Self::Handle<'a, K, V>, K, V>>;

    /// Opens the records `t` for reading.
    #[allow(
        clippy::type_complexity,
        reason = "the handle type is the transaction kind's; callers never name it"
    )]
    fn open_records<'a, K: Key + 'static, T: Record>(
        &'a self,
        t: &Records<K, T>,
    ) -> Result<RecordsRef<Self::Handle<'a, K, &'static [u8]>, K, T>> {
        Ok(RecordsRef {
            t: self.open(&t.table)?,
            _t: PhantomData,
        })
    }
}

impl Read for ReadTx {
    type Handle<'a, K: Key + 'static, V: Value + 'static> = ReadOnlyTable<K, V>;

    fn open<K: Key + 'static, V: Value + 'static>(
        &self,
        t: &Table<K, V>,
    ) -> Result<TableRef<ReadOnlyTable<K, V>, K, V>> {
        Ok(TableRef::new(self.txn.open_table(t.def)?))
    }
}

impl Read for WriteTx {
    type Handle<'a, K: Key + 'static, V: Value + 'static> = redb::Table<'a, K, V>;

    fn open<'a, K: Key + 'static, V: Value + 'static>(
        &'a self,
        t: &Table<K, V>,
    ) -> Result<TableRef<redb::Table<'a, K, V>, K, V>> {
        Ok(TableRef::new(self.txn.open_table(t.def)?))
    }
}

/// Which way a scan goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// An open table, for reading.
pub struct TableRef<H, K, V> {
    t: H,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<H, K: Key + 'static, V: Value + 'static> TableRef<H, K, V>
where
    H: ReadableTable<K, V>,
{
    fn new(t: H) -> Self {
        TableRef {
            t,
            _kv: PhantomData,
        }
    }

    /// The value under `key`.
    pub fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<Option<AccessGuard<'_, V>>> {
        Ok(self.t.get(key)?)
    }

    /// Whether `key` is present.
    pub fn contains<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool> {
        Ok(self.t.get(key)?.is_some())
    }

    /// How many entries the table holds.
    pub fn len(&self) -> Result<u64> {
        Ok(self.t.len()?)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.t.is_empty()?)
    }

    /// The first entry, given to `f`.
    pub fn first<R>(
        &self,
        f: impl FnOnce(AccessGuard<'_, K>, AccessGuard<'_, V>) -> R,
    ) -> Result<Option<R>> {
        Ok(self.t.first()?.map(|(k, v)| f(k, v)))
    }

    /// Visits the entries in `range` in `order` until `visit` returns
    /// `false` or an error.
    pub fn scan<'a, KR, E>(
        &self,
        range: impl RangeBounds<KR> + 'a,
        order: Order,
        mut visit: impl FnMut(AccessGuard<'_, K>, AccessGuard<'_, V>) -> Result<bool, E>,
    ) -> Result<(), E>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
        E: From<Error>,
    {
        let range = self.t.range(range).map_err(Error::from)?;
        let mut step =
            |item: Result<(AccessGuard<'_, K>, AccessGuard<'_, V>), redb::StorageError>| {
                let (k, v) = item.map_err(Error::from)?;
                visit(k, v)
            };
        match order {
            Order::Ascending => {
                for item in range {
                    if !step(item)? {
                        break;
                    }
                }
            }
            Order::Descending => {
                for item in range.rev() {
                    if !step(item)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The keys in `range`, in order, each converted by `f`.
    pub fn keys<'a, KR, O>(
        &self,
        range: impl RangeBounds<KR> + 'a,
        mut f: impl FnMut(K::SelfType<'_>) -> O,
    ) -> Result<Vec<O>>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        let mut out = Vec::new();
        self.scan(range, Order::Ascending, |k, _| {
            out.push(f(k.value()));
            Ok::<_, Error>(true)
        })?;
        Ok(out)
    }
}

/// An open table in a write transaction: the reads of [`TableRef`] (by
/// `Deref`) and the writes.
pub struct TableMut<'tx, K: Key + 'static, V: Value + 'static> {
    r: TableRef<redb::Table<'tx, K, V>, K, V>,
    dirty: &'tx Cell<bool>,
}

impl<'tx, K: Key + 'static, V: Value + 'static> Deref for TableMut<'tx, K, V> {
    type Target = TableRef<redb::Table<'tx, K, V>, K, V>;
    fn deref(&self) -> &Self::Target {
        &self.r
    }
}

impl<K: Key + 'static, V: Value + 'static> TableMut<'_, K, V> {
    /// Stores `value` under `key`.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<()> {
        insert(&mut self.r.t, self.dirty, key, value)
    }

    /// Removes `key`; whether it was present (removing what is not
    /// there leaves the transaction clean).
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool> {
        remove(&mut self.r.t, self.dirty, key)
    }
}

impl<K: Key + 'static> TableMut<'_, K, u64> {
    /// Adds `delta` to the counter under `key` (saturating at 0 and
    /// `u64::MAX`); a counter that reaches 0 is removed, so a counter
    /// table has no zero rows. Returns the new value.
    pub fn add<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>, delta: i64) -> Result<u64> {
        let key = key.borrow();
        let n = self.r.t.get(key)?.map_or(0, |v| v.value());
        let n = n.saturating_add_signed(delta);
        if n == 0 {
            self.remove(key)?;
        } else {
            self.insert(key, n)?;
        }
        Ok(n)
    }
}

/// Open records, for reading.
pub struct RecordsRef<H, K, T> {
    t: TableRef<H, K, &'static [u8]>,
    _t: PhantomData<fn() -> T>,
}

impl<H, K: Key + 'static, T: Record> RecordsRef<H, K, T>
where
    H: ReadableTable<K, &'static [u8]>,
{
    /// The record under `key`.
    pub fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<Option<T>> {
        self.t
            .get(key)?
            .map(|v| Versioned::<T>::decode(v.value()))
            .transpose()
    }

    /// Visits the records in `range` in `order` until `visit` returns
    /// `false` or an error; a record that does not decode is an error.
    pub fn scan<'a, KR, E>(
        &self,
        range: impl RangeBounds<KR> + 'a,
        order: Order,
        mut visit: impl FnMut(K::SelfType<'_>, T) -> Result<bool, E>,
    ) -> Result<(), E>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
        E: From<Error>,
    {
        self.t.scan(range, order, |k, v| {
            let rec = Versioned::<T>::decode(v.value())?;
            visit(k.value(), rec)
        })
    }

    /// The stored bytes, for callers that skip unreadable records
    /// instead of failing.
    pub fn raw(&self) -> &TableRef<H, K, &'static [u8]> {
        &self.t
    }
}

/// Open records in a write transaction: the reads of [`RecordsRef`] (by
/// `Deref`) and the writes.
pub struct RecordsMut<'tx, K: Key + 'static, T> {
    r: RecordsRef<redb::Table<'tx, K, &'static [u8]>, K, T>,
    dirty: &'tx Cell<bool>,
}

impl<'tx, K: Key + 'static, T> Deref for RecordsMut<'tx, K, T> {
    type Target = RecordsRef<redb::Table<'tx, K, &'static [u8]>, K, T>;
    fn deref(&self) -> &Self::Target {
        &self.r
    }
}

impl<K: Key + 'static, T: Record> RecordsMut<'_, K, T> {
    /// Stores `rec` under `key`.
    pub fn put<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>, rec: &T) -> Result<()> {
        let bytes = Versioned::encode(rec)?;
        insert(&mut self.r.t.t, self.dirty, key, bytes.as_slice())
    }

    /// Removes `key`; whether it was present (removing what is not
    /// there leaves the transaction clean).
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool> {
        remove(&mut self.r.t.t, self.dirty, key)
    }
}

/// Inserts into a table of a write transaction, marking it dirty.
fn insert<'k, 'v, K: Key + 'static, V: Value + 'static>(
    t: &mut redb::Table<'_, K, V>,
    dirty: &Cell<bool>,
    key: impl Borrow<K::SelfType<'k>>,
    value: impl Borrow<V::SelfType<'v>>,
) -> Result<()> {
    dirty.set(true);
    t.insert(key, value)?;
    Ok(())
}

/// Removes from a table of a write transaction; only a removal that
/// found the key marks it dirty.
fn remove<'k, K: Key + 'static, V: Value + 'static>(
    t: &mut redb::Table<'_, K, V>,
    dirty: &Cell<bool>,
    key: impl Borrow<K::SelfType<'k>>,
) -> Result<bool> {
    let existed = t.remove(key)?.is_some();
    if existed {
        dirty.set(true);
    }
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    impl Record for Note {
        const KIND: &'static str = "note";
        const VERSION: u32 = 2;

        fn upgrade(version: u32, bytes: &[u8]) -> Result<Self> {
            #[derive(Deserialize)]
            struct V1 {
                body: String,
            }
            match version {
                1 => {
                    let old: V1 = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
                        kind: Self::KIND,
                        message: e.to_string(),
                    })?;
                    Ok(Note { text: old.body })
                }
                found => Err(Error::RecordVersion {
                    kind: Self::KIND,
                    found,
                    supported: Self::VERSION,
                }),
            }
        }
    }

    const NOTES: Records<(&str, u64), Note> = Records::new("notes");
    const INDEX: Table<(&str, u64), ()> = Table::new("notes_index");
    const COUNTS: Table<&str, u64> = Table::new("counts");
    const TABLES: &[&dyn TableSpec] = &[&NOTES, &INDEX, &COUNTS];
    const V1: Schema = Schema::new("test", 1, TABLES);
    const V2: Schema = Schema::new("test", 2, TABLES);

    /// Counts its runs in `counts`, so a test sees how often it ran.
    fn count_run(tx: &WriteTx) -> Result<()> {
        tx.table(&COUNTS)?.add("migrated", 1)?;
        Ok(())
    }

    const MIGRATIONS: &[Migration] = &[Migration {
        from: 1,
        run: count_run,
    }];

    fn runs(db: &Db) -> u64 {
        db.read(|tx| Ok::<_, Error>(tx.open(&COUNTS)?.get("migrated")?.map_or(0, |v| v.value())))
            .unwrap()
    }

    /// A temporary directory holding `t.redb` written at `schema`'s
    /// version, closed again.
    fn file_written_at(schema: Schema) -> (tempfile::TempDir, std::path::PathBuf) {
        let (dir, path) = crate::conformance::temp_path("t.redb");
        drop(Db::open(&path, schema, &[]).unwrap());
        (dir, path)
    }

    #[test]
    fn a_new_file_has_the_current_version_and_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.redb"), V2, MIGRATIONS).unwrap();
        assert_eq!(db.schema_version().unwrap(), 2);
        assert_eq!(runs(&db), 0);
        let n = db.read(|tx| tx.open(&INDEX)?.len()).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_newer_version_is_refused() {
        let (_dir, path) = file_written_at(V2);
        let Err(e) = Db::open(&path, V1, &[]) else {
            panic!("a newer file opened");
        };
        assert!(
            matches!(
                e,
                Error::TooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("test schema version 2"), "{e}");
    }

    #[test]
    fn a_migration_runs_once_and_records_the_version() {
        let (_dir, path) = file_written_at(V1);
        let db = Db::open(&path, V2, MIGRATIONS).unwrap();
        assert_eq!(db.schema_version().unwrap(), 2);
        assert_eq!(runs(&db), 1);
        drop(db);
        let db = Db::open(&path, V2, MIGRATIONS).unwrap();
        assert_eq!(runs(&db), 1);
    }

    #[test]
    fn a_missing_or_failing_migration_leaves_the_file_as_it_was() {
        let (_dir, path) = file_written_at(V1);
        let Err(e) = Db::open(&path, V2, &[]) else {
            panic!("opened without a migration");
        };
        assert!(matches!(e, Error::NoMigration { found: 1, .. }), "{e}");
        fn fail(tx: &WriteTx) -> Result<()> {
            count_run(tx)?;
            Err(Error::SequenceExhausted("x".into()))
        }
        assert!(Db::open(&path, V2, &[Migration { from: 1, run: fail }]).is_err());
        let db = Db::open(&path, V1, &[]).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        assert_eq!(runs(&db), 0);
    }

    #[test]
    fn records_of_an_older_version_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let db = Db::open(&path, V2, &[]).unwrap();
        // A version 1 record, written as raw bytes the way an older binary did.
        db.write(|tx| {
            tx.table(&NOTES.table)?
                .insert(("ns", 1), br#"{"v":1,"body":"old"}"#.as_slice())?;
            tx.records(&NOTES)?
                .put(("ns", 2), &Note { text: "new".into() })
        })
        .unwrap();
        let all = db
            .read(|tx| {
                let mut out = Vec::new();
                tx.open_records(&NOTES)?.scan(
                    ("ns", 0)..=("ns", u64::MAX),
                    Order::Ascending,
                    |k, n| {
                        out.push((k.1, n.text));
                        Ok::<_, Error>(true)
                    },
                )?;
                Ok::<_, Error>(out)
            })
            .unwrap();
        assert_eq!(all, [(1, "old".to_string()), (2, "new".to_string())]);
        let raw = db
            .read(|tx| {
                Ok::<_, Error>(
                    tx.open(&NOTES.table)?
                        .get(("ns", 2))?
                        .map(|v| v.value().to_vec()),
                )
            })
            .unwrap();
        assert_eq!(raw.as_deref(), Some(br#"{"v":2,"text":"new"}"#.as_slice()));
    }

    #[test]
    fn failed_or_empty_writes_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.redb"), V2, &[]).unwrap();
        let r: Result<()> = db.write(|tx| {
            tx.table(&INDEX)?.insert(("a", 1), ())?;
            Err(Error::SequenceExhausted("x".into()))
        });
        assert!(r.is_err());
        assert_eq!(db.read(|tx| tx.open(&INDEX)?.len()).unwrap(), 0);
        let got = db.write(|tx| tx.open(&INDEX)?.contains(("a", 1))).unwrap();
        assert!(!got);
        // Removing what is not there writes nothing either.
        let removed = db
            .write(|tx| {
                let n = tx.table(&COUNTS)?.remove("none")?;
                Ok::<_, Error>(n || tx.records(&NOTES)?.remove(("a", 1))?)
            })
            .unwrap();
        assert!(!removed);
    }

    #[test]
    fn an_unsynced_write_is_visible_and_kept_by_the_next_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let db = Db::open(&path, V2, &[]).unwrap();
            db.write_unsynced(|tx| tx.table(&INDEX)?.insert(("a", 1), ()))
                .unwrap();
            assert!(db.read(|tx| tx.open(&INDEX)?.contains(("a", 1))).unwrap());
            db.write(|tx| tx.table(&INDEX)?.insert(("a", 2), ()))
                .unwrap();
        }
        let db = Db::open(&path, V2, &[]).unwrap();
        assert_eq!(db.read(|tx| tx.open(&INDEX)?.len()).unwrap(), 2);
    }

    #[test]
    fn counters_have_no_zero_rows_and_sequences_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let db = Db::open(&path, V2, &[]).unwrap();
            db.write(|tx| {
                let mut c = tx.table(&COUNTS)?;
                assert_eq!(c.add("x", 2)?, 2);
                assert_eq!(c.add("x", -1)?, 1);
                assert_eq!(c.add("x", -5)?, 0);
                assert!(!c.contains("x")?);
                Ok::<_, Error>(())
            })
            .unwrap();
            assert_eq!(db.write(|tx| tx.next_seq("s")).unwrap(), 1);
            assert_eq!(db.write(|tx| tx.next_seq("s")).unwrap(), 2);
            let _ = db.write(|tx| {
                tx.next_seq("s")?;
                Err::<(), _>(Error::SequenceExhausted("s".into()))
            });
        }
        let db = Db::open(&path, V2, &[]).unwrap();
        assert_eq!(db.write(|tx| tx.next_seq("s")).unwrap(), 3);
    }

    #[test]
    fn scans_go_either_way_and_stop_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.redb"), V2, &[]).unwrap();
        db.write(|tx| {
            let mut t = tx.table(&INDEX)?;
            for (ns, i) in [("a", 1), ("a", 2), ("a", 3), ("ab", 1), ("b", 1)] {
                t.insert((ns, i), ())?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
        let (up, down, keys, first) = db
            .read(|tx| {
                let t = tx.open(&INDEX)?;
                let range = ("a", 0)..=("a", u64::MAX);
                let mut up = Vec::new();
                t.scan(range.clone(), Order::Ascending, |k, _| {
                    up.push(k.value().1);
                    Ok::<_, Error>(true)
                })?;
                let mut down = Vec::new();
                t.scan(range.clone(), Order::Descending, |k, _| {
                    down.push(k.value().1);
                    Ok::<_, Error>(down.len() < 2)
                })?;
                let keys = t.keys(range, |(ns, i)| format!("{ns}{i}"))?;
                let first = t.first(|k, _| k.value().0.to_string())?;
                Ok::<_, Error>((up, down, keys, first))
            })
            .unwrap();
        assert_eq!(up, [1, 2, 3]);
        assert_eq!(down, [3, 2]);
        assert_eq!(keys, ["a1", "a2", "a3"]);
        assert_eq!(first.as_deref(), Some("a"));
    }

    #[test]
    fn a_second_open_of_one_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let _first = Db::open(&path, V2, &[]).unwrap();
        let Err(e) = Db::open(&path, V2, &[]) else {
            panic!("opened twice");
        };
        assert!(matches!(e, Error::AlreadyOpen { .. }), "{e}");
        assert!(e.to_string().contains("already open"));
    }

    #[test]
    fn a_legacy_version_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let db = Db::open(&path, V1.version_key("schema"), &[]).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        let keys = db
            .read(|tx| tx.open(&META)?.keys(.."~", |k| k.to_string()))
            .unwrap();
        assert_eq!(keys, ["schema"]);
    }
}
