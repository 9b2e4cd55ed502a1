//! Reading chunk files: index parsing, block checks, column decoding.
//! Everything here treats the bytes as hostile and never panics.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    decode_value, BlockRef, ChunkKind, ChunkMeta, RollupColumns, CHUNK_END_MAGIC, CHUNK_MAGIC,
    CHUNK_VERSION, FOOTER_LEN, HEADER_LEN, TS_OWN, TS_UNION,
};
use crate::catalog::SeriesId;
use crate::column::{decode_f64s, decode_i64s, skip_f64s, skip_i64s, Column, MAX_COLUMN_LEN};
use crate::model::{Point, SeriesKey, Value, ValueType, MAX_LABELS};
use crate::summary::{RollupFields, Summary, ALL_FIELDS};
use crate::wire::Reader;
use crate::Error;

/// One series' entry in a chunk index.
#[derive(Clone, Debug)]
pub(crate) struct ChunkSeries {
    pub(crate) key: SeriesKey,
    pub(crate) vtype: ValueType,
    pub(crate) count: u64,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    /// Raw chunks: summary of all points. Rollups: merge of all buckets.
    pub(crate) summary: Summary,
    /// Raw chunks: the value at `max_ts`.
    pub(crate) last: Value,
    ts_mode: u8,
    ts_block: BlockRef,
    val_block: BlockRef,
}

/// An open chunk file: its parsed index in memory, its blocks read on demand.
pub(crate) struct Chunk {
    pub(crate) path: PathBuf,
    file: File,
    pub(crate) meta: ChunkMeta,
    pub(crate) series: Vec<ChunkSeries>,
    by_sid: HashMap<SeriesId, usize>,
    pub(crate) file_bytes: u64,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
}

impl Chunk {
    /// Opens a chunk, checks its header, footer and index, and binds each
    /// series to a catalog id through `resolve` (series it rejects are skipped).
    pub(crate) fn open(
        path: &Path,
        resolve: &mut dyn FnMut(&SeriesKey, ValueType) -> Option<SeriesId>,
    ) -> Result<Chunk, Error> {
        let ctx = || format!("reading chunk {}", path.display());
        let file = File::open(path).map_err(|e| Error::io(ctx(), e))?;
        let file_bytes = file.metadata().map_err(|e| Error::io(ctx(), e))?.len();
        if file_bytes < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(Error::corrupt(
                "chunk file",
                "shorter than header and footer",
            ));
        }
        let mut header = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| Error::io(ctx(), e))?;
        check_header(&header)?;
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, file_bytes - FOOTER_LEN as u64)
            .map_err(|e| Error::io(ctx(), e))?;
        let index_ref = parse_footer(&footer, file_bytes)?;
        let mut payload = vec![0u8; index_ref.len as usize + 4];
        file.read_exact_at(&mut payload, index_ref.offset)
            .map_err(|e| Error::io(ctx(), e))?;
        let index = checked_payload(&payload, "chunk index")?;
        let (meta, series) = parse_index(index, header[12], index_ref.offset)?;
        let mut by_sid = HashMap::with_capacity(series.len());
        let mut kept = Vec::with_capacity(series.len());
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        for s in series {
            if let Some(sid) = resolve(&s.key, s.vtype) {
                by_sid.insert(sid, kept.len());
                min_ts = min_ts.min(s.min_ts);
                max_ts = max_ts.max(s.max_ts);
                kept.push(s);
            }
        }
        Ok(Chunk {
            path: path.to_path_buf(),
            file,
            meta,
            series: kept,
            by_sid,
            file_bytes,
            min_ts,
            max_ts,
        })
    }

    pub(crate) fn find(&self, sid: SeriesId) -> Option<&ChunkSeries> {
        self.by_sid.get(&sid).map(|&i| &self.series[i])
    }

    pub(crate) fn sids(&self) -> impl Iterator<Item = (SeriesId, &ChunkSeries)> {
        self.by_sid.iter().map(|(sid, &i)| (*sid, &self.series[i]))
    }

    fn read_block(&self, b: BlockRef) -> Result<Vec<u8>, Error> {
        let len = usize::try_from(b.len)
            .map_err(|_| Error::corrupt("chunk block", "length overflows"))?;
        let mut buf = vec![0u8; len + 4];
        self.file
            .read_exact_at(&mut buf, b.offset)
            .map_err(|e| Error::io(format!("reading chunk {}", self.path.display()), e))?;
        checked_payload(&buf, "chunk block")?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Decodes a raw series' timestamps and values.
    pub(crate) fn read_raw(&self, s: &ChunkSeries) -> Result<(Vec<i64>, Column), Error> {
        let ts = self.read_block(s.ts_block)?;
        let vals = self.read_block(s.val_block)?;
        decode_raw(&ts, &vals, s)
    }

    /// Decodes a rollup series' buckets.
    pub(crate) fn read_rollup(&self, s: &ChunkSeries) -> Result<RollupColumns, Error> {
        self.read_rollup_fields(s, ALL_FIELDS)
    }

    /// Decodes a rollup series' buckets with only `fields` (and counts)
    /// filled in; the other fields are NaN, their times the bucket start.
    pub(crate) fn read_rollup_fields(
        &self,
        s: &ChunkSeries,
        fields: RollupFields,
    ) -> Result<RollupColumns, Error> {
        let ts = self.read_block(s.ts_block)?;
        let vals = self.read_block(s.val_block)?;
        decode_rollup(&ts, &vals, s, fields)
    }
}

