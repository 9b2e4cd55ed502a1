//! The subscription tree: topic filters split into levels, with `+` and `#`
//! as their own branches, so a PUBLISH is matched by walking only the
//! branches its topic can reach, never by scanning every subscription.

use std::collections::HashMap;

use mqtt_proto::{ByteString, SubscriptionOptions};

/// Index of a session in the broker's session table.
pub(crate) type SessionIdx = u32;

/// One subscription as the tree keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubEntry {
    pub session: SessionIdx,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
    /// The share group for `$share/{group}/{filter}` subscriptions.
    pub group: Option<ByteString>,
    /// The filter without any `$share/{group}/` prefix.
    pub filter: ByteString,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Subscriptions whose filter ends here.
    exact: Vec<SubEntry>,
    /// Subscriptions whose filter ends with `#` right after this level.
    multi: Vec<SubEntry>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }
}

/// The subscription tree.
#[derive(Debug, Default)]
pub(crate) struct SubTree {
    root: Node,
    len: usize,
}

impl SubTree {
    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds or replaces the subscription of `entry.session` to
    /// `entry.filter` in `entry.group`. Returns true if it replaced one.
    pub fn insert(&mut self, entry: SubEntry) -> bool {
        let filter = entry.filter.clone();
        let list = self.slot(&filter);
        if let Some(existing) = list
            .iter_mut()
            .find(|e| e.session == entry.session && e.group == entry.group)
        {
            *existing = entry;
            return true;
        }
        list.push(entry);
        self.len += 1;
        false
    }

    /// Removes a session's subscription to a filter. Returns true if found.
    pub fn remove(&mut self, session: SessionIdx, filter: &str, group: Option<&str>) -> bool {
        let removed = remove_rec(
            &mut self.root,
            filter.split('/').collect::<Vec<_>>().as_slice(),
            session,
            group,
        );
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The list a filter's subscriptions live in, created on the way.
    fn slot(&mut self, filter: &str) -> &mut Vec<SubEntry> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return &mut node.multi;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        &mut node.exact
    }

    /// Appends every subscription matching `topic` to `out`.
    pub fn matches<'a>(&'a self, topic: &str, out: &mut Vec<&'a SubEntry>) {
        let dollar = topic.starts_with('$');
        let levels: Vec<&str> = topic.split('/').collect();
        match_rec(&self.root, &levels, 0, dollar, out);
    }
}

fn match_rec<'a>(
    node: &'a Node,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    out: &mut Vec<&'a SubEntry>,
) {
    let wildcards_allowed = !(depth == 0 && dollar);
    if wildcards_allowed {
        out.extend(node.multi.iter());
    }
    let Some((level, rest)) = levels.split_first() else {
        out.extend(node.exact.iter());
        return;
    };
    if let Some(child) = node.children.get(*level) {
        match_rec(child, rest, depth + 1, dollar, out);
    }
    if wildcards_allowed {
        if let Some(plus) = &node.plus {
            match_rec(plus, rest, depth + 1, dollar, out);
        }
    }
}

fn remove_rec(node: &mut Node, levels: &[&str], session: SessionIdx, group: Option<&str>) -> bool {
    let take = |list: &mut Vec<SubEntry>| {
        let before = list.len();
        list.retain(|e| !(e.session == session && e.group.as_deref() == group));
        before != list.len()
    };
    match levels {
        [] => take(&mut node.exact),
        ["#"] => take(&mut node.multi),
        [level, rest @ ..] => {
            let (removed, now_empty) = if *level == "+" {
                match node.plus.as_deref_mut() {
                    Some(child) => {
                        let r = remove_rec(child, rest, session, group);
                        (r, child.is_empty())
                    }
                    None => return false,
                }
            } else {
                match node.children.get_mut(*level) {
                    Some(child) => {
                        let r = remove_rec(child, rest, session, group);
                        (r, child.is_empty())
                    }
                    None => return false,
                }
            };
            if now_empty {
                if *level == "+" {
                    node.plus = None;
                } else {
                    node.children.remove(*level);
                }
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_proto::topic;
    use proptest::prelude::*;

    fn entry(session: SessionIdx, filter: &str) -> SubEntry {
        SubEntry {
            session,
            options: SubscriptionOptions::default(),
            subscription_id: None,
            group: None,
            filter: filter.into(),
        }
    }

    fn sessions(tree: &SubTree, topic: &str) -> Vec<SessionIdx> {
        let mut out = Vec::new();
        tree.matches(topic, &mut out);
        let mut v: Vec<_> = out.iter().map(|e| e.session).collect();
        v.sort();
        v
    }

    #[test]
    fn basic_matching() {
        let mut t = SubTree::default();
        t.insert(entry(1, "a/b"));
        t.insert(entry(2, "a/+"));
        t.insert(entry(3, "a/#"));
        t.insert(entry(4, "#"));
        t.insert(entry(5, "+/b"));
        assert_eq!(sessions(&t, "a/b"), vec![1, 2, 3, 4, 5]);
        assert_eq!(sessions(&t, "a"), vec![3, 4]);
        assert_eq!(sessions(&t, "$SYS/b"), Vec::<u32>::new());
        assert!(t.remove(3, "a/#", None));
        assert!(!t.remove(3, "a/#", None));
        assert_eq!(sessions(&t, "a"), vec![4]);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn replace_keeps_one() {
        let mut t = SubTree::default();
        assert!(!t.insert(entry(1, "x")));
        assert!(t.insert(entry(1, "x")));
        assert_eq!(t.len(), 1);
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("$s".to_string())
        ]
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..4),
            any::<bool>(),
        )
            .prop_map(|(mut levels, hash)| {
                if hash {
                    levels.push("#".into());
                }
                levels.join("/")
            })
    }

    proptest! {
        /// The tree agrees with the plain matcher for every filter/topic.
        #[test]
        fn agrees_with_naive_matcher(
            filters in proptest::collection::vec(filter_strategy(), 1..20),
            topics in proptest::collection::vec(proptest::collection::vec(level(), 1..5), 1..20),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut t = SubTree::default();
            let mut live: Vec<(u32, String)> = Vec::new();
            for (i, f) in filters.iter().enumerate() {
                t.insert(entry(i as u32, f));
                live.push((i as u32, f.clone()));
            }
            for r in removals {
                if live.is_empty() { break; }
                let (s, f) = live.remove(r.index(live.len()));
                prop_assert!(t.remove(s, &f, None));
            }
            for levels in topics {
                let topic = levels.join("/");
                let mut expected: Vec<u32> = live.iter().filter(|(_, f)| topic::matches(f, &topic)).map(|(s, _)| *s).collect();
                expected.sort();
                prop_assert_eq!(sessions(&t, &topic), expected, "topic {}", topic);
            }
        }
    }
}
