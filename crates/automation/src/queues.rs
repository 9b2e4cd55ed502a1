//! The engine's input queues: one bounded queue per worker, fed by the
//! broker (as its [`broker::bus::RuleSink`]) without blocking.
//!
//! A message goes to the queue of the partition that owns its group key
//! (see `core`), so a device's messages are evaluated in order by one
//! worker. When that queue holds `capacity` messages:
//! - a message that only rules which may be sampled read (every action a
//!   republish or a webhook) is dropped, and counted by the broker
//!   (`rules_dropped`);
//! - a message some other rule reads (alarms, commands, twins, store) is
//!   queued anyway, and while that queue is over its bound the broker
//!   reads no more from the connections that publish into it (the topics
//!   of their last read batch map to it: `room`), until it is down to
//!   three quarters of it; other connections go on. The excess is thus at
//!   most two read batches per connection (the one that filled it, and the
//!   one read before the connection saw the pressure), plus the engine's
//!   own publications, and no such message is skipped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use broker::TapMessage;

use crate::core::{partition_key, partition_of, Loaded};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct QState {
    items: VecDeque<TapMessage>,
    /// Past `capacity` (and not yet back to three quarters of it).
    over: bool,
    /// The worker waits on the condition variable.
    sleeping: bool,
    closed: bool,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QState>,
    /// `QState::over`, readable without the lock (and by waiting
    /// publishers).
    over: Arc<AtomicBool>,
    ready: Condvar,
    /// Messages taken by this queue's worker.
    taken: AtomicU64,
    /// Messages queued past the bound (rules that must see every message).
    held: AtomicU64,
    /// Messages dropped at the bound (only sampled rules read them).
    dropped: AtomicU64,
}

/// Figures of one worker's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueFigures {
    /// Messages waiting now.
    pub queued: usize,
    /// Messages taken for evaluation since the start.
    pub taken: u64,
    /// Messages queued past the bound because a rule that must see every
    /// message reads them (the broker made publishers wait meanwhile).
    pub held: u64,
    /// Messages dropped at the bound (only rules that may be sampled read
    /// them).
    pub dropped: u64,
}

/// The rules engine's input: one bounded queue per worker.
pub struct RuleQueues {
    queues: Vec<Queue>,
    capacity: usize,
    room: Arc<Room>,
    /// The rules, as the engine last set them (for the workers).
    rules: RwLock<Arc<Vec<Arc<Loaded>>>>,
    /// The enabled rules that must see every message (read at the bound,
    /// to tell whether a message may be dropped); `strict_any`: there are.
    strict: RwLock<Arc<Vec<Arc<Loaded>>>>,
    strict_any: AtomicBool,
    generation: AtomicU64,
}

/// What publishers waiting for room look at.
#[derive(Default)]
struct Room {
    /// Queues over their bound.
    over: AtomicUsize,
    closed: AtomicBool,
    /// Woken whenever a queue gets back under its bound.
    notify: tokio::sync::Notify,
}

impl Room {
    fn open(&self) -> bool {
        self.over.load(Ordering::Acquire) == 0 || self.closed.load(Ordering::Acquire)
    }
}

