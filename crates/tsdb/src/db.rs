//! `Tsdb`: opening (recovery), the write path with group commit, and
//! closing. Flushes, compaction, retention and queries live in their own
//! modules as further `impl Tsdb` blocks.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::WriteError;
use crate::catalog::{Catalog, IdMap, SeriesId};
use crate::chunk::{Chunk, ChunkKind};
use crate::chunkset::ChunkSet;
use crate::column::Column;
use crate::commit::{lock, CommitQueue};
use crate::error::Error;
use crate::head::Head;
use crate::model::{Value, WritePoint};
use crate::options::Options;
use crate::query::{Stats, WriteStats};
use crate::recovery::RecoveryReport;
use crate::retention::Horizons;
use crate::wal::{self, FsWalBackend, SegmentWriter, SeriesRun, WalBackend, WalRecord};

/// Memory state guarded by one lock: the head, blocks being flushed, and
/// the latest point of every series.
pub(crate) struct Mem {
    pub(crate) head: Head,
    /// Heads frozen by a flush that has not been published yet, oldest first.
    pub(crate) frozen: Vec<Arc<Head>>,
    /// Latest point per series (the newest write wins on equal timestamps).
    pub(crate) latest: IdMap<(i64, Value)>,
}

/// One writer's batch waiting for group commit.
pub(crate) struct Pending {
    record: Vec<u8>,
    runs: Vec<SeriesRun>,
}

