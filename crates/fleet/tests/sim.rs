//! The fleet's core driven with a virtual clock, over the real twin store
//! and registry in a temporary directory: no broker, no threads, no sleeps.
//! Every input is handled at a time the test chooses; what the core
//! decides comes back as effects.

use std::collections::HashMap;
use std::sync::Arc;

use broker::bus::PlatformEvent;
use broker::{PresenceEvent, StoredMessage, TapMessage, Time};
use fleet::{Effect, FleetConfig, FleetCore, Input};
use iot_types::{device_topics, Timestamp, DEFAULT_NAMESPACE as NS};
use registry::{NewDevice, Registry, RegistryConfig};
use serde_json::{json, Value};
use twin::{CommandStatus, DeviceStateStore, NewCommand, PresenceState};

const T0: u64 = 1_700_000_000_000;

struct Sim {
    _dir: tempfile::TempDir,
    store: Arc<DeviceStateStore>,
    registry: Arc<Registry>,
    core: FleetCore,
    now: u64,
}

impl Sim {
    fn new() -> Sim {
        Sim::with(FleetConfig::default())
    }

    fn with(config: FleetConfig) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(DeviceStateStore::open(&dir.path().join("d.redb")).expect("store"));
        let registry = Arc::new(
            Registry::open(
                &dir.path().join("r.redb"),
                RegistryConfig {
                    argon2_memory_kib: 64,
                    ..RegistryConfig::default()
                },
            )
            .expect("registry"),
        );
        let core = FleetCore::new(store.clone(), registry.clone(), config);
        Sim {
            _dir: dir,
            store,
            registry,
            core,
            now: T0,
        }
    }

    /// The same store and registry, as after a restart.
    fn restart(self, config: FleetConfig) -> Sim {
        Sim {
            core: FleetCore::new(self.store.clone(), self.registry.clone(), config),
            ..self
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    fn input(&mut self, input: Input) -> Vec<Effect> {
        self.core.handle(Timestamp::from_millis(self.now), input)
    }

    fn register(&self, id: &str, device_type: &str) {
        let new = NewDevice {
            id: id.into(),
            device_type: Some(device_type.into()),
            ..NewDevice::default()
        };
        self.registry
            .create_device(NS, new, T0)
            .expect("create device");
    }

    fn connect(&mut self, device: &str, subscriptions: &[&str]) -> Vec<Effect> {
        self.input(Input::Broker(PlatformEvent::Presence(PresenceEvent {
            principal: device.into(),
            client_id: device.into(),
            connected: true,
            peer: "10.0.0.7:50000".into(),
            protocol: "mqtt5",
            subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
            reason: "",
        })))
    }

    fn disconnect(&mut self, device: &str, reason: &'static str) -> Vec<Effect> {
        self.input(Input::Broker(PlatformEvent::Presence(PresenceEvent {
            principal: device.into(),
            client_id: device.into(),
            connected: false,
            peer: "10.0.0.7:50000".into(),
            protocol: "mqtt5",
            subscriptions: Vec::new(),
            reason,
        })))
    }

    fn subscribe(&mut self, device: &str, filter: &str) -> Vec<Effect> {
        self.input(Input::Broker(PlatformEvent::Subscribed {
            principal: device.into(),
            filters: vec![filter.into()],
        }))
    }

    /// `principal` published `payload` on `topic` (a tapped message).
    fn tap(&mut self, principal: &str, topic: &str, payload: &Value) -> Vec<Effect> {
        let body = if payload.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(payload).expect("json")
        };
        self.input(Input::Broker(PlatformEvent::Tap(TapMessage {
            client_id: principal.into(),
            principal: Some(principal.into()),
            message: Arc::new(StoredMessage::platform_json(topic, body)),
            for_services: true,
            for_rules: false,
            for_streams: false,
        })))
    }

    fn acked(&mut self, device: &str, command: &str) -> Vec<Effect> {
        self.input(Input::Broker(PlatformEvent::Acked {
            client_id: device.into(),
            principal: Some(device.into()),
            topic: device_topics::command(device, command),
        }))
    }

    /// The periodic scan; `activity`: (device, ms since T0 of its last
    /// packet).
    fn scan(&mut self, activity: &[(&str, u64)]) -> Vec<Effect> {
        let activity = activity
            .iter()
            .map(|&(d, t)| (d.to_string(), Time(T0 + t)))
            .collect();
        self.input(Input::Scan(activity))
    }

    /// Creates a command (as the API does) and, when `online`, sends it.
    fn command(
        &mut self,
        device: &str,
        ttl_ms: Option<u64>,
        online: bool,
    ) -> (String, Vec<Effect>) {
        let new = NewCommand {
            method: "reboot".into(),
            params: json!({"delay": 1}),
            timeout_ms: 30_000,
            ttl_ms,
        };
        let c = self
            .store
            .create_command(NS, device, new, self.now)
            .expect("create command");
        let effects = if online {
            self.core.send_command(Timestamp::from_millis(self.now), &c)
        } else {
            Vec::new()
        };
        (c.id, effects)
    }

    fn status(&self, device: &str, id: &str) -> CommandStatus {
        self.store
            .get_command(NS, device, id)
            .expect("read")
            .expect("command")
            .status
    }

    fn presence_state(&self, device: &str) -> PresenceState {
        self.store
            .get_presence(NS, device)
            .expect("read")
            .expect("presence")
            .state
    }
}

