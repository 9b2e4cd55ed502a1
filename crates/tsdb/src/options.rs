//! Engine settings: memory bounds, file sizes, rollups and retention.

use std::collections::BTreeMap;

use crate::error::Error;

/// One millisecond-based duration constant per day, for readable defaults.
pub const DAY_MS: i64 = 86_400_000;

/// A rollup level: buckets of `bucket_ms` holding min, max, sum, count,
/// first and last, kept for `retention_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupLevel {
    /// Bucket width in milliseconds; divides `Options::partition_ms`.
    pub bucket_ms: i64,
    /// How long buckets are kept, in milliseconds.
    pub retention_ms: i64,
}

/// Settings for [`crate::Tsdb::open`]. Every field has a default.
#[derive(Clone, Debug)]
pub struct Options {
    /// Points held in the in-memory head before a write triggers a flush to
    /// chunk files. Writers are held back (they flush themselves) once the
    /// head and the blocks being flushed hold twice this many points.
    pub head_max_points: usize,
    /// A WAL segment is closed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// Width of a chunk file's time partition in milliseconds. Chunk files
    /// never span two partitions, so retention drops whole files.
    pub partition_ms: i64,
    /// Rollup levels, any order; an empty list disables rollups.
    pub rollups: Vec<RollupLevel>,
    /// Rollup levels with buckets narrower than this are deferred: a flush
    /// writes their chunks for a partition only once the raw retention
    /// horizon has entered it; until then rollup queries over it are
    /// answered from the raw chunks, and the rollup chunks are written
    /// (materialized) from them just before raw data starts to expire.
    /// Deferred or not, the answers are the same; deferred levels cost no
    /// disk space while raw data covers the range. Coarser levels are
    /// written at every flush, so that long-range queries never decode raw
    /// data. Default one hour: the 1-minute level is deferred, the 1-hour
    /// level is not. `0` writes every level at every flush.
    pub deferred_rollups_below_ms: i64,
    /// Raw-data retention in milliseconds for namespaces without an override.
    pub default_retention_ms: i64,
    /// Per-namespace raw-data retention overrides in milliseconds.
    pub namespace_retention_ms: BTreeMap<String, i64>,
    /// pco compression level (0..=12); 8 is pco's default.
    pub compression_level: usize,
    /// Most series one device (namespace and device id) may have. A write
    /// that would create a series beyond it is refused
    /// ([`crate::WriteError::TooManySeries`]) and counted
    /// ([`crate::WriteStats::series_refused`]); writes to existing series
    /// keep working. Series already stored (from an older limit) stay.
    pub max_series_per_device: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            head_max_points: 4_000_000,
            wal_segment_bytes: 64 << 20,
            partition_ms: DAY_MS,
            rollups: vec![
                RollupLevel {
                    bucket_ms: 60_000,
                    retention_ms: 365 * DAY_MS,
                },
                RollupLevel {
                    bucket_ms: 3_600_000,
                    retention_ms: 5 * 365 * DAY_MS,
                },
            ],
            deferred_rollups_below_ms: 3_600_000,
            default_retention_ms: 30 * DAY_MS,
            namespace_retention_ms: BTreeMap::new(),
            compression_level: 8,
            max_series_per_device: 10_000,
        }
    }
}

impl Options {
    /// Raw retention of a namespace.
    pub fn retention_for(&self, namespace: &str) -> i64 {
        self.namespace_retention_ms
            .get(namespace)
            .copied()
            .unwrap_or(self.default_retention_ms)
    }

    /// Checks the settings and returns them with rollups sorted finest first.
    pub(crate) fn validated(mut self) -> Result<Options, Error> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        if self.head_max_points == 0 {
            return bad("head_max_points must be > 0".into());
        }
        if self.wal_segment_bytes < 4096 {
            return bad("wal_segment_bytes must be >= 4096".into());
        }
        if self.partition_ms <= 0 {
            return bad("partition_ms must be > 0".into());
        }
        if self.compression_level > 12 {
            return bad("compression_level must be <= 12".into());
        }
        if self.max_series_per_device == 0 {
            return bad("max_series_per_device must be > 0".into());
        }
        if self.default_retention_ms <= 0 {
            return bad("default_retention_ms must be > 0".into());
        }
        for (ns, r) in &self.namespace_retention_ms {
            if *r <= 0 {
                return bad(format!("retention of namespace {ns:?} must be > 0"));
            }
        }
        self.rollups.sort_by_key(|l| l.bucket_ms);
        self.rollups.dedup_by_key(|l| l.bucket_ms);
        for l in &self.rollups {
            if l.bucket_ms <= 0 || self.partition_ms % l.bucket_ms != 0 {
                return bad(format!(
                    "rollup bucket {} ms must be > 0 and divide partition_ms {}",
                    l.bucket_ms, self.partition_ms
                ));
            }
            if l.retention_ms <= 0 {
                return bad(format!(
                    "retention of the {} ms rollup must be > 0",
                    l.bucket_ms
                ));
            }
        }
        Ok(self)
    }
}