fn check_header(h: &[u8]) -> Result<(), Error> {
    let mut r = Reader::new(h, "chunk header");
    if r.take(8)? != CHUNK_MAGIC {
        return Err(Error::corrupt("chunk header", "bad magic"));
    }
    let version = r.u32()?;
    if version == 0 || version > CHUNK_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "chunk file".into(),
            found: version,
            supported: CHUNK_VERSION,
        });
    }
    Ok(())
}

fn parse_footer(f: &[u8], file_len: u64) -> Result<BlockRef, Error> {
    let mut r = Reader::new(f, "chunk footer");
    let offset = r.u64()?;
    let len = r.u64()?;
    if r.take(8)? != CHUNK_END_MAGIC {
        return Err(Error::corrupt("chunk footer", "bad end magic"));
    }
    let end = offset.checked_add(len).and_then(|e| e.checked_add(4));
    if offset < HEADER_LEN as u64 || end != Some(file_len - FOOTER_LEN as u64) {
        return Err(Error::corrupt(
            "chunk footer",
            "index location out of range",
        ));
    }
    Ok(BlockRef { offset, len })
}

/// Checks the CRC32 that trails `buf` and returns the payload before it.
fn checked_payload<'a>(buf: &'a [u8], what: &'static str) -> Result<&'a [u8], Error> {
    if buf.len() < 4 {
        return Err(Error::corrupt(what, "too short for its checksum"));
    }
    let (payload, crc) = buf.split_at(buf.len() - 4);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if crc32fast::hash(payload) != u32::from_le_bytes(c) {
        return Err(Error::corrupt(what, "checksum mismatch"));
    }
    Ok(payload)
}

