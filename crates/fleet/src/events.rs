//! The shell around [`FleetCore`]: the event thread (device messages,
//! acknowledgements and presence changes from the broker, in order), the
//! periodic scan (activity, inactivity, command deadlines), and the
//! carrying out of the core's effects through the broker's bus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker::bus::PlatformEvent;
use broker::{StoredMessage, TapMessage};
use iot_types::device_topics;

use crate::{lock, Effect, Fleet, FleetCore, Input};

impl Fleet {
    /// Runs the fleet: one thread handles events in order until the
    /// channel closes, another runs the periodic scan. Provisioning
    /// requests are passed on to `provisioning` (dropped with a log line
    /// when it is full).
    pub fn spawn(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::Receiver<PlatformEvent>,
        provisioning: tokio::sync::mpsc::Sender<TapMessage>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.run(Input::Start);
        let stop = Arc::new(AtomicBool::new(false));
        let scanner = {
            let fleet = self.clone();
            let stop = stop.clone();
            let every = Duration::from_millis(self.scan_interval_ms.max(10));
            std::thread::Builder::new()
                .name("fleet-scan".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(every);
                        fleet.scan();
                    }
                })?
        };
        let fleet = self.clone();
        std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                while let Some(ev) = events.blocking_recv() {
                    match ev {
                        PlatformEvent::Tap(t)
                            if t.message.topic.starts_with(device_topics::PROVISION_PREFIX) =>
                        {
                            if provisioning.try_send(t).is_err() {
                                tracing::warn!("provisioning queue full; request dropped");
                            }
                        }
                        other => fleet.handle(other),
                    }
                }
                stop.store(true, Ordering::Relaxed);
                let _ = scanner.join();
                // Callers waiting for a command get their answer now (the
                // command as it stands) instead of at their timeout.
                lock(&fleet.waiters).clear();
            })
    }

    /// Handles one event (public for tests).
    pub fn handle(&self, ev: PlatformEvent) {
        self.run(Input::Broker(ev));
    }

    /// The periodic scan: activity from the broker, inactivity, command
    /// deadlines.
    pub fn scan(&self) {
        let activity = self.bus.activity();
        self.run(Input::Scan(activity));
    }

    /// Feeds the core one input at the clock's now and carries out what it
    /// decided.
    fn run(&self, input: Input) {
        let effects = self.with_core(|core, now| core.handle(now, input));
        self.apply(effects);
    }

    /// Runs `f` on the core, with the clock's now.
    pub(crate) fn with_core<T>(
        &self,
        f: impl FnOnce(&mut FleetCore, iot_types::Timestamp) -> T,
    ) -> T {
        let now = self.now();
        f(&mut lock(&self.core), now)
    }

    /// Carries out effects in order (the core's lock is not held).
    pub(crate) fn apply(&self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Publish { topic, payload } => {
                    let body = serde_json::to_vec(&payload).unwrap_or_default();
                    self.bus.publish(StoredMessage::platform_json(topic, body));
                }
                Effect::Finished(c) => self.finished(&c),
            }
        }
    }

    /// Answers the callers waiting for a final command.
    pub(crate) fn finished(&self, c: &twin::Command) {
        if !c.status.is_final() {
            return;
        }
        let waiting = lock(&self.waiters).remove(&c.id);
        for w in waiting.into_iter().flatten() {
            let _ = w.send(c.clone());
        }
    }
}
