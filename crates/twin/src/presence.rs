//! Presence: whether a device is connected, and since when.
//!
//! | state | meaning |
//! |---|---|
//! | NeverConnected | no connection recorded (a device without a record) |
//! | Online | at least one live connection, seen recently |
//! | Inactive | connected, but nothing seen for the inactivity timeout |
//! | Offline | its last live connection went away |
//!
//! A device may hold several connections at once (an MQTT session and a
//! WebSocket, or a take-over racing the old connection's close):
//! `connections` counts them, and the device goes Offline only when the
//! last one goes. Every transition returns whether the state changed,
//! i.e. whether a presence event should be published.

use std::fmt;

/// Longest address, protocol or reason kept, in characters (longer ones
/// are cut).
pub const MAX_PRESENCE_TEXT_CHARS: usize = 256;

/// What the platform knows of a device's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceState {
    Online,
    Offline,
    Inactive,
    NeverConnected,
}

impl PresenceState {
    /// Every state.
    pub const ALL: [PresenceState; 4] = [
        PresenceState::Online,
        PresenceState::Offline,
        PresenceState::Inactive,
        PresenceState::NeverConnected,
    ];

    /// The lowercase name (`"never_connected"`).
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::Online => "online",
            PresenceState::Offline => "offline",
            PresenceState::Inactive => "inactive",
            PresenceState::NeverConnected => "never_connected",
        }
    }

    /// The state named by [`PresenceState::as_str`].
    pub fn parse(s: &str) -> Option<PresenceState> {
        PresenceState::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for PresenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One device's presence. `Default` is a device never connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub state: PresenceState,
    pub last_connected_ms: Option<u64>,
    pub last_disconnected_ms: Option<u64>,
    /// The last time the device connected or was seen (sent anything).
    pub last_seen_ms: Option<u64>,
    /// The client address of the latest connection.
    pub address: Option<String>,
    /// The protocol of the latest connection (e.g. `mqtt/5`).
    pub protocol: Option<String>,
    /// Why the device last went offline.
    pub last_reason: Option<String>,
    /// Live connections.
    pub connections: u32,
}

impl Default for Presence {
    fn default() -> Self {
        Presence {
            state: PresenceState::NeverConnected,
            last_connected_ms: None,
            last_disconnected_ms: None,
            last_seen_ms: None,
            address: None,
            protocol: None,
            last_reason: None,
            connections: 0,
        }
    }
}

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_PRESENCE_TEXT_CHARS) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s.to_string(),
    }
}

impl Presence {
    /// A connection opened: the device is Online. Returns true when it was
    /// not Online before (a `connected` event).
    pub fn connected(&mut self, address: Option<&str>, protocol: &str, now_ms: u64) -> bool {
        self.connections = self.connections.saturating_add(1);
        self.last_connected_ms = Some(now_ms);
        self.mark_seen(now_ms);
        self.address = address.map(bounded);
        self.protocol = Some(bounded(protocol));
        self.set(PresenceState::Online)
    }

    /// A connection closed. When it was the last live one the device goes
    /// Offline with `reason`; returns true then (a `disconnected` event).
    pub fn disconnected(&mut self, reason: &str, now_ms: u64) -> bool {
        self.connections = self.connections.saturating_sub(1);
        if self.connections > 0
            || !matches!(self.state, PresenceState::Online | PresenceState::Inactive)
        {
            return false;
        }
        self.go_offline(reason, now_ms)
    }

    /// The device sent something. An Inactive device is Online again
    /// (returns true); an Offline or never-connected one only has
    /// `last_seen_ms` updated (presence follows connections).
    pub fn seen(&mut self, now_ms: u64) -> bool {
        self.mark_seen(now_ms);
        if self.state == PresenceState::Inactive {
            return self.set(PresenceState::Online);
        }
        false
    }

    /// An Online device not seen for `timeout_ms` (last seen at or before
    /// `now_ms - timeout_ms`) becomes Inactive; returns true then. A
    /// timeout of 0 disables the check.
    pub fn check_inactive(&mut self, timeout_ms: u64, now_ms: u64) -> bool {
        if timeout_ms == 0 || self.state != PresenceState::Online {
            return false;
        }
        let last = self.last_seen_ms.or(self.last_connected_ms).unwrap_or(0);
        if last.saturating_add(timeout_ms) > now_ms {
            return false;
        }
        self.set(PresenceState::Inactive)
    }

    /// The server restarted: whatever connections were recorded are gone.
    /// An Online or Inactive device goes Offline (reason `server
    /// restart`); returns true then.
    pub fn reset(&mut self, now_ms: u64) -> bool {
        self.connections = 0;
        if !matches!(self.state, PresenceState::Online | PresenceState::Inactive) {
            return false;
        }
        self.go_offline("server restart", now_ms)
    }

    fn mark_seen(&mut self, now_ms: u64) {
        self.last_seen_ms = Some(self.last_seen_ms.map_or(now_ms, |t| t.max(now_ms)));
    }

    fn go_offline(&mut self, reason: &str, now_ms: u64) -> bool {
        self.last_disconnected_ms = Some(now_ms);
        self.last_reason = Some(bounded(reason));
        self.set(PresenceState::Offline)
    }

    fn set(&mut self, state: PresenceState) -> bool {
        let changed = self.state != state;
        self.state = state;
        changed
    }
}

/// How many devices are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetCounts {
    pub online: u64,
    pub offline: u64,
    pub inactive: u64,
    pub never_connected: u64,
}

