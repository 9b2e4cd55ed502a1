//! Per-batch validation before the group commit: value checks, series
//! resolution (and registration of new series), type conflicts and the
//! series-per-device cap. A batch that fails any check is refused alone,
//! with a [`WriteError`]; nothing of it reaches the WAL or the catalog.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::catalog::{FastState, IdMap, SeriesId};
use crate::column::Column;
use crate::db::{read, write, Tsdb};
use crate::error::Error;
use crate::model::{SeriesKey, Value, ValueType, WritePoint, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};
use crate::wal::SeriesRun;

/// Why one batch of [`Tsdb::write_batches`] was refused. The batch was
/// not stored; the other batches of the call are not affected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A point's type differs from its series' type (stored, or set by an
    /// earlier point of the same batch, or by an earlier batch of the same
    /// call).
    #[error("type conflict for series {series}: stored as {existing}, written as {written}")]
    TypeConflict {
        /// The series, rendered as text.
        series: String,
        /// The series' type.
        existing: &'static str,
        /// The type of the rejected value.
        written: &'static str,
    },
    /// The batch would create a series on a device that already has
    /// [`crate::Options::max_series_per_device`] series.
    #[error(
        "device {device:?} already has {limit} series (the limit); new series {series} refused"
    )]
    TooManySeries {
        /// The device id.
        device: String,
        /// The first new series refused, rendered as text.
        series: String,
        /// The limit in force.
        limit: usize,
    },
    /// A point or series key is not acceptable: empty or too long names, a
    /// non-finite float, a timestamp outside
    /// [`MIN_TIMESTAMP_MS`]..=[`MAX_TIMESTAMP_MS`], or a batch too large for
    /// one WAL record.
    #[error("invalid point: {0}")]
    Invalid(String),
}

/// What [`Tsdb::write`] returns for a refused batch.
impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        match e {
            WriteError::Invalid(m) => Error::InvalidSeries(m),
            refused => Error::Refused(refused),
        }
    }
}

/// Where a run's series comes from before registration.
#[derive(Clone, Copy)]
enum Slot {
    Known(SeriesId),
    /// Index into the batch's list of new series.
    New(usize),
}

struct Run {
    slot: Slot,
    ts: Vec<i64>,
    vals: Column,
}

/// Checks a point's value and timestamp.
fn check_point(p: &WritePoint) -> Result<(), WriteError> {
    if let Value::F64(v) = p.value {
        if !v.is_finite() {
            return Err(WriteError::Invalid(format!(
                "non-finite float {v} for {}",
                p.series
            )));
        }
    }
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&p.ts) {
        return Err(WriteError::Invalid(format!(
            "timestamp {} ms for {} is outside the supported range {MIN_TIMESTAMP_MS}..={MAX_TIMESTAMP_MS}",
            p.ts, p.series
        )));
    }
    Ok(())
}

