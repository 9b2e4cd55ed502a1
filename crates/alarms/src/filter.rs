//! What the history query selects ([`AlarmFilter`]) and the dashboard
//! counts ([`AlarmCounts`]).

use crate::alarm::{Alarm, AlarmState, Severity};

/// Which alarms [`crate::AlarmStore::query`] returns. Every field that is
/// set must match; the default matches every alarm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    /// Only this originator's alarms (read through a per-device index).
    pub device_id: Option<String>,
    /// Only alarms of this type.
    pub alarm_type: Option<String>,
    /// Only these severities; empty means any. A list rather than a
    /// minimum so that both are possible: `Severity::Major.at_least()`
    /// selects major and critical, `vec![Severity::Major]` major only.
    pub severities: Vec<Severity>,
    /// Only these states; empty means any (`[ActiveUnacknowledged,
    /// ActiveAcknowledged]` for "active").
    pub states: Vec<AlarmState>,
    /// Only alarms last raised at or after this time.
    pub since_ms: Option<u64>,
    /// Only alarms last raised before this time.
    pub until_ms: Option<u64>,
}

impl AlarmFilter {
    /// Whether `a` passes every condition.
    pub fn matches(&self, a: &Alarm) -> bool {
        self.device_id.as_ref().is_none_or(|d| *d == a.device_id)
            && self.alarm_type.as_ref().is_none_or(|t| *t == a.alarm_type)
            && (self.severities.is_empty() || self.severities.contains(&a.severity))
            && (self.states.is_empty() || self.states.contains(&a.state))
            && self.since_ms.is_none_or(|s| a.last_raised_ms >= s)
            && self.until_ms.is_none_or(|u| a.last_raised_ms < u)
    }
}

/// How many alarms of a namespace are in each (state, severity): what a
/// dashboard shows. Kept as counters by the store, so reading them does
/// not read the alarms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmCounts {
    /// Indexed by `AlarmState::index`, then `Severity::index`.
    by: [[u64; 5]; 4],
}

impl AlarmCounts {
    /// Adds `n` alarms in `state` with `severity`.
    pub fn add(&mut self, state: AlarmState, severity: Severity, n: u64) {
        let slot = &mut self.by[state.index()][severity.index()];
        *slot = slot.saturating_add(n);
    }

    /// Alarms in `state` with `severity`.
    pub fn get(&self, state: AlarmState, severity: Severity) -> u64 {
        self.by[state.index()][severity.index()]
    }

    /// Alarms in `state`, any severity.
    pub fn in_state(&self, state: AlarmState) -> u64 {
        self.by[state.index()].iter().sum()
    }

    /// Active alarms (acknowledged or not) with `severity`.
    pub fn active_with(&self, severity: Severity) -> u64 {
        self.get(AlarmState::ActiveUnacknowledged, severity)
            + self.get(AlarmState::ActiveAcknowledged, severity)
    }

    /// Active alarms, any severity.
    pub fn active(&self) -> u64 {
        self.in_state(AlarmState::ActiveUnacknowledged)
            + self.in_state(AlarmState::ActiveAcknowledged)
    }

    /// Alarms nobody acknowledged yet, active or cleared.
    pub fn unacknowledged(&self) -> u64 {
        self.in_state(AlarmState::ActiveUnacknowledged)
            + self.in_state(AlarmState::ClearedUnacknowledged)
    }

    /// The most severe active alarm's severity, if any is active.
    pub fn highest_active(&self) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| self.active_with(*s) > 0)
    }

    /// Every alarm counted.
    pub fn total(&self) -> u64 {
        self.by.iter().flatten().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_add_up() {
        let mut c = AlarmCounts::default();
        assert_eq!(c.highest_active(), None);
        c.add(AlarmState::ActiveUnacknowledged, Severity::Minor, 2);
        c.add(AlarmState::ActiveAcknowledged, Severity::Major, 1);
        c.add(AlarmState::ClearedUnacknowledged, Severity::Critical, 4);
        c.add(AlarmState::ClearedAcknowledged, Severity::Critical, 8);
        assert_eq!(c.total(), 15);
        assert_eq!(c.active(), 3);
        assert_eq!(c.unacknowledged(), 6);
        assert_eq!(c.active_with(Severity::Minor), 2);
        assert_eq!(c.in_state(AlarmState::ClearedAcknowledged), 8);
        assert_eq!(c.highest_active(), Some(Severity::Major));
    }

    #[test]
    fn filter_conditions() {
        let a = Alarm::new("ns", 1, "d", "hot", Severity::Major, json!({}), None, 100);
        assert!(AlarmFilter::default().matches(&a));
        let f = |g: fn(&mut AlarmFilter)| {
            let mut f = AlarmFilter::default();
            g(&mut f);
            f.matches(&a)
        };
        assert!(f(|f| f.device_id = Some("d".into())));
        assert!(!f(|f| f.device_id = Some("e".into())));
        assert!(f(|f| f.alarm_type = Some("hot".into())));
        assert!(!f(|f| f.alarm_type = Some("cold".into())));
        assert!(f(|f| f.severities = Severity::Minor.at_least()));
        assert!(!f(|f| f.severities = Severity::Critical.at_least()));
        assert!(f(|f| f.states = vec![AlarmState::ActiveUnacknowledged]));
        assert!(!f(|f| f.states = vec![AlarmState::ClearedUnacknowledged]));
        assert!(f(|f| f.since_ms = Some(100)));
        assert!(!f(|f| f.since_ms = Some(101)));
        assert!(f(|f| f.until_ms = Some(101)));
        assert!(!f(|f| f.until_ms = Some(100)));
    }
}
