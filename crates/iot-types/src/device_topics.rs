//! The device topic contract (docs/devices.md, PRODUCT.md "Device
//! contract"): the one place that knows how its topics are spelled.
//!
//! | topic | direction |
//! |---|---|
//! | `devices/{id}/telemetry` | device -> platform |
//! | `devices/{id}/twin[/{name}]/{get,update}` | device -> platform |
//! | `devices/{id}/twin[/{name}]/{get,update}/{accepted,rejected}` | platform -> device |
//! | `devices/{id}/twin[/{name}]/{delta,documents}` | platform -> device, subscribers |
//! | `devices/{id}/commands/{cmd_id}` | platform -> device |
//! | `devices/{id}/commands/{cmd_id}/response` | device -> platform |
//! | `$events/devices/{id}/{connected,disconnected,inactive,active}` | platform -> subscribers |
//! | `$events/alarms/{id}/{alarm type}` | platform -> subscribers |
//! | `$provision/{client id}/{request,accepted,rejected}` | both |
//!
//! [`parse`] reads a topic name into a [`DeviceTopic`] that borrows from it
//! (no allocation, fit for the publish path); the formatters ([`telemetry`],
//! [`twin`], [`command`], ... or [`DeviceTopic`]'s `Display`) write one.
//! `parse(&t.to_string()) == Some(t)` for every topic whose levels are
//! non-empty and free of `/`, `+` and `#` and whose twin name is not one of
//! the contract's words ([`is_reserved_twin_name`]).
//!
//! The parser checks the shape, not the registry's id rule: a device level
//! is any non-empty level without wildcards; [`crate::DeviceId::new`]
//! checks the rule where it matters.

use std::fmt;

/// The root of the devices' tree.
pub const DEVICES: &str = "devices";
/// Telemetry of every device.
pub const TELEMETRY_FILTER: &str = "devices/+/telemetry";
/// Every twin topic of every device.
pub const TWIN_FILTER: &str = "devices/+/twin/#";
/// Commands sent to every device.
pub const COMMAND_FILTER: &str = "devices/+/commands/+";
/// Every device's command responses.
pub const COMMAND_RESPONSE_FILTER: &str = "devices/+/commands/+/response";
/// Presence events of every device.
pub const PRESENCE_FILTER: &str = "$events/devices/+/+";
/// Provisioning requests of every client.
pub const PROVISION_REQUEST_FILTER: &str = "$provision/+/request";
/// The prefix of the provisioning exchange.
pub const PROVISION_PREFIX: &str = "$provision/";

/// A topic of the device contract, borrowing its levels from the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTopic<'a> {
    /// `devices/{id}/telemetry`.
    Telemetry { device: &'a str },
    /// `devices/{id}/twin[/{name}]/...`; `name` is `""` for the device's
    /// main twin.
    Twin {
        device: &'a str,
        name: &'a str,
        topic: TwinTopic,
    },
    /// `devices/{id}/commands/{cmd_id}`.
    Command { device: &'a str, command: &'a str },
    /// `devices/{id}/commands/{cmd_id}/response`.
    CommandResponse { device: &'a str, command: &'a str },
    /// `$events/devices/{id}/{event}`.
    Presence {
        device: &'a str,
        event: PresenceEvent,
    },
    /// `$events/alarms/{id}/{alarm type}` (the type may hold `/`).
    Alarm {
        device: &'a str,
        alarm_type: &'a str,
    },
    /// `$provision/{client id}/{step}`: keyed by MQTT client id, since the
    /// device may not exist yet.
    Provision {
        client_id: &'a str,
        step: ProvisionStep,
    },
}

/// The twin topic after `devices/{id}/twin[/{name}]/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TwinTopic {
    /// Device asks for its document.
    Get,
    /// Device reports (or sets desired).
    Update,
    GetAccepted,
    GetRejected,
    UpdateAccepted,
    UpdateRejected,
    /// Desired fields that differ from reported.
    Delta,
    /// Previous and current document after every accepted change.
    Documents,
}

impl TwinTopic {
    pub const ALL: [TwinTopic; 8] = [
        TwinTopic::Get,
        TwinTopic::Update,
        TwinTopic::GetAccepted,
        TwinTopic::GetRejected,
        TwinTopic::UpdateAccepted,
        TwinTopic::UpdateRejected,
        TwinTopic::Delta,
        TwinTopic::Documents,
    ];

    /// The levels after the twin prefix, e.g. `get/accepted`.
    pub fn suffix(self) -> &'static str {
        match self {
            TwinTopic::Get => "get",
            TwinTopic::Update => "update",
            TwinTopic::GetAccepted => "get/accepted",
            TwinTopic::GetRejected => "get/rejected",
            TwinTopic::UpdateAccepted => "update/accepted",
            TwinTopic::UpdateRejected => "update/rejected",
            TwinTopic::Delta => "delta",
            TwinTopic::Documents => "documents",
        }
    }

    pub fn from_suffix(s: &str) -> Option<TwinTopic> {
        TwinTopic::ALL.into_iter().find(|t| t.suffix() == s)
    }

    /// A request a device publishes (`get`, `update`).
    pub fn is_request(self) -> bool {
        matches!(self, TwinTopic::Get | TwinTopic::Update)
    }
}

