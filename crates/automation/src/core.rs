//! The pure core of the engine: one partition's evaluation state and what
//! a message makes it do.
//!
//! Messages are partitioned by their group key (the device of a
//! `devices/{id}/...` topic, or the topic itself), the key rule state is
//! kept under: every window, `FOR` duration and auto-clear set of a group
//! lives in exactly one [`Partition`], which one worker thread owns. The
//! core reads no clock and does no I/O: the shell (`queues`) passes the
//! time in and carries out the [`Effect`]s (actions, traces, metrics).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::actions::Action;
use crate::engine::{RawTrace, RuleMetrics};

/// Hop count carried in a user property, so a rule republishing into a
/// topic rules read cannot loop forever.
pub(crate) const HOP: &str = "mw-rule-hop";
pub(crate) const MAX_HOPS: u32 = 4;

/// A compiled rule with its definition, counters and trace ring (shared by
/// every partition; its evaluation state is per partition).
pub(crate) struct Loaded {
    /// Unique per load: a saved (replaced) rule starts with fresh state.
    pub id: u64,
    pub name: String,
    pub description: String,
    pub sql: String,
    pub actions_json: Value,
    pub actions: Vec<Action>,
    pub enabled: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub rule: rules::Rule,
    pub traces: Mutex<VecDeque<RawTrace>>,
    pub metrics: RuleMetrics,
    /// Active alarms this rule raised before a restart, to auto-clear:
    /// (device, alarm type); each partition takes those of its devices.
    pub raised_at_start: Vec<(String, String)>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Loaded {
    pub(crate) fn next_id() -> u64 {
        NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the rule may see a sample of its messages under overload:
    /// only when every action is a republish or a webhook (nothing that
    /// raises or clears alarms, sends commands, sets twins or stores).
    pub fn may_sample(&self) -> bool {
        self.actions
            .iter()
            .all(|a| matches!(a, Action::Republish { .. } | Action::Webhook { .. }))
    }

    /// The alarm types this rule raises with `auto_clear`.
    fn auto_clear_types(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|a| match a {
            Action::Alarm {
                alarm_type,
                auto_clear: true,
                ..
            } => Some(alarm_type.as_str()),
            _ => None,
        })
    }
}

/// The key a message's rule state is kept under, and its partition's key:
/// the device of a `devices/{id}/...` topic, or the topic.
pub fn partition_key(topic: &str) -> &str {
    rules::ParsedMessage::new(rules::Message {
        topic,
        payload: &[],
        time_ms: 0,
    })
    .device_id()
    .unwrap_or(topic)
}

/// The partition (of `count`) that owns `key`: stable across runs.
pub fn partition_of(key: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    // SipHash with fixed keys: the same on every run and every machine.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    key.hash(&mut h);
    (h.finish() % count as u64) as usize
}

/// What reaches a partition.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A tapped message; `hops` is how many rules republished it.
    Message {
        topic: &'a str,
        payload: &'a [u8],
        hops: u32,
    },
}

/// What the shell does for one rule evaluated on one message.
pub(crate) struct Effect {
    pub rule: Arc<Loaded>,
    pub eval: rules::Evaluation,
    pub acts: Vec<Act>,
}

/// One thing to carry out for an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Act {
    /// Run the rule's action of this index (the rule matched).
    Run(usize),
    /// Clear an alarm this rule raised for the device (it stopped
    /// matching, and the alarm action has `auto_clear`).
    AutoClear { device: String, alarm_type: String },
}

/// One rule's state in one partition.
#[derive(Default)]
struct Slot {
    state: rules::RuleState,
    /// (device, alarm type) this rule raised here and will auto-clear.
    raised: HashSet<(String, String)>,
}

/// The rule state of the groups one worker owns.
pub(crate) struct Partition {
    index: usize,
    count: usize,
    rules: Arc<Vec<Arc<Loaded>>>,
    slots: HashMap<u64, Slot>,
}

impl Partition {
    pub fn new(index: usize, count: usize) -> Self {
        Partition {
            index,
            count: count.max(1),
            rules: Arc::new(Vec::new()),
            slots: HashMap::new(),
        }
    }

    /// Whether this partition owns the state of `key`.
    pub fn owns(&self, key: &str) -> bool {
        partition_of(key, self.count) == self.index
    }

