//! The alarm, its severity and state, and its life cycle as pure
//! functions: each transition takes the alarm and the time and returns a
//! [`Change`], never touching the store.
//!
//! | from | call | to |
//! |---|---|---|
//! | (none open for the device and type) | raise | ActiveUnacknowledged (`Raised`) |
//! | ActiveUnacknowledged, ActiveAcknowledged | raise | same state, count + 1 (`Updated`) |
//! | ActiveUnacknowledged | acknowledge | ActiveAcknowledged |
//! | ClearedUnacknowledged | acknowledge | ClearedAcknowledged |
//! | ActiveUnacknowledged | clear | ClearedUnacknowledged |
//! | ActiveAcknowledged | clear | ClearedAcknowledged |
//!
//! Acknowledging an acknowledged alarm or clearing a cleared one changes
//! nothing ([`Change::Unchanged`]; the store refuses it as a conflict). A
//! cleared alarm is never raised again: a raise after a clear creates a
//! new alarm (see the crate documentation for why).

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// How bad an alarm is. Ordered by severity: `Critical` is the greatest,
/// `Indeterminate` the least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
    Indeterminate,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::Major,
        Severity::Minor,
        Severity::Warning,
        Severity::Indeterminate,
    ];

    /// The lowercase name (`"critical"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Indeterminate => "indeterminate",
        }
    }

    /// The severity named by [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The severities at least as severe as `self`, most severe first:
    /// the list for a "minimum severity" filter.
    pub fn at_least(self) -> Vec<Severity> {
        Severity::ALL.into_iter().filter(|s| *s >= self).collect()
    }

    /// 4 for `Critical` down to 0 for `Indeterminate`.
    fn rank(self) -> u8 {
        match self {
            Severity::Critical => 4,
            Severity::Major => 3,
            Severity::Minor => 2,
            Severity::Warning => 1,
            Severity::Indeterminate => 0,
        }
    }

    /// Position in [`Severity::ALL`].
    pub(crate) fn index(self) -> usize {
        usize::from(4 - self.rank())
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an alarm is in its life: active or cleared, and acknowledged or
/// not, independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    ActiveUnacknowledged,
    ActiveAcknowledged,
    ClearedUnacknowledged,
    ClearedAcknowledged,
}

impl AlarmState {
    /// Every state, in life order.
    pub const ALL: [AlarmState; 4] = [
        AlarmState::ActiveUnacknowledged,
        AlarmState::ActiveAcknowledged,
        AlarmState::ClearedUnacknowledged,
        AlarmState::ClearedAcknowledged,
    ];

    /// The short name: `"active_unack"`, `"active_ack"`,
    /// `"cleared_unack"`, `"cleared_ack"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::ActiveUnacknowledged => "active_unack",
            AlarmState::ActiveAcknowledged => "active_ack",
            AlarmState::ClearedUnacknowledged => "cleared_unack",
            AlarmState::ClearedAcknowledged => "cleared_ack",
        }
    }

    /// The state named by [`AlarmState::as_str`].
    pub fn parse(s: &str) -> Option<AlarmState> {
        AlarmState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Not cleared yet.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            AlarmState::ActiveUnacknowledged | AlarmState::ActiveAcknowledged
        )
    }

    /// Acknowledged by someone.
    pub fn is_acknowledged(self) -> bool {
        matches!(
            self,
            AlarmState::ActiveAcknowledged | AlarmState::ClearedAcknowledged
        )
    }

    /// The state with the given two properties.
    pub fn from_parts(active: bool, acknowledged: bool) -> AlarmState {
        match (active, acknowledged) {
            (true, false) => AlarmState::ActiveUnacknowledged,
            (true, true) => AlarmState::ActiveAcknowledged,
            (false, false) => AlarmState::ClearedUnacknowledged,
            (false, true) => AlarmState::ClearedAcknowledged,
        }
    }

    /// Position in [`AlarmState::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            AlarmState::ActiveUnacknowledged => 0,
            AlarmState::ActiveAcknowledged => 1,
            AlarmState::ClearedUnacknowledged => 2,
            AlarmState::ClearedAcknowledged => 3,
        }
    }
}

impl fmt::Display for AlarmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of the alarm with store sequence `seq`: `a` and 16 lowercase hex
/// digits (a valid MQTT topic level, sorting like the sequence).
pub fn alarm_id(seq: u64) -> String {
    kv::seq_id('a', seq)
}

/// The sequence named by an [`alarm_id`], if `id` is one.
pub(crate) fn parse_alarm_id(id: &str) -> Option<u64> {
    kv::parse_seq_id('a', id)
}

