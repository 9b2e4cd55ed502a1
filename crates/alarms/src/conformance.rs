//! The behaviour every [`AlarmStorage`] implementation must have. A
//! backend's tests call [`run`] with a function that makes a store for a
//! path (see `kv::conformance::Make`). Compiled for this crate's tests
//! and with the `conformance` feature.

use std::path::Path;

use kv::conformance::{run_cases, Case, Stores};
use serde_json::json;

use crate::{AlarmError, AlarmFilter, AlarmState, AlarmStorage, Change, Severity};

/// Runs every case, each on a store of its own; panics on the first
/// difference.
pub fn run<S: AlarmStorage>(make: impl Fn(&Path) -> S) {
    let cases: &[(&str, Case<S>)] = &[
        ("life cycle", life_cycle),
        ("de-duplication", de_duplication),
        ("refusals", refusals),
        ("history and counts", history_and_counts),
        ("namespaces", namespaces),
        ("prune and delete", prune_and_delete),
        ("durability", durability),
    ];
    run_cases("alarm store", "alarms.redb", &make, cases);
}

fn raise<S: AlarmStorage>(s: &S, ns: &str, device: &str, ty: &str, now: u64) -> Change {
    s.raise(
        ns,
        device,
        ty,
        Severity::Major,
        json!({"at": now}),
        Some("r"),
        now,
    )
    .expect("raise")
}

fn life_cycle<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let Change::Raised(a) = raise(&s, "ns", "d", "hot", 10) else {
        panic!("a first raise creates an alarm");
    };
    assert_eq!(a.state, AlarmState::ActiveUnacknowledged);
    assert_eq!(s.get("ns", &a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(s.active("ns", "d", "hot").unwrap().as_ref(), Some(&a));
    let Change::Acknowledged(b) = s.acknowledge("ns", &a.id, "ann", 11).unwrap() else {
        panic!("acknowledged");
    };
    assert_eq!(b.state, AlarmState::ActiveAcknowledged);
    let Change::Cleared(c) = s.clear("ns", &a.id, "bob", 12).unwrap() else {
        panic!("cleared");
    };
    assert_eq!(c.state, AlarmState::ClearedAcknowledged);
    assert_eq!(c.cleared_by.as_deref(), Some("bob"));
    assert_eq!(s.active("ns", "d", "hot").unwrap(), None);
    assert_eq!(
        s.clear_active("ns", "d", "hot", "rule:r", 13).unwrap(),
        None
    );
    raise(&s, "ns", "d", "hot", 14);
    let Some(Change::Cleared(e)) = s.clear_active("ns", "d", "hot", "rule:r", 15).unwrap() else {
        panic!("clear_active clears the active alarm");
    };
    assert_eq!(e.state, AlarmState::ClearedUnacknowledged);
    assert_ne!(e.id, a.id);
}

fn de_duplication<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let first = raise(&s, "ns", "d", "hot", 10).alarm().clone();
    let Change::Updated(again) = raise(&s, "ns", "d", "hot", 20) else {
        panic!("a raise of an active alarm updates it");
    };
    assert_eq!((again.id.as_str(), again.count), (first.id.as_str(), 2));
    assert_eq!((again.first_raised_ms, again.last_raised_ms), (10, 20));
    s.clear("ns", &first.id, "u", 30).unwrap();
    let Change::Raised(next) = raise(&s, "ns", "d", "hot", 40) else {
        panic!("a raise after a clear creates a new alarm");
    };
    assert_ne!(next.id, first.id);
    let Change::Raised(_) = raise(&s, "ns", "d", "cold", 40) else {
        panic!("another type is another alarm");
    };
}

fn refusals<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let a = raise(&s, "ns", "d", "hot", 10).alarm().clone();
    s.acknowledge("ns", &a.id, "u", 11).unwrap();
    assert!(matches!(
        s.acknowledge("ns", &a.id, "u", 12),
        Err(AlarmError::Conflict(_))
    ));
    s.clear("ns", &a.id, "u", 13).unwrap();
    assert!(matches!(
        s.clear("ns", &a.id, "u", 14),
        Err(AlarmError::Conflict(_))
    ));
    for id in ["a00000000000000ff", "nonsense"] {
        assert!(matches!(
            s.acknowledge("ns", id, "u", 15),
            Err(AlarmError::NotFound { .. })
        ));
        assert_eq!(s.get("ns", id).unwrap(), None);
    }
    for (device, ty) in [("", "hot"), ("d", "a/b"), ("d", "+"), ("d", "")] {
        let r = s.raise("ns", device, ty, Severity::Minor, json!(null), None, 1);
        assert!(
            matches!(r, Err(AlarmError::Invalid { .. })),
            "{device:?} {ty:?}"
        );
    }
    let big = json!("x".repeat(crate::MAX_DETAILS_BYTES + 1));
    let r = s.raise("ns", "d", "t", Severity::Minor, big, None, 1);
    assert!(matches!(r, Err(AlarmError::Invalid { .. })));
    let r = s.query("ns", &AlarmFilter::default(), Some("not-a-cursor"), 5);
    assert!(matches!(r, Err(AlarmError::Invalid { .. })));
}

