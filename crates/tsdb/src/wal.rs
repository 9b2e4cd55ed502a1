//! The write-ahead log: segment files of length-prefixed, CRC32-checked
//! records. See `FORMAT.md` for the byte layout.
//!
//! A segment is self-contained: a series is defined (id -> key) in a segment
//! before the first points record that uses it there, so segments can be
//! deleted independently once a flush covers them.

mod backend;

pub use backend::{FsWalBackend, WalBackend, WalFile};

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::SeriesId;
use crate::column::Column;
use crate::error::Error;
use crate::model::{SeriesKey, ValueType, MAX_LABELS};
use crate::recovery::{RecoveryReport, TruncatedWal};
use backend::write_all_at;

use crate::wire::{
    put_bytes, put_f64, put_str, put_svar, put_u32, put_u64, put_u8, put_var, Reader,
};

pub(crate) const WAL_MAGIC: &[u8; 8] = b"MWTSWAL\0";
pub(crate) const WAL_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 8;
/// Largest record accepted, so a corrupt length cannot cause a huge read.
pub(crate) const MAX_RECORD_LEN: usize = 1 << 30;

const REC_SERIES: u8 = 1;
const REC_POINTS: u8 = 2;

/// The points of one series in one batch, in write order.
#[derive(Debug)]
pub(crate) struct SeriesRun {
    pub(crate) sid: SeriesId,
    pub(crate) ts: Vec<i64>,
    pub(crate) vals: Column,
}

pub(crate) fn segment_path(wal_dir: &Path, no: u64) -> PathBuf {
    wal_dir.join(format!("{no:020}.wal"))
}

/// Frames a payload as a record: length, CRC32, payload.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    put_u32(out, payload.len() as u32);
    put_u32(out, crc32fast::hash(payload));
    out.extend_from_slice(payload);
}

/// Encodes a points record for `runs` (ids are this process's ids).
pub(crate) fn encode_points(runs: &[SeriesRun], out: &mut Vec<u8>) -> Result<(), Error> {
    let mut p = Vec::with_capacity(16 + runs.iter().map(|r| r.ts.len() * 10).sum::<usize>());
    put_u8(&mut p, REC_POINTS);
    put_var(&mut p, runs.len() as u64);
    for run in runs {
        put_var(&mut p, u64::from(run.sid));
        put_u8(&mut p, run.vals.vtype().code());
        put_var(&mut p, run.ts.len() as u64);
        let mut prev = 0i64;
        for &t in &run.ts {
            put_svar(&mut p, t.wrapping_sub(prev));
            prev = t;
        }
        match &run.vals {
            Column::F64(v) => v.iter().for_each(|x| put_f64(&mut p, *x)),
            Column::I64(v) => v.iter().for_each(|x| put_svar(&mut p, *x)),
            Column::Bool(v) => v.iter().for_each(|x| put_u8(&mut p, u8::from(*x))),
            Column::Str(v) => v.iter().for_each(|x| put_bytes(&mut p, x.as_bytes())),
        }
    }
    if p.len() > MAX_RECORD_LEN {
        return Err(Error::InvalidSeries(format!(
            "batch encodes to {} bytes, more than the {MAX_RECORD_LEN} a WAL record holds",
            p.len()
        )));
    }
    frame(&p, out);
    Ok(())
}

/// Encodes a series definition record.
pub(crate) fn encode_series(sid: SeriesId, vtype: ValueType, key: &SeriesKey, out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(64);
    put_u8(&mut p, REC_SERIES);
    put_var(&mut p, u64::from(sid));
    put_u8(&mut p, vtype.code());
    put_str(&mut p, key.namespace());
    put_str(&mut p, key.device());
    put_str(&mut p, key.metric());
    put_var(&mut p, key.labels().len() as u64);
    for (k, v) in key.labels() {
        put_str(&mut p, k);
        put_str(&mut p, v);
    }
    frame(&p, out);
}

