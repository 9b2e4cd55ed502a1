//! Flushing the head into chunk files, maintaining rollups on the way,
//! and compaction of a partition's chunk files into one.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::SeriesId;
use crate::chunk::{Chunk, ChunkBuilder, ChunkKind, ChunkMeta};
use crate::chunkset::{clip, ChunkSet};
use crate::column::Column;
use crate::commit::lock;
use crate::db::{read, write, Tsdb};
use crate::error::Error;
use crate::head::{merge_newest_wins, Head};
use crate::model::{SeriesKey, ValueType};
use crate::retention::{Horizons, MaintenanceStats};
use crate::rollup::updated_buckets;
use crate::summary::Summary;
use crate::wal::{self, sync_dir};

type BuilderKey = (ChunkKind, Arc<str>, i64);

impl Tsdb {
    /// Moves the head into chunk files (one per namespace and time
    /// partition, plus one per rollup level) and deletes the WAL segments
    /// this covers. `now` first advances the retention horizons (as
    /// [`Tsdb::enforce_retention`] would, without rewriting files), so
    /// points already past retention are not written as raw data.
    ///
    /// On error (for example [`Error::DiskFull`]) nothing is lost: the
    /// frozen points stay in memory and in the WAL and the next flush
    /// retries them.
    pub fn flush(&self, now: i64) -> Result<MaintenanceStats, Error> {
        self.flush_inner(Some(now), 0)
    }

    /// Flushes if at least `min_points` are unflushed once the maintenance
    /// lock is held (writers racing to flush a full head flush it once).
    pub(crate) fn flush_inner(
        &self,
        now: Option<i64>,
        min_points: usize,
    ) -> Result<MaintenanceStats, Error> {
        let _m = lock(&self.maintenance);
        let unflushed =
            self.head_points.load(Ordering::Relaxed) + self.frozen_points.load(Ordering::Relaxed);
        if unflushed < min_points {
            return Ok(MaintenanceStats::default());
        }
        let horizons = match now {
            Some(now) => self.advance_horizons(now)?,
            None => read(&self.horizons).clone(),
        };
        // Freeze the head and start a new WAL segment at one instant, with
        // no commit in flight: every point in older segments is then frozen.
        let frozen_upto = self.with_commits_paused(|| -> Result<Option<u64>, Error> {
            let mut mem = write(&self.mem);
            if mem.head.is_empty() {
                return Ok(None);
            }
            let no = lock(&self.wal).rotate()?;
            let head = std::mem::take(&mut mem.head);
            let n = head.points();
            mem.frozen.push(Arc::new(head));
            self.head_points.fetch_sub(n, Ordering::Relaxed);
            self.frozen_points.fetch_add(n, Ordering::Relaxed);
            Ok(Some(no))
        })?;
        let frozen: Vec<Arc<Head>> = read(&self.mem).frozen.clone();
        if frozen.is_empty() {
            return Ok(MaintenanceStats::default());
        }
        let upto = match frozen_upto {
            Some(no) => no,
            // Only heads left over from a failed flush: the current segment
            // started after them.
            None => lock(&self.wal).no(),
        };
        let frozen_n: usize = frozen.iter().map(|h| h.points()).sum();

        let mut stats = MaintenanceStats::default();
        // Partitions the raw horizon has entered get their rollup chunks
        // before this flush updates them.
        self.materialize_rollups(&horizons, &mut stats)?;
        let builders = self.build_flush(&frozen, &horizons)?;
        let new = self.write_chunks(builders, &mut stats)?;
        {
            let mut mem = write(&self.mem);
            let mut cs = write(&self.chunks);
            *cs = Arc::new(cs.with_changes(new, &HashSet::new()));
            mem.frozen.drain(..frozen.len());
        }
        self.frozen_points.fetch_sub(frozen_n, Ordering::Relaxed);

        let wal_dir = self.dir.join("wal");
        wal::write_checkpoint(&wal_dir, upto)?;
        for no in wal::list_segments(&wal_dir)? {
            if no < upto {
                let p = wal::segment_path(&wal_dir, no);
                if let Err(e) = fs::remove_file(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove a flushed WAL segment");
                }
            }
        }
        tracing::debug!(
            points = frozen_n,
            files = stats.files_written,
            "flushed head"
        );
        Ok(stats)
    }

