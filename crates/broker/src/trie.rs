//! The subscription tree: topic filters split into levels, with `+` and `#`
//! as their own branches, so a PUBLISH is matched by walking only the
//! branches its topic can reach, never by scanning every subscription.
//!
//! The tree also keeps the bookkeeping of shared subscriptions (members
//! and round-robin position per share group and filter), so that it lives
//! exactly as long as the group's subscriptions: the last member leaving,
//! by UNSUBSCRIBE or with its session, frees it. Group names are chosen by
//! clients; nothing keyed by them may outlive them.

use crate::fast::HashMap;

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

/// One share group on one filter.
#[derive(Debug, Default)]
struct Group {
    /// Subscriptions in the tree with this group and filter.
    members: usize,
    /// Where the next round-robin pick starts.
    next: usize,
}

/// The subscription tree.
#[derive(Debug, Default)]
pub(crate) struct SubTree {
    root: Node,
    len: usize,
    /// Share group -> filter -> its bookkeeping; entries exist only while
    /// the group has members on that filter.
    groups: HashMap<ByteString, HashMap<ByteString, Group>>,
}

impl SubTree {
    /// Number of subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Number of (share group, filter) pairs with members.
    pub fn shared_group_count(&self) -> usize {
        self.groups.values().map(HashMap::len).sum()
    }

    /// Where the next round-robin pick of a share group starts (0 for a
    /// group the tree does not know).
    pub fn shared_cursor(&self, group: &str, filter: &str) -> usize {
        self.groups
            .get(group)
            .and_then(|g| g.get(filter))
            .map_or(0, |g| g.next)
    }

    /// Sets where the next pick of a share group starts. Does nothing for
    /// a group without members: publishing never creates bookkeeping.
    pub fn set_shared_cursor(&mut self, group: &str, filter: &str, next: usize) {
        if let Some(g) = self.groups.get_mut(group).and_then(|g| g.get_mut(filter)) {
            g.next = next;
        }
    }

    /// Adds or replaces the subscription of `entry.session` to
    /// `entry.filter` in `entry.group`. Returns true if it replaced one.
    pub fn insert(&mut self, entry: SubEntry) -> bool {
        let filter = entry.filter.clone();
        let group = entry.group.clone();
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
        if let Some(group) = group {
            self.groups
                .entry(group)
                .or_default()
                .entry(filter)
                .or_default()
                .members += 1;
        }
        false
    }

    /// Removes a session's subscription to a filter. Returns true if found.
    /// A share group's bookkeeping goes with its last member.
    pub fn remove(&mut self, session: SessionIdx, filter: &str, group: Option<&str>) -> bool {
        let removed = remove_rec(
            &mut self.root,
            filter.split('/').collect::<Vec<_>>().as_slice(),
            session,
            group,
        );
        if removed {
            self.len -= 1;
            if let Some(group) = group {
                self.leave_group(group, filter);
            }
        }
        removed
    }

    fn leave_group(&mut self, group: &str, filter: &str) {
        let Some(filters) = self.groups.get_mut(group) else {
            return;
        };
        if let Some(g) = filters.get_mut(filter) {
            g.members = g.members.saturating_sub(1);
            if g.members == 0 {
                filters.remove(filter);
            }
        }
        if filters.is_empty() {
            self.groups.remove(group);
        }
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
        match_rec(&self.root, Some(topic), 0, dollar, out);
    }
}

/// Matches the levels of `rest` (`None` once every level is consumed)
/// below `node`. The topic is split as the walk goes, without collecting
/// its levels first (no allocation per message).
fn match_rec<'a>(
    node: &'a Node,
    rest: Option<&str>,
    depth: usize,
    dollar: bool,
    out: &mut Vec<&'a SubEntry>,
) {
    let wildcards_allowed = !(depth == 0 && dollar);
    if wildcards_allowed {
        out.extend(node.multi.iter());
    }
    let Some(rest) = rest else {
        out.extend(node.exact.iter());
        return;
    };
    // A byte scan: '/' is ASCII, so it never splits a UTF-8 character
    // (and it is several times cheaper than `split_once` on short levels).
    let (level, next) = match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        match_rec(child, next, depth + 1, dollar, out);
    }
    if wildcards_allowed {
        if let Some(plus) = &node.plus {
            match_rec(plus, next, depth + 1, dollar, out);
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

    fn shared(session: SessionIdx, group: &str, filter: &str) -> SubEntry {
        SubEntry {
            group: Some(group.into()),
            ..entry(session, filter)
        }
    }

    #[test]
    fn share_group_bookkeeping_lives_as_long_as_its_members() {
        let mut t = SubTree::default();
        t.insert(shared(1, "g", "a/+"));
        t.insert(shared(2, "g", "a/+"));
        t.insert(shared(2, "g", "a/+")); // replaced, not a new member
        t.insert(shared(1, "h", "a/+"));
        t.insert(shared(1, "g", "b"));
        t.insert(entry(3, "a/+"));
        assert_eq!(t.shared_group_count(), 3);
        t.set_shared_cursor("g", "a/+", 7);
        assert_eq!(t.shared_cursor("g", "a/+"), 7);
        // Publishing to an unknown group creates nothing.
        t.set_shared_cursor("nobody", "a/+", 1);
        assert_eq!(t.shared_cursor("nobody", "a/+"), 0);
        assert_eq!(t.shared_group_count(), 3);

        assert!(t.remove(1, "a/+", Some("g")));
        assert_eq!(t.shared_cursor("g", "a/+"), 7, "one member left");
        assert!(!t.remove(1, "a/+", Some("g")));
        assert!(t.remove(2, "a/+", Some("g")));
        assert_eq!(t.shared_cursor("g", "a/+"), 0, "freed with its last member");
        assert_eq!(t.shared_group_count(), 2);
        assert!(t.remove(1, "b", Some("g")));
        assert!(t.remove(1, "a/+", Some("h")));
        assert_eq!(t.shared_group_count(), 0);
        assert!(t.groups.is_empty());
        assert_eq!(t.len(), 1);
        assert!(t.remove(3, "a/+", None));
        assert!(t.root.is_empty());
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
