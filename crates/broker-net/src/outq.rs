//! The bounded queue of packets toward one connection. Unlike a channel it
//! allocates nothing while empty, which keeps an idle connection small.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mqtt_proto::Packet;
use tokio::sync::Notify;

/// An item for a connection's writer. Not boxed: nearly every item is a
/// packet, and a box would cost an allocation per delivered message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    /// Send once the persistence sequence `wait` is durable (0 = now).
    Packet(Packet, u64),
    /// Flush what came before, then close.
    Close,
}

/// Why an item could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The queue holds its limit.
    Full,
    /// The connection is closing.
    Closed,
}

#[derive(Debug)]
pub(crate) struct OutQueue {
    items: Mutex<VecDeque<Outgoing>>,
    cap: usize,
    notify: Notify,
    /// Set to stop reading and writing at once (no flush).
    abort: AtomicBool,
    /// Set once a Close was queued.
    closing: AtomicBool,
}

impl OutQueue {
    pub fn new(cap: usize) -> OutQueue {
        OutQueue {
            items: Mutex::new(VecDeque::new()),
            cap,
            notify: Notify::new(),
            abort: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a packet unless the queue is full or closing.
    pub fn push(&self, item: Outgoing) -> Result<(), Full> {
        if self.closing.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed) {
            return Err(Full::Closed);
        }
        let mut q = self.lock();
        if q.len() >= self.cap {
            return Err(Full::Full);
        }
        q.push_back(item);
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    /// Queues a Close after everything queued (beyond the limit if need be).
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        self.lock().push_back(Outgoing::Close);
        self.notify.notify_one();
    }

    /// Stops the connection now, dropping what is queued.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Moves everything queued into `out`; frees the queue's memory.
    pub fn drain_into(&self, out: &mut Vec<Outgoing>) {
        let mut q = self.lock();
        if q.is_empty() {
            return;
        }
        // Take the whole buffer: an idle connection keeps no queue memory.
        out.extend(std::mem::take(&mut *q));
    }

    /// Completes when something was queued (or abort was called) since the
    /// last drain; a notification sent while nobody waited is kept.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}
