//! `fleet`: the platform services that talk to devices through the broker.
//!
//! What it is: [`Fleet`], which consumes the broker's platform events
//! (tapped device messages, acknowledgements of commands, presence changes
//! of authenticated devices) on a thread of its own, keeps twins, commands
//! and presence in the `twin` crate's store, and answers devices through
//! the broker's [`Bus`]; and the operations the HTTP API calls (read and
//! change twins, send and follow commands, presence and fleet counts).
//! The decisions are a sans-io core ([`FleetCore`]: `handle(now, input)
//! -> effects`, time passed in); the threads around it only feed it and
//! carry out its effects.
//!
//! Device-side topics (the device contract, `{name}` optional):
//!
//! | topic | direction | what |
//! |---|---|---|
//! | `devices/{id}/twin[/{name}]/get` | in | payload empty or `{"clientToken"}` |
//! | `devices/{id}/twin[/{name}]/get/accepted` | out | the full document (+ `clientToken`) |
//! | `devices/{id}/twin[/{name}]/update` | in | `{"state": {"reported"?, "desired"?}, "version"?, "clientToken"?}` |
//! | `devices/{id}/twin[/{name}]/update/accepted` | out | the full document after the update (+ `clientToken`) |
//! | `devices/{id}/twin[/{name}]/{get,update}/rejected` | out | `{"code", "message", "clientToken"?}` (400, 409, 413) |
//! | `devices/{id}/twin[/{name}]/delta` | out | after a change to desired that leaves a difference: `{"state": delta, "metadata", "version", "timestamp"}` |
//! | `devices/{id}/twin[/{name}]/documents` | out | after every accepted change: `{"previous", "current", "timestamp"}` |
//! | `devices/{id}/commands/{cmd_id}` | out | `{"method", "params"}`, QoS 1; its PUBACK marks the command delivered |
//! | `devices/{id}/commands/{cmd_id}/response` | in | `{"status": 0 = success, "result"}` |
//! | `$events/devices/{id}/{connected,disconnected,inactive,active}` | out | `{"device_id", "time", "address"?, "protocol"?, "reason"?, "client_id"?}` |
//!
//! What it is not: storage (that is `twin`), HTTP (that is `api`). Every
//! reply is published after the change it reports is durable.
//!
//! Throughput bound: events are handled in order on one thread; a twin
//! update or command transition costs one fsynced store transaction. The
//! event channel is bounded (the broker drops and counts events when it is
//! full: see `$SYS/broker/platform/taps_dropped`).

mod core;
mod events;
mod metrics;
mod ops;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use broker::bus::Bus;
use iot_types::{device_topics, SharedClock};
use registry::DeviceStorage;
use twin::{DeviceStateStorage, TwinLimits};

pub use crate::core::{Effect, FleetCore, Input};
pub use ops::{FleetError, PresenceView};

/// The namespace (tenant) devices live in for now.
pub(crate) use iot_types::DEFAULT_NAMESPACE as NAMESPACE;

/// Topics the fleet taps (device -> platform). Taps of `$provision/`
/// topics (the provisioning service's, added by the binary) are passed on
/// to the provisioning queue given to [`Fleet::spawn`].
pub const TAPS: [&str; 2] = [
    device_topics::TWIN_FILTER,
    device_topics::COMMAND_RESPONSE_FILTER,
];

/// Topics whose acknowledgements the fleet hears (command delivery).
pub const ACK_TAPS: [&str; 1] = [device_topics::COMMAND_FILTER];

/// Settings of the fleet services.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub twin_limits: TwinLimits,
    /// A connected device silent for longer is `inactive`.
    pub inactivity_timeout_ms: u64,
    /// Per device type, overriding `inactivity_timeout_ms`.
    pub type_inactivity_ms: HashMap<String, u64>,
    /// How often activity, inactivity and command deadlines are checked.
    pub scan_interval_ms: u64,
    /// Final commands are kept this long, then pruned.
    pub command_retention_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            twin_limits: TwinLimits::default(),
            inactivity_timeout_ms: 300_000,
            type_inactivity_ms: HashMap::new(),
            scan_interval_ms: 1000,
            command_retention_ms: 30 * 86_400_000,
        }
    }
}

/// The fleet services. Shared (`Arc`) between the event thread and the
/// API.
pub struct Fleet {
    pub(crate) store: Arc<dyn DeviceStateStorage>,
    pub(crate) registry: Arc<dyn DeviceStorage>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) scan_interval_ms: u64,
    pub(crate) clock: SharedClock,
    /// The decisions and the live devices. Held while one input is
    /// handled (store transactions included), never while publishing.
    pub(crate) core: Mutex<FleetCore>,
    /// Synchronous command calls waiting for a final status, by command id.
    pub(crate) waiters: Mutex<HashMap<String, Vec<tokio::sync::oneshot::Sender<twin::Command>>>>,
}

impl Fleet {
    /// `bus` is the broker (`broker_net::ServerHandle` in the binary);
    /// `clock` is any [`iot_types::Clock`]: the wall clock, a
    /// [`iot_types::ManualClock`] in tests, or a closure returning Unix ms.
    pub fn new<B: Bus + 'static, C: iot_types::Clock + ?Sized + 'static>(
        store: Arc<dyn DeviceStateStorage>,
        registry: Arc<dyn DeviceStorage>,
        bus: B,
        config: FleetConfig,
        clock: Arc<C>,
    ) -> Arc<Fleet> {
        Arc::new(Fleet {
            store: store.clone(),
            registry: registry.clone(),
            bus: Arc::new(bus),
            scan_interval_ms: config.scan_interval_ms,
            clock: iot_types::shared(clock),
            core: Mutex::new(FleetCore::new(store, registry, config)),
            waiters: Mutex::new(HashMap::new()),
        })
    }

    /// Now, as the fleet's clock says.
    pub(crate) fn now(&self) -> iot_types::Timestamp {
        self.clock.now()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