/// The embedded time-series engine. All methods take `&self`; share it
/// between threads with an `Arc`.
pub struct Tsdb {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) catalog: RwLock<Catalog>,
    commit: CommitQueue<Pending>,
    pub(crate) wal: Mutex<SegmentWriter>,
    pub(crate) mem: RwLock<Mem>,
    pub(crate) chunks: RwLock<Arc<ChunkSet>>,
    /// Serializes flush, compaction and retention.
    pub(crate) maintenance: Mutex<()>,
    pub(crate) horizons: RwLock<Horizons>,
    pub(crate) next_file_id: AtomicU64,
    pub(crate) head_points: AtomicUsize,
    pub(crate) frozen_points: AtomicUsize,
    report: RecoveryReport,
    closed: AtomicBool,
    poisoned: Mutex<Option<String>>,
    pub(crate) stats: Stats,
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tsdb {
    /// Opens (or creates) a database in `dir`.
    ///
    /// Recovery: leftover temporary files are removed, chunk files are
    /// loaded (a file failing its checks is renamed `*.corrupt` and
    /// reported), and the WAL segments not covered by chunks are replayed
    /// into the head. A torn or corrupt WAL tail is truncated at the last
    /// good record and reported through [`Tsdb::recovery_report`] and a
    /// `tracing` warning; it never prevents opening. Files written by a newer
    /// format version do ([`Error::UnsupportedVersion`]).
    pub fn open(dir: &Path, opts: Options) -> Result<Tsdb, Error> {
        Tsdb::open_with_wal_backend(dir, opts, Arc::new(FsWalBackend))
    }

    /// [`Tsdb::open`] with the WAL writer's file operations going through
    /// `backend` (the real file system is [`FsWalBackend`]). This is the
    /// I/O seam fault-injection tests use: a backend that fails the Nth
    /// write or fsync, then a reopen with the real one, shows what an
    /// acknowledged write can survive.
    pub fn open_with_wal_backend(
        dir: &Path,
        opts: Options,
        backend: Arc<dyn WalBackend>,
    ) -> Result<Tsdb, Error> {
        let opts = opts.validated()?;
        let wal_dir = dir.join("wal");
        let chunk_dir = dir.join("chunks");
        for d in [dir, &wal_dir, &chunk_dir] {
            fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let mut report = RecoveryReport::default();
        let mut catalog = Catalog::default();
        let horizons = Horizons::load(dir)?;

        let (chunks, next_file_id) = load_chunks(&chunk_dir, &mut catalog, &mut report)?;
        let mut mem = Mem {
            head: Head::default(),
            frozen: Vec::new(),
            latest: IdMap::default(),
        };
        for c in chunks.all() {
            if c.meta.kind != ChunkKind::Raw {
                continue;
            }
            for (sid, s) in c.sids() {
                let newer = mem.latest.get(&sid).is_none_or(|(t, _)| s.max_ts >= *t);
                if newer {
                    mem.latest.insert(sid, (s.max_ts, s.last.clone()));
                }
            }
        }

        let checkpoint = wal::read_checkpoint(&wal_dir)?;
        let mut last_seg = 0;
        for no in wal::list_segments(&wal_dir)? {
            if no < checkpoint {
                let p = wal::segment_path(&wal_dir, no);
                fs::remove_file(&p)
                    .map_err(|e| Error::io(format!("removing covered {}", p.display()), e))?;
                continue;
            }
            replay(&wal_dir, no, &mut catalog, &mut mem, &mut report)?;
            last_seg = no;
        }
        // Replay appended to the head only; the latest points come from it
        // in one pass per series.
        for (sid, buf) in mem.head.iter() {
            if let Some(best) = last_max(&buf.ts) {
                let newer = mem.latest.get(&sid).is_none_or(|(t, _)| buf.ts[best] >= *t);
                if newer {
                    mem.latest.insert(sid, (buf.ts[best], buf.vals.get(best)));
                }
            }
        }
        let seg = SegmentWriter::create(backend, &wal_dir, (last_seg + 1).max(checkpoint))?;
        let head_points = mem.head.points();
        tracing::info!(
            dir = %dir.display(),
            series = catalog.len(),
            chunks = report.chunks_loaded,
            replayed_points = report.points_replayed,
            "telemetry store opened"
        );
        Ok(Tsdb {
            dir: dir.to_path_buf(),
            opts,
            catalog: RwLock::new(catalog),
            commit: CommitQueue::new(),
            wal: Mutex::new(seg),
            mem: RwLock::new(mem),
            chunks: RwLock::new(Arc::new(chunks)),
            maintenance: Mutex::new(()),
            horizons: RwLock::new(horizons),
            next_file_id: AtomicU64::new(next_file_id),
            head_points: AtomicUsize::new(head_points),
            frozen_points: AtomicUsize::new(0),
            report,
            closed: AtomicBool::new(false),
            poisoned: Mutex::new(None),
            stats: Stats::default(),
        })
    }

    /// What recovery found when this database was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The options in force (rollups sorted finest first).
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Writes a batch and returns once it is durable: appended to the WAL
    /// and covered by an fdatasync. Concurrent writers share one write and
    /// one fdatasync per group (group commit).
    ///
    /// The batch is atomic: it is validated whole (series names, finite
    /// floats, timestamps, value types, the series cap) and logged as one
    /// record, so either all of it is acknowledged or none. On a point whose
    /// series and timestamp already exist, the last write wins. On `Err`
    /// (including [`Error::DiskFull`]) nothing of the batch is acknowledged
    /// and nothing acknowledged earlier is lost.
    ///
    /// To write several independent batches (several publishers) with one
    /// WAL commit and a verdict per batch, use [`Tsdb::write_batches`].
    pub fn write(&self, batch: &[WritePoint]) -> Result<(), Error> {
        let mut verdicts = self.write_batches(&[batch])?;
        match verdicts.pop() {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Writes several independent batches (for instance one per publisher)
    /// with one WAL commit, and returns a verdict per batch, in order.
    ///
    /// Each batch is validated on its own, exactly as [`Tsdb::write`] does
    /// (finite floats, timestamps within
    /// [`crate::MIN_TIMESTAMP_MS`]`..=`[`crate::MAX_TIMESTAMP_MS`], series
    /// names, value types, [`Options::max_series_per_device`]). A batch that
    /// fails gets `Err(WriteError)` and is not stored, and leaves no trace
    /// (its new series are not registered); it does not affect the others.
    /// Batches are checked in order, so when two batches of one call give
    /// the same new series different types, the first one sets the type and
    /// the second is refused with [`WriteError::TypeConflict`].
    ///
    /// Every accepted batch is then logged as its own WAL record (each is
    /// atomic on replay), all of them in one append covered by one
    /// fdatasync, shared with concurrent writers (group commit). The call
    /// returns once they are durable.
    ///
    /// - `Ok(verdicts)`: `verdicts[i]` is `Ok(())` if `batches[i]` is
    ///   durable, `Err(_)` if it was refused. An empty batch is `Ok(())`.
    /// - `Err(e)`: storage failed (`Io`, `DiskFull`) or the database is
    ///   closed; none of the batches is acknowledged (some may still turn up
    ///   after a restart, as with any failed write), and nothing acknowledged
    ///   earlier is lost.
    ///
    /// ```no_run
    /// # fn demo(db: &tsdb::Tsdb, a: Vec<tsdb::WritePoint>, b: Vec<tsdb::WritePoint>) -> Result<(), tsdb::Error> {
    /// let verdicts = db.write_batches(&[&a, &b])?;
    /// for (i, v) in verdicts.iter().enumerate() {
    ///     if let Err(e) = v {
    ///         eprintln!("batch {i} refused: {e}"); // e.g. a type conflict
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn write_batches(
        &self,
        batches: &[&[WritePoint]],
    ) -> Result<Vec<Result<(), WriteError>>, Error> {
        self.check_writable()?;
        let mut verdicts = Vec::with_capacity(batches.len());
        let mut record = Vec::new();
        let mut runs = Vec::new();
        for batch in batches {
            if batch.is_empty() {
                verdicts.push(Ok(()));
                continue;
            }
            let verdict = self.resolve(batch).and_then(|r| {
                wal::encode_points(&r, &mut record).map_err(|e| match e {
                    Error::InvalidSeries(m) => WriteError::Invalid(m),
                    other => WriteError::Invalid(other.to_string()),
                })?;
                runs.extend(r);
                Ok(())
            });
            if let Err(e) = &verdict {
                self.stats.batches_refused.fetch_add(1, Ordering::Relaxed);
                if matches!(e, WriteError::TypeConflict { .. }) {
                    self.stats.type_conflicts.fetch_add(1, Ordering::Relaxed);
                }
            }
            verdicts.push(verdict);
        }
        if record.is_empty() {
            return Ok(verdicts);
        }
        self.backpressure()?;
        let res = self
            .commit
            .submit(Pending { record, runs }, &|group| self.commit_group(group));
        if let Err(Error::Poisoned(m)) = &res {
            *lock(&self.poisoned) = Some(m.clone());
        }
        res?;
        if self.head_points.load(Ordering::Relaxed) >= self.opts.head_max_points {
            if let Err(e) = self.flush_inner(None, self.opts.head_max_points) {
                // The batches are durable; the flush is retried by later writes.
                tracing::error!(error = %e, "automatic flush failed");
            }
        }
        Ok(verdicts)
    }

    /// Write counters since open.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            batches_refused: self.stats.batches_refused.load(Ordering::Relaxed),
            type_conflicts: self.stats.type_conflicts.load(Ordering::Relaxed),
            series_refused: self.stats.series_refused.load(Ordering::Relaxed),
        }
    }

    fn check_writable(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(m) = lock(&self.poisoned).as_ref() {
            return Err(Error::Poisoned(m.clone()));
        }
        Ok(())
    }

    /// Holds writers back while unflushed points exceed twice the head
    /// limit: the writer flushes itself, and fails if the flush fails.
    fn backpressure(&self) -> Result<(), Error> {
        let limit = self.opts.head_max_points.saturating_mul(2);
        let total =
            self.head_points.load(Ordering::Relaxed) + self.frozen_points.load(Ordering::Relaxed);
        if total < limit {
            return Ok(());
        }
        self.flush_inner(None, limit)?;
        Ok(())
    }

    /// The leader's work: one write + fdatasync for the whole group, then
    /// the points go into the head in log order.
    fn commit_group(&self, group: Vec<Pending>) -> Result<(), Error> {
        let mut seg = lock(&self.wal);
        // A segment poisoned by an earlier failure is replaced before the
        // series definitions below are chosen for the segment written to.
        seg.ensure_usable()?;
        if seg.len() >= self.opts.wal_segment_bytes {
            seg.rotate()?;
        }
        let total: usize = group.iter().map(|p| p.record.len()).sum();
        let mut buf = Vec::with_capacity(total + 256);
        let mut defined = Vec::new();
        {
            let cat = read(&self.catalog);
            for item in &group {
                for run in &item.runs {
                    if seg.needs_definition(run.sid) {
                        if let Some(e) = cat.entry(run.sid) {
                            wal::encode_series(run.sid, e.vtype, &e.key, &mut buf);
                            seg.mark_defined(run.sid);
                            defined.push(run.sid);
                        }
                    }
                }
                buf.extend_from_slice(&item.record);
            }
        }
        if let Err(e) = seg.append_durable(&buf) {
            for sid in defined {
                seg.forget_definition(sid);
            }
            return Err(e);
        }
        drop(seg);
        let mut mem = write(&self.mem);
        let mut added = 0;
        for item in &group {
            for run in &item.runs {
                apply_run(&mut mem, run.sid, &run.ts, &run.vals);
                added += run.ts.len();
            }
        }
        self.head_points.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }

    /// Runs `f` with no WAL commit in progress (used to freeze the head).
    pub(crate) fn with_commits_paused<R>(&self, f: impl FnOnce() -> R) -> R {
        self.commit.exclusive(f)
    }

    pub(crate) fn alloc_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Refuses further writes, waits for commits in progress and syncs the
    /// WAL. Unflushed points stay in the WAL and are replayed on the next
    /// open. Queries keep working.
    pub fn close(&self) -> Result<(), Error> {
        self.closed.store(true, Ordering::Release);
        self.with_commits_paused(|| lock(&self.wal).sync())
    }
}

/// Appends a run to the head and updates the latest-point table.
pub(crate) fn apply_run(mem: &mut Mem, sid: SeriesId, ts: &[i64], vals: &Column) {
    if ts.is_empty() {
        return;
    }
    mem.head.append(sid, ts, vals);
    let Some(best) = last_max(ts) else { return };
    let newer = mem.latest.get(&sid).is_none_or(|(t, _)| ts[best] >= *t);
    if newer {
        mem.latest.insert(sid, (ts[best], vals.get(best)));
    }
}

/// The index of the largest timestamp, the last one on a tie (the newest
/// write), or `None` for an empty run.
fn last_max(ts: &[i64]) -> Option<usize> {
    let mut best = 0;
    for i in 1..ts.len() {
        if ts[i] >= ts[best] {
            best = i;
        }
    }
    (!ts.is_empty()).then_some(best)
}

fn load_chunks(
    chunk_dir: &Path,
    catalog: &mut Catalog,
    report: &mut RecoveryReport,
) -> Result<(ChunkSet, u64), Error> {
    let mut paths = Vec::new();
    let rd = fs::read_dir(chunk_dir).map_err(|e| Error::io("listing chunk files", e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("listing chunk files", e))?;
        let path = ent.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("tmp") => {
                fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                report.temp_files_removed += 1;
            }
            Some("chunk") => paths.push(path),
            _ => {}
        }
    }
    paths.sort();
    let mut next_id = 1;
    let mut loaded = Vec::new();
    for path in paths {
        let mut resolve = |key: &crate::model::SeriesKey, vtype| {
            let key = Arc::new(key.clone());
            match catalog.get_or_insert(&key, vtype) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a series in chunk");
                    None
                }
            }
        };
        match Chunk::open(&path, &mut resolve) {
            Ok(c) => {
                next_id = next_id.max(c.meta.file_id + 1);
                loaded.push(Arc::new(c));
            }
            Err(e @ Error::UnsupportedVersion { .. }) => return Err(e),
            Err(e @ (Error::Io { .. } | Error::DiskFull { .. })) => return Err(e),
            Err(e) => {
                let bad = path.with_extension("chunk.corrupt");
                tracing::error!(path = %path.display(), error = %e, "chunk failed its checks; set aside");
                fs::rename(&path, &bad)
                    .map_err(|e| Error::io(format!("quarantining {}", path.display()), e))?;
                report.chunks_quarantined.push(bad);
            }
        }
    }
    report.chunks_loaded = loaded.len();
    Ok((
        ChunkSet::default().with_changes(loaded, &Default::default()),
        next_id,
    ))
}