    /// Builds raw and rollup chunks for the frozen heads.
    fn build_flush(
        &self,
        frozen: &[Arc<Head>],
        horizons: &Horizons,
    ) -> Result<Vec<ChunkBuilder>, Error> {
        let mut sids: Vec<SeriesId> = frozen
            .iter()
            .flat_map(|h| h.iter().map(|(sid, _)| sid))
            .collect();
        sids.sort_unstable();
        sids.dedup();
        let keys: Vec<(SeriesId, Arc<SeriesKey>, ValueType)> = {
            let cat = read(&self.catalog);
            sids.iter()
                .filter_map(|&sid| cat.entry(sid).map(|e| (sid, e.key.clone(), e.vtype)))
                .collect()
        };
        let cs = read(&self.chunks).clone();
        let mut builders: BTreeMap<BuilderKey, ChunkBuilder> = BTreeMap::new();
        let pms = self.opts.partition_ms;
        for (sid, key, vtype) in keys {
            let runs: Vec<(Vec<i64>, Column)> = frozen
                .iter()
                .filter_map(|h| h.get(sid))
                .map(|b| (b.ts.clone(), b.vals.clone()))
                .collect();
            let (ts, col) = merge_newest_wins(vtype, runs);
            let ns = key.namespace_arc().clone();
            let raw_h = horizons.raw(&ns);
            // Raw chunks, split by partition, without expired points.
            let (rts, rcol) = clip(ts.clone(), col.clone(), raw_h, i64::MAX);
            let mut i = 0;
            while i < rts.len() {
                let p = rts[i].div_euclid(pms) * pms;
                let j = rts.partition_point(|&t| t < p.saturating_add(pms));
                let keep: Vec<usize> = (i..j).collect();
                let b = self.builder(&mut builders, ChunkKind::Raw, &ns, p);
                b.add_raw((*key).clone(), &rts[i..j], &rcol.select(&keep))?;
                i = j;
            }
            if !vtype.is_numeric() || ts.is_empty() {
                continue;
            }
            for level in &self.opts.rollups {
                let l = level.bucket_ms;
                // Only partitions whose rollups are stored (deferred
                // rollups: see the rollup module).
                let keep = stored_points(&ts, pms, |p| self.rollup_stored(&cs, l, &ns, p, raw_h));
                let (rts, rcol) = match keep {
                    None => (ts.clone(), col.clone()),
                    Some(keep) if keep.is_empty() => continue,
                    Some(keep) => (keep.iter().map(|&i| ts[i]).collect(), col.select(&keep)),
                };
                let lo = rts[0].div_euclid(l) * l;
                let hi = rts[rts.len() - 1].div_euclid(l) * l + l;
                let existing = cs.read_rollup(l, &ns, sid, lo, hi, &self.stats)?;
                let mut raw = |a: i64, b: i64| cs.read_raw(&ns, sid, a, b, &self.stats);
                let updated = updated_buckets(l, &rts, &rcol, &existing, raw_h, &mut raw)?;
                self.add_rollup_buckets(&mut builders, l, &key, vtype, updated, horizons)?;
            }
        }
        Ok(builders.into_values().filter(|b| !b.is_empty()).collect())
    }