/// A decoded WAL record. Ids are the writing process's ids, valid within
/// the segment only.
pub(crate) enum WalRecord<'a> {
    Series {
        sid: SeriesId,
        vtype: ValueType,
        key: Arc<SeriesKey>,
    },
    Points(&'a PointsRecord),
}

/// A run's values, borrowed from a [`PointsRecord`].
#[derive(Clone, Copy)]
pub(crate) enum ColRef<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
    Bool(&'a [bool]),
    Str(&'a [Arc<str>]),
}

impl ColRef<'_> {
    pub(crate) fn vtype(&self) -> ValueType {
        match self {
            ColRef::F64(_) => ValueType::F64,
            ColRef::I64(_) => ValueType::I64,
            ColRef::Bool(_) => ValueType::Bool,
            ColRef::Str(_) => ValueType::Str,
        }
    }
}

/// A decoded points record, flat: every run's timestamps in one vector and
/// its values in the vector of its type. Replay decodes every record into
/// the same one, so a record costs no allocation per run.
#[derive(Default)]
pub(crate) struct PointsRecord {
    runs: Vec<RunRef>,
    ts: Vec<i64>,
    f64s: Vec<f64>,
    i64s: Vec<i64>,
    bools: Vec<bool>,
    strs: Vec<Arc<str>>,
}

struct RunRef {
    sid: SeriesId,
    vtype: ValueType,
    ts: usize,
    val: usize,
    len: usize,
}

impl PointsRecord {
    fn clear(&mut self) {
        self.runs.clear();
        self.ts.clear();
        self.f64s.clear();
        self.i64s.clear();
        self.bools.clear();
        self.strs.clear();
    }

    /// The runs: (writer's series id, timestamps, values).
    pub(crate) fn runs(&self) -> impl Iterator<Item = (SeriesId, &[i64], ColRef<'_>)> {
        self.runs.iter().map(|r| {
            let vals = match r.vtype {
                ValueType::F64 => ColRef::F64(&self.f64s[r.val..r.val + r.len]),
                ValueType::I64 => ColRef::I64(&self.i64s[r.val..r.val + r.len]),
                ValueType::Bool => ColRef::Bool(&self.bools[r.val..r.val + r.len]),
                ValueType::Str => ColRef::Str(&self.strs[r.val..r.val + r.len]),
            };
            (r.sid, &self.ts[r.ts..r.ts + r.len], vals)
        })
    }
}

fn decode_record<'a>(
    payload: &[u8],
    scratch: &'a mut PointsRecord,
) -> Result<WalRecord<'a>, Error> {
    let mut r = Reader::new(payload, "WAL record");
    match r.u8()? {
        REC_SERIES => {
            let sid = sid(&mut r)?;
            let vtype = vtype(&mut r)?;
            let ns: Arc<str> = Arc::from(r.str()?);
            let device: Arc<str> = Arc::from(r.str()?);
            let metric: Arc<str> = Arc::from(r.str()?);
            let n = r.len(MAX_LABELS)?;
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                labels.push((Arc::from(r.str()?), Arc::from(r.str()?)));
            }
            let key = Arc::new(SeriesKey::from_parts(ns, device, metric, labels));
            Ok(WalRecord::Series { sid, vtype, key })
        }
        REC_POINTS => {
            scratch.clear();
            let nruns = r.len(r.remaining())?;
            scratch.runs.reserve(nruns);
            for _ in 0..nruns {
                let sid = sid(&mut r)?;
                let vtype = vtype(&mut r)?;
                let n = r.len(r.remaining())?;
                let ts_at = scratch.ts.len();
                let mut prev = 0i64;
                for _ in 0..n {
                    prev = prev.wrapping_add(r.svar()?);
                    scratch.ts.push(prev);
                }
                let val_at = match vtype {
                    ValueType::F64 => {
                        let at = scratch.f64s.len();
                        for _ in 0..n {
                            scratch.f64s.push(r.f64()?);
                        }
                        at
                    }
                    ValueType::I64 => {
                        let at = scratch.i64s.len();
                        for _ in 0..n {
                            scratch.i64s.push(r.svar()?);
                        }
                        at
                    }
                    ValueType::Bool => {
                        let at = scratch.bools.len();
                        for _ in 0..n {
                            scratch.bools.push(r.u8()? != 0);
                        }
                        at
                    }
                    ValueType::Str => {
                        let at = scratch.strs.len();
                        for _ in 0..n {
                            scratch.strs.push(Arc::from(r.str()?));
                        }
                        at
                    }
                };
                scratch.runs.push(RunRef {
                    sid,
                    vtype,
                    ts: ts_at,
                    val: val_at,
                    len: n,
                });
            }
            Ok(WalRecord::Points(scratch))
        }
        t => Err(r.err(format!("unknown record type {t}"))),
    }
}

