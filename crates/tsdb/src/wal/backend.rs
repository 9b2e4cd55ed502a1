//! The WAL writer's I/O seam (redb's `StorageBackend` idea): the few file
//! operations the writer performs on a segment, behind a trait, with the
//! real file system as the default. Tests put a backend in its place that
//! fails the Nth write or fsync, writes short, or loses what a failed
//! fsync covered, and then check that every acknowledged record survives.
//!
//! Only the segment being written goes through the seam; recovery reads
//! and repairs segments with plain file I/O.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// One open WAL segment, as the writer sees it.
///
/// The writer writes at explicit offsets (never through a file cursor), so
/// after a failed or short write it knows where the next record goes.
pub trait WalFile: Send {
    /// Writes some prefix of `buf` at `offset` and returns how many bytes
    /// were written (fewer than `buf.len()` is a short write; the writer
    /// continues with the rest).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes everything written so far durable (fdatasync). After an error
    /// the writer assumes the unsynced bytes are lost for good, even if a
    /// later call reports success (the "fsyncgate" semantics of Linux), and
    /// never syncs this file again.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Creates segment files and makes their directory entries durable.
pub trait WalBackend: Send + Sync + fmt::Debug {
    /// Creates the file at `path`, truncating it if it exists, open for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Makes the directory's entries (a new segment's name) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system: positional writes (`pwrite`), `fdatasync`,
/// `ftruncate`, and an fsync of the directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsWalBackend;

struct FsWalFile(File);

impl WalFile for FsWalFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        positional_write(&self.0, buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[cfg(unix)]
fn positional_write(f: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(f, buf, offset)
}

#[cfg(windows)]
fn positional_write(f: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_write(f, buf, offset)
}

impl WalBackend for FsWalBackend {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(FsWalFile(f)))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir).and_then(|d| d.sync_all())
    }
}

/// Writes all of `buf` at `offset`, continuing after short writes.
pub(crate) fn write_all_at(f: &mut dyn WalFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the WAL segment accepted no bytes",
                ))
            }
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
