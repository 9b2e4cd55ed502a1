//! The series catalog: every known series key, its id and its value type.
//!
//! Ids are dense and live only in memory; files store full keys (chunk
//! indexes) or per-segment definitions (the WAL), so ids can be reassigned
//! freely on every open.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::error::Error;
use crate::model::{SeriesKey, ValueType};
use crate::query::Selector;

/// In-memory series number, dense from zero.
pub(crate) type SeriesId = u32;

/// A hasher for small integer keys (series ids): one multiply.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// A map keyed by series id.
pub(crate) type IdMap<V> = HashMap<SeriesId, V, BuildHasherDefault<IdHasher>>;

pub(crate) struct SeriesEntry {
    pub(crate) key: Arc<SeriesKey>,
    pub(crate) vtype: ValueType,
}

#[derive(Default)]
pub(crate) struct Catalog {
    by_key: HashMap<Arc<SeriesKey>, SeriesId>,
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
    /// series with another type is a [`Error::TypeConflict`].
    pub(crate) fn get_or_insert(
        &mut self,
        key: &Arc<SeriesKey>,
        vtype: ValueType,
    ) -> Result<SeriesId, Error> {
        if let Some((id, t)) = self.get(key) {
            if t != vtype {
                return Err(Error::TypeConflict {
                    series: key.to_string(),
                    existing: t.name(),
                    written: vtype.name(),
                });
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
        out.sort_by(|a, b| self.entries[*a as usize].key.cmp(&self.entries[*b as usize].key));
        out.dedup();
        out
    }
}
