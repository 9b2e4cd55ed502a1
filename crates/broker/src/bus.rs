//! What platform services (fleet, rules engine, provisioning) see of the
//! broker: the events it hands them ([`PlatformEvent`]), the few things
//! they ask of it ([`Bus`]), and where the rules engine's inputs go
//! ([`RuleSink`]). The services depend on this vocabulary, not on the
//! server: `broker-net` implements [`Bus`] over its running server and
//! feeds a [`RuleSink`], and a service's simulation tests implement them
//! by recording.

use std::future::Future;
use std::pin::Pin;
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

/// A wait for room in the rules engine's queues: a plain `std` future, so
/// the sink decides how it is woken (the rules engine's is a tokio
/// `Notify`) and the network layer awaits it.
pub type RoomWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The rules engine's input. `offer` runs under the broker's lock and
/// never blocks; back-pressure happens outside it: while the sink is
/// `pressed`, a connection's task notes the topics of each read batch and
/// does not read more until [`RuleSink::room`] for them resolves (its
/// outbound queue keeps being flushed meanwhile).
pub trait RuleSink: Send + Sync {
    /// Takes a tapped message; false when it was dropped (counted in
    /// `rules_dropped`). The sink may drop only messages no rule that must
    /// see every message reads; it queues those past its bound instead and
    /// makes publishers wait through `room`.
    fn offer(&self, t: TapMessage) -> bool;

    /// Whether some queue is over its bound (cheap: checked per batch).
    fn pressed(&self) -> bool;

    /// `None` when there is room for messages on these topics (an empty
    /// topic, i.e. a topic alias, stands for any); otherwise a future that
    /// resolves when there is again.
    fn room(&self, topics: &mut dyn Iterator<Item = &str>) -> Option<RoomWait>;
}