/// The publishes among `effects`, in order.
fn publishes(effects: &[Effect]) -> Vec<(String, Value)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish { topic, payload } => Some((topic.clone(), payload.clone())),
            Effect::Finished(_) => None,
        })
        .collect()
}

fn topics(effects: &[Effect]) -> Vec<String> {
    publishes(effects).into_iter().map(|(t, _)| t).collect()
}

/// The commands reported final, as (id, status).
fn finished(effects: &[Effect]) -> Vec<(String, CommandStatus)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Finished(c) => Some((c.id.clone(), c.status)),
            Effect::Publish { .. } => None,
        })
        .collect()
}

// ------------------------------------------------------------------- twins

#[test]
fn twin_update_publishes_accepted_delta_documents_in_order() {
    let mut sim = Sim::new();
    sim.connect("d1", &[]);
    sim.advance(1000);
    let e = sim.tap(
        "d1",
        "devices/d1/twin/update",
        &json!({"state": {"desired": {"fan": 2}}, "clientToken": "t1"}),
    );
    assert_eq!(
        topics(&e),
        [
            "devices/d1/twin/update/accepted",
            "devices/d1/twin/delta",
            "devices/d1/twin/documents",
        ]
    );
    let p = publishes(&e);
    assert_eq!(p[0].1["clientToken"], "t1");
    assert_eq!(p[0].1["version"], 1);
    assert_eq!(p[0].1["state"]["desired"], json!({"fan": 2}));
    assert_eq!(p[1].1["state"], json!({"fan": 2}));
    assert_eq!(p[2].1["previous"]["version"], 0);
    assert_eq!(p[2].1["current"]["version"], 1);
    assert_eq!(p[2].1["timestamp"], T0 + 1000);

    // Reported catches up: no delta left, none published.
    sim.advance(1000);
    let e = sim.tap(
        "d1",
        "devices/d1/twin/update",
        &json!({"state": {"reported": {"fan": 2}}}),
    );
    assert_eq!(
        topics(&e),
        [
            "devices/d1/twin/update/accepted",
            "devices/d1/twin/documents"
        ]
    );
    assert_eq!(publishes(&e)[0].1["state"]["delta"], json!({}));

    // A named twin, read back with a token.
    let e = sim.tap("d1", "devices/d1/twin/get", &json!({"clientToken": 7}));
    let p = publishes(&e);
    assert_eq!(topics(&e), ["devices/d1/twin/get/accepted"]);
    assert_eq!(p[0].1["version"], 2);
    assert_eq!(p[0].1["clientToken"], 7);
    assert_eq!(p[0].1["state"]["reported"], json!({"fan": 2}));
}

