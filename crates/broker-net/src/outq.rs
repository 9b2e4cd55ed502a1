//! The bounded queue of packets toward one connection. Unlike a channel it
//! allocates nothing while empty, which keeps an idle connection small.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::task::AtomicWaker;
use mqtt_proto::Packet;

use crate::persist::Verdict;

/// An item for a connection's writer. Not boxed: nearly every item is a
/// packet, and a box would cost an allocation per delivered message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Outgoing {
    /// Send once the persistence sequence `wait` is durable (0 = now); an
    /// acknowledgement of telemetry also reads its batch's verdict.
    Packet(Packet, u64, Option<Arc<Verdict>>),
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

/// Packets a queue has room for when it starts filling again.
const FIRST_ROOM: usize = 16;

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
    /// Set while the broker wants the connection not read (back-pressure).
    read_paused: AtomicBool,
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
            read_paused: AtomicBool::new(false),
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
        if q.capacity() == 0 {
            // The queue's memory was handed to the writer: start again with
            // room for a few packets rather than growing (and copying) from
            // one.
            q.reserve(FIRST_ROOM.min(self.cap));
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

    /// Stops or resumes reading the connection; wakes its task either way.
    pub fn set_read_paused(&self, paused: bool) {
        self.read_paused.store(paused, Ordering::Relaxed);
        self.wake();
    }

    /// Whether the connection must not be read now.
    pub fn read_paused(&self) -> bool {
        self.read_paused.load(Ordering::Relaxed)
    }

    /// Stops the connection now, dropping what is queued.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.wake();
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Takes everything queued (the buffer itself: nothing is copied, and
    /// an idle connection keeps no queue memory).
    pub fn take(&self) -> VecDeque<Outgoing> {
        std::mem::take(&mut *self.lock())
    }

    /// Sets the "something was queued" flag again (after a watcher that
    /// consumed it), so the owner's next `poll_queued` is ready at once.
    pub fn mark_queued(&self) {
        self.queued.store(true, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use mqtt_proto::Packet;

    use super::*;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn ping() -> Outgoing {
        Outgoing::Packet(Packet::PingResp, 0, None)
    }

    #[test]
    fn wakes_once_per_push_and_keeps_a_wake_sent_while_nobody_waits() {
        let q = OutQueue::new(2);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(q.poll_queued(&mut cx), Poll::Pending);
        q.push(ping()).unwrap();
        assert!(flag.0.load(Ordering::SeqCst), "push did not wake the task");
        assert_eq!(q.poll_queued(&mut cx), Poll::Ready(()));
        assert_eq!(q.poll_queued(&mut cx), Poll::Pending);
        // Full at the limit; draining frees the memory and the room.
        q.push(ping()).unwrap();
        assert_eq!(q.push(ping()), Err(Full::Full));
        assert_eq!(q.take().len(), 2);
        assert_eq!(q.lock().capacity(), 0);
        // Close goes in beyond the limit; nothing is accepted after it.
        q.push(ping()).unwrap();
        q.push(ping()).unwrap();
        q.close();
        assert_eq!(q.push(ping()), Err(Full::Closed));
        let out = q.take();
        assert_eq!(out.len(), 3);
        assert!(matches!(out.back(), Some(Outgoing::Close)));
    }

    #[test]
    fn abort_wakes_and_refuses() {
        let q = OutQueue::new(8);
        q.abort();
        assert!(q.aborted());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(q.poll_queued(&mut cx), Poll::Ready(()));
        assert_eq!(q.push(ping()), Err(Full::Closed));
    }
}