    fn builder<'a>(
        &self,
        builders: &'a mut BTreeMap<BuilderKey, ChunkBuilder>,
        kind: ChunkKind,
        ns: &Arc<str>,
        partition_start: i64,
    ) -> &'a mut ChunkBuilder {
        builders
            .entry((kind, ns.clone(), partition_start))
            .or_insert_with(|| {
                ChunkBuilder::new(
                    ChunkMeta {
                        kind,
                        namespace: ns.clone(),
                        partition_start,
                        partition_ms: self.opts.partition_ms,
                        file_id: 0,
                    },
                    self.opts.compression_level,
                )
            })
    }

    fn add_rollup_buckets(
        &self,
        builders: &mut BTreeMap<BuilderKey, ChunkBuilder>,
        bucket_ms: i64,
        key: &Arc<SeriesKey>,
        vtype: ValueType,
        updated: Vec<(i64, Summary)>,
        horizons: &Horizons,
    ) -> Result<(), Error> {
        let pms = self.opts.partition_ms;
        let live: Vec<(i64, Summary)> = updated
            .into_iter()
            .filter(|(b, _)| horizons.bucket_live(bucket_ms, *b))
            .collect();
        let mut i = 0;
        while i < live.len() {
            let p = live[i].0.div_euclid(pms) * pms;
            let mut j = i;
            while j < live.len() && live[j].0 < p.saturating_add(pms) {
                j += 1;
            }
            let buckets: Vec<i64> = live[i..j].iter().map(|x| x.0).collect();
            let sums: Vec<Summary> = live[i..j].iter().map(|x| x.1).collect();
            let ns = key.namespace_arc().clone();
            self.builder(builders, ChunkKind::Rollup(bucket_ms), &ns, p)
                .add_rollup((**key).clone(), vtype, &buckets, &sums)?;
            i = j;
        }
        Ok(())
    }

    /// Writes chunk files (temporary name, fsync, rename, directory fsync)
    /// and opens them. On error, files written so far are removed.
    pub(crate) fn write_chunks(
        &self,
        builders: Vec<ChunkBuilder>,
        stats: &mut MaintenanceStats,
    ) -> Result<Vec<Arc<Chunk>>, Error> {
        let dir = self.dir.join("chunks");
        let mut written: Vec<PathBuf> = Vec::new();
        let res = (|| -> Result<Vec<Arc<Chunk>>, Error> {
            let mut out = Vec::new();
            for mut b in builders {
                let id = self.alloc_file_id();
                b.set_file_id(id);
                let points = b.points();
                let bytes = b.finish()?;
                let path = dir.join(format!("{id:016x}.chunk"));
                let tmp = path.with_extension("chunk.tmp");
                let ctx = || format!("writing chunk {}", path.display());
                let mut f = fs::File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
                let r = f.write_all(&bytes).and_then(|_| f.sync_all());
                if let Err(e) = r {
                    let _ = fs::remove_file(&tmp);
                    return Err(Error::io(ctx(), e));
                }
                fs::rename(&tmp, &path).map_err(|e| Error::io(ctx(), e))?;
                written.push(path.clone());
                stats.files_written += 1;
                stats.points_written += points;
                stats.bytes_written += bytes.len() as u64;
                out.push(path);
            }
            sync_dir(&dir)?;
            let cat = read(&self.catalog);
            let mut resolve = |k: &SeriesKey, t: ValueType| {
                cat.get(k).and_then(|(id, vt)| (vt == t).then_some(id))
            };
            out.iter()
                .map(|p| Chunk::open(p, &mut resolve).map(Arc::new))
                .collect()
        })();
        if res.is_err() {
            for p in written {
                let _ = fs::remove_file(p);
            }
        }
        res
    }

    /// Writes `built`, publishes it in place of `old`, then deletes the old files.
    pub(crate) fn replace_chunks(
        &self,
        built: Vec<ChunkBuilder>,
        removed: &HashSet<u64>,
        old: &[Arc<Chunk>],
        stats: &mut MaintenanceStats,
    ) -> Result<(), Error> {
        let new = self.write_chunks(built, stats)?;
        {
            let mut cs = write(&self.chunks);
            *cs = Arc::new(cs.with_changes(new, removed));
        }
        for c in old {
            match fs::remove_file(&c.path) {
                Ok(()) => stats.files_removed += 1,
                Err(e) => {
                    tracing::warn!(path = %c.path.display(), error = %e, "could not remove a replaced chunk")
                }
            }
        }
        if !old.is_empty() {
            sync_dir(&self.dir.join("chunks"))?;
        }
        Ok(())
    }

    /// Merges chunks of one (kind, namespace, partition), oldest first, into
    /// one builder: newest wins per timestamp (raw) or per bucket (rollups),
    /// expired data is dropped. `None` when nothing is left.
    pub(crate) fn merge_chunks(
        &self,
        chunks: &[Arc<Chunk>],
        horizons: &Horizons,
    ) -> Result<Option<ChunkBuilder>, Error> {
        let Some(first) = chunks.first() else {
            return Ok(None);
        };
        let mut meta = first.meta.clone();
        meta.file_id = 0;
        let kind = meta.kind;
        let raw_h = horizons.raw(&meta.namespace);
        let mut b = ChunkBuilder::new(meta, self.opts.compression_level);
        let mut series: BTreeMap<SeriesKey, (SeriesId, ValueType)> = BTreeMap::new();
        for c in chunks {
            for (sid, s) in c.sids() {
                series.insert(s.key.clone(), (sid, s.vtype));
            }
        }
        for (key, (sid, vtype)) in series {
            match kind {
                ChunkKind::Raw => {
                    let mut runs = Vec::new();
                    for c in chunks {
                        if let Some(s) = c.find(sid) {
                            runs.push(c.read_raw(s)?);
                        }
                    }
                    let (ts, col) = merge_newest_wins(vtype, runs);
                    let (ts, col) = clip(ts, col, raw_h, i64::MAX);
                    b.add_raw(key, &ts, &col)?;
                }
                ChunkKind::Rollup(ms) => {
                    let mut m: BTreeMap<i64, Summary> = BTreeMap::new();
                    for c in chunks {
                        if let Some(s) = c.find(sid) {
                            let rc = c.read_rollup(s)?;
                            m.extend(rc.buckets.into_iter().zip(rc.sums));
                        }
                    }
                    m.retain(|bk, _| horizons.bucket_live(ms, *bk));
                    let buckets: Vec<i64> = m.keys().copied().collect();
                    let sums: Vec<Summary> = m.values().copied().collect();
                    b.add_rollup(key, vtype, &buckets, &sums)?;
                }
            }
        }
        Ok((!b.is_empty()).then_some(b))
    }

    /// Merges every time partition that has several chunk files (raw or
    /// rollup) into one file, dropping overwritten and expired data.
    pub fn compact(&self) -> Result<MaintenanceStats, Error> {
        let _m = lock(&self.maintenance);
        let horizons = read(&self.horizons).clone();
        let cs: Arc<ChunkSet> = read(&self.chunks).clone();
        let mut groups: BTreeMap<BuilderKey, Vec<Arc<Chunk>>> = BTreeMap::new();
        for c in cs.all() {
            groups.entry(c.meta.group()).or_default().push(c.clone());
        }
        let mut stats = MaintenanceStats::default();
        for (_, mut chunks) in groups {
            if chunks.len() < 2 {
                continue;
            }
            chunks.sort_by_key(|c| c.meta.file_id);
            let built: Vec<ChunkBuilder> =
                self.merge_chunks(&chunks, &horizons)?.into_iter().collect();
            let removed: HashSet<u64> = chunks.iter().map(|c| c.meta.file_id).collect();
            self.replace_chunks(built, &removed, &chunks, &mut stats)?;
        }
        Ok(stats)
    }
}

/// The indexes of `ts` (sorted) whose partition passes `stored`, or `None`
/// when all of them do.
fn stored_points(ts: &[i64], pms: i64, mut stored: impl FnMut(i64) -> bool) -> Option<Vec<usize>> {
    let mut keep: Vec<usize> = Vec::new();
    let mut all = true;
    let mut i = 0;
    while i < ts.len() {
        let p = ts[i].div_euclid(pms) * pms;
        let j = ts.partition_point(|&t| t < p.saturating_add(pms));
        if stored(p) {
            keep.extend(i..j);
        } else {
            all = false;
        }
        i = j;
    }
    (!all).then_some(keep)
}
