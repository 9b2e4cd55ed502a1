//! The alarm store through its public API: every transition,
//! de-duplication, conflicts, queries and paging, counts, durability
//! across reopen, the prune bound.

use alarms::{
    Alarm, AlarmCounts, AlarmError, AlarmFilter, AlarmState, AlarmStore, Change, Severity,
    ALARMS_FILE_NAME,
};
use serde_json::{json, Value};

fn open(dir: &tempfile::TempDir) -> AlarmStore {
    AlarmStore::open(&dir.path().join(ALARMS_FILE_NAME)).unwrap()
}

fn raise(s: &AlarmStore, device: &str, ty: &str, sev: Severity, now: u64) -> Change {
    s.raise("ns", device, ty, sev, json!({"at": now}), Some("r1"), now)
        .unwrap()
}

fn ids(v: &[Alarm]) -> Vec<&str> {
    v.iter().map(|a| a.id.as_str()).collect()
}

#[test]
fn the_stores_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AlarmStore>();
    check::<alarms::Outbox>();
}

#[test]
fn every_transition() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);

    // raise → active_unack
    let Change::Raised(a) = raise(&s, "d1", "hot", Severity::Major, 100) else {
        panic!("expected a new alarm");
    };
    assert_eq!(a.state, AlarmState::ActiveUnacknowledged);
    assert_eq!((a.namespace.as_str(), a.device_id.as_str()), ("ns", "d1"));
    assert_eq!(
        (a.count, a.first_raised_ms, a.last_raised_ms),
        (1, 100, 100)
    );
    assert_eq!(a.rule.as_deref(), Some("r1"));
    assert!(a.id.starts_with('a') && a.id.len() == 17);

    // active_unack → active_ack
    let Change::Acknowledged(b) = s.acknowledge("ns", &a.id, "ann", 110).unwrap() else {
        panic!("expected an acknowledgement");
    };
    assert_eq!(b.state, AlarmState::ActiveAcknowledged);
    assert_eq!(
        (b.acknowledged_by.as_deref(), b.acknowledged_ms),
        (Some("ann"), Some(110))
    );

    // raise on active_ack: updated, still acknowledged
    let Change::Updated(c) = raise(&s, "d1", "hot", Severity::Critical, 120) else {
        panic!("expected an update");
    };
    assert_eq!(c.id, a.id);
    assert_eq!(c.state, AlarmState::ActiveAcknowledged);
    assert_eq!(c.severity, Severity::Critical);

    // active_ack → cleared_ack
    let Change::Cleared(d) = s.clear("ns", &a.id, "bob", 130).unwrap() else {
        panic!("expected a clear");
    };
    assert_eq!(d.state, AlarmState::ClearedAcknowledged);
    assert_eq!(
        (d.cleared_by.as_deref(), d.cleared_ms),
        (Some("bob"), Some(130))
    );
    assert!(d.is_closed());

    // a new one: active_unack → cleared_unack → cleared_ack
    let e = raise(&s, "d1", "hot", Severity::Minor, 200).into_alarm();
    assert_ne!(e.id, a.id);
    let Change::Cleared(f) = s.clear("ns", &e.id, "bob", 210).unwrap() else {
        panic!("expected a clear");
    };
    assert_eq!(f.state, AlarmState::ClearedUnacknowledged);
    assert_eq!(f.acknowledged_by, None);
    let Change::Acknowledged(g) = s.acknowledge("ns", &e.id, "ann", 220).unwrap() else {
        panic!("expected an acknowledgement");
    };
    assert_eq!(g.state, AlarmState::ClearedAcknowledged);
    assert_eq!(g.cleared_by.as_deref(), Some("bob"));

    // What get returns is what the calls returned.
    assert_eq!(s.get("ns", &a.id).unwrap(), Some(d));
    assert_eq!(s.get("ns", &e.id).unwrap(), Some(g));
    assert_eq!(s.active("ns", "d1", "hot").unwrap(), None);
}

