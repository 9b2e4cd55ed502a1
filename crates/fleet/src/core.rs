//! The fleet's decisions, sans-io: [`FleetCore::handle`] takes the time
//! and one [`Input`] (a broker event, the periodic scan, the start) and
//! returns the [`Effect`]s to carry out, in order (messages to publish,
//! callers waiting for a command to answer).
//!
//! It keeps twins, commands and presence in the store it is given
//! (`twin::DeviceStateStorage`; every change is committed before the effect
//! that reports it is returned) and the live devices (last packet seen,
//! inactivity) in memory. It never reads the clock, spawns a thread or
//! touches the network: the shell (`events.rs`) feeds it and publishes its
//! effects through the broker's [`broker::bus::Bus`].

use std::collections::HashMap;
use std::sync::Arc;

use broker::bus::PlatformEvent;
use broker::{TapMessage, Time};
use bytes::Bytes;
use iot_types::device_topics::{self, DeviceTopic, PresenceEvent, TwinTopic};
use iot_types::Timestamp;
use registry::DeviceStorage;
use serde_json::{json, Map, Value};
use twin::{Command, CommandStatus, DeviceStateStorage, TwinUpdate, UpdateError};

use crate::{FleetConfig, NAMESPACE};

/// Finished commands are pruned at most this often.
const PRUNE_EVERY_MS: u64 = 600_000;

/// What the core is given.
#[derive(Debug, Clone)]
pub enum Input {
    /// The fleet starts: devices an earlier run left connected are
    /// disconnected (`server restart`).
    Start,
    /// What the broker tells the platform services.
    Broker(PlatformEvent),
    /// The periodic check of command deadlines and inactivity, with the
    /// broker's activity: (principal, time of its last packet).
    Scan(Vec<(String, Time)>),
}

/// What the core asks of its shell, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish `payload` (JSON) on `topic` as the platform.
    Publish { topic: String, payload: Value },
    /// The command reached a final status: the callers waiting for it get
    /// it.
    Finished(Command),
}

/// A connected device as the fleet follows it.
#[derive(Debug, Clone)]
struct LiveDevice {
    connected_at_ms: u64,
    last_seen_ms: u64,
    device_type: String,
    inactive: bool,
}

/// The fleet's state machine over its store.
pub struct FleetCore {
    store: Arc<dyn DeviceStateStorage>,
    devices: Arc<dyn DeviceStorage>,
    config: FleetConfig,
    /// Connected devices, by id.
    live: HashMap<String, LiveDevice>,
    /// When finished commands were last pruned.
    last_prune_ms: u64,
}