#[test]
fn twin_update_rejections() {
    let mut sim = Sim::new();
    sim.connect("d1", &[]);
    let rejected = "devices/d1/twin/update/rejected";
    let e = sim.tap(
        "d1",
        "devices/d1/twin/update",
        &json!({"state": {"reported": {"a": 1}}, "version": 5, "clientToken": "x"}),
    );
    let p = publishes(&e);
    assert_eq!(topics(&e), [rejected]);
    assert_eq!(p[0].1["code"], 409);
    assert_eq!(p[0].1["clientToken"], "x");

    let e = sim.tap(
        "d1",
        "devices/d1/twin/update",
        &json!({"state": {"wished": {}}}),
    );
    assert_eq!(publishes(&e)[0].1["code"], 400);
    assert_eq!(topics(&e), [rejected]);
    assert!(sim.store.get_twin(NS, "d1", "").expect("read").is_none());
}

#[test]
fn a_device_touches_only_its_own_twin_and_commands() {
    let mut sim = Sim::new();
    sim.connect("d1", &["devices/d1/commands/#"]);
    sim.connect("d2", &[]);
    let e = sim.tap(
        "d2",
        "devices/d1/twin/update",
        &json!({"state": {"desired": {"open": true}}}),
    );
    assert!(e.is_empty(), "{e:?}");
    assert!(sim.store.get_twin(NS, "d1", "").expect("read").is_none());
    assert!(sim
        .tap("d2", "devices/d1/twin/get", &Value::Null)
        .is_empty());

    let (id, _) = sim.command("d1", None, true);
    let e = sim.tap(
        "d2",
        &device_topics::command_response("d1", &id),
        &json!({"status": 0}),
    );
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(sim.status("d1", &id), CommandStatus::Sent);

    // The device itself may.
    let e = sim.tap(
        "d1",
        "devices/d1/twin/update",
        &json!({"state": {"reported": {"open": false}}}),
    );
    assert_eq!(topics(&e)[0], "devices/d1/twin/update/accepted");
}

// ---------------------------------------------------------------- commands

#[test]
fn puback_marks_delivered_and_the_response_completes() {
    let mut sim = Sim::new();
    sim.connect("d1", &["devices/d1/commands/+"]);
    let (id, e) = sim.command("d1", None, true);
    assert_eq!(
        publishes(&e),
        [(
            device_topics::command("d1", &id),
            json!({"method": "reboot", "params": {"delay": 1}})
        )]
    );
    assert_eq!(sim.status("d1", &id), CommandStatus::Sent);

    sim.advance(200);
    assert!(sim.acked("d1", &id).is_empty());
    assert_eq!(sim.status("d1", &id), CommandStatus::Delivered);

    sim.advance(300);
    let e = sim.tap(
        "d1",
        &device_topics::command_response("d1", &id),
        &json!({"status": 0, "result": {"ok": true}}),
    );
    assert_eq!(finished(&e), [(id.clone(), CommandStatus::Succeeded)]);
    assert!(topics(&e).is_empty());
    let c = sim
        .store
        .get_command(NS, "d1", &id)
        .expect("read")
        .expect("c");
    assert_eq!(
        c.response,
        Some(json!({"status": 0, "result": {"ok": true}}))
    );
    assert_eq!(c.finished_at_ms(), Some(T0 + 500));

    // A second answer changes nothing.
    let e = sim.tap(
        "d1",
        &device_topics::command_response("d1", &id),
        &json!({"status": 1}),
    );
    assert!(e.is_empty());
}

#[test]
fn a_response_before_the_puback_proves_delivery_and_a_failure_status_fails() {
    let mut sim = Sim::new();
    sim.connect("d1", &["devices/d1/commands/+"]);
    let (id, _) = sim.command("d1", None, true);
    let e = sim.tap(
        "d1",
        &device_topics::command_response("d1", &id),
        &json!({"status": 3}),
    );
    assert_eq!(finished(&e), [(id.clone(), CommandStatus::Failed)]);
    let c = sim
        .store
        .get_command(NS, "d1", &id)
        .expect("read")
        .expect("c");
    let trail: Vec<CommandStatus> = c.trail.iter().map(|&(s, _)| s).collect();
    assert_eq!(
        trail,
        [
            CommandStatus::Queued,
            CommandStatus::Sent,
            CommandStatus::Delivered,
            CommandStatus::Failed
        ]
    );
}

