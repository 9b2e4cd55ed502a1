//! Carrying out actions (and rendering them for dry runs).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use broker::StoredMessage;
use bytes::Bytes;
use mqtt_proto::QoS;
use serde_json::{json, Value};

use super::Automation;
use crate::actions::{Action, ActionResult};
use crate::core::{Loaded, HOP};
use crate::NAMESPACE;

impl Automation {
    /// What an action would do, rendered, for dry runs.
    pub(super) fn describe(&self, a: &Action, rule: &str, e: &rules::Evaluation) -> Value {
        match a {
            Action::Republish { topic, payload, .. } => json!({
                "type": "republish", "topic": rules::render(topic, e),
                "payload": payload.as_ref().map(|p| rules::render_json(p, e)).unwrap_or_else(|| Value::Object(e.outputs.clone())),
            }),
            Action::Store {
                metric,
                value,
                device,
            } => json!({
                "type": "store", "metric": metric, "value": rules::render(value, e),
                "device": device.as_ref().map(|d| rules::render(d, e)).or_else(|| e.device_id.clone()),
            }),
            Action::Twin { name, desired } => {
                json!({"type": "twin", "device": e.device_id, "name": name, "desired": rules::render_json(desired, e)})
            }
            Action::Command { method, params, .. } => {
                json!({"type": "command", "device": e.device_id, "method": method, "params": rules::render_json(params, e)})
            }
            Action::Webhook { url, body, .. } => {
                json!({"type": "webhook", "url": url, "body": self.webhook_body(body.as_ref(), rule, e)})
            }
            Action::Alarm {
                alarm_type,
                severity,
                details,
                auto_clear,
            } => json!({
                "type": "alarm", "device": e.device_id, "alarm_type": alarm_type, "severity": severity.as_str(),
                "details": details.as_ref().map(|d| rules::render_json(d, e)).unwrap_or_else(|| Value::Object(e.outputs.clone())),
                "auto_clear": auto_clear,
            }),
            Action::ClearAlarm { alarm_type } => {
                json!({"type": "clear_alarm", "device": e.device_id, "alarm_type": alarm_type})
            }
        }
    }

    pub(super) fn run_with_retries(
        &self,
        l: &Loaded,
        a: &Action,
        e: &rules::Evaluation,
        hops: u32,
        now: u64,
    ) -> ActionResult {
        let mut attempt = 0;
        loop {
            let r = self.run(l, a, e, hops, now);
            // Webhooks retry through the outbox; refusals of the input
            // (no device, bad value) would fail again.
            let retryable = !r.ok
                && !matches!(a, Action::Webhook { .. })
                && r.detail.get("retry").and_then(Value::as_bool) != Some(false);
            if !retryable || attempt >= self.config.action_retries {
                return r;
            }
            attempt += 1;
        }
    }