/// One alarm: a condition of one device (the originator) of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub namespace: String,
    /// Unique in the store: see [`alarm_id`].
    pub id: String,
    /// The originator.
    pub device_id: String,
    pub alarm_type: String,
    pub severity: Severity,
    pub state: AlarmState,
    /// What the latest raise said (any JSON value, at most
    /// [`crate::MAX_DETAILS_BYTES`]).
    pub details: Value,
    /// How many times it was raised (1 when created).
    pub count: u64,
    pub first_raised_ms: u64,
    /// The latest raise; never before `first_raised_ms` and never moves
    /// backwards, even if the clock passed in does.
    pub last_raised_ms: u64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_ms: Option<u64>,
    /// A user, or `rule:<name>` for an automatic clear.
    pub cleared_by: Option<String>,
    pub cleared_ms: Option<u64>,
    /// The rule of the latest raise (`None` when it was raised by an
    /// operator or the API).
    pub rule: Option<String>,
}

impl Alarm {
    /// A new alarm, active and unacknowledged, raised once at `now_ms`.
    #[allow(clippy::too_many_arguments, reason = "one field per argument")]
    pub(crate) fn new(
        ns: &str,
        seq: u64,
        device_id: &str,
        alarm_type: &str,
        severity: Severity,
        details: Value,
        rule: Option<&str>,
        now_ms: u64,
    ) -> Alarm {
        Alarm {
            namespace: ns.to_string(),
            id: alarm_id(seq),
            device_id: device_id.to_string(),
            alarm_type: alarm_type.to_string(),
            severity,
            state: AlarmState::ActiveUnacknowledged,
            details,
            count: 1,
            first_raised_ms: now_ms,
            last_raised_ms: now_ms,
            acknowledged_by: None,
            acknowledged_ms: None,
            cleared_by: None,
            cleared_ms: None,
            rule: rule.map(str::to_string),
        }
    }

    /// Raised again while active: one more raise, the latest time,
    /// details, severity and rule; the acknowledgement is kept. A cleared
    /// alarm is [`Change::Unchanged`] (a raise creates a new alarm then).
    pub fn raised_again(
        &self,
        severity: Severity,
        details: Value,
        rule: Option<&str>,
        now_ms: u64,
    ) -> Change {
        if !self.state.is_active() {
            return Change::Unchanged(self.clone());
        }
        let mut a = self.clone();
        a.count = a.count.saturating_add(1);
        a.last_raised_ms = a.last_raised_ms.max(now_ms);
        a.details = details;
        a.severity = severity;
        a.rule = rule.map(str::to_string);
        Change::Updated(a)
    }

    /// Acknowledged by `by` at `now_ms`; [`Change::Unchanged`] if it
    /// already is.
    pub fn acknowledged(&self, by: &str, now_ms: u64) -> Change {
        if self.state.is_acknowledged() {
            return Change::Unchanged(self.clone());
        }
        let mut a = self.clone();
        a.state = AlarmState::from_parts(a.state.is_active(), true);
        a.acknowledged_by = Some(by.to_string());
        a.acknowledged_ms = Some(now_ms);
        Change::Acknowledged(a)
    }

    /// Cleared by `by` at `now_ms`, keeping its acknowledgement;
    /// [`Change::Unchanged`] if it already is.
    pub fn cleared(&self, by: &str, now_ms: u64) -> Change {
        if !self.state.is_active() {
            return Change::Unchanged(self.clone());
        }
        let mut a = self.clone();
        a.state = AlarmState::from_parts(false, a.state.is_acknowledged());
        a.cleared_by = Some(by.to_string());
        a.cleared_ms = Some(now_ms);
        Change::Cleared(a)
    }

    /// Cleared and acknowledged: nothing more can happen to it, and it is
    /// the first kind [`crate::AlarmStore::prune`] forgets.
    pub fn is_closed(&self) -> bool {
        self.state == AlarmState::ClearedAcknowledged
    }
}

/// What a call did to an alarm: what the service publishes on
/// `$events/alarms/...` (nothing for `Unchanged`).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new alarm.
    Raised(Alarm),
    /// A repeated raise of the active alarm: count + 1, the latest time,
    /// details, severity and rule.
    Updated(Alarm),
    Acknowledged(Alarm),
    Cleared(Alarm),
    /// The call changed nothing (the pure transitions' answer to a
    /// repeated acknowledge or clear; the store answers those with
    /// [`crate::AlarmError::Conflict`] instead).
    Unchanged(Alarm),
}

/// The alarm every variant of a [`Change`] holds: by reference for
/// `&Change`, by value for `Change`.
macro_rules! alarm_of {
    ($change:expr) => {
        match $change {
            Change::Raised(a)
            | Change::Updated(a)
            | Change::Acknowledged(a)
            | Change::Cleared(a)
            | Change::Unchanged(a) => a,
        }
    };
}