impl FleetCore {
    /// `devices` gives each device's type (per-type inactivity timeouts).
    pub fn new(
        store: Arc<dyn DeviceStateStorage>,
        devices: Arc<dyn DeviceStorage>,
        config: FleetConfig,
    ) -> FleetCore {
        FleetCore {
            store,
            devices,
            config,
            live: HashMap::new(),
            last_prune_ms: 0,
        }
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Effect> {
        let now = now.as_millis();
        let mut out = Vec::new();
        match input {
            Input::Start => self.reset(now, &mut out),
            Input::Broker(ev) => self.on_event(now, ev, &mut out),
            Input::Scan(activity) => self.scan(now, activity, &mut out),
        }
        out
    }

    /// Applies a twin update and returns its result with the publishes
    /// that report it (accepted, delta, documents; or rejected). `None`:
    /// the store failed.
    pub fn update_twin(
        &self,
        now: Timestamp,
        device: &str,
        name: &str,
        update: &TwinUpdate,
    ) -> (Option<Result<twin::Twin, UpdateError>>, Vec<Effect>) {
        let mut out = Vec::new();
        let r = self.apply_update(now.as_millis(), device, name, update, None, &mut out);
        (r, out)
    }

    /// Sends a command now (its device is connected): marks it sent if it
    /// was queued, and publishes it.
    pub fn send_command(&self, now: Timestamp, c: &Command) -> Vec<Effect> {
        let mut out = Vec::new();
        self.send(now.as_millis(), c, &mut out);
        out
    }

    /// The last packet seen of a connected device (Unix ms).
    pub fn last_seen(&self, device: &str) -> Option<u64> {
        self.live.get(device).map(|d| d.last_seen_ms)
    }

    /// Forgets a deleted device's live state.
    pub fn forget(&mut self, device: &str) {
        self.live.remove(device);
    }

    fn reset(&mut self, now: u64, out: &mut Vec<Effect>) {
        match self.store.reset_presence(now) {
            Ok(reset) => {
                for (_, device) in &reset {
                    presence_event(
                        out,
                        now,
                        device,
                        PresenceEvent::Disconnected,
                        json!({"reason": "server restart"}),
                    );
                }
                if !reset.is_empty() {
                    tracing::info!(devices = reset.len(), "presence reset after restart");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reset presence"),
        }
    }

    fn on_event(&mut self, now: u64, ev: PlatformEvent, out: &mut Vec<Effect>) {
        match ev {
            PlatformEvent::Tap(t) => self.on_message(now, &t, out),
            PlatformEvent::Subscribed { principal, filters } => {
                if filters.iter().any(|f| commands_filter(&principal, f)) {
                    if let Some(since) = self.live.get(&principal).map(|d| d.connected_at_ms) {
                        self.send_pending(now, &principal, since, out);
                    }
                }
            }
            PlatformEvent::Acked { topic, .. } => {
                if let Some(DeviceTopic::Command { device, command }) = device_topics::parse(&topic)
                {
                    let r = self
                        .store
                        .update_command(NAMESPACE, device, command, &mut |c| c.mark_delivered(now));
                    if let Err(e) = r {
                        tracing::warn!(error = %e, device, command, "cannot record delivery")
                    }
                }
            }
            PlatformEvent::Presence(p) => {
                if p.principal.starts_with("claim:") {
                    return;
                }
                if p.connected {
                    self.on_connected(now, &p, out);
                } else {
                    self.on_disconnected(now, &p.principal, p.reason, &p.client_id, out);
                }
            }
        }
    }

    fn on_message(&self, now: u64, t: &TapMessage, out: &mut Vec<Effect>) {
        let payload = &t.message.payload;
        let topic = device_topics::parse(&t.message.topic);
        // Only device {id} acts on `devices/{id}/...` (the broker taps
        // nothing else; this holds whatever feeds the core).
        let device = topic.as_ref().and_then(|d| d.device());
        if device.is_some() && t.principal.as_deref() != device {
            tracing::debug!(topic = %t.message.topic, principal = ?t.principal, "not from the device; ignored");
            return;
        }
        match topic {
            Some(DeviceTopic::Twin {
                device,
                name,
                topic: TwinTopic::Get,
            }) => self.twin_get(device, name, payload, out),
            Some(DeviceTopic::Twin {
                device,
                name,
                topic: TwinTopic::Update,
            }) => self.twin_update(now, device, name, payload, out),
            Some(DeviceTopic::CommandResponse { device, command }) => {
                self.command_response(now, device, command, payload, out)
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- twins

    fn twin_get(&self, device: &str, name: &str, payload: &Bytes, out: &mut Vec<Effect>) {
        let topic = |t| device_topics::twin(device, name, t);
        let token = client_token(payload);
        if let Err(e) = twin::validate_twin_name(name) {
            reject(
                out,
                topic(TwinTopic::GetRejected),
                400,
                &e.to_string(),
                token,
            );
            return;
        }
        match self.store.get_twin(NAMESPACE, device, name) {
            Ok(t) => {
                let mut doc = twin::document(&t.unwrap_or_default());
                with_token(&mut doc, token);
                publish(out, topic(TwinTopic::GetAccepted), doc);
            }
            Err(e) => {
                tracing::warn!(error = %e, device, "cannot read twin");
                storage_error(out, topic(TwinTopic::GetRejected), token);
            }
        }
    }

    fn twin_update(
        &self,
        now: u64,
        device: &str,
        name: &str,
        payload: &Bytes,
        out: &mut Vec<Effect>,
    ) {
        let rejected = device_topics::twin(device, name, TwinTopic::UpdateRejected);
        let doc: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                reject(
                    out,
                    rejected,
                    400,
                    &format!("payload is not JSON: {e}"),
                    None,
                );
                return;
            }
        };
        let token = doc.get("clientToken").cloned();
        if let Err(e) = twin::validate_twin_name(name) {
            reject(out, rejected, 400, &e.to_string(), token);
            return;
        }
        match parse_update(&doc) {
            Ok(update) => {
                self.apply_update(now, device, name, &update, token, out);
            }
            Err(msg) => reject(out, rejected, 400, &msg, token),
        }
    }

    /// Applies an update; its consequences go to `out`.
    fn apply_update(
        &self,
        now: u64,
        device: &str,
        name: &str,
        update: &TwinUpdate,
        token: Option<Value>,
        out: &mut Vec<Effect>,
    ) -> Option<Result<twin::Twin, UpdateError>> {
        let topic = |t| device_topics::twin(device, name, t);
        let limits = &self.config.twin_limits;
        match self
            .store
            .update_twin(NAMESPACE, device, name, update, limits, now)
        {
            Ok(Ok((previous, current))) => {
                let mut doc = twin::document(&current);
                with_token(&mut doc, token);
                publish(out, topic(TwinTopic::UpdateAccepted), doc);
                if update.desired.is_some() && !current.delta().is_empty() {
                    publish(out, topic(TwinTopic::Delta), twin::delta_document(&current));
                }
                publish(
                    out,
                    topic(TwinTopic::Documents),
                    json!({
                        "previous": twin::document(&previous),
                        "current": twin::document(&current),
                        "timestamp": now,
                    }),
                );
                Some(Ok(current))
            }
            Ok(Err(e)) => {
                reject(
                    out,
                    topic(TwinTopic::UpdateRejected),
                    e.code(),
                    &e.to_string(),
                    token,
                );
                Some(Err(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, device, "cannot store twin update");
                storage_error(out, topic(TwinTopic::UpdateRejected), token);
                None
            }
        }
    }

    // ------------------------------------------------------------- commands

    fn command_response(
        &self,
        now: u64,
        device: &str,
        command: &str,
        payload: &Bytes,
        out: &mut Vec<Effect>,
    ) {
        let response: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        match self
            .store
            .update_command(NAMESPACE, device, command, &mut |c| {
                // A device may answer before its PUBACK reaches us (paho
                // acknowledges after its callback): the answer proves the
                // delivery.
                if c.status == CommandStatus::Sent {
                    c.mark_delivered(now)?;
                }
                c.respond(&response, now)
            }) {
            Ok(Ok(c)) => finished(out, c),
            Ok(Err(e)) => tracing::debug!(device, command, error = %e, "response ignored"),
            Err(e) => {
                tracing::debug!(device, command, error = %e, "response to an unknown command")
            }
        }
    }

    fn send(&self, now: u64, c: &Command, out: &mut Vec<Effect>) {
        if c.status == CommandStatus::Queued {
            match self
                .store
                .update_command(NAMESPACE, &c.device_id, &c.id, &mut |c| c.mark_sent(now))
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, command = %c.id, "cannot mark command sent");
                    return;
                }
            }
        }
        publish(
            out,
            device_topics::command(&c.device_id, &c.id),
            c.message(),
        );
    }

    /// Sends the device's queued commands in order, and again those sent
    /// during an earlier connection (before `since`) and never
    /// acknowledged.
    fn send_pending(&self, now: u64, device: &str, since: u64, out: &mut Vec<Effect>) {
        match self.store.pending_commands(NAMESPACE, device) {
            Ok(pending) => {
                for c in &pending {
                    let resend = c.status == CommandStatus::Sent
                        && c.sent_at_ms().is_some_and(|t| t < since);
                    if c.status == CommandStatus::Queued || resend {
                        self.send(now, c, out);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, device, "cannot read pending commands"),
        }
    }

    // ------------------------------------------------------------- presence

    fn on_connected(&mut self, now: u64, p: &broker::PresenceEvent, out: &mut Vec<Effect>) {
        let device = p.principal.as_str();
        let device_type = self
            .devices
            .get_device(NAMESPACE, device)
            .ok()
            .flatten()
            .map(|d| d.device_type)
            .unwrap_or_default();
        self.live.insert(
            device.to_string(),
            LiveDevice {
                connected_at_ms: now,
                last_seen_ms: now,
                device_type,
                inactive: false,
            },
        );
        let (peer, protocol) = (p.peer.as_str(), p.protocol);
        match self.store.update_presence(NAMESPACE, device, &mut |s| {
            s.connected(Some(peer), protocol, now)
        }) {
            Ok((_, true)) => presence_event(
                out,
                now,
                device,
                PresenceEvent::Connected,
                json!({"address": peer, "protocol": protocol, "client_id": p.client_id.to_string()}),
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
        }
        // A resumed session that already subscribed to its commands gets
        // them now; otherwise they go when it subscribes (sending before
        // would reach no subscriber).
        if p.subscriptions.iter().any(|f| commands_filter(device, f)) {
            self.send_pending(now, device, now, out);
        }
    }

    fn on_disconnected(
        &mut self,
        now: u64,
        device: &str,
        reason: &str,
        client_id: &str,
        out: &mut Vec<Effect>,
    ) {
        match self
            .store
            .update_presence(NAMESPACE, device, &mut |p| p.disconnected(reason, now))
        {
            Ok((p, changed)) => {
                if p.connections == 0 {
                    self.live.remove(device);
                }
                if changed {
                    presence_event(
                        out,
                        now,
                        device,
                        PresenceEvent::Disconnected,
                        json!({"reason": reason, "client_id": client_id}),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
        }
    }

    /// Command deadlines, pruning, activity and inactivity.
    fn scan(&mut self, now: u64, activity: Vec<(String, Time)>, out: &mut Vec<Effect>) {
        match self.store.expire_commands(now) {
            Ok(changed) => {
                for c in changed {
                    finished(out, c);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot expire commands"),
        }
        if now.saturating_sub(self.last_prune_ms) >= PRUNE_EVERY_MS {
            self.last_prune_ms = now;
            match self
                .store
                .prune_commands(now, self.config.command_retention_ms)
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(commands = n, "pruned finished commands"),
                Err(e) => tracing::warn!(error = %e, "cannot prune commands"),
            }
        }
        for (principal, seen) in activity {
            if let Some(d) = self.live.get_mut(&principal) {
                d.last_seen_ms = d.last_seen_ms.max(seen.0);
            }
        }
        let mut changes = Vec::new();
        for (device, d) in self.live.iter_mut() {
            let timeout = self
                .config
                .type_inactivity_ms
                .get(&d.device_type)
                .copied()
                .unwrap_or(self.config.inactivity_timeout_ms);
            let silent = now.saturating_sub(d.last_seen_ms) > timeout;
            if silent != d.inactive {
                d.inactive = silent;
                changes.push((device.clone(), silent, d.last_seen_ms, timeout));
            }
        }
        for (device, inactive, seen, timeout) in changes {
            let r = self.store.update_presence(NAMESPACE, &device, &mut |p| {
                if inactive {
                    p.check_inactive(timeout, now)
                } else {
                    p.seen(seen)
                }
            });
            match r {
                Ok((_, true)) if inactive => presence_event(
                    out,
                    now,
                    &device,
                    PresenceEvent::Inactive,
                    json!({"last_seen": seen, "timeout_ms": timeout}),
                ),
                Ok((_, true)) => presence_event(
                    out,
                    now,
                    &device,
                    PresenceEvent::Active,
                    json!({"last_seen": seen}),
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
            }
        }
    }
}

fn publish(out: &mut Vec<Effect>, topic: String, payload: Value) {
    out.push(Effect::Publish { topic, payload });
}

fn finished(out: &mut Vec<Effect>, c: Command) {
    if c.status.is_final() {
        out.push(Effect::Finished(c));
    }
}

fn reject(out: &mut Vec<Effect>, topic: String, code: u16, message: &str, token: Option<Value>) {
    let mut doc = json!({"code": code, "message": message});
    with_token(&mut doc, token);
    publish(out, topic, doc);
}

/// A store failure, reported to the device as a 500 rejection.
fn storage_error(out: &mut Vec<Effect>, topic: String, token: Option<Value>) {
    reject(out, topic, 500, "storage error", token);
}

/// `$events/devices/{id}/{what}`.
fn presence_event(
    out: &mut Vec<Effect>,
    now: u64,
    device: &str,
    what: PresenceEvent,
    extra: Value,
) {
    let mut doc = json!({"device_id": device, "event": what.as_str(), "time": now});
    if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
        d.extend(e);
    }
    publish(out, device_topics::presence(device, what), doc);
}

fn client_token(payload: &Bytes) -> Option<Value> {
    if payload.is_empty() {
        return None;
    }
    serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v.get("clientToken").cloned())
}

fn with_token(doc: &mut Value, token: Option<Value>) {
    if let (Some(t), Some(d)) = (token, doc.as_object_mut()) {
        d.insert("clientToken".into(), t);
    }
}

/// `{"state": {"reported"?, "desired"?}, "version"?, "clientToken"?}`.
fn parse_update(doc: &Value) -> Result<TwinUpdate, String> {
    let Some(obj) = doc.as_object() else {
        return Err("expected a JSON object".into());
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "state" | "version" | "clientToken") {
            return Err(format!("unknown field {k:?}"));
        }
    }
    let state = match obj.get("state") {
        Some(Value::Object(s)) => s.clone(),
        Some(_) => return Err("state: expected an object".into()),
        None => Map::new(),
    };
    for k in state.keys() {
        if !matches!(k.as_str(), "reported" | "desired") {
            return Err(format!("state.{k}: expected reported or desired"));
        }
    }
    let expected_version = match obj.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| "version: expected a non-negative integer".to_string())?,
        ),
    };
    Ok(TwinUpdate {
        desired: state.get("desired").cloned(),
        reported: state.get("reported").cloned(),
        expected_version,
    })
}

/// Whether a subscription filter receives the device's commands.
fn commands_filter(device: &str, filter: &str) -> bool {
    if filter.starts_with("$share/") {
        return false;
    }
    mqtt_proto::topic::matches(filter, &device_topics::command(device, "probe"))
}
