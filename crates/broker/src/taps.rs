//! The platform's taps as internal subscriptions: the filters of the
//! platform services, of the rules engine, of live streams and of
//! acknowledgement reports live in a subscription tree of their own, so a
//! PUBLISH finds every tap it concerns in one walk of the levels its topic
//! can reach, never by scanning every filter of every kind (which cost
//! about 12% of the instructions per message when three lists were
//! scanned).

use mqtt_proto::SubscriptionOptions;

use crate::trie::{SubEntry, SubTree};

/// Who listens on a tap. Stored as the tree entry's session index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TapKind {
    /// Platform services (provisioning, twins, command responses).
    Services = 0,
    /// The rules engine's inputs.
    Rules = 1,
    /// Live streams to API clients.
    Streams = 2,
    /// Acknowledgements of delivered messages (command delivery).
    Acks = 3,
}

const KINDS: usize = 4;

/// Which kinds of taps a topic matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TapHits {
    pub services: bool,
    pub rules: bool,
    pub streams: bool,
    pub acks: bool,
}

impl TapHits {
    pub fn any_message(&self) -> bool {
        self.services || self.rules || self.streams
    }
}

/// Every tap filter, by kind, and the tree they are matched in.
#[derive(Debug, Default)]
pub(crate) struct Taps {
    tree: SubTree,
    filters: [Vec<String>; KINDS],
}

impl Taps {
    /// Adds one filter of a kind (a filter already there is kept once).
    pub fn add(&mut self, kind: TapKind, filter: &str) {
        let list = &mut self.filters[kind as usize];
        if list.iter().any(|f| f == filter) {
            return;
        }
        list.push(filter.to_string());
        self.tree.insert(SubEntry {
            session: kind as u32,
            options: SubscriptionOptions::default(),
            subscription_id: None,
            group: None,
            filter: filter.into(),
        });
    }

    /// Replaces every filter of a kind.
    pub fn replace(&mut self, kind: TapKind, mut filters: Vec<String>) {
        filters.sort();
        filters.dedup();
        for old in std::mem::take(&mut self.filters[kind as usize]) {
            self.tree.remove(kind as u32, &old, None);
        }
        for f in &filters {
            self.add(kind, f);
        }
    }

    /// Whether no filter of this kind is set.
    pub fn is_empty(&self, kind: TapKind) -> bool {
        self.filters[kind as usize].is_empty()
    }

    /// The kinds of taps whose filters match `topic`.
    pub fn hits(&self, topic: &str) -> TapHits {
        let mut hits = TapHits::default();
        if self.tree.len() == 0 {
            return hits;
        }
        let mut matched = Vec::new();
        self.tree.matches(topic, &mut matched);
        for e in matched {
            match e.session {
                0 => hits.services = true,
                1 => hits.rules = true,
                2 => hits.streams = true,
                _ => hits.acks = true,
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_follow_topic_matching_and_replacement() {
        let mut taps = Taps::default();
        assert_eq!(taps.hits("a/b"), TapHits::default());
        taps.add(TapKind::Services, "$provision/+/request");
        taps.add(TapKind::Services, "$provision/+/request");
        taps.replace(
            TapKind::Rules,
            vec!["devices/+/telemetry".into(), "#".into()],
        );
        taps.add(TapKind::Acks, "devices/+/commands/#");
        let h = taps.hits("devices/d1/telemetry");
        assert!(h.rules && !h.services && !h.streams && !h.acks);
        let h = taps.hits("devices/d1/commands/reboot");
        assert!(h.rules && h.acks && !h.services);
        // `#` does not reach `$` topics; the explicit filter does.
        let h = taps.hits("$provision/d1/request");
        assert!(h.services && !h.rules);
        taps.replace(TapKind::Rules, vec!["x/y".into()]);
        assert!(!taps.hits("devices/d1/telemetry").rules);
        assert!(taps.hits("x/y").rules);
        assert!(!taps.is_empty(TapKind::Rules));
        taps.replace(TapKind::Rules, Vec::new());
        assert!(taps.is_empty(TapKind::Rules));
        assert!(!taps.hits("x/y").rules);
        assert!(taps.hits("$provision/d9/request").services);
    }

    #[test]
    fn agrees_with_topic_matching() {
        let filters = ["a/+/c", "a/#", "+/b/c", "#", "a/b", "+", "$SYS/#", "a//c"];
        let topics = ["a/b/c", "a/b", "a", "x/b/c", "$SYS/x", "a//c", "b"];
        for (i, f) in filters.iter().enumerate() {
            let mut taps = Taps::default();
            taps.add(TapKind::Streams, f);
            for t in topics {
                assert_eq!(
                    taps.hits(t).streams,
                    mqtt_proto::topic::matches(f, t),
                    "filter {f} topic {t} ({i})"
                );
            }
        }
    }
}
