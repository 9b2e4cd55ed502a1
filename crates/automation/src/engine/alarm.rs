//! Alarm glue: alarm changes published as `$events/alarms/...`, operator
//! acknowledgements and clears, the JSON form of an alarm.

use broker::StoredMessage;
use serde_json::{json, Map, Value};

use super::Automation;
use crate::{AutomationError, NAMESPACE};

impl Automation {
    /// Publishes an alarm change on `$events/alarms/{device}/{type}`;
    /// returns the alarm id.
    pub(crate) fn publish_change(&self, change: &alarms::Change) -> String {
        let (event, alarm) = match change {
            alarms::Change::Raised(a) => ("raised", a),
            alarms::Change::Updated(a) => ("updated", a),
            alarms::Change::Acknowledged(a) => ("acknowledged", a),
            alarms::Change::Cleared(a) => ("cleared", a),
            alarms::Change::Unchanged(a) => return a.id.clone(),
        };
        let doc = json!({"event": event, "alarm": alarm_json(alarm)});
        self.bus.publish(StoredMessage::platform_json(
            iot_types::device_topics::alarm(&alarm.device_id, &alarm.alarm_type),
            serde_json::to_vec(&doc).unwrap_or_default(),
        ));
        alarm.id.clone()
    }

    pub fn alarms(&self) -> &alarms::AlarmStore {
        &self.alarms
    }

    /// Acknowledges an alarm (by a user), publishing the change.
    pub fn acknowledge_alarm(&self, id: &str, by: &str) -> Result<alarms::Alarm, AutomationError> {
        let change = self.alarms.acknowledge(NAMESPACE, id, by, self.now())?;
        self.publish_change(&change);
        Ok(change_alarm(change))
    }

    /// Clears an alarm (by a user), publishing the change.
    pub fn clear_alarm_by(&self, id: &str, by: &str) -> Result<alarms::Alarm, AutomationError> {
        let change = self.alarms.clear(NAMESPACE, id, by, self.now())?;
        self.publish_change(&change);
        Ok(change_alarm(change))
    }
}

fn change_alarm(c: alarms::Change) -> alarms::Alarm {
    match c {
        alarms::Change::Raised(a)
        | alarms::Change::Updated(a)
        | alarms::Change::Acknowledged(a)
        | alarms::Change::Cleared(a)
        | alarms::Change::Unchanged(a) => a,
    }
}

/// The JSON form of an alarm (events and the API).
pub fn alarm_json(a: &alarms::Alarm) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id));
    m.insert("device_id".into(), json!(a.device_id));
    m.insert("type".into(), json!(a.alarm_type));
    m.insert("severity".into(), json!(a.severity.as_str()));
    m.insert("state".into(), json!(a.state.as_str()));
    m.insert("details".into(), a.details.clone());
    m.insert("count".into(), json!(a.count));
    m.insert("first_raised".into(), json!(a.first_raised_ms));
    m.insert("last_raised".into(), json!(a.last_raised_ms));
    m.insert("acknowledged_by".into(), json!(a.acknowledged_by));
    m.insert("acknowledged".into(), json!(a.acknowledged_ms));
    m.insert("cleared_by".into(), json!(a.cleared_by));
    m.insert("cleared".into(), json!(a.cleared_ms));
    m.insert("rule".into(), json!(a.rule));
    Value::Object(m)
}
