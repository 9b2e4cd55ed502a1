//! The series catalog: every known series key, its id and its value type.
//!
//! Ids are dense and live only in memory; files store full keys (chunk
//! indexes) or per-segment definitions (the WAL), so ids can be reassigned
//! freely on every open.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::sync::OnceLock;

use crate::batch::WriteError;
use crate::error::Error;
use crate::model::{SeriesKey, ValueType};
use crate::query::Selector;

/// In-memory series number, dense from zero.
pub(crate) type SeriesId = u32;

/// A fast, non-cryptographic hasher (FxHash-style, eight bytes at a time,
/// with a final mix), seeded once per process. Series keys are hashed on
/// every write, and SipHash was a tenth of the ingest profile.
#[derive(Clone, Copy)]
pub(crate) struct FastState(u64);

impl Default for FastState {
    fn default() -> FastState {
        static SEED: OnceLock<u64> = OnceLock::new();
        FastState(*SEED.get_or_init(|| RandomState::new().hash_one(0x4d57_5453_u64)))
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

pub(crate) struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(26) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(K).rotate_left(26)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// A map keyed by series id.
pub(crate) type IdMap<V> = HashMap<SeriesId, V, FastState>;

pub(crate) struct SeriesEntry {
    pub(crate) key: Arc<SeriesKey>,
    pub(crate) vtype: ValueType,
}

#[derive(Default)]
pub(crate) struct Catalog {
    by_key: HashMap<Arc<SeriesKey>, SeriesId, FastState>,
    entries: Vec<SeriesEntry>,
    /// namespace -> device -> series ids, for selectors and listings.
    tree: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Vec<SeriesId>>>,
}

impl Catalog {
    pub(crate) fn get(&self, key: &SeriesKey) -> Option<(SeriesId, ValueType)> {
        self.by_key
            .get(key)
            .map(|&id| (id, self.entries[id as usize].vtype))
    }

    pub(crate) fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        self.entries.get(id as usize)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns the series' id, creating it with `vtype` if new; a known
    /// series with another type is a [`WriteError::TypeConflict`].
    pub(crate) fn get_or_insert(
        &mut self,
        key: &Arc<SeriesKey>,
        vtype: ValueType,
    ) -> Result<SeriesId, Error> {
        if let Some((id, t)) = self.get(key) {
            if t != vtype {
                return Err(WriteError::TypeConflict {
                    series: key.to_string(),
                    existing: t.name(),
                    written: vtype.name(),
                }
                .into());
            }
            return Ok(id);
        }
        key.validate()?;
        let id = SeriesId::try_from(self.entries.len())
            .map_err(|_| Error::InvalidSeries("too many series".into()))?;
        self.entries.push(SeriesEntry {
            key: key.clone(),
            vtype,
        });
        self.by_key.insert(key.clone(), id);
        self.tree
            .entry(key.namespace_arc().clone())
            .or_default()
            .entry(key.device_arc().clone())
            .or_default()
            .push(id);
        Ok(id)
    }

    /// How many series the device has in the namespace.
    pub(crate) fn device_series(&self, namespace: &str, device: &str) -> usize {
        self.tree
            .get(namespace)
            .and_then(|d| d.get(device))
            .map_or(0, Vec::len)
    }

    /// Like [`Catalog::get_or_insert`] for the write path: a new series is
    /// refused once its device has `limit` series. The key is validated by
    /// the caller.
    pub(crate) fn get_or_insert_capped(
        &mut self,
        key: &Arc<SeriesKey>,
        vtype: ValueType,
        limit: usize,
    ) -> Result<SeriesId, WriteError> {
        if let Some((id, t)) = self.get(key) {
            if t != vtype {
                return Err(WriteError::TypeConflict {
                    series: key.to_string(),
                    existing: t.name(),
                    written: vtype.name(),
                });
            }
            return Ok(id);
        }
        if self.device_series(key.namespace(), key.device()) >= limit {
            return Err(WriteError::TooManySeries {
                device: key.device().to_string(),
                series: key.to_string(),
                limit,
            });
        }
        self.get_or_insert(key, vtype)
            .map_err(|e| WriteError::Invalid(e.to_string()))
    }

    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &Arc<str>> {
        self.tree.keys()
    }

    /// Series matching the selector, sorted by key.
    pub(crate) fn select(&self, sel: &Selector) -> Vec<SeriesId> {
        let Some(devices) = self.tree.get(sel.namespace.as_str()) else {
            return Vec::new();
        };
        let mut out: Vec<SeriesId> = Vec::new();
        let mut take = |ids: &Vec<SeriesId>| {
            for &id in ids {
                let k = &self.entries[id as usize].key;
                if sel.matches_metric(k.metric()) && sel.matches_labels(k) {
                    out.push(id);
                }
            }
        };
        match sel.devices_list() {
            None => devices.values().for_each(&mut take),
            Some(list) => {
                for d in list {
                    if let Some(ids) = devices.get(d.as_str()) {
                        take(ids);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            self.entries[*a as usize]
                .key
                .cmp(&self.entries[*b as usize].key)
        });
        out.dedup();
        out
    }
}
