//! Topic aliases toward a client (v5), applied by the connection's writer
//! at encode time, so an alias is only ever relied on after the packet that
//! set it was actually written.

use crate::fast::HashMap;

use mqtt_proto::{ByteString, Publish};

/// Per-connection map of topics to the aliases we assigned.
#[derive(Debug, Default)]
pub struct OutboundAliases {
    max: u16,
    by_topic: HashMap<ByteString, u16>,
    next: u16,
}

impl OutboundAliases {
    /// `max` is the smaller of the client's Topic Alias Maximum and ours.
    pub fn new(max: u16) -> OutboundAliases {
        OutboundAliases {
            max,
            by_topic: HashMap::default(),
            next: 1,
        }
    }

    /// Rewrites a PUBLISH to use an alias: the first time a topic is seen
    /// (while aliases remain) it is sent in full with a new alias; after
    /// that with the alias and an empty topic. Once all aliases are used,
    /// other topics go out in full.
    pub fn apply(&mut self, p: &mut Publish) {
        if self.max == 0 {
            return;
        }
        if let Some(&alias) = self.by_topic.get(&p.topic) {
            p.properties.topic_alias = Some(alias);
            p.topic = ByteString::new();
            return;
        }
        if self.next <= self.max {
            let alias = self.next;
            self.next += 1;
            self.by_topic.insert(p.topic.clone(), alias);
            p.properties.topic_alias = Some(alias);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_then_reuses() {
        let mut a = OutboundAliases::new(1);
        let mut p = Publish {
            topic: "a/b".into(),
            ..Publish::default()
        };
        a.apply(&mut p);
        assert_eq!(
            (p.topic.as_ref(), p.properties.topic_alias),
            ("a/b", Some(1))
        );
        let mut p2 = Publish {
            topic: "a/b".into(),
            ..Publish::default()
        };
        a.apply(&mut p2);
        assert_eq!(
            (p2.topic.as_ref(), p2.properties.topic_alias),
            ("", Some(1))
        );
        let mut p3 = Publish {
            topic: "c".into(),
            ..Publish::default()
        };
        a.apply(&mut p3);
        assert_eq!((p3.topic.as_ref(), p3.properties.topic_alias), ("c", None));
    }
}
