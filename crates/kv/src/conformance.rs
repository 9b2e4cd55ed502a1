//! The harness the domain crates' conformance suites share (feature
//! `conformance`): a suite is a list of named cases, each run on a store
//! of its own made by the implementation under test for a path in a
//! fresh temporary directory.

use std::path::Path;

/// Makes a store for a path (a backend without files may ignore the path,
/// but must give an empty store for a new one and the same data for a
/// path seen before).
pub type Make<'a, S> = dyn Fn(&Path) -> S + 'a;

/// One case of a suite; panics on a difference.
pub type Case<S> = fn(&Make<'_, S>);

/// Runs every case of `suite` in order.
pub fn run_cases<S>(suite: &str, make: &Make<'_, S>, cases: &[(&str, Case<S>)]) {
    for (name, case) in cases {
        tracing::debug!(suite, case = name, "conformance case");
        case(make);
    }
}

/// A temporary directory (removed when dropped) and the path of a file
/// named `file` in it.
pub fn temp_path(file: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(file);
    (dir, path)
}

/// A fresh store for a file named `file` in a temporary directory (kept
/// until the returned directory is dropped).
pub fn fresh<S>(make: &Make<'_, S>, file: &str) -> (tempfile::TempDir, S) {
    let (dir, path) = temp_path(file);
    let s = make(&path);
    (dir, s)
}
