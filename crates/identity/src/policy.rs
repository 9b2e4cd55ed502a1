//! The device ACL policy: every device may read and write its own
//! `devices/{id}/#` tree; extra rules apply per device type or group, with
//! `{id}` / `%u` (device id) and `%c` (client id) templates; rate limits
//! per device type.

use std::collections::HashMap;

use broker::{Grant, GrantRule, RateLimits};
use iot_types::device_topics::{self, ProvisionStep};

/// An extra rule from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Applies to devices of this type only (`None`: any type).
    pub device_type: Option<String>,
    /// Applies to devices in this group only (`None`: any group).
    pub group: Option<String>,
    pub read: bool,
    pub write: bool,
    /// Topic filter template: `{id}`, `%u`, `%c` are substituted.
    pub topic: String,
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ACL rule {index} ({topic:?}): {message}")]
pub struct PolicyError {
    pub index: usize,
    pub topic: String,
    pub message: String,
}

/// Rules and limits for devices.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<AclRule>,
    default_limits: RateLimits,
    type_limits: HashMap<String, RateLimits>,
}

impl Policy {
    /// Checks every rule's template (a valid filter once substituted).
    pub fn new(
        rules: Vec<AclRule>,
        default_limits: RateLimits,
        type_limits: HashMap<String, RateLimits>,
    ) -> Result<Policy, PolicyError> {
        for (index, r) in rules.iter().enumerate() {
            let sample = fill(&r.topic, "dev", "client");
            if !mqtt_proto::topic::valid_topic_filter(&sample) {
                return Err(PolicyError {
                    index,
                    topic: r.topic.clone(),
                    message: "not a valid topic filter".into(),
                });
            }
            if !r.read && !r.write {
                return Err(PolicyError {
                    index,
                    topic: r.topic.clone(),
                    message: "grants neither read nor write".into(),
                });
            }
        }
        Ok(Policy {
            rules,
            default_limits,
            type_limits,
        })
    }

    /// The grant of a device connected with `client_id`.
    pub fn device_grant(&self, device: &registry::Device, client_id: &str) -> Grant {
        let mut rules = vec![GrantRule {
            filter: device_topics::device_tree_filter(&device.id),
            read: true,
            write: true,
        }];
        let client_wild = client_id.contains(['+', '#', '/']);
        for r in &self.rules {
            if r.device_type
                .as_ref()
                .is_some_and(|t| *t != device.device_type)
            {
                continue;
            }
            if r.group.as_ref().is_some_and(|g| !device.groups.contains(g)) {
                continue;
            }
            // A client id with wildcards must not widen a rule.
            if client_wild && r.topic.contains("%c") {
                continue;
            }
            rules.push(GrantRule {
                filter: fill(&r.topic, &device.id, client_id),
                read: r.read,
                write: r.write,
            });
        }
        Grant {
            principal: device.id.clone(),
            rules,
            limits: self
                .type_limits
                .get(&device.device_type)
                .copied()
                .unwrap_or(self.default_limits),
        }
    }
}

fn fill(template: &str, id: &str, client_id: &str) -> String {
    template
        .replace("{id}", id)
        .replace("%u", id)
        .replace("%c", client_id)
}

/// The grant of a client holding a claim credential: its own provisioning
/// exchange only.
pub(crate) fn claim_grant(claim_id: &str, client_id: &str) -> Grant {
    Grant {
        principal: format!("claim:{claim_id}"),
        rules: vec![
            GrantRule {
                filter: device_topics::provision(client_id, ProvisionStep::Request),
                read: false,
                write: true,
            },
            GrantRule {
                filter: device_topics::provision_replies_filter(client_id),
                read: true,
                write: false,
            },
        ],
        limits: RateLimits {
            messages_per_sec: 5,
            bytes_per_sec: 64 * 1024,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker::AclAction;

    fn device(id: &str, ty: &str, groups: &[&str]) -> registry::Device {
        registry::Device {
            namespace: "default".into(),
            id: id.into(),
            name: id.into(),
            device_type: ty.into(),
            labels: Default::default(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            metadata: Default::default(),
            enabled: true,
            firmware_version: None,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn default_tree_and_extra_rules() {
        let rules = vec![
            AclRule {
                device_type: Some("press".into()),
                group: None,
                read: true,
                write: false,
                topic: "plant/presses/#".into(),
            },
            AclRule {
                device_type: None,
                group: Some("line-1".into()),
                read: false,
                write: true,
                topic: "lines/1/{id}/status".into(),
            },
        ];
        let p = Policy::new(rules, RateLimits::default(), HashMap::new()).unwrap();
        let g = p.device_grant(&device("p1", "press", &["line-1"]), "p1");
        assert!(g.allows("devices/p1/telemetry", AclAction::Write));
        assert!(!g.allows("devices/p2/telemetry", AclAction::Write));
        assert!(g.allows("plant/presses/p9/state", AclAction::Read));
        assert!(!g.allows("plant/presses/p9/state", AclAction::Write));
        assert!(g.allows("lines/1/p1/status", AclAction::Write));
        assert!(!g.allows("lines/1/p2/status", AclAction::Write));
        let other = p.device_grant(&device("s1", "sensor", &[]), "s1");
        assert!(!other.allows("plant/presses/p9/state", AclAction::Read));
        assert!(!other.allows("lines/1/s1/status", AclAction::Write));
    }

    #[test]
    fn bad_rule_refused() {
        let rules = vec![AclRule {
            device_type: None,
            group: None,
            read: true,
            write: true,
            topic: "a/#/b".into(),
        }];
        assert!(Policy::new(rules, RateLimits::default(), HashMap::new()).is_err());
    }

    #[test]
    fn type_limits() {
        let mut t = HashMap::new();
        let slow = RateLimits {
            messages_per_sec: 1,
            bytes_per_sec: 100,
        };
        t.insert("meter".to_string(), slow);
        let p = Policy::new(vec![], RateLimits::default(), t).unwrap();
        assert_eq!(p.device_grant(&device("m", "meter", &[]), "m").limits, slow);
        assert_eq!(
            p.device_grant(&device("x", "press", &[]), "x").limits,
            RateLimits::default()
        );
    }
}
