//! Retention: per-namespace raw horizons and per-level rollup horizons.
//!
//! Exactly what `enforce_retention(now)` removes:
//! - raw points with `ts < now - retention(namespace)`: a chunk file whose
//!   newest point is older is deleted, a chunk file straddling the horizon
//!   is rewritten without the expired points, and expired points still in
//!   memory stop being visible at once (they are dropped when flushed);
//! - rollup buckets with `start + bucket_ms <= now - level retention`
//!   (a bucket is kept while any part of it is within retention), again by
//!   deleting or rewriting files.
//!
//! Horizons only move forward and are persisted (file `RETENTION`) before
//! any file is touched, so a crash never makes expired data reappear.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::chunk::{Chunk, ChunkKind};
use crate::commit::lock;
use crate::db::{read, write, Tsdb};
use crate::error::Error;
use crate::options::Options;
use crate::wal::write_atomic;
use crate::wire::{put_str, put_svar, put_u32, put_var, Reader};

const RET_MAGIC: &[u8; 8] = b"MWTSRET\0";
const RET_VERSION: u32 = 1;
const RET_FILE: &str = "RETENTION";

/// Horizons below which data is gone (or about to be).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Horizons {
    raw: BTreeMap<String, i64>,
    rollup: BTreeMap<i64, i64>,
}

impl Horizons {
    /// Raw points of `ns` with `ts < raw(ns)` are expired.
    pub(crate) fn raw(&self, ns: &str) -> i64 {
        self.raw.get(ns).copied().unwrap_or(i64::MIN)
    }

    /// Buckets of this level with `start + bucket_ms <= rollup(bucket_ms)` are expired.
    pub(crate) fn rollup(&self, bucket_ms: i64) -> i64 {
        self.rollup.get(&bucket_ms).copied().unwrap_or(i64::MIN)
    }

    /// Whether a rollup bucket is still within retention.
    pub(crate) fn bucket_live(&self, bucket_ms: i64, start: i64) -> bool {
        start.saturating_add(bucket_ms) > self.rollup(bucket_ms)
    }

    /// Moves horizons forward to `now`; returns whether anything changed.
    pub(crate) fn advance<'a>(
        &mut self,
        now: i64,
        opts: &Options,
        namespaces: impl Iterator<Item = &'a str>,
    ) -> bool {
        let mut changed = false;
        for ns in namespaces {
            let h = now.saturating_sub(opts.retention_for(ns));
            let e = self.raw.entry(ns.to_string()).or_insert(i64::MIN);
            if h > *e {
                *e = h;
                changed = true;
            }
        }
        for l in &opts.rollups {
            let h = now.saturating_sub(l.retention_ms);
            let e = self.rollup.entry(l.bucket_ms).or_insert(i64::MIN);
            if h > *e {
                *e = h;
                changed = true;
            }
        }
        changed
    }

    pub(crate) fn load(dir: &Path) -> Result<Horizons, Error> {
        let bytes = match std::fs::read(dir.join(RET_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Horizons::default()),
            Err(e) => return Err(Error::io("reading retention horizons", e)),
        };
        if bytes.len() < 4 {
            return Err(Error::corrupt("retention horizons", "too short"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(Error::corrupt("retention horizons", "checksum mismatch"));
        }
        let mut r = Reader::new(body, "retention horizons");
        if r.take(8)? != RET_MAGIC {
            return Err(r.err("bad magic"));
        }
        let v = r.u32()?;
        if v == 0 || v > RET_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "retention horizons".into(),
                found: v,
                supported: RET_VERSION,
            });
        }
        let mut h = Horizons::default();
        for _ in 0..r.len(r.remaining())? {
            let ns = r.str()?.to_string();
            h.raw.insert(ns, r.svar()?);
        }
        for _ in 0..r.len(r.remaining())? {
            let ms = r.svar()?;
            h.rollup.insert(ms, r.svar()?);
        }
        Ok(h)
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), Error> {
        let mut b = Vec::new();
        b.extend_from_slice(RET_MAGIC);
        put_u32(&mut b, RET_VERSION);
        put_var(&mut b, self.raw.len() as u64);
        for (ns, h) in &self.raw {
            put_str(&mut b, ns);
            put_svar(&mut b, *h);
        }
        put_var(&mut b, self.rollup.len() as u64);
        for (ms, h) in &self.rollup {
            put_svar(&mut b, *ms);
            put_svar(&mut b, *h);
        }
        let crc = crc32fast::hash(&b);
        put_u32(&mut b, crc);
        write_atomic(dir, RET_FILE, &b)
    }
}

/// What a maintenance call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceStats {
    /// Chunk files written.
    pub files_written: usize,
    /// Chunk files deleted.
    pub files_removed: usize,
    /// Points (raw) or buckets (rollups) in the files written.
    pub points_written: u64,
    /// Bytes of the files written.
    pub bytes_written: u64,
}

impl Tsdb {
    /// Moves horizons to `now` and persists them if they moved. The caller
    /// holds the maintenance lock.
    pub(crate) fn advance_horizons(&self, now: i64) -> Result<Horizons, Error> {
        let namespaces: Vec<Arc<str>> = {
            let cat = read(&self.catalog);
            let mut v: Vec<Arc<str>> = cat.namespaces().cloned().collect();
            for c in read(&self.chunks).all() {
                v.push(c.meta.namespace.clone());
            }
            v.sort();
            v.dedup();
            v
        };
        let mut h = read(&self.horizons).clone();
        if h.advance(now, &self.opts, namespaces.iter().map(|s| s.as_ref())) {
            h.save(&self.dir)?;
            *write(&self.horizons) = h.clone();
        }
        Ok(h)
    }

    /// Applies retention as of `now` (see the module documentation for
    /// exactly what is removed). Returns what was rewritten and deleted.
    pub fn enforce_retention(&self, now: i64) -> Result<MaintenanceStats, Error> {
        let _m = lock(&self.maintenance);
        let h = self.advance_horizons(now)?;
        let mut stats = MaintenanceStats::default();
        // Rollups outlive raw data: materialize them before raw points go.
        self.materialize_rollups(&h, &mut stats)?;
        let cs = read(&self.chunks).clone();
        let mut drop_whole: Vec<Arc<Chunk>> = Vec::new();
        let mut rewrite: Vec<Arc<Chunk>> = Vec::new();
        for c in cs.all() {
            let (expired_all, expired_some) = match c.meta.kind {
                ChunkKind::Raw => {
                    let hz = h.raw(&c.meta.namespace);
                    (c.max_ts < hz, c.min_ts < hz)
                }
                ChunkKind::Rollup(ms) => {
                    (!h.bucket_live(ms, c.max_ts), !h.bucket_live(ms, c.min_ts))
                }
            };
            if expired_all {
                drop_whole.push(c.clone());
            } else if expired_some {
                rewrite.push(c.clone());
            }
        }
        let mut built = Vec::new();
        for c in &rewrite {
            if let Some(b) = self.merge_chunks(std::slice::from_ref(c), &h)? {
                built.push(b);
            } else {
                drop_whole.push(c.clone());
            }
        }
        let old: Vec<Arc<Chunk>> = drop_whole.into_iter().chain(rewrite).collect();
        let removed: HashSet<u64> = old.iter().map(|c| c.meta.file_id).collect();
        self.replace_chunks(built, &removed, &old, &mut stats)?;
        if stats.files_removed > 0 {
            tracing::info!(
                files_removed = stats.files_removed,
                files_written = stats.files_written,
                "retention enforced"
            );
        }
        Ok(stats)
    }
}