fn parse_index(
    index: &[u8],
    kind_code: u8,
    index_offset: u64,
) -> Result<(ChunkMeta, Vec<ChunkSeries>), Error> {
    let mut r = Reader::new(index, "chunk index");
    let namespace: Arc<str> = Arc::from(r.str()?);
    let level_ms = r.svar()?;
    let kind = match (kind_code, level_ms) {
        (0, 0) => ChunkKind::Raw,
        (1, ms) if ms > 0 => ChunkKind::Rollup(ms),
        _ => return Err(r.err("inconsistent chunk kind")),
    };
    let meta = ChunkMeta {
        kind,
        namespace: namespace.clone(),
        partition_start: r.svar()?,
        partition_ms: r.svar()?,
        file_id: r.var()?,
    };
    let nstr = r.len(r.remaining())?;
    let mut table: Vec<Arc<str>> = Vec::with_capacity(nstr);
    for _ in 0..nstr {
        table.push(Arc::from(r.str()?));
    }
    let string = |r: &mut Reader<'_>| -> Result<Arc<str>, Error> {
        let i = r.var()?;
        table
            .get(i as usize)
            .cloned()
            .ok_or_else(|| r.err("string index out of range"))
    };
    // Every entry takes well over 16 bytes, which bounds the count.
    let n = r.len(r.remaining() / 16)?;
    let mut series = Vec::with_capacity(n);
    for _ in 0..n {
        let device = string(&mut r)?;
        let metric = string(&mut r)?;
        let nl = r.len(MAX_LABELS)?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            labels.push((string(&mut r)?, string(&mut r)?));
        }
        let key = SeriesKey::from_parts(namespace.clone(), device, metric, labels);
        let t = r.u8()?;
        let vtype = ValueType::from_code(t).ok_or_else(|| r.err("unknown value type"))?;
        let ts_mode = r.u8()?;
        if ts_mode != TS_OWN && ts_mode != TS_UNION {
            return Err(r.err(format!("unknown timestamp mode {ts_mode}")));
        }
        let count = r.var()?;
        if count == 0 || count > MAX_COLUMN_LEN as u64 {
            return Err(r.err(format!("series with {count} points")));
        }
        let min_ts = r.svar()?;
        let span = r.var()?;
        let max_ts = i64::try_from(span)
            .ok()
            .and_then(|s| min_ts.checked_add(s))
            .ok_or_else(|| r.err("time span overflows"))?;
        let summary = Summary::decode(&mut r, min_ts, max_ts)?;
        let last = match r.u8()? {
            0 => match vtype {
                ValueType::F64 => Value::F64(summary.last),
                ValueType::Bool => Value::Bool(summary.last != 0.0),
                _ => return Err(r.err("implied last value for an integer or string series")),
            },
            1 => decode_value(&mut r)?,
            t => return Err(r.err(format!("unknown last-value tag {t}"))),
        };
        let mut blocks = [BlockRef { offset: 0, len: 0 }; 2];
        for b in &mut blocks {
            let offset = r.var()?;
            let len = r.var()?;
            let end = offset.checked_add(len).and_then(|e| e.checked_add(4));
            if offset < HEADER_LEN as u64 || end.is_none_or(|e| e > index_offset) {
                return Err(r.err("block outside the data area"));
            }
            *b = BlockRef { offset, len };
        }
        series.push(ChunkSeries {
            key,
            vtype,
            count,
            min_ts,
            max_ts,
            summary,
            last,
            ts_mode,
            ts_block: blocks[0],
            val_block: blocks[1],
        });
    }
    if !r.is_empty() {
        return Err(r.err("trailing bytes after index"));
    }
    Ok((meta, series))
}

/// Decodes a series' timestamps from its timestamp block and, for a
/// shared block, the skip list at the start of its value block.
fn decode_ts(ts_bytes: &[u8], vals: &mut Reader<'_>, s: &ChunkSeries) -> Result<Vec<i64>, Error> {
    let mut r = Reader::new(ts_bytes, "timestamp column");
    let n = r.len(MAX_COLUMN_LEN)?;
    let all = decode_i64s(n, &mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    let ts = if s.ts_mode == TS_UNION {
        let skips = vals.len(n)?;
        let mut skip = vec![false; n];
        let mut pos = 0usize;
        for k in 0..skips {
            let gap = vals.len(n)?;
            pos = pos.saturating_add(gap);
            if (k > 0 && gap == 0) || pos >= n {
                return Err(vals.err("skip list out of order or out of range"));
            }
            skip[pos] = true;
        }
        all.into_iter()
            .zip(skip)
            .filter_map(|(t, skipped)| (!skipped).then_some(t))
            .collect()
    } else {
        all
    };
    if ts.len() as u64 != s.count
        || ts.windows(2).any(|w| w[0] >= w[1])
        || ts.first() != Some(&s.min_ts)
        || ts.last() != Some(&s.max_ts)
    {
        return Err(Error::corrupt(
            "timestamp column",
            "not strictly ascending or disagrees with the index",
        ));
    }
    Ok(ts)
}

fn decode_raw(ts: &[u8], vals: &[u8], s: &ChunkSeries) -> Result<(Vec<i64>, Column), Error> {
    let mut r = Reader::new(vals, "value column");
    let ts = decode_ts(ts, &mut r, s)?;
    let col = Column::decode(s.vtype, ts.len(), &mut r)?;
    if !r.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    Ok((ts, col))
}

fn decode_rollup(
    ts: &[u8],
    vals: &[u8],
    s: &ChunkSeries,
    fields: RollupFields,
) -> Result<RollupColumns, Error> {
    let mut r = Reader::new(vals, "rollup columns");
    let buckets = decode_ts(ts, &mut r, s)?;
    let n = buckets.len();
    let counts = decode_i64s(n, &mut r)?;
    let mut floats: [Option<Vec<f64>>; 5] = Default::default();
    for (slot, &want) in floats.iter_mut().zip(&fields) {
        if want {
            *slot = Some(decode_f64s(n, &mut r)?);
        } else {
            skip_f64s(n, &mut r)?;
        }
    }
    let first_off = if fields[3] {
        Some(decode_i64s(n, &mut r)?)
    } else {
        skip_i64s(n, &mut r)?;
        None
    };
    let last_off = if fields[4] {
        Some(decode_i64s(n, &mut r)?)
    } else {
        skip_i64s(n, &mut r)?;
        None
    };
    if !r.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    let [sum, min, max, first, last] = &floats;
    let f = |c: &Option<Vec<f64>>, i: usize| c.as_ref().map_or(f64::NAN, |c| c[i]);
    let off = |c: &Option<Vec<i64>>, i: usize| c.as_ref().map_or(0, |c| c[i]);
    let mut sums = Vec::with_capacity(n);
    for i in 0..n {
        if counts[i] <= 0 {
            return Err(Error::corrupt("rollup columns", "bucket with no points"));
        }
        sums.push(Summary {
            count: counts[i] as u64,
            sum: f(sum, i),
            min: f(min, i),
            max: f(max, i),
            first_ts: buckets[i].wrapping_add(off(&first_off, i)),
            first: f(first, i),
            last_ts: buckets[i].wrapping_add(off(&last_off, i)),
            last: f(last, i),
        });
    }
    Ok(RollupColumns { buckets, sums })
}

/// One rollup bucket as returned by [`decode_chunk`].
#[derive(Clone, Debug, PartialEq)]
pub struct RollupBucket {
    /// Bucket start in milliseconds.
    pub start: i64,
    /// Points in the bucket.
    pub count: u64,
    /// Sum of values.
    pub sum: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Value of the earliest point.
    pub first: f64,
    /// Value of the latest point.
    pub last: f64,
}

/// The contents of one series in a decoded chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodedSeries {
    /// Raw points, ascending by timestamp.
    Raw(SeriesKey, Vec<Point>),
    /// Rollup buckets, ascending by start.
    Rollup(SeriesKey, Vec<RollupBucket>),
}