#[test]
fn repeated_raises_update_the_active_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let first = raise(&s, "d1", "hot", Severity::Minor, 100).into_alarm();
    for (i, now) in [150u64, 160, 170].into_iter().enumerate() {
        let Change::Updated(a) = s
            .raise(
                "ns",
                "d1",
                "hot",
                Severity::Major,
                json!({"t": now}),
                Some("r2"),
                now,
            )
            .unwrap()
        else {
            panic!("expected an update");
        };
        assert_eq!(a.id, first.id);
        assert_eq!(a.count, i as u64 + 2);
        assert_eq!((a.first_raised_ms, a.last_raised_ms), (100, now));
        assert_eq!(a.details, json!({"t": now}));
        assert_eq!(a.severity, Severity::Major);
        assert_eq!(a.rule.as_deref(), Some("r2"));
        assert_eq!(a.state, AlarmState::ActiveUnacknowledged);
    }
    // Other devices and types, and other namespaces, get their own.
    let other_type = raise(&s, "d1", "cold", Severity::Minor, 180).into_alarm();
    let other_device = raise(&s, "d2", "hot", Severity::Minor, 180).into_alarm();
    let other_ns = s
        .raise("ns2", "d1", "hot", Severity::Minor, Value::Null, None, 180)
        .unwrap();
    assert!(matches!(other_ns, Change::Raised(_)));
    assert_ne!(other_type.id, first.id);
    assert_ne!(other_device.id, first.id);
    assert_eq!(s.active("ns", "d1", "hot").unwrap().unwrap().count, 4);
    let all = s.query("ns", &AlarmFilter::default(), None, 100).unwrap().0;
    assert_eq!(all.len(), 3);
}

#[test]
fn a_raise_after_a_clear_creates_a_new_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let old = raise(&s, "d1", "hot", Severity::Major, 100).into_alarm();
    // Cleared but not acknowledged: still over for de-duplication.
    s.clear("ns", &old.id, "rule:r1", 110).unwrap();
    let Change::Raised(new) = raise(&s, "d1", "hot", Severity::Major, 120) else {
        panic!("expected a new alarm");
    };
    assert_ne!(new.id, old.id);
    assert_eq!(new.count, 1);
    assert_eq!(s.active("ns", "d1", "hot").unwrap().unwrap().id, new.id);
    let old = s.get("ns", &old.id).unwrap().unwrap();
    assert_eq!(old.state, AlarmState::ClearedUnacknowledged);
    assert_eq!(old.count, 1);
    // The old one can still be acknowledged; the new one is untouched.
    s.acknowledge("ns", &old.id, "ann", 130).unwrap();
    assert_eq!(
        s.get("ns", &new.id).unwrap().unwrap().state,
        AlarmState::ActiveUnacknowledged
    );
}

#[test]
fn clear_active_is_the_rules_auto_clear() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(
        s.clear_active("ns", "d1", "hot", "rule:r1", 100).unwrap(),
        None
    );
    let a = raise(&s, "d1", "hot", Severity::Major, 100).into_alarm();
    let Some(Change::Cleared(c)) = s.clear_active("ns", "d1", "hot", "rule:r1", 200).unwrap()
    else {
        panic!("expected a clear");
    };
    assert_eq!(c.id, a.id);
    assert_eq!(c.cleared_by.as_deref(), Some("rule:r1"));
    assert_eq!(
        s.clear_active("ns", "d1", "hot", "rule:r1", 300).unwrap(),
        None
    );
    assert_eq!(s.active("ns", "d1", "hot").unwrap(), None);
}

#[test]
fn conflicts_not_found_and_invalid_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = raise(&s, "d1", "hot", Severity::Major, 100).into_alarm();
    s.acknowledge("ns", &a.id, "ann", 110).unwrap();
    assert!(matches!(
        s.acknowledge("ns", &a.id, "ann", 111),
        Err(AlarmError::Conflict(_))
    ));
    s.clear("ns", &a.id, "ann", 120).unwrap();
    assert!(matches!(
        s.clear("ns", &a.id, "ann", 121),
        Err(AlarmError::Conflict(_))
    ));
    assert!(matches!(
        s.acknowledge("ns", &a.id, "ann", 122),
        Err(AlarmError::Conflict(_))
    ));
    // A refused call changed nothing.
    let stored = s.get("ns", &a.id).unwrap().unwrap();
    assert_eq!(
        (stored.acknowledged_ms, stored.cleared_ms),
        (Some(110), Some(120))
    );

    let missing = alarms::alarm_id(999);
    for id in [missing.as_str(), "nope", ""] {
        assert!(matches!(
            s.acknowledge("ns", id, "ann", 1),
            Err(AlarmError::NotFound { kind: "alarm", .. })
        ));
        assert!(matches!(
            s.clear("ns", id, "ann", 1),
            Err(AlarmError::NotFound { .. })
        ));
        assert_eq!(s.get("ns", id).unwrap(), None);
    }
    // Ids are per namespace.
    assert!(matches!(
        s.acknowledge("other", &a.id, "ann", 1),
        Err(AlarmError::NotFound { .. })
    ));
    assert_eq!(s.get("other", &a.id).unwrap(), None);

    let invalid = |r: Result<Change, AlarmError>, field: &str| match r {
        Err(AlarmError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected invalid {field}, got {other:?}"),
    };
    let long = "x".repeat(300);
    invalid(
        s.raise("", "d", "t", Severity::Minor, Value::Null, None, 1),
        "namespace",
    );
    invalid(
        s.raise("ns", "", "t", Severity::Minor, Value::Null, None, 1),
        "device_id",
    );
    invalid(
        s.raise("ns", &long, "t", Severity::Minor, Value::Null, None, 1),
        "device_id",
    );
    for ty in ["", "a/b", "a+", "#", "tab\t", &long[..129]] {
        invalid(
            s.raise("ns", "d", ty, Severity::Minor, Value::Null, None, 1),
            "alarm_type",
        );
    }
    let big = json!({"x": "y".repeat(alarms::MAX_DETAILS_BYTES)});
    invalid(
        s.raise("ns", "d", "t", Severity::Minor, big, None, 1),
        "details",
    );
    invalid(
        s.raise("ns", "d", "t", Severity::Minor, Value::Null, Some(""), 1),
        "rule",
    );
    invalid(s.acknowledge("ns", &a.id, "", 1), "by");
    invalid(s.clear("ns", &a.id, "a\nb", 1), "by");
    assert_eq!(s.total().unwrap(), 1, "nothing invalid was stored");
}

