//! The harness the domain crates' conformance suites share (feature
//! `conformance`): a suite is a list of named cases, each run with the
//! [`Stores`] of the implementation under test, which makes a store of
//! its own for a path in a fresh temporary directory. [`write_raw`]
//! writes a file with redb alone, as older code (or a newer binary) left
//! it, for the tests that open such files.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};

/// Makes a store for a path (a backend without files may ignore the path,
/// but must give an empty store for a new one and the same data for a
/// path seen before).
pub type Make<'a, S> = dyn Fn(&Path) -> S + 'a;

/// One case of a suite; panics on a difference.
pub type Case<S> = fn(&Stores<'_, S>);

/// What a case makes its stores with: the implementation's [`Make`] and
/// the file name the suite gives its stores.
pub struct Stores<'a, S> {
    make: &'a Make<'a, S>,
    file: &'static str,
}

impl<S> Stores<'_, S> {
    /// A fresh store in a temporary directory (kept until the returned
    /// directory is dropped).
    pub fn fresh(&self) -> (tempfile::TempDir, S) {
        let (dir, path) = self.temp_path();
        let s = self.open(&path);
        (dir, s)
    }

    /// A temporary directory and the path of the suite's file in it, for
    /// a case that opens a store more than once (durability).
    pub fn temp_path(&self) -> (tempfile::TempDir, PathBuf) {
        temp_path(self.file)
    }

    /// The store for `path`.
    pub fn open(&self, path: &Path) -> S {
        (self.make)(path)
    }
}

/// Runs every case of `suite` in order, with stores of files named
/// `file`.
pub fn run_cases<S>(
    suite: &str,
    file: &'static str,
    make: &Make<'_, S>,
    cases: &[(&str, Case<S>)],
) {
    let stores = Stores { make, file };
    for (name, case) in cases {
        tracing::debug!(suite, case = name, "conformance case");
        case(&stores);
    }
}

/// A temporary directory (removed when dropped) and the path of a file
/// named `file` in it.
pub fn temp_path(file: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(file);
    (dir, path)
}

/// A write transaction on a file opened with redb alone; see
/// [`write_raw`].
pub struct RawTx(redb::WriteTransaction);

impl RawTx {
    /// Stores `key -> value` in the table `name`, opened as `K -> V`.
    /// Panics if the table has other types or the write fails.
    pub fn insert<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        name: &str,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> &Self {
        let def: redb::TableDefinition<'_, K, V> = redb::TableDefinition::new(name);
        let mut t = self.0.open_table(def).expect("a raw table");
        t.insert(key, value).expect("a raw insert");
        self
    }
}

/// Writes the file at `path` with redb alone, bypassing [`crate::Db`]'s
/// schema handling: `f` inserts what it likes in one transaction, which
/// is then committed. For the tests of files written before this crate
/// (or by a newer binary).
pub fn write_raw(path: &Path, f: impl FnOnce(&RawTx)) {
    let db = redb::Database::create(path).expect("a raw file");
    let tx = RawTx(db.begin_write().expect("a raw write"));
    f(&tx);
    tx.0.commit().expect("a raw commit");
}
