//! The bounded queue of packets toward one connection. Unlike a channel it
//! allocates nothing while empty, which keeps an idle connection small.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures_util::task::AtomicWaker;
use mqtt_proto::Packet;

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
    /// The connection's task, woken when something is queued or on abort.
    waker: AtomicWaker,
    /// Set when something was queued since the task last looked.
    queued: AtomicBool,
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
            waker: AtomicWaker::new(),
            queued: AtomicBool::new(false),
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
        self.wake();
        Ok(())
    }

    /// Queues a Close after everything queued (beyond the limit if need be).
    pub fn close(&self) {
        if self.closing.swap(true, Ordering::Relaxed) {
            return;
        }
        self.lock().push_back(Outgoing::Close);
        self.wake();
    }

    /// Stops the connection now, dropping what is queued.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.wake();
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

    fn wake(&self) {
        self.queued.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready when something was queued (or abort was called) since the last
    /// time it was ready; a wake-up sent while nobody waited is kept. Only
    /// the connection's own task polls it.
    pub fn poll_queued(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.queued.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.queued.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }
}