fn replay(
    wal_dir: &Path,
    no: u64,
    catalog: &mut Catalog,
    mem: &mut Mem,
    report: &mut RecoveryReport,
) -> Result<(), Error> {
    // Ids in a segment are the writing process's; map them to ours.
    let mut ids: IdMap<Option<SeriesId>> = IdMap::default();
    let mut points = 0u64;
    let mut apply = |rec: WalRecord<'_>| -> Result<(), Error> {
        match rec {
            WalRecord::Series { sid, vtype, key } => {
                let ours = match catalog.get_or_insert(&key, vtype) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::warn!(error = %e, "WAL series conflicts with stored data; skipped");
                        None
                    }
                };
                ids.insert(sid, ours);
            }
            WalRecord::Points(rec) => {
                for (wal_sid, ts, vals) in rec.runs() {
                    let Some(Some(sid)) = ids.get(&wal_sid).copied() else {
                        continue;
                    };
                    if catalog.entry(sid).map(|e| e.vtype) != Some(vals.vtype()) {
                        continue;
                    }
                    points += ts.len() as u64;
                    mem.head.append_ref(sid, ts, vals);
                }
            }
        }
        Ok(())
    };
    wal::replay_segment(wal_dir, no, report, &mut apply)?;
    report.points_replayed += points;
    Ok(())
}