/// Six alarms in namespace "ns" (and one elsewhere), returned by id:
/// a1 d1/hot critical active_unack  t=100
/// a2 d1/cold major   active_ack    t=200
/// a3 d2/hot minor    cleared_unack t=300
/// a4 d2/hot warning  active_unack  t=400 (raised again at 500 → t=500)
/// a5 d3/hot indeterminate cleared_ack t=450
/// a6 d1/hot major    active_unack  t=600 (after a1 is cleared at 550)
fn history(s: &AlarmStore) -> Vec<String> {
    let a1 = raise(s, "d1", "hot", Severity::Critical, 100)
        .into_alarm()
        .id;
    let a2 = raise(s, "d1", "cold", Severity::Major, 200).into_alarm().id;
    s.acknowledge("ns", &a2, "ann", 210).unwrap();
    let a3 = raise(s, "d2", "hot", Severity::Minor, 300).into_alarm().id;
    s.clear("ns", &a3, "ann", 310).unwrap();
    let a4 = raise(s, "d2", "hot", Severity::Warning, 400)
        .into_alarm()
        .id;
    let a5 = raise(s, "d3", "hot", Severity::Indeterminate, 450)
        .into_alarm()
        .id;
    s.clear("ns", &a5, "ann", 460).unwrap();
    s.acknowledge("ns", &a5, "ann", 470).unwrap();
    raise(s, "d2", "hot", Severity::Warning, 500);
    s.clear_active("ns", "d1", "hot", "rule:r1", 550).unwrap();
    let a6 = raise(s, "d1", "hot", Severity::Major, 600).into_alarm().id;
    s.raise(
        "elsewhere",
        "d1",
        "hot",
        Severity::Critical,
        Value::Null,
        None,
        700,
    )
    .unwrap();
    vec![a1, a2, a3, a4, a5, a6]
}

fn query(s: &AlarmStore, f: AlarmFilter) -> Vec<String> {
    s.query("ns", &f, None, 100)
        .unwrap()
        .0
        .into_iter()
        .map(|a| a.id)
        .collect()
}