/// A fully decoded chunk file, for tools, tests and fuzzing.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedChunk {
    /// The namespace every series belongs to.
    pub namespace: String,
    /// Rollup bucket width, or `None` for raw data.
    pub rollup_bucket_ms: Option<i64>,
    /// Start of the time partition in milliseconds.
    pub partition_start: i64,
    /// Every series with its data.
    pub series: Vec<DecodedSeries>,
}

/// Decodes and checks a whole chunk file held in memory. Returns an error
/// for anything malformed and never panics, whatever the input.
pub fn decode_chunk(bytes: &[u8]) -> Result<DecodedChunk, Error> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupt(
            "chunk file",
            "shorter than header and footer",
        ));
    }
    check_header(&bytes[..HEADER_LEN])?;
    let index_ref = parse_footer(&bytes[bytes.len() - FOOTER_LEN..], bytes.len() as u64)?;
    let block = |b: BlockRef| -> Result<&[u8], Error> {
        let start = b.offset as usize;
        let end = start + b.len as usize + 4;
        let buf = bytes
            .get(start..end)
            .ok_or_else(|| Error::corrupt("chunk block", "out of range"))?;
        checked_payload(buf, "chunk block")
    };
    let index = block(index_ref)?;
    let (meta, series) = parse_index(index, bytes[12], index_ref.offset)?;
    let mut out = Vec::with_capacity(series.len());
    for s in &series {
        let ts = block(s.ts_block)?;
        let vals = block(s.val_block)?;
        out.push(match meta.kind {
            ChunkKind::Raw => {
                let (ts, col) = decode_raw(ts, vals, s)?;
                let points = ts
                    .iter()
                    .enumerate()
                    .map(|(i, &t)| Point {
                        ts: t,
                        value: col.get(i),
                    })
                    .collect();
                DecodedSeries::Raw(s.key.clone(), points)
            }
            ChunkKind::Rollup(_) => {
                let rc = decode_rollup(ts, vals, s, ALL_FIELDS)?;
                let buckets = rc
                    .buckets
                    .iter()
                    .zip(&rc.sums)
                    .map(|(&start, x)| RollupBucket {
                        start,
                        count: x.count,
                        sum: x.sum,
                        min: x.min,
                        max: x.max,
                        first: x.first,
                        last: x.last,
                    })
                    .collect();
                DecodedSeries::Rollup(s.key.clone(), buckets)
            }
        });
    }
    Ok(DecodedChunk {
        namespace: meta.namespace.to_string(),
        rollup_bucket_ms: match meta.kind {
            ChunkKind::Raw => None,
            ChunkKind::Rollup(ms) => Some(ms),
        },
        partition_start: meta.partition_start,
        series: out,
    })
}