fn sid(r: &mut Reader<'_>) -> Result<SeriesId, Error> {
    let v = r.var()?;
    SeriesId::try_from(v).map_err(|_| r.err("series id exceeds 32 bits"))
}

fn vtype(r: &mut Reader<'_>) -> Result<ValueType, Error> {
    let t = r.u8()?;
    ValueType::from_code(t).ok_or_else(|| r.err(format!("unknown value type {t}")))
}

fn segment_header(no: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
    h.extend_from_slice(WAL_MAGIC);
    put_u32(&mut h, WAL_VERSION);
    put_u32(&mut h, 0);
    put_u64(&mut h, no);
    h
}

/// The open segment being appended to. Only the commit leader touches it.
///
/// Failure handling: `len` is always the end of the last record that was
/// synced, so the file holds acknowledged records up to `len` and nothing
/// acknowledged after it. A failed write cuts the file back to `len` and
/// the next record goes there (positional writes, so no cursor can drift
/// past a hole). A failed fdatasync, or a failed cut, *poisons* the
/// segment: what the failed sync covered may be lost even if a later sync
/// reports success (Linux marks the pages clean), so the writer never
/// appends to or syncs that file again. Its tail is cut back on a best
/// effort basis, and the next commit first starts a new segment (and keeps
/// failing, without touching any file it has synced, until it can).
pub(crate) struct SegmentWriter {
    backend: Arc<dyn WalBackend>,
    dir: PathBuf,
    /// `None` while poisoned: the next append must rotate first.
    file: Option<Box<dyn WalFile>>,
    no: u64,
    len: u64,
    /// For each series id, the segment number + 1 that last defined it.
    defined: Vec<u64>,
}

impl SegmentWriter {
    /// Creates segment `no` (header written and synced, directory synced).
    pub(crate) fn create(
        backend: Arc<dyn WalBackend>,
        dir: &Path,
        no: u64,
    ) -> Result<SegmentWriter, Error> {
        let file = create_segment(&*backend, dir, no)?;
        Ok(SegmentWriter {
            backend,
            dir: dir.to_path_buf(),
            file: Some(file),
            no,
            len: SEGMENT_HEADER_LEN as u64,
            defined: Vec::new(),
        })
    }

