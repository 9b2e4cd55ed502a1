//! Stored values, version 1. Each is a private serde struct stored with
//! `kv::Versioned`, a JSON object whose first field is `"v": 1`; keys (namespace, device id, twin name,
//! command sequence) live in the table key, not in the value. The public
//! domain types have no serde derives: this is an internal format, and
//! the API renders its own DTOs.

use kv::Record;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::commands::{command_id, Command, CommandStatus};
use crate::document::Twin;
use crate::error::TwinError;
use crate::presence::{Presence, PresenceState};

/// The value format version written by this binary.
pub(crate) const VALUE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TwinRec {
    pub desired: Map<String, Value>,
    pub reported: Map<String, Value>,
    pub meta_desired: Map<String, Value>,
    pub meta_reported: Map<String, Value>,
    pub version: u64,
    pub updated_at_ms: u64,
}

impl Record for TwinRec {
    const KIND: &'static str = "twin";
    const VERSION: u32 = VALUE_VERSION;
}

impl TwinRec {
    pub(crate) fn from_twin(t: &Twin) -> TwinRec {
        TwinRec {
            desired: t.desired.clone(),
            reported: t.reported.clone(),
            meta_desired: t.meta_desired.clone(),
            meta_reported: t.meta_reported.clone(),
            version: t.version,
            updated_at_ms: t.updated_at_ms,
        }
    }

    pub(crate) fn into_twin(self) -> Twin {
        Twin {
            desired: self.desired,
            reported: self.reported,
            meta_desired: self.meta_desired,
            meta_reported: self.meta_reported,
            version: self.version,
            updated_at_ms: self.updated_at_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommandRec {
    pub method: String,
    pub params: Value,
    /// [`CommandStatus::as_str`].
    pub status: String,
    pub trail: Vec<(String, u64)>,
    pub created_at_ms: u64,
    pub timeout_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub response: Option<Value>,
    pub error: Option<String>,
}

fn status(s: &str) -> Result<CommandStatus, TwinError> {
    CommandStatus::parse(s)
        .ok_or_else(|| TwinError::Storage(format!("unknown command status {s:?}")))
}

impl Record for CommandRec {
    const KIND: &'static str = "command";
    const VERSION: u32 = VALUE_VERSION;
}

impl CommandRec {
    pub(crate) fn from_command(c: &Command) -> CommandRec {
        CommandRec {
            method: c.method.clone(),
            params: c.params.clone(),
            status: c.status.as_str().to_string(),
            trail: c
                .trail
                .iter()
                .map(|(s, t)| (s.as_str().to_string(), *t))
                .collect(),
            created_at_ms: c.created_at_ms,
            timeout_ms: c.timeout_ms,
            expires_at_ms: c.expires_at_ms,
            response: c.response.clone(),
            error: c.error.clone(),
        }
    }

    pub(crate) fn into_command(
        self,
        ns: &str,
        device: &str,
        seq: u64,
    ) -> Result<Command, TwinError> {
        let trail = self
            .trail
            .iter()
            .map(|(s, t)| Ok((status(s)?, *t)))
            .collect::<Result<Vec<_>, TwinError>>()?;
        Ok(Command {
            namespace: ns.to_string(),
            device_id: device.to_string(),
            id: command_id(seq),
            seq,
            method: self.method,
            params: self.params,
            status: status(&self.status)?,
            trail,
            created_at_ms: self.created_at_ms,
            timeout_ms: self.timeout_ms,
            expires_at_ms: self.expires_at_ms,
            response: self.response,
            error: self.error,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PresenceRec {
    /// [`PresenceState::as_str`].
    pub state: String,
    pub last_connected_ms: Option<u64>,
    pub last_disconnected_ms: Option<u64>,
    pub last_seen_ms: Option<u64>,
    pub address: Option<String>,
    pub protocol: Option<String>,
    pub last_reason: Option<String>,
    pub connections: u32,
}

impl Record for PresenceRec {
    const KIND: &'static str = "presence";
    const VERSION: u32 = VALUE_VERSION;
}

impl PresenceRec {
    pub(crate) fn from_presence(p: &Presence) -> PresenceRec {
        PresenceRec {
            state: p.state.as_str().to_string(),
            last_connected_ms: p.last_connected_ms,
            last_disconnected_ms: p.last_disconnected_ms,
            last_seen_ms: p.last_seen_ms,
            address: p.address.clone(),
            protocol: p.protocol.clone(),
            last_reason: p.last_reason.clone(),
            connections: p.connections,
        }
    }

    pub(crate) fn into_presence(self) -> Result<Presence, TwinError> {
        let state = PresenceState::parse(&self.state).ok_or_else(|| {
            TwinError::Storage(format!("unknown presence state {:?}", self.state))
        })?;
        Ok(Presence {
            state,
            last_connected_ms: self.last_connected_ms,
            last_disconnected_ms: self.last_disconnected_ms,
            last_seen_ms: self.last_seen_ms,
            address: self.address,
            protocol: self.protocol,
            last_reason: self.last_reason,
            connections: self.connections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::NewCommand;
    use kv::Versioned;
    use serde_json::json;

    #[test]
    fn round_trips_carry_the_version() {
        let mut c = Command::queued(
            "ns",
            "d",
            7,
            NewCommand {
                method: "m".into(),
                params: json!({"a": 1}),
                timeout_ms: 5,
                ttl_ms: Some(9),
            },
            1,
        );
        c.mark_sent(2).unwrap();
        let bytes = Versioned::encode(&CommandRec::from_command(&c)).unwrap();
        assert!(bytes.starts_with(b"{\"v\":1,"));
        let back = Versioned::<CommandRec>::decode(&bytes)
            .map_err(TwinError::from)
            .unwrap()
            .into_command("ns", "d", 7)
            .unwrap();
        assert_eq!(back, c);

        let mut p = Presence::default();
        p.connected(Some("a"), "mqtt/5", 3);
        let bytes = Versioned::encode(&PresenceRec::from_presence(&p)).unwrap();
        let back = Versioned::<PresenceRec>::decode(&bytes)
            .map_err(TwinError::from)
            .unwrap()
            .into_presence()
            .unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn newer_or_corrupt_values_are_storage_errors() {
        let newer = br#"{"v":2,"state":"online"}"#;
        let e = Versioned::<PresenceRec>::decode(newer)
            .map_err(TwinError::from)
            .unwrap_err();
        assert!(matches!(e, TwinError::Storage(m) if m.contains("version 2")));
        assert!(Versioned::<PresenceRec>::decode(b"{")
            .map_err(TwinError::from)
            .is_err());
        let odd = PresenceRec {
            state: "dancing".into(),
            ..PresenceRec::from_presence(&Presence::default())
        };
        assert!(matches!(odd.into_presence(), Err(TwinError::Storage(_))));
    }
}
