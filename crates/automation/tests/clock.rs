//! The rules engine takes its time from the clock it is given: rule
//! records, alarms raised by a rule's action on a worker thread, and an
//! operator's acknowledgement all carry the `ManualClock`'s time, never the
//! wall clock's. The broker is a `Bus` that records what the engine
//! publishes; the stores are the real ones in a temp dir.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automation::{Automation, AutomationConfig, RuleQueues};
use broker::bus::{Bus, RuleSink};
use broker::{StoredMessage, TapMessage, Time};
use iot_types::{ManualClock, Timestamp};
use serde_json::{json, Value};

/// Long before any wall-clock reading this test could run at.
const START: u64 = 1_000_000;

/// The broker as the engine sees it: publishes go to a channel.
struct Recorder(Mutex<mpsc::Sender<StoredMessage>>);

impl Bus for Recorder {
    fn publish(&self, message: StoredMessage) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(message);
    }
    fn is_connected(&self, _principal: &str) -> bool {
        false
    }
    fn activity(&self) -> Vec<(String, Time)> {
        Vec::new()
    }
    fn set_dynamic_taps(&self, _filters: Vec<String>) {}
}

struct Setup {
    _dir: tempfile::TempDir,
    automation: Arc<Automation>,
    clock: Arc<ManualClock>,
    published: mpsc::Receiver<StoredMessage>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let alarms = Arc::new(alarms::AlarmStore::open(&p.join("alarms.redb")).unwrap());
    let outbox = Arc::new(alarms::Outbox::open(&p.join("outbox.redb"), 100, 1 << 20).unwrap());
    let registry =
        Arc::new(registry::Registry::open(&p.join("registry.redb"), Default::default()).unwrap());
    let (tx, published) = mpsc::channel();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let automation = Automation::open(
        &p.join("rules.redb"),
        alarms,
        outbox,
        None,
        None,
        registry,
        Recorder(Mutex::new(tx)),
        AutomationConfig::default(),
        clock.clone(),
    )
    .unwrap();
    Setup {
        _dir: dir,
        automation,
        clock,
        published,
    }
}

fn telemetry(device: &str, payload: Value) -> TapMessage {
    TapMessage {
        client_id: device.into(),
        principal: Some(device.to_string()),
        message: Arc::new(StoredMessage::platform_json(
            iot_types::device_topics::telemetry(device),
            serde_json::to_vec(&payload).unwrap(),
        )),
        for_services: false,
        for_rules: true,
        for_streams: false,
    }
}

/// The next alarm event the engine published.
fn alarm_event(published: &mpsc::Receiver<StoredMessage>) -> Value {
    loop {
        let m = published
            .recv_timeout(Duration::from_secs(10))
            .expect("an alarm event");
        if m.topic.starts_with("$events/alarms/") {
            return serde_json::from_slice(&m.payload).unwrap();
        }
    }
}

#[test]
fn rule_records_carry_the_given_clock() {
    let s = setup();
    let def = json!({"name": "hot", "sql": "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 90", "actions": []});
    let v = s.automation.save(&def, true).unwrap();
    assert_eq!((v.created_ms, v.updated_ms), (START, START));
    s.clock.advance(Duration::from_secs(5));
    let v = s.automation.set_enabled("hot", false).unwrap();
    assert_eq!((v.created_ms, v.updated_ms), (START, START + 5000));
}

#[test]
fn alarms_raised_and_acknowledged_at_the_given_clock() {
    let s = setup();
    s.automation
        .save(
            &json!({
                "name": "hot",
                "sql": "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 90",
                "actions": [{"type": "alarm", "alarm_type": "overheat", "severity": "critical"}]
            }),
            true,
        )
        .unwrap();
    let queues = RuleQueues::new(1, 16);
    let workers = s.automation.spawn(queues.clone()).unwrap();
    s.clock.advance(Duration::from_secs(1));
    assert!(queues.offer(telemetry("m1", json!({"temp": 95}))));
    let raised = alarm_event(&s.published);
    assert_eq!(raised["event"], "raised");
    assert_eq!(raised["alarm"]["first_raised"], START + 1000);

    s.clock.advance(Duration::from_secs(9));
    let id = raised["alarm"]["id"].as_str().unwrap();
    let acked = s.automation.acknowledge_alarm(id, "operator").unwrap();
    assert_eq!(acked.acknowledged_ms, Some(START + 10_000));
    let event = alarm_event(&s.published);
    assert_eq!(event["event"], "acknowledged");
    assert_eq!(event["alarm"]["acknowledged"], START + 10_000);

    queues.close();
    workers.join();
}
