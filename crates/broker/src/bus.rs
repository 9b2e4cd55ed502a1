//! What platform services (fleet, rules engine, provisioning) see of the
//! broker: the events it hands them ([`PlatformEvent`]) and the few things
//! they ask of it ([`Bus`]). The services depend on this vocabulary, not on
//! the server: `broker-net` implements [`Bus`] over its running server, and
//! a service's simulation tests implement it by recording.

use std::sync::Arc;

use crate::broker::{PresenceEvent, TapMessage};
use crate::persist::StoredMessage;
use crate::time::Time;

/// What the broker tells platform services.
#[derive(Debug, Clone)]
pub enum PlatformEvent {
    Tap(TapMessage),
    Presence(PresenceEvent),
    /// A granted client subscribed to these filters.
    Subscribed {
        principal: String,
        filters: Vec<String>,
    },
    Acked {
        client_id: String,
        principal: Option<String>,
        topic: String,
    },
}

/// The broker as platform services use it. Calls never block on the
/// network: a publish is routed and queued, not sent.
pub trait Bus: Send + Sync {
    /// Publishes a message from the platform itself (a service's reply),
    /// routed like any other.
    fn publish(&self, message: StoredMessage);

    /// Whether some live connection is authenticated as `principal`.
    fn is_connected(&self, principal: &str) -> bool;

    /// Every live connection authenticated by a grant: (principal, time of
    /// its last packet).
    fn activity(&self) -> Vec<(String, Time)>;

    /// Replaces the dynamic taps (the rules engine's inputs; see
    /// [`crate::Broker::set_dynamic_taps`]).
    fn set_dynamic_taps(&self, filters: Vec<String>);
}

impl<B: Bus + ?Sized> Bus for Arc<B> {
    fn publish(&self, message: StoredMessage) {
        (**self).publish(message)
    }

    fn is_connected(&self, principal: &str) -> bool {
        (**self).is_connected(principal)
    }

    fn activity(&self) -> Vec<(String, Time)> {
        (**self).activity()
    }

    fn set_dynamic_taps(&self, filters: Vec<String>) {
        (**self).set_dynamic_taps(filters)
    }
}
