//! The persistence thread: group commit of broker [`PersistOp`]s.
//!
//! Every dispatch round that produced operations submits them as one batch
//! with a sequence number. The thread takes every batch waiting, writes the
//! telemetry of all of them with one call to the telemetry store (one WAL
//! fsync) and the broker state in one store transaction (one fsync), then
//! publishes the highest sequence number made durable. Writers waiting to
//! send an acknowledgement watch that number.
//!
//! Two kinds of failure reach the acknowledgements:
//! - a whole commit fails (the disk is full, an I/O error): every batch
//!   sequence number of it is recorded as failed ([`Durable::failed`]), and
//!   every acknowledgement that waited on one of them becomes a failure;
//! - the telemetry store refuses one telemetry batch while storing the
//!   others (a type conflict with the series, a series cap): that batch's
//!   own [`Verdict`], shared with its acknowledgement, says so.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use broker::{PersistOp, Time};
use kv::SessionStore;
use tokio::sync::watch;
use tsdb::WritePoint;

/// The ingest stage of devices' telemetry (the `telemetry` crate's): one
/// object, entered at two points of one one-way path.
/// - `decode` turns a device's own `devices/{id}/telemetry` payload into
///   points or refuses it; the connection's task calls it outside the
///   broker's lock, before the broker routes the message (a refused payload
///   is answered 0x99 and goes nowhere).
/// - `write` stores the batches the broker took, every batch of one group
///   commit at once (one WAL fsync), on the persistence thread, before the
///   acknowledgements that wait for them are released. It returns `Err`
///   when nothing could be stored (the whole commit fails), otherwise one
///   entry per batch, `Some(reason)` for a batch refused on its own.
pub trait IngestStage: Send + Sync {
    fn decode(&self, device: &str, payload: &[u8], now: Time) -> Result<Vec<WritePoint>, String>;
    fn write(&self, batches: &[&[WritePoint]]) -> Result<Vec<Option<String>>, String>;
}

/// A device's decoded telemetry taken by the broker, with the verdict its
/// acknowledgement reads (QoS 1/2 only).
pub(crate) type TakenBatch = (Vec<WritePoint>, Option<Arc<Verdict>>);

/// Figures of the group commits: how long each took (telemetry write,
/// then broker state, both fsynced) and how many operations and telemetry
/// points it carried. Recorded by the persistence thread, read by scrapes.
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    pub seconds: metrics::Histogram,
    pub ops: metrics::Histogram,
    pub points: metrics::Histogram,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        CommitMetrics {
            seconds: metrics::Histogram::new(
                "millwright_persist_commit_seconds",
                "Duration of a persistence group commit (telemetry WAL and broker state, fsynced).",
                metrics::LATENCY_BUCKETS,
            ),
            ops: metrics::Histogram::new(
                "millwright_persist_commit_ops",
                "Broker state operations per group commit.",
                metrics::COUNT_BUCKETS,
            ),
            points: metrics::Histogram::new(
                "millwright_persist_commit_points",
                "Telemetry points per group commit.",
                metrics::COUNT_BUCKETS,
            ),
        }
    }
}

/// The fate of one telemetry batch, shared by the persistence thread and
/// the acknowledgement that waits on it. Set before the batch's sequence
/// number is published as durable.
#[derive(Debug, Default)]
pub(crate) struct Verdict(AtomicU8);

impl Verdict {
    const REFUSED: u8 = 1;

    pub fn refuse(&self) {
        self.0.store(Self::REFUSED, Ordering::Release);
    }

    pub fn refused(&self) -> bool {
        self.0.load(Ordering::Acquire) == Self::REFUSED
    }
}

/// How many separate runs of failed commits are remembered. Consecutive
/// failed commits merge into one run, so this is reached only by failures
/// that keep alternating with successes; past it the oldest run is
/// forgotten and every sequence number up to its end is reported failed
/// (an acknowledgement that late errs toward "not stored": the client sends
/// again, nothing is acknowledged that was not kept).
const FAILED_RUNS_KEPT: usize = 4096;

/// What the persistence thread has made durable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Durable {
    /// Highest batch sequence number that is committed (or failed).
    pub seq: u64,
    /// Failed commits as inclusive, ascending, non-adjacent ranges of batch
    /// sequence numbers.
    pub failed: Vec<(u64, u64)>,
    /// Sequence numbers at or below this one are reported failed (their
    /// record was forgotten, see [`FAILED_RUNS_KEPT`]).
    pub forgotten_through: u64,
}

impl Durable {
    /// Whether the batch with sequence number `seq` failed.
    pub fn failed(&self, seq: u64) -> bool {
        if seq <= self.forgotten_through {
            return true;
        }
        // Ranges are sorted: binary search for the last one starting at or
        // before `seq`.
        let i = self.failed.partition_point(|&(a, _)| a <= seq);
        i > 0 && self.failed[i - 1].1 >= seq
    }

    /// Records a failed commit of batches `first..=last` (always after
    /// every range recorded so far).
    pub fn record_failure(&mut self, first: u64, last: u64) {
        match self.failed.last_mut() {
            Some((_, end)) if *end + 1 >= first => *end = (*end).max(last),
            _ => self.failed.push((first, last)),
        }
        if self.failed.len() > FAILED_RUNS_KEPT {
            let (_, end) = self.failed.remove(0);
            self.forgotten_through = end;
        }
    }
}

