//! Retained messages, one per topic, with count and byte limits.

use crate::fast::HashMap;
use std::sync::Arc;

use mqtt_proto::{topic, ByteString};

use crate::persist::StoredMessage;

#[derive(Debug)]
pub(crate) struct Retained {
    by_topic: HashMap<ByteString, Arc<StoredMessage>>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl Retained {
    pub fn new(max_messages: usize, max_bytes: usize) -> Retained {
        Retained {
            by_topic: HashMap::default(),
            bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// Sets the retained message of its topic. False (and nothing changed)
    /// when that would go over the limits.
    pub fn insert(&mut self, msg: Arc<StoredMessage>) -> bool {
        let old = self.by_topic.get(&msg.topic).map_or(0, |m| m.payload.len());
        let is_new = old == 0 && !self.by_topic.contains_key(&msg.topic);
        if (is_new && self.by_topic.len() >= self.max_messages)
            || self.bytes - old + msg.payload.len() > self.max_bytes
        {
            return false;
        }
        self.bytes = self.bytes - old + msg.payload.len();
        self.by_topic.insert(msg.topic.clone(), msg);
        true
    }

    /// Loads a stored message at start-up (limits are not applied: what was
    /// accepted before stays).
    pub fn restore(&mut self, msg: Arc<StoredMessage>) {
        self.bytes += msg.payload.len();
        if let Some(old) = self.by_topic.insert(msg.topic.clone(), msg) {
            self.bytes -= old.payload.len();
        }
    }

    pub fn remove(&mut self, topic: &str) -> bool {
        match self.by_topic.remove(topic) {
            Some(m) => {
                self.bytes -= m.payload.len();
                true
            }
            None => false,
        }
    }

    /// Every retained message whose topic matches `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<StoredMessage>> {
        if !filter.contains(['+', '#']) {
            return self.by_topic.get(filter).cloned().into_iter().collect();
        }
        self.by_topic
            .values()
            .filter(|m| topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }
}
