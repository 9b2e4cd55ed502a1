//! Live streams: API clients (dashboards, integrators) subscribe to topic
//! filters and get matching messages — from devices and from the platform
//! itself — through a bounded channel each. A subscriber that does not keep
//! up is dropped (its channel closes), never buffered without bound.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use mqtt_proto::topic;

use crate::server::{NetMetrics, Shared};

/// One message for a stream: topic and payload.
pub type StreamItem = (String, Bytes);

struct Subscriber {
    filters: Vec<String>,
    tx: tokio::sync::mpsc::Sender<StreamItem>,
}

/// The live streams, kept under the core lock.
#[derive(Default)]
pub(crate) struct StreamHub {
    next: u64,
    subs: HashMap<u64, Subscriber>,
}

impl StreamHub {
    /// The union of every subscriber's filters.
    pub fn filters(&self) -> Vec<String> {
        self.subs
            .values()
            .flat_map(|s| s.filters.iter().cloned())
            .collect()
    }

    pub fn add(&mut self, filters: Vec<String>, tx: tokio::sync::mpsc::Sender<StreamItem>) -> u64 {
        self.next += 1;
        self.subs.insert(self.next, Subscriber { filters, tx });
        self.next
    }

    pub fn remove(&mut self, id: u64) -> bool {
        self.subs.remove(&id).is_some()
    }

    /// Hands a message to every matching subscriber; one that is full is
    /// dropped (returns whether the filter set changed).
    pub fn deliver(&mut self, topic_name: &str, payload: &Bytes, metrics: &NetMetrics) -> bool {
        let mut dropped = Vec::new();
        for (id, s) in &self.subs {
            if !s.filters.iter().any(|f| topic::matches(f, topic_name)) {
                continue;
            }
            if s.tx
                .try_send((topic_name.to_string(), payload.clone()))
                .is_err()
            {
                dropped.push(*id);
            }
        }
        for id in &dropped {
            self.subs.remove(id);
            metrics.streams_dropped.fetch_add(1, Ordering::Relaxed);
        }
        !dropped.is_empty()
    }
}

/// A live stream's receiving end; dropping it ends the subscription.
pub struct StreamSubscription {
    pub rx: tokio::sync::mpsc::Receiver<StreamItem>,
    id: u64,
    shared: Arc<Shared>,
}

impl StreamSubscription {
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<StreamItem>,
        id: u64,
        shared: Arc<Shared>,
    ) -> Self {
        StreamSubscription { rx, id, shared }
    }
}

impl Drop for StreamSubscription {
    fn drop(&mut self) {
        let mut core = self.shared.lock();
        if core.streams.remove(self.id) {
            let filters = core.streams.filters();
            core.broker.set_stream_taps(filters);
        }
    }
}
