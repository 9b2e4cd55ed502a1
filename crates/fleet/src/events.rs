//! The event thread: device messages, acknowledgements and presence
//! changes from the broker, in order; and the periodic scan (activity,
//! inactivity, command deadlines).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use broker::{StoredMessage, TapMessage};
use broker_net::PlatformEvent;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use twin::{CommandStatus, TwinUpdate};

use crate::{lock, Fleet, LiveDevice, NAMESPACE};
use iot_types::device_topics::{self, DeviceTopic, PresenceEvent, TwinTopic};

impl Fleet {
    /// Runs the fleet: one thread handles events in order until the
    /// channel closes, another runs the periodic scan. Provisioning
    /// requests are passed on to `provisioning` (dropped with a log line
    /// when it is full).
    pub fn spawn(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::Receiver<PlatformEvent>,
        provisioning: tokio::sync::mpsc::Sender<TapMessage>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        match self.store.reset_presence(self.now()) {
            Ok(reset) => {
                for (device, _) in &reset {
                    self.event(
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
        let stop = Arc::new(AtomicBool::new(false));
        let scanner = {
            let fleet = self.clone();
            let stop = stop.clone();
            let every = Duration::from_millis(self.config.scan_interval_ms.max(10));
            std::thread::Builder::new()
                .name("fleet-scan".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(every);
                        fleet.scan();
                    }
                })?
        };
        let fleet = self.clone();
        std::thread::Builder::new()
            .name("fleet".into())
            .spawn(move || {
                while let Some(ev) = events.blocking_recv() {
                    match ev {
                        PlatformEvent::Tap(t)
                            if t.message.topic.starts_with(device_topics::PROVISION_PREFIX) =>
                        {
                            if provisioning.try_send(t).is_err() {
                                tracing::warn!("provisioning queue full; request dropped");
                            }
                        }
                        other => fleet.handle(other),
                    }
                }
                stop.store(true, Ordering::Relaxed);
                let _ = scanner.join();
                // Callers waiting for a command get their answer now (the
                // command as it stands) instead of at their timeout.
                lock(&fleet.waiters).clear();
            })
    }

    /// Handles one event (public for tests).
    pub fn handle(&self, ev: PlatformEvent) {
        match ev {
            PlatformEvent::Tap(t) => self.on_message(&t),
            PlatformEvent::Subscribed { principal, filters } => {
                if filters.iter().any(|f| commands_filter(&principal, f)) {
                    let since = lock(&self.live).get(&principal).map(|d| d.connected_at_ms);
                    if let Some(since) = since {
                        self.send_pending(&principal, since);
                    }
                }
            }
            PlatformEvent::Acked { topic, .. } => {
                if let Some(DeviceTopic::Command { device, command }) = device_topics::parse(&topic)
                {
                    let now = self.now();
                    match self
                        .store
                        .update_command(NAMESPACE, device, command, |c| c.mark_delivered(now))
                    {
                        Ok(Ok(_)) | Ok(Err(_)) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, device, command, "cannot record delivery")
                        }
                    }
                }
            }
            PlatformEvent::Presence(p) => {
                if p.principal.starts_with("claim:") {
                    return;
                }
                if p.connected {
                    self.on_connected(
                        &p.principal,
                        &p.peer,
                        p.protocol,
                        &p.client_id,
                        &p.subscriptions,
                    );
                } else {
                    self.on_disconnected(&p.principal, p.reason, &p.client_id);
                }
            }
        }
    }

