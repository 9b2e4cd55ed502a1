//! Stored values, version 1. Each is a private serde struct stored with
//! `kv::Versioned`, a JSON object whose first field is `"v": 1`; keys (namespace, alarm sequence, outbox id)
//! live in the table key, not in the value, and an outbox entry's body is
//! stored raw in its own table. The public types have no serde derives:
//! this is an internal format, and the API renders its own DTOs.

use kv::Record;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alarm::{alarm_id, Alarm, AlarmState, Severity};
use crate::error::AlarmError;
use crate::outbox::OutboxEntry;

/// The value format version written by this binary.
pub(crate) const VALUE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AlarmRec {
    pub device_id: String,
    pub alarm_type: String,
    /// [`Severity::as_str`].
    pub severity: String,
    /// [`AlarmState::as_str`].
    pub state: String,
    pub details: Value,
    pub count: u64,
    pub first_raised_ms: u64,
    pub last_raised_ms: u64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_ms: Option<u64>,
    pub cleared_by: Option<String>,
    pub cleared_ms: Option<u64>,
    pub rule: Option<String>,
}

impl Record for AlarmRec {
    const KIND: &'static str = "alarm";
    const VERSION: u32 = VALUE_VERSION;
}

impl AlarmRec {
    pub(crate) fn from_alarm(a: &Alarm) -> AlarmRec {
        AlarmRec {
            device_id: a.device_id.clone(),
            alarm_type: a.alarm_type.clone(),
            severity: a.severity.as_str().to_string(),
            state: a.state.as_str().to_string(),
            details: a.details.clone(),
            count: a.count,
            first_raised_ms: a.first_raised_ms,
            last_raised_ms: a.last_raised_ms,
            acknowledged_by: a.acknowledged_by.clone(),
            acknowledged_ms: a.acknowledged_ms,
            cleared_by: a.cleared_by.clone(),
            cleared_ms: a.cleared_ms,
            rule: a.rule.clone(),
        }
    }

    pub(crate) fn into_alarm(self, ns: &str, seq: u64) -> Result<Alarm, AlarmError> {
        let severity = Severity::parse(&self.severity)
            .ok_or_else(|| AlarmError::Storage(format!("unknown severity {:?}", self.severity)))?;
        let state = AlarmState::parse(&self.state)
            .ok_or_else(|| AlarmError::Storage(format!("unknown alarm state {:?}", self.state)))?;
        Ok(Alarm {
            namespace: ns.to_string(),
            id: alarm_id(seq),
            device_id: self.device_id,
            alarm_type: self.alarm_type,
            severity,
            state,
            details: self.details,
            count: self.count,
            first_raised_ms: self.first_raised_ms,
            last_raised_ms: self.last_raised_ms,
            acknowledged_by: self.acknowledged_by,
            acknowledged_ms: self.acknowledged_ms,
            cleared_by: self.cleared_by,
            cleared_ms: self.cleared_ms,
            rule: self.rule,
        })
    }
}

/// An outbox entry without its id (the key) and body (stored raw).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutboxRec {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub rule: String,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub created_ms: u64,
    pub last_error: Option<String>,
}

impl Record for OutboxRec {
    const KIND: &'static str = "outbox entry";
    const VERSION: u32 = VALUE_VERSION;
}

impl OutboxRec {
    #[cfg(test)]
    pub(crate) fn from_entry(e: &OutboxEntry) -> OutboxRec {
        OutboxRec {
            target: e.target.clone(),
            headers: e.headers.clone(),
            rule: e.rule.clone(),
            attempts: e.attempts,
            next_attempt_ms: e.next_attempt_ms,
            created_ms: e.created_ms,
            last_error: e.last_error.clone(),
        }
    }

    pub(crate) fn into_entry(self, id: u64, body: Vec<u8>) -> OutboxEntry {
        OutboxEntry {
            id,
            target: self.target,
            body,
            headers: self.headers,
            rule: self.rule,
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
            created_ms: self.created_ms,
            last_error: self.last_error,
        }
    }

    /// What the entry counts against the outbox's byte bound, given its
    /// body length: see [`OutboxEntry::size`].
    pub(crate) fn size(&self, body_len: usize) -> usize {
        crate::outbox::entry_size(&self.target, body_len, &self.headers, &self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv::Versioned;
    use serde_json::json;

    #[test]
    fn round_trips_carry_the_version() {
        let mut a = Alarm::new(
            "ns",
            7,
            "d",
            "hot",
            Severity::Minor,
            json!({"t": 90}),
            Some("r"),
            1,
        );
        a = a.acknowledged("ann", 2).into_alarm();
        let bytes = Versioned::encode(&AlarmRec::from_alarm(&a)).unwrap();
        assert!(bytes.starts_with(b"{\"v\":1,"));
        let back = Versioned::<AlarmRec>::decode(&bytes)
            .map_err(AlarmError::from)
            .unwrap()
            .into_alarm("ns", 7)
            .unwrap();
        assert_eq!(back, a);

        let e = OutboxEntry {
            id: 3,
            target: "http://x".into(),
            body: b"{}".to_vec(),
            headers: vec![("a".into(), "b".into())],
            rule: "r".into(),
            attempts: 2,
            next_attempt_ms: 9,
            created_ms: 1,
            last_error: Some("refused".into()),
        };
        let bytes = Versioned::encode(&OutboxRec::from_entry(&e)).unwrap();
        let back = Versioned::<OutboxRec>::decode(&bytes)
            .map_err(AlarmError::from)
            .unwrap()
            .into_entry(3, b"{}".to_vec());
        assert_eq!(back, e);
    }

    #[test]
    fn newer_or_corrupt_values_are_storage_errors() {
        let e = Versioned::<AlarmRec>::decode(br#"{"v":2}"#)
            .map_err(AlarmError::from)
            .unwrap_err();
        assert!(matches!(e, AlarmError::Storage(m) if m.contains("version 2")));
        assert!(Versioned::<AlarmRec>::decode(b"{")
            .map_err(AlarmError::from)
            .is_err());
        let a = Alarm::new("ns", 1, "d", "t", Severity::Major, json!(null), None, 1);
        let odd = AlarmRec {
            state: "open".into(),
            ..AlarmRec::from_alarm(&a)
        };
        assert!(matches!(
            odd.into_alarm("ns", 1),
            Err(AlarmError::Storage(_))
        ));
        let odd = AlarmRec {
            severity: "dire".into(),
            ..AlarmRec::from_alarm(&a)
        };
        assert!(matches!(
            odd.into_alarm("ns", 1),
            Err(AlarmError::Storage(_))
        ));
    }
}
