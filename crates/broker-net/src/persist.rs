//! The persistence thread: group commit of broker [`PersistOp`]s.
//!
//! Every dispatch round that produced operations submits them as one batch
//! with a sequence number. The thread takes every batch waiting, applies
//! them all in one store transaction (one fsync), then publishes the highest
//! sequence number made durable. Writers waiting to send an acknowledgement
//! watch that number.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use broker::{PersistOp, TelemetryBatch};
use kv::SessionStore;
use tokio::sync::watch;

/// Where the persistence thread writes device telemetry (the telemetry
/// store). `write` returns once the batches are durable.
pub trait TelemetrySink: Send + Sync {
    fn write(&self, batches: &[TelemetryBatch]) -> Result<(), String>;
}

/// How many failed commits are remembered for late readers.
const FAILED_KEPT: usize = 64;

/// What the persistence thread has made durable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Durable {
    /// Highest batch sequence number that is committed (or failed).
    pub seq: u64,
    /// The most recent commits that failed, as inclusive ranges of batch
    /// sequence numbers: acknowledgements waiting on them become failures.
    pub failed: Vec<(u64, u64)>,
}

impl Durable {
    /// Whether the batch with sequence number `seq` failed.
    pub fn failed(&self, seq: u64) -> bool {
        self.failed.iter().any(|&(a, b)| a <= seq && seq <= b)
    }
}

pub(crate) struct PersistQueue {
    tx: Option<mpsc::Sender<(u64, Vec<PersistOp>)>>,
    pub submitted: u64,
    thread: Option<JoinHandle<()>>,
}

impl PersistQueue {
    pub fn start(
        store: Arc<dyn SessionStore>,
        telemetry: Option<Arc<dyn TelemetrySink>>,
        durable: watch::Sender<Durable>,
    ) -> std::io::Result<PersistQueue> {
        let (tx, rx) = mpsc::channel::<(u64, Vec<PersistOp>)>();
        let thread = std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || run(store, telemetry, rx, durable))?;
        Ok(PersistQueue {
            tx: Some(tx),
            submitted: 0,
            thread: Some(thread),
        })
    }

    /// Submits a batch; returns its sequence number.
    pub fn submit(&mut self, ops: Vec<PersistOp>) -> u64 {
        self.submitted += 1;
        if let Some(tx) = &self.tx {
            if tx.send((self.submitted, ops)).is_err() {
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

fn run(
    store: Arc<dyn SessionStore>,
    telemetry: Option<Arc<dyn TelemetrySink>>,
    rx: mpsc::Receiver<(u64, Vec<PersistOp>)>,
    durable: watch::Sender<Durable>,
) {
    let mut failed: Vec<(u64, u64)> = Vec::new();
    let mut batches: Vec<TelemetryBatch> = Vec::new();
    while let Ok((first, mut ops)) = rx.recv() {
        // Group commit: take everything already waiting.
        let mut seq = first;
        while let Ok((s, more)) = rx.try_recv() {
            seq = s;
            ops.extend(more);
            if ops.len() > 100_000 {
                break;
            }
        }
        batches.clear();
        ops.retain(|op| match op {
            PersistOp::Telemetry(b) => {
                batches.push(b.clone());
                false
            }
            _ => true,
        });
        let mut ok = true;
        if !batches.is_empty() {
            match &telemetry {
                Some(sink) => {
                    if let Err(e) = sink.write(&batches) {
                        tracing::error!(error = %e, "storing telemetry failed; its publishers get failure acknowledgements");
                        ok = false;
                    }
                }
                None => tracing::warn!("telemetry batch without a telemetry store; dropped"),
            }
        }
        if let Err(e) = store.apply(&ops) {
            tracing::error!(error = %e, ops = ops.len(), "persisting broker state failed");
            ok = false;
        }
        if !ok {
            failed.push((first, seq));
            if failed.len() > FAILED_KEPT {
                failed.remove(0);
            }
        }
        let failed_now = failed.clone();
        durable.send_modify(|d| {
            d.seq = seq;
            d.failed = failed_now;
        });
    }
}