    fn run(
        &self,
        l: &Loaded,
        a: &Action,
        e: &rules::Evaluation,
        hops: u32,
        now: u64,
    ) -> ActionResult {
        let kind = a.kind();
        let no_retry = |msg: &str| ActionResult {
            kind,
            ok: false,
            detail: json!({"error": msg, "retry": false}),
        };
        let device = e.device_id.clone();
        match a {
            Action::Republish {
                topic,
                payload,
                qos,
                retain,
            } => {
                let topic = rules::render(topic, e);
                if topic.is_empty() || !mqtt_proto::topic::valid_topic_name(&topic) {
                    return no_retry(&format!("invalid topic {topic:?}"));
                }
                let body = payload
                    .as_ref()
                    .map(|p| rules::render_json(p, e))
                    .unwrap_or_else(|| Value::Object(e.outputs.clone()));
                let bytes = match &body {
                    Value::String(s) => s.clone().into_bytes(),
                    other => serde_json::to_vec(other).unwrap_or_default(),
                };
                self.bus.publish(StoredMessage {
                    topic: topic.clone().into(),
                    payload: Bytes::from(bytes),
                    qos: if *qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    },
                    retain: *retain,
                    payload_format_indicator: Some(true),
                    content_type: None,
                    response_topic: None,
                    correlation_data: None,
                    user_properties: vec![(HOP.into(), (hops + 1).to_string().into())],
                    expires_at: None,
                });
                ActionResult::ok(kind, json!({"topic": topic}))
            }
            Action::Store {
                metric,
                value,
                device: dev,
            } => {
                let Some(db) = &self.tsdb else {
                    return no_retry("no telemetry store");
                };
                let target = dev
                    .as_ref()
                    .map(|d| rules::render(d, e))
                    .or(device)
                    .unwrap_or_default();
                if target.is_empty() {
                    return no_retry("no device for the point");
                }
                let rendered = rules::render(value, e);
                let Ok(v) = rendered.trim().parse::<f64>() else {
                    return no_retry(&format!("value {rendered:?} is not a number"));
                };
                let point = tsdb::WritePoint {
                    series: Arc::new(tsdb::SeriesKey::new(NAMESPACE, &target, metric)),
                    ts: now as i64,
                    value: tsdb::Value::F64(v),
                };
                match db.write(&[point]) {
                    Ok(()) => ActionResult::ok(
                        kind,
                        json!({"device": target, "metric": metric, "value": v}),
                    ),
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::Twin { name, desired } => {
                let (Some(f), Some(d)) = (&self.fleet, device) else {
                    return no_retry("no device (or no twin service)");
                };
                match f.update_desired(&d, name, rules::render_json(desired, e), None) {
                    Ok(Ok(doc)) => {
                        ActionResult::ok(kind, json!({"device": d, "version": doc.get("version")}))
                    }
                    Ok(Err(err)) => no_retry(&err.to_string()),
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::Command {
                method,
                params,
                timeout_ms,
                ttl_ms,
            } => {
                let (Some(f), Some(d)) = (&self.fleet, device) else {
                    return no_retry("no device (or no command service)");
                };
                let new = twin::NewCommand {
                    method: method.clone(),
                    params: rules::render_json(params, e),
                    timeout_ms: *timeout_ms,
                    ttl_ms: *ttl_ms,
                };
                match f.create_command(&d, new, true, false) {
                    Ok((c, _)) => ActionResult::ok(kind, json!({"device": d, "command": c.id})),
                    Err(fleet::FleetError::Storage(s)) => ActionResult::failed(kind, s),
                    Err(err) => no_retry(&err.to_string()),
                }
            }
            Action::Webhook { url, body, headers } => {
                let body = self.webhook_body(body.as_ref(), &l.name, e);
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                match self.outbox.push(url, &bytes, headers.clone(), &l.name, now) {
                    Ok(id) => {
                        crate::webhook::notify(&self.wake);
                        ActionResult::ok(kind, json!({"queued": id, "url": url}))
                    }
                    Err(err) => {
                        self.outbox_full.fetch_add(1, Ordering::Relaxed);
                        ActionResult::failed(kind, err)
                    }
                }
            }
            Action::Alarm {
                alarm_type,
                severity,
                details,
                ..
            } => {
                let Some(d) = device else {
                    return no_retry("no device to raise the alarm on");
                };
                let details = details
                    .as_ref()
                    .map(|x| rules::render_json(x, e))
                    .unwrap_or_else(|| Value::Object(e.outputs.clone()));
                match self.alarms.raise(
                    NAMESPACE,
                    &d,
                    alarm_type,
                    *severity,
                    details,
                    Some(&l.name),
                    now,
                ) {
                    Ok(change) => {
                        let id = self.publish_change(&change);
                        ActionResult::ok(kind, json!({"device": d, "alarm": id}))
                    }
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::ClearAlarm { alarm_type } => {
                let Some(d) = device else {
                    return no_retry("no device");
                };
                self.clear_alarm(l, &d, alarm_type, now)
            }
        }
    }

    pub(super) fn clear_alarm(
        &self,
        l: &Loaded,
        device: &str,
        alarm_type: &str,
        now: u64,
    ) -> ActionResult {
        match self.alarms.clear_active(
            NAMESPACE,
            device,
            alarm_type,
            &format!("rule:{}", l.name),
            now,
        ) {
            Ok(Some(change)) => {
                let id = self.publish_change(&change);
                ActionResult::ok("clear_alarm", json!({"device": device, "alarm": id}))
            }
            Ok(None) => ActionResult::ok("clear_alarm", json!({"device": device, "alarm": null})),
            Err(err) => ActionResult::failed("clear_alarm", err),
        }
    }

    fn webhook_body(&self, body: Option<&Value>, rule: &str, e: &rules::Evaluation) -> Value {
        match body {
            Some(b) => rules::render_json(b, e),
            None => json!({
                "rule": rule,
                "device_id": e.device_id,
                "group": e.group,
                "outputs": Value::Object(e.outputs.clone()),
                "time": self.now(),
            }),
        }
    }
}