    pub(crate) fn no(&self) -> u64 {
        self.no
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether a failure poisoned the current segment (the next commit
    /// starts a new one).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.file.is_none()
    }

    /// Whether `sid` must be defined in this segment before use.
    pub(crate) fn needs_definition(&self, sid: SeriesId) -> bool {
        self.defined.get(sid as usize).copied() != Some(self.no + 1)
    }

    pub(crate) fn mark_defined(&mut self, sid: SeriesId) {
        let i = sid as usize;
        if self.defined.len() <= i {
            self.defined.resize(i + 1, 0);
        }
        self.defined[i] = self.no + 1;
    }

    pub(crate) fn forget_definition(&mut self, sid: SeriesId) {
        if let Some(d) = self.defined.get_mut(sid as usize) {
            *d = 0;
        }
    }

    /// Appends `bytes` at the end of the last good record and makes them
    /// durable (write + fdatasync). On error nothing of `bytes` counts as
    /// written: the segment is cut back, or poisoned (see the type's doc).
    /// A poisoned writer refuses appends; call [`SegmentWriter::rotate`]
    /// first. The caller must encode `bytes` for the segment it will land
    /// in (series definitions are per segment).
    pub(crate) fn append_durable(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let no = self.no;
        let ctx = || format!("appending to WAL segment {no}");
        let Some(file) = self.file.as_mut() else {
            return Err(Error::io(
                ctx(),
                io::Error::other("the segment is poisoned by an earlier failure"),
            ));
        };
        if let Err(e) = write_all_at(&mut **file, bytes, self.len) {
            let err = Error::io(ctx(), e);
            if let Err(e2) = file.set_len(self.len) {
                tracing::error!(segment = no, error = %e2, "could not cut a failed WAL append back; starting a new segment");
                self.poison();
            }
            return Err(err);
        }
        if let Err(e) = file.sync_data() {
            tracing::error!(segment = no, error = %e, "WAL fdatasync failed; the segment is abandoned and a new one started");
            // Best effort: the bytes after `len` were never acknowledged.
            let _ = file.set_len(self.len);
            self.poison();
            return Err(Error::io(ctx(), e));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn poison(&mut self) {
        self.file = None;
    }

    /// Closes this segment and starts the next one; returns the new number.
    /// On failure the current segment stays in use (or poisoned); a
    /// half-created next segment is created again by the next attempt.
    pub(crate) fn rotate(&mut self) -> Result<u64, Error> {
        let file = create_segment(&*self.backend, &self.dir, self.no + 1)?;
        self.file = Some(file);
        self.no += 1;
        self.len = SEGMENT_HEADER_LEN as u64;
        Ok(self.no)
    }

    /// Starts a new segment if the current one is poisoned.
    pub(crate) fn ensure_usable(&mut self) -> Result<(), Error> {
        if self.is_poisoned() {
            self.rotate()?;
        }
        Ok(())
    }

    /// Syncs the segment (at close). A poisoned segment has nothing
    /// acknowledged that was not synced.
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = file.sync_data() {
            self.poison();
            return Err(Error::io("syncing the WAL", e));
        }
        Ok(())
    }
}

/// Creates a segment file with its header, synced, and syncs the directory.
fn create_segment(
    backend: &dyn WalBackend,
    dir: &Path,
    no: u64,
) -> Result<Box<dyn WalFile>, Error> {
    let path = segment_path(dir, no);
    let ctx = || format!("creating WAL segment {}", path.display());
    let mut file = backend.create(&path).map_err(|e| Error::io(ctx(), e))?;
    write_all_at(&mut *file, &segment_header(no), 0)
        .and_then(|_| file.sync_data())
        .and_then(|_| backend.sync_dir(dir))
        .map_err(|e| Error::io(ctx(), e))?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Lists segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| Error::io("listing the WAL directory", e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("listing the WAL directory", e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal") {
            if let Ok(no) = stem.parse::<u64>() {
                out.push(no);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Replays one segment, calling `apply` for every good record. A torn or
/// corrupt record ends the segment: the file is truncated there and the
/// truncation is added to `report`.
pub(crate) fn replay_segment(
    dir: &Path,
    no: u64,
    report: &mut RecoveryReport,
    apply: &mut dyn FnMut(WalRecord<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let path = segment_path(dir, no);
    let bytes = fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let header_ok = bytes.len() >= SEGMENT_HEADER_LEN && &bytes[..8] == WAL_MAGIC;
    if !header_ok {
        // A crash while creating the segment leaves a short or empty file.
        let reason = if bytes.len() < SEGMENT_HEADER_LEN {
            "segment shorter than its header"
        } else {
            "bad segment magic"
        };
        truncate(&path, 0)?;
        fs::write(&path, segment_header(no))
            .map_err(|e| Error::io(format!("rewriting header of {}", path.display()), e))?;
        report.note_truncation(TruncatedWal {
            path,
            offset: 0,
            dropped_bytes: bytes.len() as u64,
            reason: reason.to_string(),
        });
        return Ok(());
    }
    let mut h = Reader::new(&bytes[8..SEGMENT_HEADER_LEN], "WAL segment header");
    let version = h.u32()?;
    if version == 0 || version > WAL_VERSION {
        return Err(Error::UnsupportedVersion {
            what: format!("WAL segment {}", path.display()),
            found: version,
            supported: WAL_VERSION,
        });
    }
    report.segments_replayed += 1;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut scratch = PointsRecord::default();
    while pos < bytes.len() {
        match next_record(&bytes[pos..]) {
            Ok((payload, used)) => {
                match decode_record(payload, &mut scratch) {
                    Ok(rec) => apply(rec)?,
                    Err(e) => {
                        return cut(
                            &path,
                            pos,
                            &bytes,
                            format!("undecodable record: {e}"),
                            report,
                        )
                    }
                }
                report.records_replayed += 1;
                pos += used;
            }
            Err(reason) => return cut(&path, pos, &bytes, reason, report),
        }
    }
    Ok(())
}

fn cut(
    path: &Path,
    pos: usize,
    bytes: &[u8],
    reason: String,
    report: &mut RecoveryReport,
) -> Result<(), Error> {
    truncate(path, pos as u64)?;
    report.note_truncation(TruncatedWal {
        path: path.to_path_buf(),
        offset: pos as u64,
        dropped_bytes: (bytes.len() - pos) as u64,
        reason,
    });
    Ok(())
}

fn next_record(buf: &[u8]) -> Result<(&[u8], usize), String> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(format!("torn record header ({} bytes)", buf.len()));
    }
    let mut r = Reader::new(&buf[..RECORD_HEADER_LEN], "WAL record header");
    let len = r.u32().map_err(|e| e.to_string())? as usize;
    let crc = r.u32().map_err(|e| e.to_string())?;
    if len == 0 || len > MAX_RECORD_LEN {
        return Err(format!("implausible record length {len}"));
    }
    let end = RECORD_HEADER_LEN + len;
    if buf.len() < end {
        return Err(format!(
            "torn record: {len} bytes announced, {} present",
            buf.len() - RECORD_HEADER_LEN
        ));
    }
    let payload = &buf[RECORD_HEADER_LEN..end];
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok((payload, end))
}

fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let ctx = || format!("truncating {}", path.display());
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(ctx(), e))?;
    f.set_len(len)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(ctx(), e))
}

/// The checkpoint names the first segment not covered by chunk files;
/// older segments are garbage even if a crash kept them on disk.
pub(crate) fn read_checkpoint(dir: &Path) -> Result<u64, Error> {
    let path = dir.join("CHECKPOINT");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("reading the WAL checkpoint", e)),
    };
    let mut r = Reader::new(&bytes, "WAL checkpoint");
    let no = r.u64()?;
    let crc = r.u32()?;
    if crc != crc32fast::hash(&no.to_le_bytes()) {
        return Err(Error::corrupt("WAL checkpoint", "checksum mismatch"));
    }
    Ok(no)
}

pub(crate) fn write_checkpoint(dir: &Path, no: u64) -> Result<(), Error> {
    let mut b = Vec::with_capacity(12);
    put_u64(&mut b, no);
    put_u32(&mut b, crc32fast::hash(&no.to_le_bytes()));
    write_atomic(dir, "CHECKPOINT", &b)
}

/// Writes `name` in `dir` through a temporary file, fsync and rename.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let ctx = || format!("writing {}", dst.display());
    let mut f = File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(ctx(), e))?;
    fs::rename(&tmp, &dst).map_err(|e| Error::io(ctx(), e))?;
    sync_dir(dir)
}