/// What a presence event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceEvent {
    Connected,
    Disconnected,
    Inactive,
    Active,
}

impl PresenceEvent {
    pub const ALL: [PresenceEvent; 4] = [
        PresenceEvent::Connected,
        PresenceEvent::Disconnected,
        PresenceEvent::Inactive,
        PresenceEvent::Active,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PresenceEvent::Connected => "connected",
            PresenceEvent::Disconnected => "disconnected",
            PresenceEvent::Inactive => "inactive",
            PresenceEvent::Active => "active",
        }
    }

    pub fn parse(s: &str) -> Option<PresenceEvent> {
        PresenceEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// The step of a provisioning exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvisionStep {
    Request,
    Accepted,
    Rejected,
}

impl ProvisionStep {
    pub const ALL: [ProvisionStep; 3] = [
        ProvisionStep::Request,
        ProvisionStep::Accepted,
        ProvisionStep::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProvisionStep::Request => "request",
            ProvisionStep::Accepted => "accepted",
            ProvisionStep::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ProvisionStep> {
        ProvisionStep::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Levels that are words of the contract, never twin names (a twin named
/// `get` would make `devices/{id}/twin/get/accepted` ambiguous).
pub fn is_reserved_twin_name(name: &str) -> bool {
    matches!(
        name,
        "" | "get" | "update" | "delta" | "documents" | "accepted" | "rejected"
    )
}

/// Whether `s` can stand as one id level of a contract topic (a device
/// id, a client id in `$provision/{client id}/...`, a command id, a twin
/// name): not empty, no `/`, no wildcard.
pub fn is_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#'])
}

impl<'a> DeviceTopic<'a> {
    /// See [`parse`].
    pub fn parse(topic: &'a str) -> Option<DeviceTopic<'a>> {
        parse(topic)
    }

    /// The device the topic is about (`None` for provisioning, which is
    /// about a client id).
    pub fn device(&self) -> Option<&'a str> {
        match *self {
            DeviceTopic::Telemetry { device }
            | DeviceTopic::Twin { device, .. }
            | DeviceTopic::Command { device, .. }
            | DeviceTopic::CommandResponse { device, .. }
            | DeviceTopic::Presence { device, .. }
            | DeviceTopic::Alarm { device, .. } => Some(device),
            DeviceTopic::Provision { .. } => None,
        }
    }
}

/// The contract topic `topic` is, or `None` (any other topic, a filter
/// with wildcards, an empty level where an id belongs, a twin named by a
/// reserved word).
pub fn parse(topic: &str) -> Option<DeviceTopic<'_>> {
    if let Some(rest) = topic.strip_prefix("devices/") {
        return parse_device_tree(rest);
    }
    if let Some(rest) = topic.strip_prefix("$events/devices/") {
        let (device, event) = rest.split_once('/')?;
        let event = PresenceEvent::parse(event)?;
        return is_level(device).then_some(DeviceTopic::Presence { device, event });
    }
    if let Some(rest) = topic.strip_prefix("$events/alarms/") {
        let (device, alarm_type) = rest.split_once('/')?;
        let ok = is_level(device)
            && !alarm_type.is_empty()
            && !alarm_type.contains(['+', '#'])
            && alarm_type.split('/').all(|l| !l.is_empty());
        return ok.then_some(DeviceTopic::Alarm { device, alarm_type });
    }
    if let Some(rest) = topic.strip_prefix(PROVISION_PREFIX) {
        let (client_id, step) = rest.split_once('/')?;
        let step = ProvisionStep::parse(step)?;
        return is_level(client_id).then_some(DeviceTopic::Provision { client_id, step });
    }
    None
}

fn parse_device_tree(rest: &str) -> Option<DeviceTopic<'_>> {
    let (device, rest) = rest.split_once('/')?;
    if !is_level(device) {
        return None;
    }
    if rest == "telemetry" {
        return Some(DeviceTopic::Telemetry { device });
    }
    if let Some(rest) = rest.strip_prefix("twin/") {
        if let Some(topic) = TwinTopic::from_suffix(rest) {
            return Some(DeviceTopic::Twin {
                device,
                name: "",
                topic,
            });
        }
        let (name, rest) = rest.split_once('/')?;
        if is_reserved_twin_name(name) || !is_level(name) {
            return None;
        }
        let topic = TwinTopic::from_suffix(rest)?;
        return Some(DeviceTopic::Twin {
            device,
            name,
            topic,
        });
    }
    let rest = rest.strip_prefix("commands/")?;
    match rest.split_once('/') {
        None => is_level(rest).then_some(DeviceTopic::Command {
            device,
            command: rest,
        }),
        Some((command, "response")) => {
            is_level(command).then_some(DeviceTopic::CommandResponse { device, command })
        }
        Some(_) => None,
    }
}

/// The device whose tree (`devices/{id}` or `devices/{id}/...`) holds
/// `topic`, if its id level is not empty. Any topic of the tree counts,
/// including ones the contract does not name (`devices/{id}/ota/...`).
pub fn device_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("devices/")?;
    let id = rest.split('/').next().unwrap_or("");
    (!id.is_empty()).then_some(id)
}