    fn on_message(&self, t: &TapMessage) {
        let payload = &t.message.payload;
        match device_topics::parse(&t.message.topic) {
            Some(DeviceTopic::Twin {
                device,
                name,
                topic: TwinTopic::Get,
            }) => self.twin_get(device, name, payload),
            Some(DeviceTopic::Twin {
                device,
                name,
                topic: TwinTopic::Update,
            }) => self.twin_update(device, name, payload),
            Some(DeviceTopic::CommandResponse { device, command }) => {
                self.command_response(device, command, payload)
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- twins

    fn twin_get(&self, device: &str, name: &str, payload: &Bytes) {
        let topic = |t| device_topics::twin(device, name, t);
        let token = client_token(payload);
        if let Err(e) = twin::validate_twin_name(name) {
            self.reject(&topic(TwinTopic::GetRejected), 400, &e.to_string(), token);
            return;
        }
        match self.store.get_twin(NAMESPACE, device, name) {
            Ok(t) => {
                let mut doc = twin::document(&t.unwrap_or_default());
                with_token(&mut doc, token);
                self.publish(topic(TwinTopic::GetAccepted), &doc);
            }
            Err(e) => {
                tracing::warn!(error = %e, device, "cannot read twin");
                self.reject(&topic(TwinTopic::GetRejected), 500, "storage error", token);
            }
        }
    }

    fn twin_update(&self, device: &str, name: &str, payload: &Bytes) {
        let topic = |t| device_topics::twin(device, name, t);
        let rejected = topic(TwinTopic::UpdateRejected);
        let doc: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                self.reject(&rejected, 400, &format!("payload is not JSON: {e}"), None);
                return;
            }
        };
        let token = doc.get("clientToken").cloned();
        if let Err(e) = twin::validate_twin_name(name) {
            self.reject(&rejected, 400, &e.to_string(), token);
            return;
        }
        let update = match parse_update(&doc) {
            Ok(u) => u,
            Err(msg) => {
                self.reject(&rejected, 400, &msg, token);
                return;
            }
        };
        self.apply_update(device, name, &update, token);
    }

    /// Applies an update and publishes its consequences; the API calls it
    /// too (desired changes).
    pub(crate) fn apply_update(
        &self,
        device: &str,
        name: &str,
        update: &TwinUpdate,
        token: Option<Value>,
    ) -> Option<Result<twin::Twin, twin::UpdateError>> {
        let topic = |t| device_topics::twin(device, name, t);
        let now = self.now();
        match self.store.update_twin(
            NAMESPACE,
            device,
            name,
            update,
            &self.config.twin_limits,
            now,
        ) {
            Ok(Ok((previous, current))) => {
                let mut doc = twin::document(&current);
                with_token(&mut doc, token);
                self.publish(topic(TwinTopic::UpdateAccepted), &doc);
                if update.desired.is_some() && !current.delta().is_empty() {
                    self.publish(topic(TwinTopic::Delta), &twin::delta_document(&current));
                }
                self.publish(
                    topic(TwinTopic::Documents),
                    &json!({
                        "previous": twin::document(&previous),
                        "current": twin::document(&current),
                        "timestamp": now,
                    }),
                );
                Some(Ok(current))
            }
            Ok(Err(e)) => {
                self.reject(
                    &topic(TwinTopic::UpdateRejected),
                    e.code(),
                    &e.to_string(),
                    token,
                );
                Some(Err(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, device, "cannot store twin update");
                self.reject(
                    &topic(TwinTopic::UpdateRejected),
                    500,
                    "storage error",
                    token,
                );
                None
            }
        }
    }

    fn reject(&self, topic: &str, code: u16, message: &str, token: Option<Value>) {
        let mut doc = json!({"code": code, "message": message});
        with_token(&mut doc, token);
        self.publish(topic.to_string(), &doc);
    }

    // ------------------------------------------------------------- commands

    fn command_response(&self, device: &str, command: &str, payload: &Bytes) {
        let response: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let now = self.now();
        match self.store.update_command(NAMESPACE, device, command, |c| {
            // A device may answer before its PUBACK reaches us (paho
            // acknowledges after its callback): the answer proves the
            // delivery.
            if c.status == CommandStatus::Sent {
                c.mark_delivered(now)?;
            }
            c.respond(&response, now)
        }) {
            Ok(Ok(c)) => self.notify(&c),
            Ok(Err(e)) => tracing::debug!(device, command, error = %e, "response ignored"),
            Err(e) => {
                tracing::debug!(device, command, error = %e, "response to an unknown command")
            }
        }
    }

    /// Sends a queued command now (the device is connected).
    pub(crate) fn send_command(&self, c: &twin::Command) {
        let topic = device_topics::command(&c.device_id, &c.id);
        let now = self.now();
        if c.status == CommandStatus::Queued {
            match self
                .store
                .update_command(NAMESPACE, &c.device_id, &c.id, |c| c.mark_sent(now))
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(e) => {
                    tracing::warn!(error = %e, command = %c.id, "cannot mark command sent");
                    return;
                }
            }
        }
        self.publish(topic, &c.message());
    }

    pub(crate) fn notify(&self, c: &twin::Command) {
        if !c.status.is_final() {
            return;
        }
        let waiting = lock(&self.waiters).remove(&c.id);
        for w in waiting.into_iter().flatten() {
            let _ = w.send(c.clone());
        }
    }

    // ------------------------------------------------------------- presence

    fn on_connected(
        &self,
        device: &str,
        peer: &str,
        protocol: &str,
        client_id: &str,
        subscriptions: &[String],
    ) {
        let now = self.now();
        let device_type = self
            .registry
            .get_device(NAMESPACE, device)
            .ok()
            .flatten()
            .map(|d| d.device_type)
            .unwrap_or_default();
        lock(&self.live).insert(
            device.to_string(),
            LiveDevice {
                connected_at_ms: now,
                last_seen_ms: now,
                device_type,
                inactive: false,
            },
        );
        match self.store.update_presence(NAMESPACE, device, |p| {
            p.connected(Some(peer), protocol, now)
        }) {
            Ok((_, true)) => self.event(
                device,
                PresenceEvent::Connected,
                json!({"address": peer, "protocol": protocol, "client_id": client_id}),
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
        }
        // A resumed session that already subscribed to its commands gets
        // them now; otherwise they go when it subscribes (sending before
        // would reach no subscriber).
        if subscriptions.iter().any(|f| commands_filter(device, f)) {
            self.send_pending(device, now);
        }
    }

    /// Sends the device's queued commands in order, and again those sent
    /// during an earlier connection (before `since`) and never
    /// acknowledged.
    fn send_pending(&self, device: &str, since: u64) {
        match self.store.pending_commands(NAMESPACE, device) {
            Ok(pending) => {
                for c in &pending {
                    let resend = c.status == CommandStatus::Sent
                        && c.sent_at_ms().is_some_and(|t| t < since);
                    if c.status == CommandStatus::Queued || resend {
                        self.send_command(c);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, device, "cannot read pending commands"),
        }
    }

    fn on_disconnected(&self, device: &str, reason: &str, client_id: &str) {
        let now = self.now();
        match self
            .store
            .update_presence(NAMESPACE, device, |p| p.disconnected(reason, now))
        {
            Ok((p, changed)) => {
                if p.connections == 0 {
                    lock(&self.live).remove(device);
                }
                if changed {
                    self.event(
                        device,
                        PresenceEvent::Disconnected,
                        json!({"reason": reason, "client_id": client_id}),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
        }
    }

    /// The periodic scan: activity from the broker, inactivity, command
    /// deadlines.
    pub fn scan(&self) {
        let now = self.now();
        match self.store.expire_commands(now) {
            Ok(changed) => {
                for c in &changed {
                    self.notify(c);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot expire commands"),
        }
        {
            let mut last = lock(&self.last_prune_ms);
            if now.saturating_sub(*last) >= 600_000 {
                *last = now;
                match self
                    .store
                    .prune_commands(now, self.config.command_retention_ms)
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(commands = n, "pruned finished commands"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune commands"),
                }
            }
        }
        let activity = self.handle.activity();
        let mut changes = Vec::new();
        {
            let mut live = lock(&self.live);
            for (principal, seen) in activity {
                if let Some(d) = live.get_mut(&principal) {
                    d.last_seen_ms = d.last_seen_ms.max(seen);
                }
            }
            for (device, d) in live.iter_mut() {
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
        }
        for (device, inactive, seen, timeout) in changes {
            let r = self.store.update_presence(NAMESPACE, &device, |p| {
                if inactive {
                    p.check_inactive(timeout, now)
                } else {
                    p.seen(seen)
                }
            });
            match r {
                Ok((_, true)) if inactive => self.event(
                    &device,
                    PresenceEvent::Inactive,
                    json!({"last_seen": seen, "timeout_ms": timeout}),
                ),
                Ok((_, true)) => {
                    self.event(&device, PresenceEvent::Active, json!({"last_seen": seen}))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, device, "cannot record presence"),
            }
        }
    }

    /// Publishes `$events/devices/{id}/{what}`.
    pub(crate) fn event(&self, device: &str, what: PresenceEvent, extra: Value) {
        let mut doc = json!({"device_id": device, "event": what.as_str(), "time": self.now()});
        if let (Some(d), Value::Object(e)) = (doc.as_object_mut(), extra) {
            d.extend(e);
        }
        self.publish(device_topics::presence(device, what), &doc);
    }

    pub(crate) fn publish(&self, topic: String, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap_or_default();
        self.handle
            .publish(StoredMessage::platform_json(topic, body));
    }
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
pub(crate) fn parse_update(doc: &Value) -> Result<TwinUpdate, String> {
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
