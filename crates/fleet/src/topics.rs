//! Parsing the device-side topics the fleet handles.

/// A device topic the fleet acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceTopic<'a> {
    TwinGet {
        device: &'a str,
        name: &'a str,
    },
    TwinUpdate {
        device: &'a str,
        name: &'a str,
    },
    CommandResponse {
        device: &'a str,
        command: &'a str,
    },
    /// `devices/{id}/commands/{cmd}`: acknowledged by the device.
    Command {
        device: &'a str,
        command: &'a str,
    },
}

/// Recognises `devices/{id}/twin[/{name}]/{get,update}`,
/// `devices/{id}/commands/{cmd}[/response]`; anything else is `None`
/// (including the platform's own replies).
pub fn parse_device_topic(topic: &str) -> Option<DeviceTopic<'_>> {
    let levels: Vec<&str> = topic.split('/').collect();
    match levels.as_slice() {
        ["devices", device, "twin", "get"] => Some(DeviceTopic::TwinGet { device, name: "" }),
        ["devices", device, "twin", "update"] => Some(DeviceTopic::TwinUpdate { device, name: "" }),
        ["devices", device, "twin", name, "get"] if !reserved(name) => {
            Some(DeviceTopic::TwinGet { device, name })
        }
        ["devices", device, "twin", name, "update"] if !reserved(name) => {
            Some(DeviceTopic::TwinUpdate { device, name })
        }
        ["devices", device, "commands", command, "response"] => {
            Some(DeviceTopic::CommandResponse { device, command })
        }
        ["devices", device, "commands", command] => Some(DeviceTopic::Command { device, command }),
        _ => None,
    }
    .filter(|t| match t {
        DeviceTopic::TwinGet { device, .. }
        | DeviceTopic::TwinUpdate { device, .. }
        | DeviceTopic::CommandResponse { device, .. }
        | DeviceTopic::Command { device, .. } => !device.is_empty(),
    })
}

/// Levels that are topic words, never twin names.
fn reserved(name: &str) -> bool {
    matches!(
        name,
        "" | "get" | "update" | "delta" | "documents" | "accepted" | "rejected"
    )
}

/// The topic prefix of a twin: `devices/{id}/twin` or
/// `devices/{id}/twin/{name}`.
pub(crate) fn twin_prefix(device: &str, name: &str) -> String {
    if name.is_empty() {
        format!("devices/{device}/twin")
    } else {
        format!("devices/{device}/twin/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(
            parse_device_topic("devices/d1/twin/get"),
            Some(DeviceTopic::TwinGet {
                device: "d1",
                name: ""
            })
        );
        assert_eq!(
            parse_device_topic("devices/d1/twin/config/update"),
            Some(DeviceTopic::TwinUpdate {
                device: "d1",
                name: "config"
            })
        );
        assert_eq!(parse_device_topic("devices/d1/twin/get/accepted"), None);
        assert_eq!(parse_device_topic("devices/d1/twin/update/rejected"), None);
        assert_eq!(parse_device_topic("devices/d1/twin/delta"), None);
        assert_eq!(
            parse_device_topic("devices/d1/commands/c1/response"),
            Some(DeviceTopic::CommandResponse {
                device: "d1",
                command: "c1"
            })
        );
        assert_eq!(
            parse_device_topic("devices/d1/commands/c1"),
            Some(DeviceTopic::Command {
                device: "d1",
                command: "c1"
            })
        );
        assert_eq!(parse_device_topic("devices//twin/get"), None);
        assert_eq!(parse_device_topic("devices/d1/telemetry"), None);
    }
}