/// Whether a topic or filter lies in the devices' tree (`devices` or
/// `devices/...`), where only a device itself and the platform may go.
pub fn in_device_tree(topic: &str) -> bool {
    topic == DEVICES || topic.starts_with("devices/")
}

/// The device of a `devices/{id}/telemetry` topic.
pub fn telemetry_device(topic: &str) -> Option<&str> {
    match parse_device_tree(topic.strip_prefix("devices/")?)? {
        DeviceTopic::Telemetry { device } => Some(device),
        _ => None,
    }
}

/// `devices/{id}/telemetry`.
pub fn telemetry(device: &str) -> String {
    format!("devices/{device}/telemetry")
}

/// `devices/{id}/twin` or `devices/{id}/twin/{name}` (`name` empty for the
/// main twin): the prefix of a twin's topics.
pub fn twin_prefix(device: &str, name: &str) -> String {
    if name.is_empty() {
        format!("devices/{device}/twin")
    } else {
        format!("devices/{device}/twin/{name}")
    }
}

/// `devices/{id}/twin[/{name}]/{suffix}`.
pub fn twin(device: &str, name: &str, topic: TwinTopic) -> String {
    format!("{}/{}", twin_prefix(device, name), topic.suffix())
}

/// `devices/{id}/twin/delta`: what a device hears when desired changes.
pub fn twin_delta(device: &str) -> String {
    twin(device, "", TwinTopic::Delta)
}

/// `devices/{id}/twin/update`: where a device reports.
pub fn twin_update(device: &str) -> String {
    twin(device, "", TwinTopic::Update)
}

/// `devices/{id}/twin/get`: where a device asks for its document.
pub fn twin_get(device: &str) -> String {
    twin(device, "", TwinTopic::Get)
}

/// `devices/{id}/commands/{cmd_id}`.
pub fn command(device: &str, command: &str) -> String {
    format!("devices/{device}/commands/{command}")
}

/// `devices/{id}/commands/{cmd_id}/response`.
pub fn command_response(device: &str, command: &str) -> String {
    format!("devices/{device}/commands/{command}/response")
}

/// `$events/devices/{id}/{event}`.
pub fn presence(device: &str, event: PresenceEvent) -> String {
    format!("$events/devices/{device}/{}", event.as_str())
}

/// `$events/alarms/{id}/{alarm type}`.
pub fn alarm(device: &str, alarm_type: &str) -> String {
    format!("$events/alarms/{device}/{alarm_type}")
}

/// `$provision/{client id}/{step}`.
pub fn provision(client_id: &str, step: ProvisionStep) -> String {
    format!("{PROVISION_PREFIX}{client_id}/{}", step.as_str())
}

/// `devices/{id}/#`: a device's whole tree (its default grant).
pub fn device_tree_filter(device: &str) -> String {
    format!("devices/{device}/#")
}

/// `$provision/{client id}/+`: the replies of a client's exchange.
pub fn provision_replies_filter(client_id: &str) -> String {
    format!("{PROVISION_PREFIX}{client_id}/+")
}

/// Writes the topic.
impl fmt::Display for DeviceTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DeviceTopic::Telemetry { device } => write!(f, "devices/{device}/telemetry"),
            DeviceTopic::Twin {
                device,
                name: "",
                topic,
            } => write!(f, "devices/{device}/twin/{}", topic.suffix()),
            DeviceTopic::Twin {
                device,
                name,
                topic,
            } => write!(f, "devices/{device}/twin/{name}/{}", topic.suffix()),
            DeviceTopic::Command { device, command } => {
                write!(f, "devices/{device}/commands/{command}")
            }
            DeviceTopic::CommandResponse { device, command } => {
                write!(f, "devices/{device}/commands/{command}/response")
            }
            DeviceTopic::Presence { device, event } => {
                write!(f, "$events/devices/{device}/{}", event.as_str())
            }
            DeviceTopic::Alarm { device, alarm_type } => {
                write!(f, "$events/alarms/{device}/{alarm_type}")
            }
            DeviceTopic::Provision { client_id, step } => {
                write!(f, "{PROVISION_PREFIX}{client_id}/{}", step.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests;