impl FleetCounts {
    /// Counts the given presences. Devices with no presence record are not
    /// in it: add them to `never_connected` with [`FleetCounts::add`] (or
    /// as the registry's device count minus [`FleetCounts::total`]).
    pub fn count<'a>(presences: impl IntoIterator<Item = &'a Presence>) -> FleetCounts {
        let mut c = FleetCounts::default();
        for p in presences {
            c.add(p.state, 1);
        }
        c
    }

    /// Adds `n` devices in `state`.
    pub fn add(&mut self, state: PresenceState, n: u64) {
        let slot = match state {
            PresenceState::Online => &mut self.online,
            PresenceState::Offline => &mut self.offline,
            PresenceState::Inactive => &mut self.inactive,
            PresenceState::NeverConnected => &mut self.never_connected,
        };
        *slot = slot.saturating_add(n);
    }

    /// Devices counted.
    pub fn total(&self) -> u64 {
        self.online
            .saturating_add(self.offline)
            .saturating_add(self.inactive)
            .saturating_add(self.never_connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_connections() {
        let mut p = Presence::default();
        assert!(p.connected(Some("10.0.0.1:5000"), "mqtt/5", 100));
        assert_eq!(p.state, PresenceState::Online);
        // A second connection (take-over racing the old close): no event.
        assert!(!p.connected(Some("10.0.0.1:5001"), "mqtt/5", 110));
        assert_eq!(p.connections, 2);
        assert_eq!(p.address.as_deref(), Some("10.0.0.1:5001"));
        assert!(!p.disconnected("taken over", 120));
        assert_eq!(p.state, PresenceState::Online);
        assert_eq!(p.last_disconnected_ms, None);
        assert!(p.disconnected("keep-alive timeout", 130));
        assert_eq!(p.state, PresenceState::Offline);
        assert_eq!(p.connections, 0);
        assert_eq!(p.last_disconnected_ms, Some(130));
        assert_eq!(p.last_reason.as_deref(), Some("keep-alive timeout"));
        // A stray close changes nothing.
        assert!(!p.disconnected("again", 140));
        assert_eq!(p.connections, 0);
        assert_eq!(p.last_disconnected_ms, Some(130));
        assert!(p.connected(None, "ws", 150));
        assert_eq!(p.last_connected_ms, Some(150));
        assert_eq!(p.address, None);
    }

    #[test]
    fn inactivity_with_a_virtual_clock() {
        let mut p = Presence::default();
        assert!(!p.check_inactive(1_000, 5_000), "never connected stays so");
        p.connected(None, "mqtt/3.1.1", 0);
        assert!(!p.seen(500));
        assert!(!p.check_inactive(1_000, 1_499));
        assert!(!p.check_inactive(0, 1_000_000), "0 disables");
        assert!(p.check_inactive(1_000, 1_500));
        assert_eq!(p.state, PresenceState::Inactive);
        assert!(!p.check_inactive(1_000, 9_000), "already inactive");
        // Out-of-order clocks never move last_seen back.
        assert!(p.seen(2_000));
        assert!(!p.seen(1_800));
        assert_eq!(p.last_seen_ms, Some(2_000));
        assert_eq!(p.state, PresenceState::Online);
        // An inactive device that drops goes offline.
        assert!(p.check_inactive(1_000, 3_000));
        assert!(p.disconnected("socket closed", 3_100));
        assert_eq!(p.state, PresenceState::Offline);
        // Seen while offline (e.g. over HTTP): last_seen only.
        assert!(!p.seen(4_000));
        assert_eq!(
            (p.state, p.last_seen_ms),
            (PresenceState::Offline, Some(4_000))
        );
    }

    #[test]
    fn reset_at_restart() {
        let mut p = Presence::default();
        assert!(!p.reset(1));
        p.connected(None, "mqtt/5", 10);
        p.connected(None, "mqtt/5", 11);
        assert!(p.reset(20));
        assert_eq!(p.state, PresenceState::Offline);
        assert_eq!(p.connections, 0);
        assert_eq!(p.last_reason.as_deref(), Some("server restart"));
        assert!(!p.reset(30));
        assert_eq!(p.last_disconnected_ms, Some(20));
    }

    #[test]
    fn long_texts_are_cut() {
        let mut p = Presence::default();
        p.connected(Some(&"é".repeat(300)), &"p".repeat(300), 1);
        assert_eq!(
            p.address.as_ref().unwrap().chars().count(),
            MAX_PRESENCE_TEXT_CHARS
        );
        assert_eq!(p.protocol.as_ref().unwrap().len(), MAX_PRESENCE_TEXT_CHARS);
    }

    #[test]
    fn counts_and_names() {
        let mut a = Presence::default();
        let mut b = Presence::default();
        let c = Presence::default();
        a.connected(None, "mqtt/5", 1);
        b.connected(None, "mqtt/5", 1);
        b.disconnected("bye", 2);
        let mut counts = FleetCounts::count([&a, &b, &c]);
        assert_eq!(
            counts,
            FleetCounts {
                online: 1,
                offline: 1,
                inactive: 0,
                never_connected: 1
            }
        );
        counts.add(PresenceState::NeverConnected, 7);
        assert_eq!(counts.total(), 10);
        for s in PresenceState::ALL {
            assert_eq!(PresenceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(PresenceState::NeverConnected.to_string(), "never_connected");
    }
}