fn history_and_counts<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let mut ids = Vec::new();
    for (i, device) in ["d1", "d2", "d1", "d3", "d1"].into_iter().enumerate() {
        let ty = format!("t{i}");
        ids.push(
            raise(&s, "ns", device, &ty, 100 + i as u64)
                .alarm()
                .id
                .clone(),
        );
    }
    s.clear("ns", &ids[0], "u", 200).unwrap();
    // Newest first, in pages of two.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = s
            .query("ns", &AlarmFilter::default(), after.as_deref(), 2)
            .unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|a| a.id));
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    let d1 = AlarmFilter {
        device_id: Some("d1".into()),
        ..AlarmFilter::default()
    };
    let (page, _) = s.query("ns", &d1, None, 10).unwrap();
    let want: Vec<&str> = [&ids[4], &ids[2], &ids[0]].map(String::as_str).to_vec();
    assert_eq!(page.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), want);
    let window = AlarmFilter {
        since_ms: Some(101),
        until_ms: Some(103),
        states: vec![AlarmState::ActiveUnacknowledged],
        ..AlarmFilter::default()
    };
    let (page, next) = s.query("ns", &window, None, 10).unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(next, None);
    let counts = s.counts("ns").unwrap();
    assert_eq!(counts.total(), 5);
    assert_eq!(
        counts.get(AlarmState::ClearedUnacknowledged, Severity::Major),
        1
    );
    assert_eq!(counts.active(), 4);
    assert_eq!(s.total().unwrap(), 5);
}

fn namespaces<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let a = raise(&s, "a", "d", "hot", 1).alarm().clone();
    raise(&s, "ab", "d", "hot", 2);
    let Change::Raised(_) = raise(&s, "b", "d", "hot", 3) else {
        panic!("each namespace has its own active alarm");
    };
    assert_eq!(s.get("b", &a.id).unwrap().map(|x| x.namespace), None);
    let (page, _) = s.query("a", &AlarmFilter::default(), None, 10).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(s.counts("a").unwrap().total(), 1);
    assert_eq!(s.counts("c").unwrap().total(), 0);
    assert_eq!(s.total().unwrap(), 3);
}

fn prune_and_delete<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let closed = raise(&s, "ns", "d1", "a", 1).alarm().clone();
    s.clear("ns", &closed.id, "u", 2).unwrap();
    s.acknowledge("ns", &closed.id, "u", 3).unwrap();
    let unacked = raise(&s, "ns", "d1", "b", 4).alarm().clone();
    s.clear("ns", &unacked.id, "u", 5).unwrap();
    let active = raise(&s, "ns", "d2", "c", 6).alarm().clone();
    assert_eq!(s.prune(10).unwrap(), 0);
    assert_eq!(s.prune(2).unwrap(), 1);
    assert_eq!(s.get("ns", &closed.id).unwrap(), None);
    assert_eq!(s.prune(0).unwrap(), 1);
    assert_eq!(s.get("ns", &unacked.id).unwrap(), None);
    assert!(
        s.get("ns", &active.id).unwrap().is_some(),
        "active alarms stay"
    );
    assert_eq!(s.total().unwrap(), 1);
    raise(&s, "ns", "d2", "d", 7);
    assert_eq!(s.delete_device("ns", "d2").unwrap(), 2);
    assert_eq!(s.delete_device("ns", "d2").unwrap(), 0);
    assert_eq!(s.active("ns", "d2", "c").unwrap(), None);
    assert_eq!(s.counts("ns").unwrap().total(), 0);
}

fn durability<S: AlarmStorage>(stores: &Stores<'_, S>) {
    let (_dir, path) = stores.temp_path();
    let (a, b) = {
        let s = stores.open(&path);
        let a = raise(&s, "ns", "d", "hot", 1).alarm().clone();
        let b = raise(&s, "ns", "d", "cold", 2).alarm().clone();
        s.acknowledge("ns", &b.id, "u", 3).unwrap();
        (a, s.get("ns", &b.id).unwrap())
    };
    let s = stores.open(&path);
    assert_eq!(s.get("ns", &a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(s.get("ns", &b.as_ref().unwrap().id).unwrap(), b);
    let Change::Updated(again) = raise(&s, "ns", "d", "hot", 4) else {
        panic!("the active index survives a reopen");
    };
    assert_eq!(again.count, 2);
    let next = raise(&s, "ns", "d2", "hot", 5).alarm().clone();
    assert!(next.id != a.id && Some(&next.id) != b.as_ref().map(|b| &b.id));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_redb_store_conforms() {
        super::run(|path| crate::AlarmStore::open(path).expect("open"));
    }
}
