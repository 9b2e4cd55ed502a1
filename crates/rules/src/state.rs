//! A rule's evaluation state: one [`Group`] per group key (the device id,
//! or the topic when there is none), bounded in number (least recently
//! used evicted) and in window samples.

use std::collections::{BTreeMap, HashMap};

use crate::slot::SlotState;

/// The bounds of one rule's state.
///
/// Deserialisable (with defaults and no unknown fields) so that a host can
/// embed it in its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Entries one sliding window of one group holds; beyond, samples are
    /// merged by time slot (see the crate documentation). Default 10,000.
    pub max_samples_per_window: usize,
    /// Groups (devices, or topics) one rule keeps state for; a new group
    /// beyond this evicts the least recently used one, whose windows,
    /// durations and detectors start afresh if it comes back.
    /// Default 10,000.
    pub max_groups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_samples_per_window: 10_000,
            max_groups: 10_000,
        }
    }
}

/// One group's state for one rule.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The latest message time this group has seen: windows never go back
    /// in time, an older message counts as arriving at this time.
    pub clock: u64,
    /// One state per stateful expression of the rule, in slot order.
    pub slots: Vec<SlotState>,
    tick: u64,
}

impl Group {
    pub fn new(slots: Vec<SlotState>) -> Self {
        Group {
            clock: 0,
            slots,
            tick: 0,
        }
    }
}

/// One rule's evaluation state (windows, durations, previous values,
/// z-score estimators), per group key. Owned by the host, one per rule;
/// only stateful rules ([`crate::Rule::is_stateful`]) use it.
///
/// If a state is used with a rule whose stateful expressions differ from
/// the rule it was last used with (the rule was edited), it starts afresh;
/// editing only the rest of a rule (a threshold, the SELECT list) keeps it.
#[derive(Debug, Clone, Default)]
pub struct RuleState {
    limits: Limits,
    /// Fingerprint of the stateful expressions the groups were built for.
    layout: u64,
    groups: HashMap<String, Group>,
    /// Last use (a counter) → group key, oldest first.
    lru: BTreeMap<u64, String>,
    tick: u64,
}

impl RuleState {
    /// An empty state with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state with these limits (each at least 1).
    pub fn with_limits(limits: Limits) -> Self {
        RuleState {
            limits: Limits {
                max_samples_per_window: limits.max_samples_per_window.max(1),
                max_groups: limits.max_groups.max(1),
            },
            ..Self::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of groups holding state.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Sliding-window entries held over all groups (at most
    /// `max_groups * max_samples_per_window` per window expression).
    pub fn samples(&self) -> usize {
        self.groups
            .values()
            .flat_map(|g| g.slots.iter())
            .map(SlotState::samples)
            .sum()
    }

    /// Whether `key` (a device id, or a topic) holds state.
    pub fn has_group(&self, key: &str) -> bool {
        self.groups.contains_key(key)
    }

    /// Forgets one group (e.g. a deleted device); true if it was there.
    pub fn remove_group(&mut self, key: &str) -> bool {
        match self.groups.remove(key) {
            Some(g) => {
                self.lru.remove(&g.tick);
                true
            }
            None => false,
        }
    }

    /// Forgets every group.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.lru.clear();
    }

    /// The group `key` for a rule of this `layout`, if it has state (a
    /// read-only look for dry runs).
    pub(crate) fn group(&self, layout: u64, key: &str) -> Option<&Group> {
        (self.layout == layout)
            .then(|| self.groups.get(key))
            .flatten()
    }

    /// The group `key`, created with `init` if new (evicting the least
    /// recently used group when full), marked as just used.
    pub(crate) fn group_mut(
        &mut self,
        layout: u64,
        key: &str,
        init: impl FnOnce() -> Vec<SlotState>,
    ) -> Option<&mut Group> {
        if self.layout != layout {
            if !self.groups.is_empty() {
                tracing::debug!(groups = self.groups.len(), "rule changed: state reset");
            }
            self.clear();
            self.layout = layout;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some(g) = self.groups.get_mut(key) {
            let old = std::mem::replace(&mut g.tick, tick);
            if let Some(k) = self.lru.remove(&old) {
                self.lru.insert(tick, k);
            }
        } else {
            while self.groups.len() >= self.limits.max_groups.max(1) {
                let Some((_, evicted)) = self.lru.pop_first() else {
                    break;
                };
                tracing::trace!(group = %evicted, "rule state full: group evicted");
                self.groups.remove(&evicted);
            }
            let mut g = Group::new(init());
            g.tick = tick;
            self.groups.insert(key.to_owned(), g);
            self.lru.insert(tick, key.to_owned());
        }
        self.groups.get_mut(key)
    }
}
