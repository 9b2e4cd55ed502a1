//! The MQTT server: TCP and WebSocket listeners, one task per connection, a
//! persistence thread doing group commit, and the timers, all driving the
//! sans-io [`broker::Broker`].
//!
//! Concurrency: the broker core sits behind one `std::sync::Mutex`. A
//! connection's task decodes every complete packet in its read buffer, then
//! takes the lock once for the whole batch; no `.await` happens while it is
//! held. The outputs are dispatched under the same lock into bounded
//! per-connection queues (never blocking). Acknowledgements that depend on
//! persisted state wait in the receiving connection's task until the
//! persistence thread reports that batch durable.

mod auth;
mod bus;
mod clock;
mod connection;
mod dispatch;
mod figures;
mod outq;
mod persist;
mod server;
mod stream;
mod sys;
mod tls;
mod ws;

pub use auth::{AuthDecision, AuthRequest, Authenticator, Listener};
/// The rules engine's input, declared with the broker's vocabulary.
pub use broker::bus::{RoomWait, RuleSink};
pub use clock::Clock;
pub use figures::{Figure, Kind, NetCounts, Snapshot, FIGURES};
pub use persist::{CommitMetrics, IngestStage};
pub use server::{
    BrokerFigures, NetConfig, NetError, NetMetrics, PlatformEvent, Server, ServerHandle,
    ServerOptions,
};
pub use stream::{StreamItem, StreamSubscription};
pub use tls::TlsListeners;
