//! The thread shell around the pure core: one worker per queue, each
//! owning a [`Partition`]; it evaluates, then carries out the effects
//! (actions, counters, traces).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use broker::{StoredMessage, TapMessage};
use bytes::Bytes;
use serde_json::Value;

use super::{lock, Automation, AutomationConfig, RawTrace, RegistryContext, TRACE_PAYLOAD};
use crate::core::{partition_key, partition_of, Act, Effect, Event, Loaded, Partition, HOP};
use crate::queues::RuleQueues;

impl Automation {
    /// A copy of a rule's state for the group of `topic`, from the
    /// partition that owns it (empty before the workers run).
    pub(super) fn state_of(&self, l: &Loaded, topic: &str) -> rules::RuleState {
        let Some(parts) = self.partitions.get() else {
            return rules::RuleState::default();
        };
        let i = partition_of(partition_key(topic), parts.len());
        parts
            .get(i)
            .and_then(|p| lock(p).state(l.id))
            .unwrap_or_default()
    }

    /// Runs the engine: one worker thread per queue of `queues`, each
    /// evaluating the messages of its partition in order, and the webhook
    /// sender. [`Workers::join`] stops them.
    pub fn spawn(self: &Arc<Self>, queues: Arc<RuleQueues>) -> std::io::Result<Workers> {
        let n = queues.workers();
        let parts: Vec<Arc<Mutex<Partition>>> = (0..n)
            .map(|i| Arc::new(Mutex::new(Partition::new(i, n))))
            .collect();
        if self.partitions.set(parts.clone()).is_err() || self.queues.set(queues.clone()).is_err() {
            return Err(std::io::Error::other("the rules engine runs already"));
        }
        queues.set_rules(self.snapshot());
        let sender = crate::webhook::spawn_sender(self.clone())?;
        let mut threads = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            let me = self.clone();
            let q = queues.clone();
            let t = std::thread::Builder::new()
                .name(format!("rules-{i}"))
                .spawn(move || me.work(i, &part, &q));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    queues.close();
                    return Err(e);
                }
            }
        }
        Ok(Workers {
            queues,
            threads,
            sender: Some(sender),
            wake: self.wake.clone(),
        })
    }

    /// One worker: takes its queue's messages until it is closed.
    fn work(&self, index: usize, part: &Mutex<Partition>, queues: &RuleQueues) {
        let mut generation = 0;
        let mut rules = Arc::new(Vec::new());
        let mut batch = Vec::new();
        let ctx = RegistryContext(&self.registry);
        while queues.take(index, &mut batch) {
            if let Some(r) = queues.rules_since(&mut generation) {
                rules = r;
            }
            for t in batch.drain(..) {
                self.process(&t, part, &rules, &ctx);
            }
        }
    }

    /// Evaluates one message (in its partition) and carries out what it
    /// calls for.
    fn process(
        &self,
        t: &TapMessage,
        part: &Mutex<Partition>,
        rules: &Arc<Vec<Arc<Loaded>>>,
        ctx: &dyn rules::Context,
    ) {
        let hops: u32 = t
            .message
            .user_properties
            .iter()
            .find(|(k, _)| &**k == HOP)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let now = self.now();
        let started = Instant::now();
        let effects = {
            let mut p = lock(part);
            p.set_rules(rules);
            p.handle(
                now,
                Event::Message {
                    topic: &t.message.topic,
                    payload: &t.message.payload,
                    hops,
                },
                ctx,
            )
        };
        if effects.is_empty() {
            return;
        }
        let kept = if t.message.payload.len() > TRACE_PAYLOAD {
            let mut m = (*t.message).clone();
            m.payload = Bytes::copy_from_slice(&t.message.payload[..TRACE_PAYLOAD]);
            Arc::new(m)
        } else {
            t.message.clone()
        };
        // The core evaluates every rule at once: each gets its share.
        let share = started.elapsed() / effects.len() as u32;
        for e in effects {
            self.carry_out(&kept, now, hops, e, share);
        }
    }

    /// Carries out one rule's evaluation: counters, actions, trace.
    fn carry_out(
        &self,
        message: &Arc<StoredMessage>,
        now: u64,
        hops: u32,
        e: Effect,
        eval_time: Duration,
    ) {
        let Effect {
            rule: l,
            eval,
            acts,
        } = e;
        // The clock is read only around actions (most evaluations have none).
        let started = (!acts.is_empty()).then(Instant::now);
        let m = &l.metrics;
        m.evaluations.fetch_add(1, Ordering::Relaxed);
        if eval.error.is_some() {
            m.errors.fetch_add(1, Ordering::Relaxed);
        }
        if eval.matched {
            m.matches.fetch_add(1, Ordering::Relaxed);
        }
        let mut results = Vec::new();
        for act in acts {
            let r = match act {
                Act::Run(i) => match l.actions.get(i) {
                    Some(a) => self.run_with_retries(&l, a, &eval, hops, now),
                    None => continue,
                },
                Act::AutoClear { device, alarm_type } => {
                    self.clear_alarm(&l, &device, &alarm_type, now)
                }
            };
            if !r.ok {
                m.action_failures.fetch_add(1, Ordering::Relaxed);
            }
            results.push(r);
        }
        let elapsed = eval_time + started.map_or(Duration::ZERO, |s| s.elapsed());
        m.eval_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        // The message is shared with the other rules' traces; the topic and
        // payload are rendered when the trace is read.
        let trace = RawTrace {
            time_ms: now,
            message: message.clone(),
            matched: eval.matched,
            group: eval.group,
            outputs: Value::Object(eval.outputs),
            actions: results,
            latency_us: elapsed.as_micros() as u64,
            error: eval.error,
        };
        let mut traces = lock(&l.traces);
        if traces.len() >= self.config.trace_capacity.max(1) {
            traces.pop_front();
        }
        traces.push_back(trace);
    }

    pub(crate) fn wake(&self) -> &Arc<(Mutex<bool>, Condvar)> {
        &self.wake
    }

    pub(crate) fn outbox(&self) -> &alarms::Outbox {
        &self.outbox
    }

    pub(crate) fn config(&self) -> &AutomationConfig {
        &self.config
    }

    pub(crate) fn clock_now(&self) -> u64 {
        self.now()
    }
}

/// The running workers.
pub struct Workers {
    queues: Arc<RuleQueues>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sender: Option<std::thread::JoinHandle<()>>,
    wake: Arc<(Mutex<bool>, Condvar)>,
}

impl Workers {
    /// Closes the queues, lets the workers finish what is queued, then
    /// stops the webhook sender.
    pub fn join(mut self) {
        self.queues.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        crate::webhook::stop(&self.wake);
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
    }
}
