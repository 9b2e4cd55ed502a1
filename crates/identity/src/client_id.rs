//! Which MQTT client ids a registered device may use.
//!
//! A client id names a session, and a session belongs to one principal
//! (the broker refuses a CONNECT whose client id another principal holds).
//! On top of that, the platform ties a device's client ids to its device
//! id, so that no device can squat the id another device will use.

use serde::Deserialize;

/// The setting `mqtt.client_id_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdPolicy {
    /// The device id itself, or `{id}-...` / `{id}/...` (AWS IoT's usual
    /// policy: one device may run several clients, each named after it).
    #[default]
    DeviceId,
    /// The device id followed by any separator of `-/_.:@` and anything.
    Prefix,
    /// Any client id that no other principal holds.
    AnyOwned,
}

impl ClientIdPolicy {
    /// Whether device `device` may connect with `client_id` (the empty
    /// client id, which the broker replaces with one it assigns, only
    /// under `AnyOwned`).
    pub fn allows(self, device: &str, client_id: &str) -> bool {
        match self {
            ClientIdPolicy::AnyOwned => true,
            ClientIdPolicy::DeviceId => suffix_after(device, client_id, &['-', '/']),
            ClientIdPolicy::Prefix => {
                suffix_after(device, client_id, &['-', '/', '_', '.', ':', '@'])
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ClientIdPolicy::DeviceId => "device_id",
            ClientIdPolicy::Prefix => "prefix",
            ClientIdPolicy::AnyOwned => "any_owned",
        }
    }
}

/// `client_id` is `device`, or `device` + one of `seps` + at least one more
/// character.
fn suffix_after(device: &str, client_id: &str, seps: &[char]) -> bool {
    match client_id.strip_prefix(device) {
        Some("") => true,
        Some(rest) => {
            let mut chars = rest.chars();
            chars.next().is_some_and(|c| seps.contains(&c)) && chars.next().is_some()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_policy() {
        let p = ClientIdPolicy::DeviceId;
        assert!(p.allows("press-7", "press-7"));
        assert!(p.allows("press-7", "press-7-ota"));
        assert!(p.allows("press-7", "press-7/shadow"));
        assert!(!p.allows("press-7", "press-70"));
        assert!(!p.allows("press-7", "press-7-"));
        assert!(!p.allows("press-7", "press-7_x"));
        assert!(!p.allows("press-7", "press-8"));
        assert!(!p.allows("press-7", ""));
        assert!(!p.allows("press-7", "mosq-abc"));
    }

    #[test]
    fn prefix_and_any() {
        assert!(ClientIdPolicy::Prefix.allows("p", "p_1"));
        assert!(ClientIdPolicy::Prefix.allows("p", "p@site"));
        assert!(!ClientIdPolicy::Prefix.allows("p", "px"));
        assert!(ClientIdPolicy::AnyOwned.allows("p", "anything"));
        assert!(ClientIdPolicy::AnyOwned.allows("p", ""));
    }
}
