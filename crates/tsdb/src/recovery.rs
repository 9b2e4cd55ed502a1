//! What `Tsdb::open` found and repaired.

use std::path::PathBuf;

/// One WAL segment cut short during recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncatedWal {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset where the bad record started (the new file length).
    pub offset: u64,
    /// Bytes removed.
    pub dropped_bytes: u64,
    /// Why the record was rejected.
    pub reason: String,
}

/// A report of recovery at open: what was replayed, cut or set aside.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL segments replayed.
    pub segments_replayed: usize,
    /// Good WAL records replayed.
    pub records_replayed: u64,
    /// Points restored into the head from the WAL.
    pub points_replayed: u64,
    /// Segments whose torn or corrupt tail was truncated.
    pub truncated: Vec<TruncatedWal>,
    /// Chunk files loaded.
    pub chunks_loaded: usize,
    /// Chunk files that failed their checks, renamed with a `.corrupt` suffix.
    pub chunks_quarantined: Vec<PathBuf>,
    /// Leftover temporary files removed (from an interrupted flush or compaction).
    pub temp_files_removed: usize,
}

impl RecoveryReport {
    /// Whether any WAL segment was cut short.
    pub fn wal_truncated(&self) -> bool {
        !self.truncated.is_empty()
    }

    pub(crate) fn note_truncation(&mut self, t: TruncatedWal) {
        tracing::warn!(
            path = %t.path.display(),
            offset = t.offset,
            dropped_bytes = t.dropped_bytes,
            reason = %t.reason,
            "WAL tail was torn or corrupt; truncated it"
        );
        self.truncated.push(t);
    }
}