#[test]
fn queries_by_each_filter_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = history(&s);
    let at = |is: &[usize]| is.iter().map(|i| a[i - 1].clone()).collect::<Vec<_>>();

    // Newest first by last raise: a6 600, a4 500, a5 450, a3 300, a2 200, a1 100.
    assert_eq!(query(&s, AlarmFilter::default()), at(&[6, 4, 5, 3, 2, 1]));
    let device = |d: &str| AlarmFilter {
        device_id: Some(d.into()),
        ..AlarmFilter::default()
    };
    assert_eq!(query(&s, device("d1")), at(&[6, 2, 1]));
    assert_eq!(query(&s, device("d2")), at(&[4, 3]));
    assert_eq!(query(&s, device("nobody")), at(&[]));
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                alarm_type: Some("hot".into()),
                ..AlarmFilter::default()
            }
        ),
        at(&[6, 4, 5, 3, 1])
    );
    // Severity: a minimum, and an exact one.
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                severities: Severity::Major.at_least(),
                ..AlarmFilter::default()
            }
        ),
        at(&[6, 2, 1])
    );
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                severities: vec![Severity::Minor],
                ..AlarmFilter::default()
            }
        ),
        at(&[3])
    );
    // States.
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                states: vec![
                    AlarmState::ActiveUnacknowledged,
                    AlarmState::ActiveAcknowledged
                ],
                ..AlarmFilter::default()
            }
        ),
        at(&[6, 4, 2])
    );
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                states: vec![AlarmState::ClearedUnacknowledged],
                ..AlarmFilter::default()
            }
        ),
        at(&[3, 1])
    );
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                states: vec![AlarmState::ClearedAcknowledged],
                ..AlarmFilter::default()
            }
        ),
        at(&[5])
    );
    // Time range on last raise: [since, until).
    let range = |since, until| AlarmFilter {
        since_ms: since,
        until_ms: until,
        ..AlarmFilter::default()
    };
    assert_eq!(query(&s, range(Some(300), Some(500))), at(&[5, 3]));
    assert_eq!(query(&s, range(Some(450), None)), at(&[6, 4, 5]));
    assert_eq!(query(&s, range(None, Some(200))), at(&[1]));
    assert_eq!(query(&s, range(Some(500), Some(500))), at(&[]));
    assert_eq!(query(&s, range(Some(600), Some(100))), at(&[]));
    // Everything together, through the device index.
    assert_eq!(
        query(
            &s,
            AlarmFilter {
                device_id: Some("d1".into()),
                alarm_type: Some("hot".into()),
                severities: Severity::Major.at_least(),
                states: vec![AlarmState::ClearedUnacknowledged],
                since_ms: Some(50),
                until_ms: Some(600),
            }
        ),
        at(&[1])
    );
    // Namespaces are separate.
    let other = s
        .query("elsewhere", &AlarmFilter::default(), None, 100)
        .unwrap()
        .0;
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].namespace, "elsewhere");
}

#[test]
fn paging_walks_every_alarm_once_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    // Twelve alarms, some raised at the same millisecond.
    let mut expected = Vec::new();
    for i in 0..12u64 {
        let a = raise(
            &s,
            &format!("d{}", i % 3),
            &format!("t{i}"),
            Severity::Minor,
            100 + i / 2,
        );
        expected.push(a.into_alarm().id);
    }
    expected.reverse();
    for (filter, want) in [
        (AlarmFilter::default(), expected.clone()),
        (
            AlarmFilter {
                device_id: Some("d1".into()),
                ..AlarmFilter::default()
            },
            expected
                .iter()
                .filter(|id| s.get("ns", id).unwrap().unwrap().device_id == "d1")
                .cloned()
                .collect(),
        ),
        (
            AlarmFilter {
                since_ms: Some(101),
                until_ms: Some(105),
                ..AlarmFilter::default()
            },
            expected[2..10].to_vec(),
        ),
    ] {
        for limit in [1, 2, 5, 100] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let (page, next) = s.query("ns", &filter, after.as_deref(), limit).unwrap();
                assert!(page.len() <= limit);
                seen.extend(ids(&page).into_iter().map(str::to_string));
                match next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            assert_eq!(seen, want, "limit {limit}, filter {filter:?}");
        }
    }
    // A zero limit still returns one; a bad cursor is refused.
    assert_eq!(
        s.query("ns", &AlarmFilter::default(), None, 0)
            .unwrap()
            .0
            .len(),
        1
    );
    assert!(matches!(
        s.query("ns", &AlarmFilter::default(), Some("garbage"), 5),
        Err(AlarmError::Invalid { .. })
    ));
}

#[test]
fn counts_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.counts("ns").unwrap(), AlarmCounts::default());
    history(&s);
    let c = s.counts("ns").unwrap();
    assert_eq!(c.total(), 6);
    assert_eq!(c.active(), 3);
    assert_eq!(c.in_state(AlarmState::ActiveUnacknowledged), 2);
    assert_eq!(c.in_state(AlarmState::ActiveAcknowledged), 1);
    assert_eq!(c.in_state(AlarmState::ClearedUnacknowledged), 2);
    assert_eq!(c.in_state(AlarmState::ClearedAcknowledged), 1);
    assert_eq!(c.unacknowledged(), 4);
    assert_eq!(c.active_with(Severity::Major), 2);
    assert_eq!(c.active_with(Severity::Warning), 1);
    assert_eq!(c.active_with(Severity::Critical), 0);
    assert_eq!(
        c.get(AlarmState::ClearedUnacknowledged, Severity::Critical),
        1
    );
    assert_eq!(c.highest_active(), Some(Severity::Major));
    // A severity change by a repeated raise moves the count.
    raise(&s, "d2", "hot", Severity::Critical, 900);
    let c = s.counts("ns").unwrap();
    assert_eq!(c.active_with(Severity::Critical), 1);
    assert_eq!(c.active_with(Severity::Warning), 0);
    assert_eq!(c.total(), 6);
    assert_eq!(s.counts("elsewhere").unwrap().total(), 1);
    assert_eq!(s.total().unwrap(), 7);
}

