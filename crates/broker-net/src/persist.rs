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

use broker::PersistOp;
use kv::SessionStore;
use tokio::sync::watch;

/// What the persistence thread has made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Durable {
    /// Highest batch sequence number that is durable.
    pub seq: u64,
    /// Set once a batch failed; acknowledgements after it become failures.
    pub failed: bool,
}

pub(crate) struct PersistQueue {
    tx: Option<mpsc::Sender<(u64, Vec<PersistOp>)>>,
    pub submitted: u64,
    thread: Option<JoinHandle<()>>,
}

impl PersistQueue {
    pub fn start(store: Arc<dyn SessionStore>, durable: watch::Sender<Durable>) -> std::io::Result<PersistQueue> {
        let (tx, rx) = mpsc::channel::<(u64, Vec<PersistOp>)>();
        let thread = std::thread::Builder::new()
            .name("persist".into())
            .spawn(move || run(store, rx, durable))?;
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

fn run(store: Arc<dyn SessionStore>, rx: mpsc::Receiver<(u64, Vec<PersistOp>)>, durable: watch::Sender<Durable>) {
    let mut failed = false;
    while let Ok((mut seq, mut ops)) = rx.recv() {
        // Group commit: take everything already waiting.
        while let Ok((s, more)) = rx.try_recv() {
            seq = s;
            ops.extend(more);
            if ops.len() > 100_000 {
                break;
            }
        }
        if let Err(e) = store.apply(&ops) {
            tracing::error!(error = %e, ops = ops.len(), "persisting broker state failed");
            failed = true;
        }
        durable.send_replace(Durable { seq, failed });
    }
}