    /// Takes a new rule set (same `Arc`: nothing to do). A rule not seen
    /// before starts with empty state, plus the alarms it raised before a
    /// restart on this partition's devices; state of rules gone is dropped.
    pub fn set_rules(&mut self, rules: &Arc<Vec<Arc<Loaded>>>) {
        if Arc::ptr_eq(&self.rules, rules) {
            return;
        }
        self.rules = rules.clone();
        let ids: HashSet<u64> = rules.iter().map(|l| l.id).collect();
        self.slots.retain(|id, _| ids.contains(id));
        for l in rules.iter() {
            if self.slots.contains_key(&l.id) {
                continue;
            }
            let mut slot = Slot::default();
            for (device, alarm_type) in &l.raised_at_start {
                if partition_of(device, self.count) == self.index {
                    slot.raised.insert((device.clone(), alarm_type.clone()));
                }
            }
            self.slots.insert(l.id, slot);
        }
    }

    /// A copy of a rule's state here (for dry runs).
    pub fn state(&self, rule_id: u64) -> Option<rules::RuleState> {
        self.slots.get(&rule_id).map(|s| s.state.clone())
    }

    /// Evaluates a message against every enabled rule whose filter matches
    /// its topic, at time `now` (the message time windows and durations
    /// use).
    pub fn handle(&mut self, now: u64, event: Event, ctx: &dyn rules::Context) -> Vec<Effect> {
        let Event::Message {
            topic,
            payload,
            hops,
        } = event;
        if hops >= MAX_HOPS {
            return Vec::new();
        }
        debug_assert!(self.owns(partition_key(topic)));
        // The payload is parsed once, for every rule.
        let parsed = rules::ParsedMessage::new(rules::Message {
            topic,
            payload,
            time_ms: now,
        });
        let mut effects = Vec::with_capacity(self.rules.len());
        // Rules often share a FROM filter: each is matched once.
        let mut filters: Vec<(&str, bool)> = Vec::new();
        for l in self.rules.iter() {
            if !l.enabled {
                continue;
            }
            let filter = l.rule.filter();
            let matched = match filters.iter().find(|(f, _)| *f == filter) {
                Some(&(_, m)) => m,
                None => {
                    let m = l.rule.matches_topic(topic);
                    if filters.len() < 16 {
                        filters.push((filter, m));
                    }
                    m
                }
            };
            if !matched {
                continue;
            }
            let slot = self.slots.entry(l.id).or_default();
            let eval = l.rule.evaluate_parsed(&parsed, &mut slot.state, ctx);
            let mut acts = Vec::new();
            if eval.matched {
                for (i, a) in l.actions.iter().enumerate() {
                    if let (
                        Action::Alarm {
                            alarm_type,
                            auto_clear: true,
                            ..
                        },
                        Some(device),
                    ) = (a, &eval.device_id)
                    {
                        // Noted before the raise is carried out: clearing
                        // an alarm whose raise failed does nothing.
                        slot.raised.insert((device.clone(), alarm_type.clone()));
                    }
                    acts.push(Act::Run(i));
                }
            } else if let Some(device) = &eval.device_id {
                for alarm_type in l.auto_clear_types() {
                    let key = (device.clone(), alarm_type.to_string());
                    if slot.raised.remove(&key) {
                        acts.push(Act::AutoClear {
                            device: key.0,
                            alarm_type: key.1,
                        });
                    }
                }
            }
            effects.push(Effect {
                rule: l.clone(),
                eval,
                acts,
            });
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(name: &str, sql: &str, actions: Value) -> Arc<Loaded> {
        let def = json!({"name": name, "sql": sql, "actions": actions});
        Arc::new(crate::engine::compile(&def, Vec::new()).expect("compiles"))
    }

    /// A virtual clock: the tests say what time each message arrives at.
    struct Sim {
        part: Partition,
        now: u64,
    }

    impl Sim {
        fn new(rules: Vec<Arc<Loaded>>) -> Self {
            let mut part = Partition::new(0, 1);
            part.set_rules(&Arc::new(rules));
            Sim {
                part,
                now: 1_000_000,
            }
        }

        fn advance(&mut self, ms: u64) {
            self.now += ms;
        }

        fn send(&mut self, topic: &str, payload: Value) -> Vec<Effect> {
            let body = payload.to_string();
            self.part.handle(
                self.now,
                Event::Message {
                    topic,
                    payload: body.as_bytes(),
                    hops: 0,
                },
                &rules::NoContext,
            )
        }

        /// (rule name, matched, acts) of one message.
        fn step(&mut self, topic: &str, payload: Value) -> Vec<(String, bool, Vec<Act>)> {
            self.send(topic, payload)
                .into_iter()
                .map(|e| (e.rule.name.clone(), e.eval.matched, e.acts))
                .collect()
        }
    }

    fn num(e: &Effect, name: &str) -> f64 {
        e.eval
            .outputs
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }

    fn alarm(auto_clear: bool) -> Value {
        json!([{"type": "alarm", "alarm_type": "hot", "severity": "major", "auto_clear": auto_clear}])
    }

    #[test]
    fn sliding_window_averages_the_last_minute_of_virtual_time() {
        let mut sim = Sim::new(vec![rule(
            "avg",
            "SELECT avg(t) OVER 1m AS a FROM 'devices/+/telemetry' WHERE avg(t) OVER 1m > 50",
            json!([]),
        )]);
        let t = "devices/d1/telemetry";
        assert!(!sim.step(t, json!({"t": 40}))[0].1);
        sim.advance(10_000);
        // (40 + 70) / 2 = 55
        assert!(sim.step(t, json!({"t": 70}))[0].1);
        sim.advance(65_000);
        // 40 and 70 left the window: 45 alone (with 70 it would be 57.5).
        assert!(!sim.step(t, json!({"t": 45}))[0].1);
        sim.advance(1000);
        let e = sim.send(t, json!({"t": 75}));
        assert!(e[0].eval.matched);
        assert_eq!(num(&e[0], "a"), 60.0);
    }

    #[test]
    fn windows_are_per_device() {
        let mut sim = Sim::new(vec![rule(
            "sum",
            "SELECT sum(n) OVER 1m AS s FROM 'devices/+/telemetry'",
            json!([]),
        )]);
        sim.send("devices/a/telemetry", json!({"n": 1}));
        sim.send("devices/b/telemetry", json!({"n": 100}));
        let e = sim.send("devices/a/telemetry", json!({"n": 2}));
        assert_eq!(num(&e[0], "s"), 3.0);
    }

    #[test]
    fn for_duration_raises_only_after_the_condition_held_that_long() {
        let mut sim = Sim::new(vec![rule(
            "hot",
            "SELECT t FROM 'devices/+/telemetry' WHERE t > 85 FOR 5m",
            alarm(false),
        )]);
        let t = "devices/m1/telemetry";
        assert_eq!(sim.step(t, json!({"t": 90}))[0].2, vec![]);
        sim.advance(4 * 60_000);
        assert_eq!(sim.step(t, json!({"t": 91}))[0].2, vec![]);
        // A dip restarts the duration.
        sim.advance(30_000);
        assert_eq!(sim.step(t, json!({"t": 80}))[0].2, vec![]);
        sim.advance(30_000);
        assert_eq!(sim.step(t, json!({"t": 95}))[0].2, vec![]);
        sim.advance(5 * 60_000 - 1);
        assert_eq!(sim.step(t, json!({"t": 95}))[0].2, vec![]);
        sim.advance(1);
        assert_eq!(sim.step(t, json!({"t": 95}))[0].2, vec![Act::Run(0)]);
    }

    #[test]
    fn auto_clear_once_when_the_rule_stops_matching_for_that_device() {
        let mut sim = Sim::new(vec![rule(
            "hot",
            "SELECT t FROM 'devices/+/telemetry' WHERE t > 85",
            alarm(true),
        )]);
        let (a, b) = ("devices/a/telemetry", "devices/b/telemetry");
        assert_eq!(sim.step(a, json!({"t": 90}))[0].2, vec![Act::Run(0)]);
        sim.advance(1000);
        // Another device not matching clears nothing.
        assert_eq!(sim.step(b, json!({"t": 20}))[0].2, vec![]);
        let clear = Act::AutoClear {
            device: "a".into(),
            alarm_type: "hot".into(),
        };
        assert_eq!(sim.step(a, json!({"t": 20}))[0].2, vec![clear.clone()]);
        // Once.
        assert_eq!(sim.step(a, json!({"t": 20}))[0].2, vec![]);
        // Raised again, cleared again.
        assert_eq!(sim.step(a, json!({"t": 99}))[0].2, vec![Act::Run(0)]);
        assert_eq!(sim.step(a, json!({"t": 1}))[0].2, vec![clear]);
    }

    #[test]
    fn without_auto_clear_nothing_is_cleared() {
        let mut sim = Sim::new(vec![rule(
            "hot",
            "SELECT t FROM 'devices/+/telemetry' WHERE t > 85",
            alarm(false),
        )]);
        let a = "devices/a/telemetry";
        sim.step(a, json!({"t": 90}));
        assert_eq!(sim.step(a, json!({"t": 20}))[0].2, vec![]);
    }

    #[test]
    fn alarms_raised_before_a_restart_are_cleared_by_their_owner_only() {
        let def = json!({"name": "hot", "sql": "SELECT t FROM 'devices/+/telemetry' WHERE t > 85", "actions": alarm(true)});
        let devices: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let raised = devices
            .iter()
            .map(|d| (d.clone(), "hot".to_string()))
            .collect();
        let l = Arc::new(crate::engine::compile(&def, raised).expect("compiles"));
        let rules = Arc::new(vec![l]);
        let mut parts: Vec<Partition> = (0..3).map(|i| Partition::new(i, 3)).collect();
        for p in &mut parts {
            p.set_rules(&rules);
        }
        for d in &devices {
            let topic = format!("devices/{d}/telemetry");
            let owner = partition_of(d, 3);
            let e = parts[owner].handle(
                1,
                Event::Message {
                    topic: &topic,
                    payload: br#"{"t": 1}"#,
                    hops: 0,
                },
                &rules::NoContext,
            );
            assert_eq!(
                e[0].acts,
                vec![Act::AutoClear {
                    device: d.clone(),
                    alarm_type: "hot".into()
                }]
            );
        }
        // Every partition kept only its own devices' alarms.
        for p in &parts {
            assert!(p.slots.values().all(|s| s.raised.is_empty()));
        }
    }

    #[test]
    fn a_device_and_all_its_topics_belong_to_one_partition() {
        for n in [1, 2, 3, 8] {
            for i in 0..200 {
                let d = format!("dev-{i}");
                let owner = partition_of(&d, n);
                for t in ["telemetry", "events/x", "twin/reported"] {
                    let topic = format!("devices/{d}/{t}");
                    assert_eq!(partition_key(&topic), d);
                    assert_eq!(partition_of(partition_key(&topic), n), owner);
                }
                assert!(owner < n);
            }
        }
        // Other topics are their own key.
        assert_eq!(partition_key("plant/line1/temp"), "plant/line1/temp");
        // Keys spread over the partitions.
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            seen[partition_of(&format!("dev-{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        // Stable across runs (fixed hash keys).
        assert_eq!(partition_of("dev-1", 4), partition_of("dev-1", 4));
    }

    #[test]
    fn replaced_rules_start_afresh_and_removed_rules_lose_their_state() {
        let sql = "SELECT count(n) OVER 1h AS c FROM 'devices/+/telemetry'";
        let r1 = rule("c", sql, json!([]));
        let mut part = Partition::new(0, 1);
        part.set_rules(&Arc::new(vec![r1.clone()]));
        let msg = Event::Message {
            topic: "devices/a/telemetry",
            payload: br#"{"n": 1}"#,
            hops: 0,
        };
        part.handle(1, msg, &rules::NoContext);
        let e = part.handle(2, msg, &rules::NoContext);
        assert_eq!(num(&e[0], "c"), 2.0);
        // The same rule set again (new Arc, same rule): state kept.
        part.set_rules(&Arc::new(vec![r1]));
        let e = part.handle(3, msg, &rules::NoContext);
        assert_eq!(num(&e[0], "c"), 3.0);
        // Saved again (a new load): fresh.
        part.set_rules(&Arc::new(vec![rule("c", sql, json!([]))]));
        assert_eq!(part.slots.len(), 1);
        let e = part.handle(4, msg, &rules::NoContext);
        assert_eq!(num(&e[0], "c"), 1.0);
    }

    #[test]
    fn hops_and_disabled_rules_and_other_topics_are_not_evaluated() {
        let mut sim = Sim::new(vec![
            rule("on", "SELECT * FROM 'devices/+/telemetry'", json!([])),
            rule("other", "SELECT * FROM 'plant/#'", json!([])),
        ]);
        assert_eq!(sim.step("devices/a/telemetry", json!({})).len(), 1);
        let e = sim.part.handle(
            1,
            Event::Message {
                topic: "devices/a/telemetry",
                payload: b"{}",
                hops: MAX_HOPS,
            },
            &rules::NoContext,
        );
        assert!(e.is_empty());
        let def =
            json!({"name": "off", "sql": "SELECT * FROM '#'", "actions": [], "enabled": false});
        let off = Arc::new(crate::engine::compile(&def, Vec::new()).expect("compiles"));
        sim.part.set_rules(&Arc::new(vec![off]));
        assert!(sim.step("devices/a/telemetry", json!({})).is_empty());
    }

    #[test]
    fn only_republish_and_webhook_rules_may_be_sampled() {
        let r = |actions: Value| rule("r", "SELECT * FROM '#'", actions).may_sample();
        assert!(r(json!([])));
        assert!(r(json!([{"type": "republish", "topic": "x"}])));
        assert!(r(
            json!([{"type": "webhook", "url": "https://example.com/"}])
        ));
        assert!(!r(alarm(false)));
        assert!(!r(json!([{"type": "command", "method": "stop"}])));
        assert!(!r(json!([{"type": "clear_alarm", "alarm_type": "hot"}])));
        assert!(!r(
            json!([{"type": "republish", "topic": "x"}, {"type": "command", "method": "stop"}])
        ));
    }
}