#[test]
fn a_sent_command_times_out_at_its_deadline() {
    let mut sim = Sim::new();
    sim.connect("d1", &["devices/d1/commands/+"]);
    let (id, _) = sim.command("d1", None, true);
    sim.acked("d1", &id);
    sim.advance(29_999);
    assert!(finished(&sim.scan(&[("d1", 29_999)])).is_empty());
    assert_eq!(sim.status("d1", &id), CommandStatus::Delivered);
    sim.advance(1);
    assert_eq!(
        finished(&sim.scan(&[])),
        [(id.clone(), CommandStatus::TimedOut)]
    );
    // Too late: the answer is ignored.
    sim.advance(10);
    let e = sim.tap(
        "d1",
        &device_topics::command_response("d1", &id),
        &json!({"status": 0}),
    );
    assert!(e.is_empty());
    assert_eq!(sim.status("d1", &id), CommandStatus::TimedOut);
}

#[test]
fn a_queued_command_expires_at_its_ttl_unless_sent() {
    let mut sim = Sim::new();
    let (expiring, _) = sim.command("d1", Some(5_000), false);
    sim.advance(4_999);
    assert!(finished(&sim.scan(&[])).is_empty());
    sim.advance(1);
    assert_eq!(
        finished(&sim.scan(&[])),
        [(expiring.clone(), CommandStatus::Expired)]
    );

    // Sent before its TTL: the response timeout applies instead.
    let (sent, _) = sim.command("d1", Some(5_000), false);
    sim.advance(1_000);
    sim.connect("d1", &["devices/d1/commands/#"]);
    assert_eq!(sim.status("d1", &sent), CommandStatus::Sent);
    sim.advance(10_000);
    assert!(finished(&sim.scan(&[("d1", 10_000)])).is_empty());
    assert_eq!(sim.status("d1", &expiring), CommandStatus::Expired);
}

#[test]
fn queued_commands_go_on_subscribe_and_unacknowledged_ones_are_resent() {
    let mut sim = Sim::new();
    let (first, _) = sim.command("d1", None, false);
    sim.advance(10);
    let (second, _) = sim.command("d1", None, false);
    let topic = |id: &str| device_topics::command("d1", id);

    // Connected without a command subscription: nothing sent yet.
    sim.advance(100);
    let e = sim.connect("d1", &[]);
    assert_eq!(topics(&e), ["$events/devices/d1/connected"]);
    assert_eq!(sim.status("d1", &first), CommandStatus::Queued);
    // A subscription elsewhere changes nothing.
    assert!(sim.subscribe("d1", "devices/d1/twin/#").is_empty());
    // Subscribing sends both, in order.
    let e = sim.subscribe("d1", "devices/d1/commands/+");
    assert_eq!(topics(&e), [topic(&first), topic(&second)]);
    assert_eq!(sim.status("d1", &first), CommandStatus::Sent);
    // Another subscription in the same connection resends nothing sent in
    // it.
    assert!(sim.subscribe("d1", "devices/d1/commands/#").is_empty());

    // Only the second is acknowledged before the connection drops.
    sim.acked("d1", &second);
    sim.advance(100);
    sim.disconnect("d1", "connection lost");
    // The resumed session already has its subscription: the first goes
    // again at once (the retry), the delivered one does not.
    sim.advance(100);
    let e = sim.connect("d1", &["devices/d1/commands/+"]);
    assert_eq!(
        topics(&e),
        ["$events/devices/d1/connected".to_string(), topic(&first)]
    );
    assert_eq!(sim.status("d1", &first), CommandStatus::Sent);
    // A shared subscription never receives commands.
    sim.disconnect("d1", "connection lost");
    sim.advance(100);
    sim.connect("d1", &[]);
    assert!(sim
        .subscribe("d1", "$share/g/devices/d1/commands/+")
        .is_empty());
}

// ---------------------------------------------------------------- presence