/// One dispatch round's operations: broker state changes, and telemetry
/// batches with the verdict their acknowledgement reads (QoS 1/2 only).
pub(crate) struct Submission {
    pub ops: Vec<PersistOp>,
    pub telemetry: Vec<TakenBatch>,
}

pub(crate) struct PersistQueue {
    tx: Option<mpsc::Sender<(u64, Submission)>>,
    pub submitted: u64,
    thread: Option<JoinHandle<()>>,
}

impl PersistQueue {
    pub fn start(
        store: Arc<dyn SessionStore>,
        telemetry: Option<Arc<dyn IngestStage>>,
        durable: watch::Sender<Durable>,
        figures: CommitMetrics,
    ) -> std::io::Result<PersistQueue> {
        let (tx, rx) = mpsc::channel::<(u64, Submission)>();
        let thread = std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || run(store, telemetry, rx, durable, figures))?;
        Ok(PersistQueue {
            tx: Some(tx),
            submitted: 0,
            thread: Some(thread),
        })
    }

    /// Submits a batch; returns its sequence number.
    pub fn submit(&mut self, batch: Submission) -> u64 {
        self.submitted += 1;
        if let Some(tx) = &self.tx {
            if tx.send((self.submitted, batch)).is_err() {
                tracing::error!("persistence thread is gone; state is no longer saved");
            }
        }
        self.submitted
    }

    /// Stops accepting batches; returns the thread to join once every
    /// submitted batch is applied.
    pub fn close(&mut self) -> Option<JoinHandle<()>> {
        self.tx = None;
        self.thread.take()
    }
}

/// Most operations gathered into one group commit.
const GROUP_MAX_OPS: usize = 100_000;

fn run(
    store: Arc<dyn SessionStore>,
    telemetry: Option<Arc<dyn IngestStage>>,
    rx: mpsc::Receiver<(u64, Submission)>,
    durable: watch::Sender<Durable>,
    figures: CommitMetrics,
) {
    while let Ok((
        first,
        Submission {
            mut ops,
            telemetry: mut batches,
        },
    )) = rx.recv()
    {
        // Group commit: take everything already waiting.
        let mut seq = first;
        while ops.len() + batches.len() <= GROUP_MAX_OPS {
            let Ok((s, more)) = rx.try_recv() else { break };
            seq = s;
            ops.extend(more.ops);
            batches.extend(more.telemetry);
        }
        let started = std::time::Instant::now();
        let points: usize = batches.iter().map(|(b, _)| b.len()).sum();
        let mut ok = true;
        if !batches.is_empty() {
            match &telemetry {
                Some(sink) => {
                    let refs: Vec<&[WritePoint]> =
                        batches.iter().map(|(b, _)| b.as_slice()).collect();
                    match sink.write(&refs) {
                        Ok(verdicts) => {
                            for ((_, verdict), refused) in batches.iter().zip(verdicts) {
                                if let Some(why) = refused {
                                    tracing::debug!(why, "telemetry batch refused by the store");
                                    if let Some(v) = verdict {
                                        v.refuse();
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "storing telemetry failed; its publishers get failure acknowledgements");
                            ok = false;
                        }
                    }
                }
                None => {
                    tracing::warn!("telemetry batch without a telemetry store; not stored");
                    for v in batches.iter().filter_map(|(_, v)| v.as_ref()) {
                        v.refuse();
                    }
                }
            }
        }
        if let Err(e) = store.apply(&ops) {
            tracing::error!(error = %e, ops = ops.len(), "persisting broker state failed");
            ok = false;
        }
        figures.seconds.observe(started.elapsed().as_secs_f64());
        figures.ops.observe(ops.len() as f64);
        figures.points.observe(points as f64);
        durable.send_modify(|d| {
            if !ok {
                d.record_failure(first, seq);
            }
            d.seq = seq;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_kept_per_sequence_number() {
        let mut d = Durable::default();
        d.record_failure(3, 5);
        d.record_failure(6, 6); // adjacent: merged
        d.record_failure(9, 9);
        assert_eq!(d.failed, vec![(3, 6), (9, 9)]);
        for s in [3, 4, 5, 6, 9] {
            assert!(d.failed(s), "{s}");
        }
        for s in [1, 2, 7, 8, 10] {
            assert!(!d.failed(s), "{s}");
        }
    }

    #[test]
    fn many_failure_runs_never_turn_a_failure_into_a_success() {
        let mut d = Durable::default();
        // Alternating failures and successes: runs 1, 3, 5, ...
        let runs = FAILED_RUNS_KEPT as u64 + 100;
        for i in 0..runs {
            d.record_failure(2 * i + 1, 2 * i + 1);
        }
        assert_eq!(d.failed.len(), FAILED_RUNS_KEPT);
        for i in 0..runs {
            // Every failed commit still reads as failed, however old.
            assert!(d.failed(2 * i + 1));
        }
        // Recent successes read as successes.
        assert!(!d.failed(2 * runs));
        assert!(!d.failed(2 * (runs - 1)));
    }
}
