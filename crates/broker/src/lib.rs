//! The sans-io MQTT broker core.
//!
//! [`Broker`] owns every session, the subscription tree, retained messages,
//! wills and the QoS state machines. It never touches a socket, a file or the
//! clock: the network layer feeds it decoded packets with the current
//! [`Time`], and drains [`Output`]s (packets to send, connections to close,
//! persistence operations to make durable). This is what lets the tests drive
//! keep-alive, will delay, session expiry and message expiry with a virtual
//! clock.
//!
//! What it is not: a codec (that is `mqtt-proto`), a store (that is `kv`,
//! which makes [`PersistOp`]s durable), or a server (that is `broker-net`).

mod auth;
mod backpressure;
mod broker;
pub mod bus;
mod config;
mod connect;
mod delivery;
mod fast;
mod handlers;
mod limits;
mod outbound;
mod persist;
mod retained;
mod session;
mod stats;
mod taps;
mod time;
mod trie;

pub use auth::in_device_tree;
pub use auth::{
    hash_password, AccessControl, AclError, Action as AclAction, AuthFailure, Grant, GrantRule,
    RateLimits,
};
pub use broker::{Broker, ConnId, ConnectInfo, Output, PresenceEvent, TapMessage};
pub use config::BrokerConfig;
pub use iot_types::device_topics::telemetry_device;
pub use outbound::OutboundAliases;
pub use persist::{
    DeliveryState, Ingest, PersistOp, RestoredMessage, RestoredSession, RestoredState,
    StoredMessage, StoredSubscription,
};
pub use stats::Stats;
pub use time::Time;