impl Change {
    /// The alarm after the call.
    pub fn alarm(&self) -> &Alarm {
        alarm_of!(self)
    }

    /// The alarm after the call, by value.
    pub fn into_alarm(self) -> Alarm {
        alarm_of!(self)
    }

    /// The event name: `"raised"`, `"updated"`, `"acknowledged"`,
    /// `"cleared"` or `"unchanged"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Raised(_) => "raised",
            Change::Updated(_) => "updated",
            Change::Acknowledged(_) => "acknowledged",
            Change::Cleared(_) => "cleared",
            Change::Unchanged(_) => "unchanged",
        }
    }

    /// Whether the call changed the alarm (an event to publish).
    pub fn changed(&self) -> bool {
        !matches!(self, Change::Unchanged(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alarm() -> Alarm {
        Alarm::new("ns", 1, "d", "hot", Severity::Major, json!({}), None, 10)
    }

    #[test]
    fn severities_order_and_names() {
        assert!(Severity::Critical > Severity::Major);
        assert!(Severity::Major > Severity::Minor);
        assert!(Severity::Minor > Severity::Warning);
        assert!(Severity::Warning > Severity::Indeterminate);
        assert_eq!(Severity::ALL.iter().max(), Some(&Severity::Critical));
        for (i, s) in Severity::ALL.into_iter().enumerate() {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.index(), i);
        }
        assert_eq!(Severity::parse("Critical"), None);
        assert_eq!(
            Severity::Minor.at_least(),
            [Severity::Critical, Severity::Major, Severity::Minor]
        );
        assert_eq!(Severity::Warning.to_string(), "warning");
    }

    #[test]
    fn states_names_and_parts() {
        for (i, s) in AlarmState::ALL.into_iter().enumerate() {
            assert_eq!(AlarmState::parse(s.as_str()), Some(s));
            assert_eq!(
                AlarmState::from_parts(s.is_active(), s.is_acknowledged()),
                s
            );
            assert_eq!(s.index(), i);
        }
        assert_eq!(AlarmState::ClearedAcknowledged.to_string(), "cleared_ack");
        assert_eq!(AlarmState::parse("open"), None);
    }

    #[test]
    fn ids_round_trip_and_reject_lookalikes() {
        // The other lookalikes are `kv::parse_seq_id`'s (its tests).
        assert_eq!(alarm_id(255), "a00000000000000ff");
        assert_eq!(parse_alarm_id(&alarm_id(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_alarm_id("b00000000000000ff"), None);
    }

    #[test]
    fn every_transition() {
        let a = alarm();
        assert_eq!(a.state, AlarmState::ActiveUnacknowledged);

        let acked = a.acknowledged("ann", 20).into_alarm();
        assert_eq!(acked.state, AlarmState::ActiveAcknowledged);
        assert_eq!(acked.acknowledged_by.as_deref(), Some("ann"));
        assert_eq!(acked.acknowledged_ms, Some(20));
        assert!(!acked.acknowledged("bob", 21).changed());

        // A raise of an acknowledged alarm keeps the acknowledgement.
        let Change::Updated(again) =
            acked.raised_again(Severity::Critical, json!(1), Some("r"), 30)
        else {
            panic!("expected an update");
        };
        assert_eq!(again.state, AlarmState::ActiveAcknowledged);
        assert_eq!((again.count, again.last_raised_ms), (2, 30));
        assert_eq!(again.severity, Severity::Critical);
        assert_eq!(again.rule.as_deref(), Some("r"));
        // The clock going backwards does not move last_raised back.
        assert_eq!(
            again
                .raised_again(Severity::Critical, json!(2), None, 5)
                .alarm()
                .last_raised_ms,
            30
        );

        let Change::Cleared(cleared) = again.cleared("rule:r", 40) else {
            panic!("expected a clear");
        };
        assert_eq!(cleared.state, AlarmState::ClearedAcknowledged);
        assert!(cleared.is_closed());
        assert!(!cleared.cleared("x", 41).changed());
        assert!(!cleared
            .raised_again(Severity::Minor, json!(0), None, 42)
            .changed());

        let c2 = a.cleared("ann", 50).into_alarm();
        assert_eq!(c2.state, AlarmState::ClearedUnacknowledged);
        assert_eq!(
            (c2.cleared_by.as_deref(), c2.cleared_ms),
            (Some("ann"), Some(50))
        );
        let Change::Acknowledged(c3) = c2.acknowledged("bob", 60) else {
            panic!("expected an acknowledgement");
        };
        assert_eq!(c3.state, AlarmState::ClearedAcknowledged);
        assert_eq!(Change::Acknowledged(c3).kind(), "acknowledged");
    }
}
