//! Building a chunk file in memory.
//!
//! Raw series are held until [`ChunkBuilder::finish`] so that the series of
//! one device can share one timestamp column: the device's union of
//! timestamps is stored once, and a series that lacks a few of them (a
//! missing field) lists the skipped positions instead of carrying its own
//! column.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use super::{
    encode_value, summarize, BlockRef, ChunkKind, ChunkMeta, CHUNK_END_MAGIC, CHUNK_MAGIC,
    CHUNK_VERSION, HEADER_LEN, TS_OWN, TS_UNION,
};
use crate::catalog::FastState;
use crate::column::{encode_f64s, encode_i64s, Column};
use crate::model::{SeriesKey, Value, ValueType};
use crate::summary::Summary;
use crate::wire::{put_str, put_svar, put_u32, put_u64, put_u8, put_var};
use crate::Error;

struct Entry {
    key: SeriesKey,
    vtype: ValueType,
    ts_mode: u8,
    count: u64,
    min_ts: i64,
    max_ts: i64,
    summary: Summary,
    last: Value,
    ts_block: BlockRef,
    val_block: BlockRef,
}

struct PendingRaw {
    key: SeriesKey,
    ts: Vec<i64>,
    col: Column,
    summary: Summary,
    last: Value,
}

/// Accumulates series for one chunk file and produces its bytes.
pub(crate) struct ChunkBuilder {
    meta: ChunkMeta,
    level: usize,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    pending: Vec<PendingRaw>,
    /// Timestamp columns already written, by hash, for exact sharing.
    ts_blocks: HashMap<u64, Vec<(Vec<i64>, BlockRef)>, FastState>,
    points: u64,
}

/// A series lacking at most this share of its device's timestamps uses
/// the device's column and a skip list.
const MAX_SKIP_SHARE: usize = 16;

impl ChunkBuilder {
    pub(crate) fn new(meta: ChunkMeta, compression_level: usize) -> ChunkBuilder {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(CHUNK_MAGIC);
        put_u32(&mut buf, CHUNK_VERSION);
        put_u8(
            &mut buf,
            match meta.kind {
                ChunkKind::Raw => 0,
                ChunkKind::Rollup(_) => 1,
            },
        );
        buf.extend_from_slice(&[0, 0, 0]);
        debug_assert_eq!(buf.len(), HEADER_LEN);
        ChunkBuilder {
            meta,
            level: compression_level,
            buf,
            entries: Vec::new(),
            pending: Vec::new(),
            ts_blocks: HashMap::default(),
            points: 0,
        }
    }

    pub(crate) fn set_file_id(&mut self, id: u64) {
        self.meta.file_id = id;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.pending.is_empty()
    }

    /// Points (or buckets) added so far.
    pub(crate) fn points(&self) -> u64 {
        self.points
    }

    fn block(&mut self, payload: &[u8]) -> BlockRef {
        let r = BlockRef {
            offset: self.buf.len() as u64,
            len: payload.len() as u64,
        };
        self.buf.extend_from_slice(payload);
        put_u32(&mut self.buf, crc32fast::hash(payload));
        r
    }

    /// Writes a timestamp column (count, then the column), once per distinct content.
    fn ts_block(&mut self, ts: &[i64]) -> Result<BlockRef, Error> {
        let hash = FastState::default().hash_one(ts);
        if let Some(list) = self.ts_blocks.get(&hash) {
            if let Some((_, r)) = list.iter().find(|(v, _)| v.as_slice() == ts) {
                return Ok(*r);
            }
        }
        let mut payload = Vec::with_capacity(ts.len() / 2 + 16);
        put_var(&mut payload, ts.len() as u64);
        encode_i64s(ts, self.level, &mut payload)?;
        let r = self.block(&payload);
        self.ts_blocks
            .entry(hash)
            .or_default()
            .push((ts.to_vec(), r));
        Ok(r)
    }

    /// Adds a raw series: timestamps strictly ascending, one value each.
    pub(crate) fn add_raw(
        &mut self,
        key: SeriesKey,
        ts: &[i64],
        col: &Column,
    ) -> Result<(), Error> {
        let Some((summary, last)) = summarize(ts, col) else {
            return Ok(());
        };
        self.points += ts.len() as u64;
        self.pending.push(PendingRaw {
            key,
            ts: ts.to_vec(),
            col: col.clone(),
            summary,
            last,
        });
        Ok(())
    }

    /// Encodes the held raw series, sharing timestamp columns per device.
    fn encode_pending(&mut self) -> Result<(), Error> {
        let pending = std::mem::take(&mut self.pending);
        let mut by_device: BTreeMap<Arc<str>, Vec<usize>> = BTreeMap::new();
        for (i, p) in pending.iter().enumerate() {
            by_device
                .entry(p.key.device_arc().clone())
                .or_default()
                .push(i);
        }
        for (_, idx) in by_device {
            let mut union: Vec<i64> = idx
                .iter()
                .flat_map(|&i| pending[i].ts.iter().copied())
                .collect();
            union.sort_unstable();
            union.dedup();
            let mut union_block: Option<BlockRef> = None;
            for &i in &idx {
                let p = &pending[i];
                let missing = union.len() - p.ts.len();
                let mut val = Vec::with_capacity(p.ts.len() + 16);
                let (ts_mode, ts_block) =
                    if idx.len() > 1 && missing * MAX_SKIP_SHARE <= union.len() {
                        let block = match union_block {
                            Some(b) => b,
                            None => {
                                let b = self.ts_block(&union)?;
                                union_block = Some(b);
                                b
                            }
                        };
                        // Skipped positions of the union, as gaps from the previous one.
                        put_var(&mut val, missing as u64);
                        let (mut j, mut prev) = (0usize, 0usize);
                        for (pos, &t) in union.iter().enumerate() {
                            if p.ts.get(j) == Some(&t) {
                                j += 1;
                            } else {
                                put_var(&mut val, (pos - prev) as u64);
                                prev = pos;
                            }
                        }
                        (TS_UNION, block)
                    } else {
                        (TS_OWN, self.ts_block(&p.ts)?)
                    };
                p.col.encode(self.level, &mut val)?;
                let val_block = self.block(&val);
                self.entries.push(Entry {
                    key: p.key.clone(),
                    vtype: p.col.vtype(),
                    ts_mode,
                    count: p.ts.len() as u64,
                    min_ts: p.ts[0],
                    max_ts: p.ts[p.ts.len() - 1],
                    summary: p.summary,
                    last: p.last.clone(),
                    ts_block,
                    val_block,
                });
            }
        }
        Ok(())
    }

