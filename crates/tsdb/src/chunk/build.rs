//! Building a chunk file in memory.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use super::{
    encode_value, summarize, BlockRef, ChunkKind, ChunkMeta, CHUNK_END_MAGIC, CHUNK_MAGIC,
    CHUNK_VERSION, HEADER_LEN,
};
use crate::column::{encode_f64s, encode_i64s, Column};
use crate::model::{SeriesKey, Value, ValueType};
use crate::summary::Summary;
use crate::wire::{put_str, put_svar, put_u32, put_u64, put_u8, put_var};
use crate::Error;

struct Entry {
    key: SeriesKey,
    vtype: ValueType,
    count: u64,
    min_ts: i64,
    max_ts: i64,
    summary: Summary,
    last: Value,
    ts_block: BlockRef,
    val_block: BlockRef,
}

/// Accumulates series for one chunk file and produces its bytes.
pub(crate) struct ChunkBuilder {
    meta: ChunkMeta,
    level: usize,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Timestamp columns already written, by hash, so that series of one
    /// device sharing timestamps store them once.
    ts_blocks: HashMap<u64, Vec<(Vec<i64>, BlockRef)>>,
    scratch: Vec<u8>,
    points: u64,
}

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
            ts_blocks: HashMap::new(),
            scratch: Vec::new(),
            points: 0,
        }
    }

    pub(crate) fn set_file_id(&mut self, id: u64) {
        self.meta.file_id = id;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
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

    fn ts_block(&mut self, ts: &[i64]) -> Result<BlockRef, Error> {
        let mut h = DefaultHasher::new();
        ts.hash(&mut h);
        let hash = h.finish();
        if let Some(list) = self.ts_blocks.get(&hash) {
            if let Some((_, r)) = list.iter().find(|(v, _)| v.as_slice() == ts) {
                return Ok(*r);
            }
        }
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        encode_i64s(ts, self.level, &mut payload)?;
        let r = self.block(&payload);
        self.scratch = payload;
        self.ts_blocks
            .entry(hash)
            .or_default()
            .push((ts.to_vec(), r));
        Ok(r)
    }

    /// Adds a raw series: timestamps strictly ascending, one value each.
    pub(crate) fn add_raw(&mut self, key: SeriesKey, ts: &[i64], col: &Column) -> Result<(), Error> {
        let Some((summary, last)) = summarize(ts, col) else {
            return Ok(());
        };
        let ts_block = self.ts_block(ts)?;
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        col.encode(self.level, &mut payload)?;
        let val_block = self.block(&payload);
        self.scratch = payload;
        self.points += ts.len() as u64;
        self.entries.push(Entry {
            key,
            vtype: col.vtype(),
            count: ts.len() as u64,
            min_ts: ts[0],
            max_ts: ts[ts.len() - 1],
            summary,
            last,
            ts_block,
            val_block,
        });
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
        let mut p = std::mem::take(&mut self.scratch);
        p.clear();
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
        self.scratch = p;
        let mut total = sums[0];
        for s in &sums[1..] {
            total.merge(s);
        }
        self.points += buckets.len() as u64;
        self.entries.push(Entry {
            key,
            vtype,
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
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let mut idx = Vec::with_capacity(64 * self.entries.len() + 64);
        put_str(&mut idx, &self.meta.namespace);
        put_svar(&mut idx, self.meta.kind.level_ms());
        put_svar(&mut idx, self.meta.partition_start);
        put_svar(&mut idx, self.meta.partition_ms);
        put_var(&mut idx, self.meta.file_id);
        put_var(&mut idx, self.entries.len() as u64);
        for e in &self.entries {
            put_str(&mut idx, e.key.device());
            put_str(&mut idx, e.key.metric());
            put_var(&mut idx, e.key.labels().len() as u64);
            for (k, v) in e.key.labels() {
                put_str(&mut idx, k);
                put_str(&mut idx, v);
            }
            put_u8(&mut idx, e.vtype.code());
            put_var(&mut idx, e.count);
            put_svar(&mut idx, e.min_ts);
            put_svar(&mut idx, e.max_ts);
            e.summary.encode(&mut idx);
            encode_value(&mut idx, &e.last);
            for b in [e.ts_block, e.val_block] {
                put_var(&mut idx, b.offset);
                put_var(&mut idx, b.len);
            }
        }
        let index = self.block(&idx);
        put_u64(&mut self.buf, index.offset);
        put_u64(&mut self.buf, index.len);
        self.buf.extend_from_slice(CHUNK_END_MAGIC);
        self.buf
    }
}