#[test]
fn connect_and_disconnect_events() {
    let mut sim = Sim::new();
    let e = sim.connect("d1", &[]);
    assert_eq!(
        publishes(&e),
        [(
            "$events/devices/d1/connected".to_string(),
            json!({
                "device_id": "d1", "event": "connected", "time": T0,
                "address": "10.0.0.7:50000", "protocol": "mqtt5", "client_id": "d1",
            })
        )]
    );
    assert_eq!(sim.presence_state("d1"), PresenceState::Online);
    // A second connection of the same device is no new event, and its end
    // leaves the device online.
    assert!(sim.connect("d1", &[]).is_empty());
    sim.advance(5);
    assert!(sim.disconnect("d1", "session taken over").is_empty());
    sim.advance(5);
    let e = sim.disconnect("d1", "keep-alive timeout");
    assert_eq!(
        publishes(&e),
        [(
            "$events/devices/d1/disconnected".to_string(),
            json!({
                "device_id": "d1", "event": "disconnected", "time": T0 + 10,
                "reason": "keep-alive timeout", "client_id": "d1",
            })
        )]
    );
    assert_eq!(sim.presence_state("d1"), PresenceState::Offline);
    assert_eq!(sim.core.last_seen("d1"), None);

    // Claim credentials (provisioning) are not devices.
    assert!(sim.connect("claim:c1", &[]).is_empty());
}

#[test]
fn a_silent_device_goes_inactive_after_its_timeout_and_active_on_traffic() {
    let mut sim = Sim::with(FleetConfig {
        inactivity_timeout_ms: 60_000,
        type_inactivity_ms: HashMap::from([("pump".to_string(), 10_000)]),
        ..FleetConfig::default()
    });
    sim.register("p1", "pump");
    sim.register("s1", "sensor");
    sim.connect("p1", &[]);
    sim.connect("s1", &[]);

    // At exactly the timeout the pump is not yet silent for longer.
    sim.advance(10_000);
    assert!(sim.scan(&[("p1", 0), ("s1", 0)]).is_empty());
    sim.advance(1);
    let e = sim.scan(&[("p1", 0), ("s1", 0)]);
    assert_eq!(
        publishes(&e),
        [(
            "$events/devices/p1/inactive".to_string(),
            json!({
                "device_id": "p1", "event": "inactive", "time": T0 + 10_001,
                "last_seen": T0, "timeout_ms": 10_000,
            })
        )]
    );
    assert_eq!(sim.presence_state("p1"), PresenceState::Inactive);
    // Reported once.
    sim.advance(1_000);
    assert!(sim.scan(&[("p1", 0), ("s1", 0)]).is_empty());

    // Traffic: active again, with the time of the packet.
    sim.advance(1_000);
    let e = sim.scan(&[("p1", 12_500), ("s1", 0)]);
    assert_eq!(
        publishes(&e),
        [(
            "$events/devices/p1/active".to_string(),
            json!({
                "device_id": "p1", "event": "active", "time": T0 + 12_001,
                "last_seen": T0 + 12_500,
            })
        )]
    );
    assert_eq!(sim.presence_state("p1"), PresenceState::Online);
    assert_eq!(sim.core.last_seen("p1"), Some(T0 + 12_500));

    // The sensor has the default timeout.
    sim.advance(60_000 - 12_001);
    assert!(topics(&sim.scan(&[("p1", 60_000)])).is_empty());
    sim.advance(1);
    assert_eq!(
        topics(&sim.scan(&[("p1", 60_000)])),
        ["$events/devices/s1/inactive"]
    );
}

#[test]
fn a_restart_disconnects_the_devices_left_online() {
    let mut sim = Sim::new();
    sim.connect("d1", &[]);
    sim.connect("d2", &[]);
    sim.disconnect("d2", "client disconnected");
    let mut sim = sim.restart(FleetConfig::default());
    sim.advance(60_000);
    let e = sim.input(Input::Start);
    assert_eq!(
        publishes(&e),
        [(
            "$events/devices/d1/disconnected".to_string(),
            json!({
                "device_id": "d1", "event": "disconnected", "time": T0 + 60_000,
                "reason": "server restart",
            })
        )]
    );
    assert_eq!(sim.presence_state("d1"), PresenceState::Offline);
    assert!(sim.input(Input::Start).is_empty());
}