    /// Adds a rollup series: bucket starts strictly ascending, one summary each.
    pub(crate) fn add_rollup(
        &mut self,
        key: SeriesKey,
        vtype: ValueType,
        buckets: &[i64],
        sums: &[Summary],
    ) -> Result<(), Error> {
        if buckets.is_empty() || buckets.len() != sums.len() {
            return Ok(());
        }
        let ts_block = self.ts_block(buckets)?;
        let mut p = Vec::with_capacity(buckets.len() * 4);
        let counts: Vec<i64> = sums.iter().map(|s| s.count as i64).collect();
        encode_i64s(&counts, self.level, &mut p)?;
        for f in [
            |s: &Summary| s.sum,
            |s: &Summary| s.min,
            |s: &Summary| s.max,
            |s: &Summary| s.first,
            |s: &Summary| s.last,
        ] {
            let col: Vec<f64> = sums.iter().map(f).collect();
            encode_f64s(&col, self.level, &mut p)?;
        }
        let first_off: Vec<i64> = sums
            .iter()
            .zip(buckets)
            .map(|(s, b)| s.first_ts.wrapping_sub(*b))
            .collect();
        let last_off: Vec<i64> = sums
            .iter()
            .zip(buckets)
            .map(|(s, b)| s.last_ts.wrapping_sub(*b))
            .collect();
        encode_i64s(&first_off, self.level, &mut p)?;
        encode_i64s(&last_off, self.level, &mut p)?;
        let val_block = self.block(&p);
        let mut total = sums[0];
        for s in &sums[1..] {
            total.merge(s);
        }
        self.points += buckets.len() as u64;
        self.entries.push(Entry {
            key,
            vtype,
            ts_mode: TS_OWN,
            count: buckets.len() as u64,
            min_ts: buckets[0],
            max_ts: buckets[buckets.len() - 1],
            summary: total,
            last: Value::F64(total.last),
            ts_block,
            val_block,
        });
        Ok(())
    }

    /// Appends the index and footer and returns the file's bytes.
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, Error> {
        self.encode_pending()?;
        // String table: every device, metric and label string once.
        let mut strings: HashMap<&str, u64, FastState> = HashMap::default();
        let mut table: Vec<&str> = Vec::new();
        for e in &self.entries {
            let k = &e.key;
            let labels = k
                .labels()
                .iter()
                .flat_map(|(a, b)| [a.as_ref(), b.as_ref()]);
            for s in [k.device(), k.metric()].into_iter().chain(labels) {
                strings.entry(s).or_insert_with(|| {
                    table.push(s);
                    table.len() as u64 - 1
                });
            }
        }
        let mut idx = Vec::with_capacity(80 * self.entries.len() + 64);
        put_str(&mut idx, &self.meta.namespace);
        put_svar(&mut idx, self.meta.kind.level_ms());
        put_svar(&mut idx, self.meta.partition_start);
        put_svar(&mut idx, self.meta.partition_ms);
        put_var(&mut idx, self.meta.file_id);
        put_var(&mut idx, table.len() as u64);
        for s in &table {
            put_str(&mut idx, s);
        }
        put_var(&mut idx, self.entries.len() as u64);
        let sid = |s: &str| strings.get(s).copied().unwrap_or(0);
        for e in &self.entries {
            put_var(&mut idx, sid(e.key.device()));
            put_var(&mut idx, sid(e.key.metric()));
            put_var(&mut idx, e.key.labels().len() as u64);
            for (k, v) in e.key.labels() {
                put_var(&mut idx, sid(k));
                put_var(&mut idx, sid(v));
            }
            put_u8(&mut idx, e.vtype.code());
            put_u8(&mut idx, e.ts_mode);
            put_var(&mut idx, e.count);
            put_svar(&mut idx, e.min_ts);
            put_var(&mut idx, e.max_ts.wrapping_sub(e.min_ts) as u64);
            e.summary.encode(&mut idx, e.min_ts, e.max_ts);
            // The last value is implied by the summary for floats and booleans.
            let implied = match (&e.last, e.vtype) {
                (Value::F64(x), ValueType::F64) => x.to_bits() == e.summary.last.to_bits(),
                (Value::Bool(b), ValueType::Bool) => (if *b { 1.0 } else { 0.0 }) == e.summary.last,
                _ => false,
            };
            if implied {
                put_u8(&mut idx, 0);
            } else {
                put_u8(&mut idx, 1);
                encode_value(&mut idx, &e.last);
            }
            for b in [e.ts_block, e.val_block] {
                put_var(&mut idx, b.offset);
                put_var(&mut idx, b.len);
            }
        }
        let index = self.block(&idx);
        put_u64(&mut self.buf, index.offset);
        put_u64(&mut self.buf, index.len);
        self.buf.extend_from_slice(CHUNK_END_MAGIC);
        Ok(self.buf)
    }
}