#[test]
fn alarms_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (before, counts, a) = {
        let s = open(&dir);
        let a = history(&s);
        let q = s.query("ns", &AlarmFilter::default(), None, 100).unwrap().0;
        (q, s.counts("ns").unwrap(), a)
    };
    let s = open(&dir);
    assert_eq!(
        s.query("ns", &AlarmFilter::default(), None, 100).unwrap().0,
        before
    );
    assert_eq!(s.counts("ns").unwrap(), counts);
    // De-duplication and sequence numbers carry on where they were.
    let Change::Updated(u) = raise(&s, "d1", "hot", Severity::Major, 1000) else {
        panic!("expected an update of the active alarm");
    };
    assert_eq!(u.id, a[5]);
    let fresh = raise(&s, "d9", "hot", Severity::Major, 1000).into_alarm();
    assert!(!a.contains(&fresh.id));
    assert!(fresh.id > a[5]);
}

#[test]
fn prune_keeps_the_bound_closed_first_never_active() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    // Three closed (closed at 30, 10, 20), two cleared-unacknowledged
    // (cleared at 5, 15), two active.
    let mut closed = Vec::new();
    for (i, t) in [30u64, 10, 20].into_iter().enumerate() {
        let a = raise(&s, "c", &format!("t{i}"), Severity::Minor, 1).into_alarm();
        s.clear("ns", &a.id, "u", 2).unwrap();
        s.acknowledge("ns", &a.id, "u", t).unwrap();
        closed.push(a.id);
    }
    let mut cleared = Vec::new();
    for (i, t) in [5u64, 15].into_iter().enumerate() {
        let a = raise(&s, "u", &format!("t{i}"), Severity::Minor, 1).into_alarm();
        s.clear("ns", &a.id, "u", t).unwrap();
        cleared.push(a.id);
    }
    let active: Vec<String> = (0..2)
        .map(|i| {
            raise(&s, "a", &format!("t{i}"), Severity::Minor, 1)
                .into_alarm()
                .id
        })
        .collect();
    assert_eq!(s.total().unwrap(), 7);

    assert_eq!(s.prune(100).unwrap(), 0);
    assert_eq!(s.prune(5).unwrap(), 2);
    let left = |id: &str| s.get("ns", id).unwrap().is_some();
    // The two closed longest ago (10 and 20) went first.
    assert!(!left(&closed[1]) && !left(&closed[2]) && left(&closed[0]));
    assert_eq!(s.prune(3).unwrap(), 2);
    assert!(!left(&closed[0]) && !left(&cleared[0]) && left(&cleared[1]));
    assert_eq!(s.prune(0).unwrap(), 1);
    assert_eq!(s.total().unwrap(), 2);
    assert!(active.iter().all(|id| left(id)));
    assert_eq!(s.prune(0).unwrap(), 0);
    assert_eq!(s.counts("ns").unwrap().total(), 2);
    assert_eq!(
        s.query("ns", &AlarmFilter::default(), None, 100)
            .unwrap()
            .0
            .len(),
        2
    );
}

#[test]
fn delete_device_removes_its_alarms_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    history(&s);
    assert_eq!(s.delete_device("ns", "d1").unwrap(), 3);
    assert_eq!(s.delete_device("ns", "d1").unwrap(), 0);
    assert_eq!(s.active("ns", "d1", "hot").unwrap(), None);
    let left = s.query("ns", &AlarmFilter::default(), None, 100).unwrap().0;
    assert!(left.iter().all(|a| a.device_id != "d1"));
    assert_eq!(left.len(), 3);
    assert_eq!(s.counts("ns").unwrap().total(), 3);
    assert_eq!(s.counts("elsewhere").unwrap().total(), 1);
    // A raise after the delete starts afresh.
    assert!(matches!(
        raise(&s, "d1", "hot", Severity::Minor, 2000),
        Change::Raised(_)
    ));
}
