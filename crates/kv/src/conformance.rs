//! The harness the domain crates' conformance suites share (feature
//! `conformance`): a suite is a list of named cases, each run with the
//! [`Stores`] of the implementation under test, which makes a store of
//! its own for a path in a fresh temporary directory.

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
