//! Immutable chunk files: columnar, compressed, with a checksummed index of
//! per-series summaries. See `FORMAT.md` for the byte layout.
//!
//! A chunk holds either raw points or one rollup level's buckets, for one
//! namespace and one time partition.

mod build;
mod read;

pub(crate) use build::ChunkBuilder;
pub use read::{decode_chunk, DecodedChunk, DecodedSeries, RollupBucket};
pub(crate) use read::{Chunk, ChunkSeries};

use std::sync::Arc;

use crate::column::Column;
use crate::model::{Value, ValueType};
use crate::summary::Summary;
use crate::wire::{put_f64, put_str, put_svar, put_u8, Reader};
use crate::Error;

/// First eight bytes of every chunk file.
pub(crate) const CHUNK_MAGIC: &[u8; 8] = b"MWTSCHNK";
/// Last eight bytes of every chunk file.
pub(crate) const CHUNK_END_MAGIC: &[u8; 8] = b"MWTSEND\0";
/// The chunk format version this build writes and the newest it reads.
pub(crate) const CHUNK_VERSION: u32 = 2;
pub(crate) const HEADER_LEN: usize = 16;
/// The series' timestamp block holds exactly its timestamps.
pub(crate) const TS_OWN: u8 = 0;
/// The timestamp block holds its device's union of timestamps; the value
/// block starts with the positions this series skips.
pub(crate) const TS_UNION: u8 = 1;
pub(crate) const FOOTER_LEN: usize = 24;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ChunkKind {
    Raw,
    /// Rollup buckets of this width in milliseconds.
    Rollup(i64),
}

impl ChunkKind {
    pub(crate) fn level_ms(self) -> i64 {
        match self {
            ChunkKind::Raw => 0,
            ChunkKind::Rollup(ms) => ms,
        }
    }
}

/// Identity of a chunk file: what, whose and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub(crate) kind: ChunkKind,
    pub(crate) namespace: Arc<str>,
    pub(crate) partition_start: i64,
    pub(crate) partition_ms: i64,
    /// Monotonic file number; on equal timestamps a higher id wins.
    pub(crate) file_id: u64,
}

impl ChunkMeta {
    /// The grouping compaction works on.
    pub(crate) fn group(&self) -> (ChunkKind, Arc<str>, i64) {
        (self.kind, self.namespace.clone(), self.partition_start)
    }
}

/// Where a block lives inside the file: payload offset and length; the
/// payload's CRC32 follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// The decoded contents of one rollup series in a chunk.
pub(crate) struct RollupColumns {
    pub(crate) buckets: Vec<i64>,
    pub(crate) sums: Vec<Summary>,
}

pub(crate) fn encode_value(out: &mut Vec<u8>, v: &Value) {
    put_u8(out, v.value_type().code());
    match v {
        Value::F64(x) => put_f64(out, *x),
        Value::I64(x) => put_svar(out, *x),
        Value::Bool(b) => put_u8(out, u8::from(*b)),
        Value::Str(s) => put_str(out, s),
    }
}

pub(crate) fn decode_value(r: &mut Reader<'_>) -> Result<Value, Error> {
    let t = r.u8()?;
    Ok(match ValueType::from_code(t) {
        Some(ValueType::F64) => Value::F64(r.f64()?),
        Some(ValueType::I64) => Value::I64(r.svar()?),
        Some(ValueType::Bool) => Value::Bool(r.u8()? != 0),
        Some(ValueType::Str) => Value::Str(Arc::from(r.str()?)),
        None => return Err(r.err(format!("unknown value type {t}"))),
    })
}