impl Tsdb {
    /// Validates one batch and groups its points by series. New series are
    /// registered in the catalog only once the whole batch passed, so a
    /// refused batch leaves no trace.
    pub(crate) fn resolve(&self, batch: &[WritePoint]) -> Result<Vec<SeriesRun>, WriteError> {
        for p in batch {
            check_point(p)?;
        }
        let limit = self.opts.max_series_per_device;
        // Each distinct key (by pointer) is looked up once per batch.
        let mut by_ptr: HashMap<usize, usize, FastState> = HashMap::default();
        let mut by_sid: IdMap<usize> = IdMap::default();
        let mut new_keys: HashMap<Arc<SeriesKey>, usize, FastState> = HashMap::default();
        let mut new_list: Vec<(Arc<SeriesKey>, ValueType)> = Vec::new();
        // New series per (namespace, device) in this batch, to check the cap.
        let mut new_per_device: HashMap<(Arc<str>, Arc<str>), usize, FastState> =
            HashMap::default();
        let mut runs: Vec<Run> = Vec::new();
        {
            let cat = read(&self.catalog);
            for p in batch {
                let ptr = Arc::as_ptr(&p.series) as usize;
                let ri = match by_ptr.get(&ptr) {
                    Some(&ri) => ri,
                    None => {
                        let ri = match cat.get(&p.series) {
                            Some((sid, vtype)) => *by_sid.entry(sid).or_insert_with(|| {
                                runs.push(Run {
                                    slot: Slot::Known(sid),
                                    ts: Vec::new(),
                                    vals: Column::new(vtype),
                                });
                                runs.len() - 1
                            }),
                            None => match new_keys.get(&p.series) {
                                Some(&ri) => ri,
                                None => {
                                    p.series
                                        .validate()
                                        .map_err(|e| WriteError::Invalid(e.to_string()))?;
                                    let dev = (
                                        p.series.namespace_arc().clone(),
                                        p.series.device_arc().clone(),
                                    );
                                    let have = cat.device_series(&dev.0, &dev.1);
                                    let added = new_per_device.entry(dev).or_insert(0);
                                    if have.saturating_add(*added) >= limit {
                                        let refused = count_new_for_device(batch, &cat, &p.series);
                                        self.stats
                                            .series_refused
                                            .fetch_add(refused, Ordering::Relaxed);
                                        return Err(WriteError::TooManySeries {
                                            device: p.series.device().to_string(),
                                            series: p.series.to_string(),
                                            limit,
                                        });
                                    }
                                    *added += 1;
                                    let vtype = p.value.value_type();
                                    new_list.push((p.series.clone(), vtype));
                                    runs.push(Run {
                                        slot: Slot::New(new_list.len() - 1),
                                        ts: Vec::new(),
                                        vals: Column::new(vtype),
                                    });
                                    let ri = runs.len() - 1;
                                    new_keys.insert(p.series.clone(), ri);
                                    ri
                                }
                            },
                        };
                        by_ptr.insert(ptr, ri);
                        ri
                    }
                };
                let run = &mut runs[ri];
                if run.vals.vtype() != p.value.value_type() {
                    return Err(WriteError::TypeConflict {
                        series: p.series.to_string(),
                        existing: run.vals.vtype().name(),
                        written: p.value.value_type().name(),
                    });
                }
                run.ts.push(p.ts);
                run.vals.push(&p.value);
            }
        }
        // Register the new series. Another writer may have registered one
        // of them meanwhile (same type: fine; other type: a conflict) or
        // filled the device up.
        let mut new_ids = Vec::with_capacity(new_list.len());
        if !new_list.is_empty() {
            let mut cat = write(&self.catalog);
            for (key, vtype) in &new_list {
                let id = cat.get_or_insert_capped(key, *vtype, limit).map_err(|e| {
                    if matches!(e, WriteError::TooManySeries { .. }) {
                        self.stats.series_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    e
                })?;
                new_ids.push(id);
            }
            tracing::debug!(
                series = cat.len(),
                new = new_list.len(),
                "registered new series"
            );
        }
        Ok(runs
            .into_iter()
            .map(|r| SeriesRun {
                sid: match r.slot {
                    Slot::Known(sid) => sid,
                    Slot::New(i) => new_ids[i],
                },
                ts: r.ts,
                vals: r.vals,
            })
            .collect())
    }
}

/// Distinct series of `key`'s device in `batch` that the catalog lacks
/// (the series a cap refusal turns away). Error path only.
fn count_new_for_device(
    batch: &[WritePoint],
    cat: &crate::catalog::Catalog,
    key: &SeriesKey,
) -> u64 {
    let mut seen: HashMap<&SeriesKey, (), FastState> = HashMap::default();
    for p in batch {
        let k = &*p.series;
        if k.namespace() == key.namespace() && k.device() == key.device() && cat.get(k).is_none() {
            seen.insert(k, ());
        }
    }
    seen.len() as u64
}
