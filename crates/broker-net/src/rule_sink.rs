//! Where the rules engine's inputs go: a sink the rules engine implements
//! (`automation`), so that it decides what may be skipped under load.

use std::future::Future;
use std::pin::Pin;

use broker::TapMessage;

/// A wait for room in the rules engine's queues.
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