/// Summary of a sorted, de-duplicated raw series, plus its last value.
pub(crate) fn summarize(ts: &[i64], col: &Column) -> Option<(Summary, Value)> {
    let n = ts.len();
    if n == 0 || col.len() != n {
        return None;
    }
    let last = col.get(n - 1);
    let s = match col.num(0) {
        Some(v0) => {
            let mut s = Summary::one(ts[0], v0);
            for (i, &t) in ts.iter().enumerate().skip(1) {
                if let Some(v) = col.num(i) {
                    s.add(t, v);
                }
            }
            s
        }
        None => Summary::count_only(n as u64, ts[0], ts[n - 1]),
    };
    Some((s, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Point, SeriesKey};

    #[test]
    fn roundtrip_with_shared_timestamps_and_skips() {
        let meta = ChunkMeta {
            kind: ChunkKind::Raw,
            namespace: Arc::from("ns"),
            partition_start: 0,
            partition_ms: 1 << 40,
            file_id: 7,
        };
        let mut b = ChunkBuilder::new(meta, 8);
        let full: Vec<i64> = (0..500).map(|i| 1_000 + i * 10_000).collect();
        let gappy: Vec<i64> = full
            .iter()
            .copied()
            .filter(|t| (t / 10_000) % 50 != 3)
            .collect();
        let lonely: Vec<i64> = vec![5, 6, 7];
        let key = |d: &str, m: &str| SeriesKey::new("ns", d, m).with_labels([("fleet", "East")]);
        let f: Vec<f64> = (0..500).map(|i| (i % 13) as f64 * 0.25).collect();
        b.add_raw(key("d1", "a"), &full, &Column::F64(f.clone()))
            .unwrap();
        b.add_raw(
            key("d1", "b"),
            &gappy,
            &Column::I64((0..gappy.len() as i64).collect()),
        )
        .unwrap();
        b.add_raw(
            key("d1", "c"),
            &full,
            &Column::Bool((0..500).map(|i| i % 3 == 0).collect()),
        )
        .unwrap();
        b.add_raw(
            key("d2", "a"),
            &lonely,
            &Column::Str(vec![Arc::from("x"), Arc::from("y"), Arc::from("x")]),
        )
        .unwrap();
        let bytes = b.finish().unwrap();
        let d = decode_chunk(&bytes).unwrap();
        assert_eq!(d.namespace, "ns");
        let pts = |k: &SeriesKey| -> Vec<Point> {
            d.series
                .iter()
                .find_map(|s| match s {
                    DecodedSeries::Raw(sk, p) if sk == k => Some(p.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let b_pts = pts(&key("d1", "b"));
        assert_eq!(b_pts.iter().map(|p| p.ts).collect::<Vec<_>>(), gappy);
        assert_eq!(b_pts[3].value, Value::I64(3));
        let a_pts = pts(&key("d1", "a"));
        assert_eq!(a_pts.iter().map(|p| p.ts).collect::<Vec<_>>(), full);
        assert_eq!(a_pts[5].value, Value::F64(f[5]));
        assert_eq!(pts(&key("d2", "a"))[1].value, Value::Str(Arc::from("y")));
        // Every single-byte corruption is an error, never a panic.
        for i in (0..bytes.len()).step_by(7) {
            let mut c = bytes.clone();
            c[i] ^= 0x5a;
            let _ = decode_chunk(&c);
        }
    }

    #[test]
    fn rollup_sums_roundtrip_and_version_1_still_reads() {
        let meta = ChunkMeta {
            kind: ChunkKind::Rollup(60_000),
            namespace: Arc::from("ns"),
            partition_start: 0,
            partition_ms: 1 << 40,
            file_id: 3,
        };
        let mut b = ChunkBuilder::new(meta, 8);
        let mut want = Vec::new();
        for (m, n) in [("short", 6usize), ("long", 300)] {
            let buckets: Vec<i64> = (0..n as i64).map(|i| i * 60_000).collect();
            let sums: Vec<Summary> = buckets
                .iter()
                .map(|&t| {
                    let mut s = Summary::one(t, 57.01 + (t / 60_000 % 7) as f64 * 0.013);
                    for k in 1..6 {
                        s.add(t + k * 10_000, 57.1 - (k * t / 60_000 % 11) as f64 * 0.007);
                    }
                    s
                })
                .collect();
            let key = SeriesKey::new("ns", "d", m);
            b.add_rollup(key.clone(), ValueType::F64, &buckets, &sums)
                .unwrap();
            want.push((key, buckets, sums));
        }
        let mut bytes = b.finish().unwrap();
        let check = |bytes: &[u8]| {
            let d = decode_chunk(bytes).unwrap();
            for (key, buckets, sums) in &want {
                let got = d
                    .series
                    .iter()
                    .find_map(|s| match s {
                        DecodedSeries::Rollup(k, b) if k == key => Some(b.clone()),
                        _ => None,
                    })
                    .unwrap();
                assert_eq!(got.len(), buckets.len());
                for (g, s) in got.iter().zip(sums) {
                    assert_eq!(g.sum.to_bits(), s.sum.to_bits());
                    assert_eq!(
                        (g.min, g.max, g.first, g.last),
                        (s.min, s.max, s.first, s.last)
                    );
                }
            }
        };
        check(&bytes);
        // The same bytes labelled version 1 read (old files use a subset of
        // the encodings); a newer version is refused.
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let _ = decode_chunk(&bytes).unwrap();
        bytes[8..12].copy_from_slice(&(CHUNK_VERSION + 1).to_le_bytes());
        assert!(matches!(
            decode_chunk(&bytes),
            Err(Error::UnsupportedVersion { .. })
        ));
    }
}