impl RuleQueues {
    /// `workers` queues (at least 1) of `capacity` messages each (at
    /// least 1).
    pub fn new(workers: usize, capacity: usize) -> Arc<RuleQueues> {
        Arc::new(RuleQueues {
            queues: (0..workers.max(1)).map(|_| Queue::default()).collect(),
            capacity: capacity.max(1),
            room: Arc::new(Room::default()),
            rules: RwLock::new(Arc::new(Vec::new())),
            strict: RwLock::new(Arc::new(Vec::new())),
            strict_any: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// Number of workers (and queues, and partitions).
    pub fn workers(&self) -> usize {
        self.queues.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Each queue's figures, by worker.
    pub fn figures(&self) -> Vec<QueueFigures> {
        self.queues
            .iter()
            .map(|q| QueueFigures {
                queued: lock(&q.state).items.len(),
                taken: q.taken.load(Ordering::Relaxed),
                held: q.held.load(Ordering::Relaxed),
                dropped: q.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub(crate) fn set_rules(&self, rules: Arc<Vec<Arc<Loaded>>>) {
        let strict: Vec<Arc<Loaded>> = rules
            .iter()
            .filter(|l| l.enabled && !l.may_sample())
            .cloned()
            .collect();
        self.strict_any.store(!strict.is_empty(), Ordering::Release);
        *self.strict.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(strict);
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The rules when they changed since `generation` (which is updated).
    pub(crate) fn rules_since(&self, generation: &mut u64) -> Option<Arc<Vec<Arc<Loaded>>>> {
        let g = self.generation.load(Ordering::Acquire);
        if g == *generation {
            return None;
        }
        *generation = g;
        Some(self.rules.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Whether a rule that must see every message reads `topic`.
    fn must_see(&self, topic: &str) -> bool {
        self.strict_any.load(Ordering::Acquire)
            && self
                .strict
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|l| l.rule.matches_topic(topic))
    }

    /// Takes the next messages of queue `index` into `into` (up to 64),
    /// waiting for some; false once the queues are closed and this one is
    /// empty.
    pub(crate) fn take(&self, index: usize, into: &mut Vec<TapMessage>) -> bool {
        let Some(q) = self.queues.get(index) else {
            return false;
        };
        let mut s = lock(&q.state);
        while s.items.is_empty() {
            if s.closed {
                return false;
            }
            s.sleeping = true;
            s = q.ready.wait(s).unwrap_or_else(|p| p.into_inner());
            s.sleeping = false;
        }
        let n = s.items.len().min(64);
        into.extend(s.items.drain(..n));
        q.taken.fetch_add(n as u64, Ordering::Relaxed);
        if s.over && s.items.len() <= self.capacity / 4 * 3 {
            s.over = false;
            q.over.store(false, Ordering::Release);
            drop(s);
            self.room.over.fetch_sub(1, Ordering::AcqRel);
            self.room.notify.notify_waiters();
        }
        true
    }

    /// Ends the workers once their queues are empty; publishers no longer
    /// wait.
    pub fn close(&self) {
        self.room.closed.store(true, Ordering::Release);
        for q in &self.queues {
            lock(&q.state).closed = true;
            q.ready.notify_all();
        }
        self.room.notify.notify_waiters();
    }
}

impl broker::bus::RuleSink for RuleQueues {
    fn offer(&self, t: TapMessage) -> bool {
        let index = partition_of(partition_key(&t.message.topic), self.queues.len());
        let Some(q) = self.queues.get(index) else {
            return false;
        };
        let mut s = lock(&q.state);
        if s.items.len() >= self.capacity {
            if !self.must_see(&t.message.topic) {
                q.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            q.held.fetch_add(1, Ordering::Relaxed);
            if !s.over && !s.closed {
                s.over = true;
                q.over.store(true, Ordering::Release);
                self.room.over.fetch_add(1, Ordering::AcqRel);
            }
        }
        s.items.push_back(t);
        if s.sleeping {
            s.sleeping = false;
            q.ready.notify_one();
        }
        true
    }

    fn pressed(&self) -> bool {
        !self.room.open()
    }

    fn room(&self, topics: &mut dyn Iterator<Item = &str>) -> Option<broker::bus::RoomWait> {
        if self.room.open() {
            return None;
        }
        // The queues over their bound these topics go to (all of them for
        // an empty topic: an alias the broker resolves).
        let mut wait: Vec<usize> = Vec::new();
        for topic in topics {
            let over = |i: &usize| {
                self.queues
                    .get(*i)
                    .is_some_and(|q| q.over.load(Ordering::Acquire))
            };
            if topic.is_empty() {
                wait.extend((0..self.queues.len()).filter(|i| over(i)));
            } else {
                let i = partition_of(partition_key(topic), self.queues.len());
                // A message no strict rule reads is dropped at the bound,
                // not held: its publisher need not wait.
                if over(&i) && self.must_see(topic) {
                    wait.push(i);
                }
            }
        }
        wait.sort_unstable();
        wait.dedup();
        if wait.is_empty() {
            return None;
        }
        let room = self.room.clone();
        let overs: Vec<Arc<AtomicBool>> = wait
            .iter()
            .filter_map(|&i| self.queues.get(i).map(|q| q.over.clone()))
            .collect();
        Some(Box::pin(async move {
            loop {
                let mut notified = std::pin::pin!(room.notify.notified());
                notified.as_mut().enable();
                if room.closed.load(Ordering::Acquire)
                    || overs.iter().all(|o| !o.load(Ordering::Acquire))
                {
                    return;
                }
                notified.await;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker::bus::RuleSink;
    use broker::StoredMessage;
    use serde_json::json;

    fn tap(topic: &str) -> TapMessage {
        TapMessage {
            client_id: "c".into(),
            principal: None,
            message: Arc::new(StoredMessage {
                topic: topic.to_string().into(),
                payload: bytes::Bytes::from_static(b"{}"),
                qos: mqtt_proto::QoS::AtMostOnce,
                retain: false,
                payload_format_indicator: None,
                content_type: None,
                response_topic: None,
                correlation_data: None,
                user_properties: Vec::new(),
                expires_at: None,
            }),
            for_services: false,
            for_rules: true,
            for_streams: false,
        }
    }

    fn rules(actions: serde_json::Value) -> Arc<Vec<Arc<Loaded>>> {
        let def =
            json!({"name": "r", "sql": "SELECT * FROM 'devices/+/telemetry'", "actions": actions});
        let l = crate::engine::compile(&def, Vec::new()).expect("compiles");
        Arc::new(vec![Arc::new(l)])
    }

    #[test]
    fn messages_go_to_the_queue_of_their_device() {
        let q = RuleQueues::new(4, 1000);
        for i in 0..100 {
            for _ in 0..3 {
                assert!(q.offer(tap(&format!("devices/d{i}/telemetry"))));
            }
        }
        let mut total = 0;
        for w in 0..4 {
            let mut got = Vec::new();
            while q.figures()[w].queued > 0 {
                assert!(q.take(w, &mut got));
            }
            for t in &got {
                assert_eq!(partition_of(partition_key(&t.message.topic), 4), w);
            }
            total += got.len();
        }
        assert_eq!(total, 300);
    }

    #[test]
    fn a_full_queue_drops_what_only_sampled_rules_read() {
        let q = RuleQueues::new(1, 4);
        q.set_rules(rules(json!([{"type": "republish", "topic": "out"}])));
        for _ in 0..4 {
            assert!(q.offer(tap("devices/a/telemetry")));
        }
        assert!(!q.offer(tap("devices/a/telemetry")));
        assert!(!q.pressed());
        assert!(q.room(&mut ["devices/a/telemetry"].into_iter()).is_none());
        let f = q.figures()[0];
        assert_eq!((f.queued, f.dropped, f.held), (4, 1, 0));
    }

    #[test]
    fn a_full_queue_holds_what_an_alarm_rule_reads_and_its_publishers_wait() {
        let q = RuleQueues::new(2, 4);
        q.set_rules(rules(
            json!([{"type": "alarm", "alarm_type": "hot", "severity": "major"}]),
        ));
        // Two devices on different workers.
        let a = "d0".to_string();
        let b = (1..100)
            .map(|i| format!("d{i}"))
            .find(|d| partition_of(d, 2) != partition_of(&a, 2))
            .expect("a device on the other worker");
        let (ta, tb) = (
            format!("devices/{a}/telemetry"),
            format!("devices/{b}/telemetry"),
        );
        let (wa, wb) = (partition_of(&a, 2), partition_of(&b, 2));
        for _ in 0..10 {
            assert!(q.offer(tap(&ta)));
        }
        assert!(q.offer(tap(&tb)));
        let f = q.figures();
        assert_eq!((f[wa].queued, f[wa].held, f[wa].dropped), (10, 6, 0));
        assert_eq!((f[wb].queued, f[wb].held), (1, 0));
        assert!(q.pressed());
        // Only connections publishing into the full queue wait (a topic
        // alias, unknown here, counts as any), and only with messages a
        // strict rule reads.
        assert!(q.room(&mut [tb.as_str()].into_iter()).is_none());
        let other = (0..1000)
            .map(|i| format!("plant/{i}"))
            .find(|t| partition_of(t, 2) == wa)
            .expect("a topic of the full queue");
        assert!(q.room(&mut [other.as_str()].into_iter()).is_none());
        assert!(q.room(&mut [""].into_iter()).is_some());
        let wait = q
            .room(&mut [tb.as_str(), ta.as_str()].into_iter())
            .expect("publishers wait");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let waited = rt.spawn(wait);
        // Draining the other queue does not release it.
        let mut got = Vec::new();
        assert!(q.take(wb, &mut got));
        rt.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
        assert!(!waited.is_finished());
        // Draining its queue (10 at once, under 3/4 of 4) does.
        got.clear();
        assert!(q.take(wa, &mut got));
        assert_eq!(got.len(), 10);
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), waited)
                .await
                .expect("room again")
                .expect("task");
        });
        assert!(!q.pressed());
        assert!(q.room(&mut [ta.as_str()].into_iter()).is_none());
    }

    #[test]
    fn closing_ends_workers_after_what_is_queued() {
        let q = RuleQueues::new(2, 8);
        assert!(q.offer(tap("devices/a/telemetry")));
        q.close();
        let w = partition_of("a", 2);
        let mut got = Vec::new();
        assert!(q.take(w, &mut got));
        assert_eq!(got.len(), 1);
        assert!(!q.take(w, &mut got));
        assert!(!q.take(1 - w, &mut got));
    }
}
