//! A model-based property test: random raises, acknowledges and clears on
//! a few (device, type) pairs, checked after every step against a plain
//! `HashMap` model. The store must never hold two active alarms for one
//! pair, and must agree with the model on every alarm, the active alarm
//! of each pair, the refusals, and the counts.

use std::collections::HashMap;

use alarms::{AlarmCounts, AlarmError, AlarmFilter, AlarmState, AlarmStore, Change, Severity};
use proptest::prelude::*;
use serde_json::json;

const DEVICES: [&str; 2] = ["d0", "d1"];
const TYPES: [&str; 2] = ["hot", "cold"];

#[derive(Debug, Clone)]
enum Op {
    Raise(usize, usize, Severity),
    /// Acknowledge the n-th alarm ever created (modulo their number).
    Ack(usize),
    /// Clear the n-th alarm ever created.
    Clear(usize),
    /// A rule's auto-clear of a pair.
    ClearActive(usize, usize),
    /// Close and open the store again.
    Reopen,
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..2usize, severity()).prop_map(|(d, t, s)| Op::Raise(d, t, s)),
        2 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Clear),
        1 => (0..2usize, 0..2usize).prop_map(|(d, t)| Op::ClearActive(d, t)),
        1 => Just(Op::Reopen),
    ]
}

/// What the model knows of one alarm.
#[derive(Debug, Clone, PartialEq)]
struct ModelAlarm {
    pair: (usize, usize),
    state: AlarmState,
    severity: Severity,
    count: u64,
}

#[derive(Default)]
struct Model {
    /// By id.
    alarms: HashMap<String, ModelAlarm>,
    /// Ids in creation order.
    order: Vec<String>,
    /// The active alarm of each pair.
    active: HashMap<(usize, usize), String>,
}

fn check(store: &AlarmStore, model: &Model) -> Result<(), TestCaseError> {
    let active_states = vec![
        AlarmState::ActiveUnacknowledged,
        AlarmState::ActiveAcknowledged,
    ];
    for (d, device) in DEVICES.into_iter().enumerate() {
        for (t, alarm_type) in TYPES.into_iter().enumerate() {
            let filter = AlarmFilter {
                device_id: Some(device.into()),
                alarm_type: Some(alarm_type.into()),
                states: active_states.clone(),
                ..AlarmFilter::default()
            };
            let (active, _) = store.query("ns", &filter, None, 100).unwrap();
            prop_assert!(active.len() <= 1, "two active alarms for {:?}", (d, t));
            let from_index = store.active("ns", device, alarm_type).unwrap();
            prop_assert_eq!(
                from_index.as_ref().map(|a| a.id.clone()),
                active.first().map(|a| a.id.clone())
            );
            prop_assert_eq!(from_index.map(|a| a.id), model.active.get(&(d, t)).cloned());
        }
    }
    let mut counts = AlarmCounts::default();
    for (id, m) in &model.alarms {
        let a = store.get("ns", id).unwrap().expect("alarm in the model");
        prop_assert_eq!(a.state, m.state);
        prop_assert_eq!(a.severity, m.severity);
        prop_assert_eq!(a.count, m.count);
        prop_assert_eq!(
            (a.device_id.as_str(), a.alarm_type.as_str()),
            (DEVICES[m.pair.0], TYPES[m.pair.1])
        );
        counts.add(m.state, m.severity, 1);
    }
    prop_assert_eq!(store.counts("ns").unwrap(), counts);
    let all = store
        .query("ns", &AlarmFilter::default(), None, 1000)
        .unwrap()
        .0;
    prop_assert_eq!(all.len(), model.alarms.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn store_agrees_with_a_hashmap_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alarms.redb");
        let mut store = Some(AlarmStore::open(&path).unwrap());
        let mut model = Model::default();
        for (step, op) in ops.into_iter().enumerate() {
            let now = 1_000 + step as u64 * 10;
            let s = store.as_ref().unwrap();
            match op {
                Op::Raise(d, t, sev) => {
                    let change = s
                        .raise("ns", DEVICES[d], TYPES[t], sev, json!({"step": step}), None, now)
                        .unwrap();
                    match model.active.get(&(d, t)).cloned() {
                        Some(id) => {
                            prop_assert!(matches!(change, Change::Updated(_)), "{change:?}");
                            prop_assert_eq!(&change.alarm().id, &id);
                            let m = model.alarms.get_mut(&id).unwrap();
                            m.count += 1;
                            m.severity = sev;
                        }
                        None => {
                            prop_assert!(matches!(change, Change::Raised(_)), "{change:?}");
                            let id = change.alarm().id.clone();
                            prop_assert!(!model.alarms.contains_key(&id));
                            model.alarms.insert(id.clone(), ModelAlarm {
                                pair: (d, t),
                                state: AlarmState::ActiveUnacknowledged,
                                severity: sev,
                                count: 1,
                            });
                            model.order.push(id.clone());
                            model.active.insert((d, t), id);
                        }
                    }
                }
                Op::Ack(n) | Op::Clear(n) if model.order.is_empty() => {
                    let _ = n;
                }
                Op::Ack(n) => {
                    let id = model.order[n % model.order.len()].clone();
                    let m = model.alarms.get_mut(&id).unwrap();
                    let r = s.acknowledge("ns", &id, "op", now);
                    if m.state.is_acknowledged() {
                        prop_assert!(matches!(r, Err(AlarmError::Conflict(_))), "{r:?}");
                    } else {
                        prop_assert!(matches!(r, Ok(Change::Acknowledged(_))), "{r:?}");
                        m.state = AlarmState::from_parts(m.state.is_active(), true);
                    }
                }
                Op::Clear(n) => {
                    let id = model.order[n % model.order.len()].clone();
                    let m = model.alarms.get_mut(&id).unwrap();
                    let r = s.clear("ns", &id, "op", now);
                    if m.state.is_active() {
                        prop_assert!(matches!(r, Ok(Change::Cleared(_))), "{r:?}");
                        m.state = AlarmState::from_parts(false, m.state.is_acknowledged());
                        model.active.remove(&m.pair);
                    } else {
                        prop_assert!(matches!(r, Err(AlarmError::Conflict(_))), "{r:?}");
                    }
                }
                Op::ClearActive(d, t) => {
                    let r = s.clear_active("ns", DEVICES[d], TYPES[t], "rule:r", now).unwrap();
                    match model.active.remove(&(d, t)) {
                        Some(id) => {
                            let Some(Change::Cleared(a)) = r else {
                                return Err(TestCaseError::fail(format!("{r:?}")));
                            };
                            prop_assert_eq!(&a.id, &id);
                            let m = model.alarms.get_mut(&id).unwrap();
                            m.state = AlarmState::from_parts(false, m.state.is_acknowledged());
                        }
                        None => prop_assert!(r.is_none(), "{r:?}"),
                    }
                }
                Op::Reopen => {
                    drop(store.take());
                    store = Some(AlarmStore::open(&path).unwrap());
                }
            }
            check(store.as_ref().unwrap(), &model)?;
        }
    }
}
