//! The behaviour every [`DeviceStateStorage`] implementation must have.
//! A backend's tests call [`run`] with a function that makes a store for
//! a path (see `kv::conformance::Make`). Compiled for this crate's tests
//! and with the `conformance` feature.

use std::path::Path;

use kv::conformance::{run_cases, Case, Stores};
use serde_json::json;

use crate::{
    CommandStatus, DeviceStateStorage, NewCommand, PresenceState, TwinLimits, TwinQuery,
    TwinUpdate, UpdateError,
};

/// Runs every case, each on a store of its own; panics on the first
/// difference.
pub fn run<S: DeviceStateStorage>(make: impl Fn(&Path) -> S) {
    let cases: &[(&str, Case<S>)] = &[
        ("twins", twins),
        ("twin queries", twin_queries),
        ("commands", commands),
        ("command expiry and pruning", command_expiry),
        ("presence", presence),
        ("delete device", delete_device),
        ("durability", durability),
    ];
    run_cases("device state store", "devices.redb", &make, cases);
}

fn reported(v: serde_json::Value) -> TwinUpdate {
    TwinUpdate {
        reported: Some(v),
        ..TwinUpdate::default()
    }
}

fn cmd(method: &str, ttl_ms: Option<u64>) -> NewCommand {
    NewCommand {
        method: method.into(),
        params: json!({}),
        timeout_ms: 1_000,
        ttl_ms,
    }
}

fn twins<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let limits = TwinLimits::default();
    assert_eq!(s.get_twin("ns", "d", "").unwrap(), None);
    let (before, after) = s
        .update_twin("ns", "d", "", &reported(json!({"fw": "1"})), &limits, 10)
        .unwrap()
        .unwrap();
    assert_eq!((before.version, after.version), (0, 1));
    let desired = TwinUpdate {
        desired: Some(json!({"rate": 5})),
        expected_version: Some(1),
        ..TwinUpdate::default()
    };
    let (_, t) = s
        .update_twin("ns", "d", "", &desired, &limits, 11)
        .unwrap()
        .unwrap();
    assert_eq!(t.version, 2);
    assert_eq!(t.delta(), json!({"rate": 5}).as_object().cloned().unwrap());
    let stale = s.update_twin("ns", "d", "", &desired, &limits, 12).unwrap();
    assert_eq!(stale, Err(UpdateError::VersionConflict { current: 2 }));
    assert_eq!(s.get_twin("ns", "d", "").unwrap(), Some(t.clone()));
    s.update_twin("ns", "d", "extra", &reported(json!({"a": 1})), &limits, 13)
        .unwrap()
        .unwrap();
    s.update_twin("ns", "d2", "", &reported(json!({"a": 1})), &limits, 13)
        .unwrap()
        .unwrap();
    let names: Vec<String> = s
        .list_twins("ns", "d")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["", "extra"]);
    assert!(s.delete_twin("ns", "d", "extra").unwrap());
    assert!(!s.delete_twin("ns", "d", "extra").unwrap());
    s.delete_twins("ns", "d").unwrap();
    assert!(s.list_twins("ns", "d").unwrap().is_empty());
    assert_eq!(s.list_twins("ns", "d2").unwrap().len(), 1);
    assert!(s.list_twins("other", "d2").unwrap().is_empty());
}

fn twin_queries<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let limits = TwinLimits::default();
    for (d, fw) in [("a", "2"), ("b", "1"), ("c", "2"), ("d", "2")] {
        s.update_twin("ns", d, "", &reported(json!({"fw": fw})), &limits, 1)
            .unwrap()
            .unwrap();
    }
    s.update_twin("other", "e", "", &reported(json!({"fw": "2"})), &limits, 1)
        .unwrap()
        .unwrap();
    let q = TwinQuery::parse(r#"reported.fw = "2""#).expect("a query");
    let (page, next) = s.query_twins("ns", "", &q, None, 2).unwrap();
    assert_eq!(page, ["a", "c"]);
    let (page, next) = s.query_twins("ns", "", &q, next.as_deref(), 2).unwrap();
    assert_eq!((page, next), (vec!["d".to_string()], None));
}

fn commands<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let a = s.create_command("ns", "d", cmd("a", None), 10).unwrap();
    let b = s.create_command("ns", "d", cmd("b", None), 11).unwrap();
    let other = s.create_command("ns", "d2", cmd("c", None), 12).unwrap();
    assert!(a.seq < b.seq && b.seq < other.seq);
    assert_eq!(a.status, CommandStatus::Queued);
    assert_eq!(s.get_command("ns", "d", &a.id).unwrap(), Some(a.clone()));
    assert_eq!(s.get_command("ns", "d2", &a.id).unwrap(), None);
    assert_eq!(s.get_command("ns", "d", "nonsense").unwrap(), None);
    let sent = s
        .update_command("ns", "d", &a.id, &mut |c| c.mark_sent(20))
        .unwrap()
        .unwrap();
    assert_eq!(sent.status, CommandStatus::Sent);
    assert!(s
        .update_command("ns", "d", &a.id, &mut |c| c.mark_sent(21))
        .unwrap()
        .is_err());
    let pending: Vec<String> = s
        .pending_commands("ns", "d")
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(pending, [a.id.clone(), b.id.clone()]);
    let (page, next) = s.list_commands("ns", "d", None, 1).unwrap();
    assert_eq!(page[0].id, a.id);
    let (page, next) = s.list_commands("ns", "d", next.as_deref(), 1).unwrap();
    assert_eq!(page[0].id, b.id);
    assert_eq!(next, None);
    s.delete_commands("ns", "d").unwrap();
    assert!(s.pending_commands("ns", "d").unwrap().is_empty());
    assert_eq!(s.pending_commands("ns", "d2").unwrap().len(), 1);
}

fn command_expiry<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let c = s.create_command("ns", "d", cmd("a", Some(100)), 0).unwrap();
    let keep = s.create_command("ns", "d", cmd("b", None), 0).unwrap();
    assert!(s.expire_commands(99).unwrap().is_empty());
    let expired = s.expire_commands(100).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, c.id);
    assert!(expired[0].status.is_final());
    assert!(s.expire_commands(100).unwrap().is_empty());
    assert_eq!(s.prune_commands(120, 50).unwrap(), 0);
    assert_eq!(s.prune_commands(200, 50).unwrap(), 1);
    assert_eq!(s.get_command("ns", "d", &c.id).unwrap(), None);
    assert!(s.get_command("ns", "d", &keep.id).unwrap().is_some());
}

fn presence<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    assert_eq!(s.get_presence("ns", "d1").unwrap(), None);
    let (p, event) = s
        .update_presence("ns", "d1", &mut |p| p.connected(Some("a:1"), "mqtt/5", 10))
        .unwrap();
    assert!(event);
    assert_eq!(p.state, PresenceState::Online);
    s.update_presence("ns", "d2", &mut |p| p.connected(None, "mqtt/5", 11))
        .unwrap();
    s.update_presence("ns", "d2", &mut |p| p.disconnected("bye", 12))
        .unwrap();
    s.update_presence("other", "d3", &mut |p| p.connected(None, "mqtt/5", 11))
        .unwrap();
    assert_eq!(s.get_presence("ns", "d1").unwrap(), Some(p));
    let all: Vec<String> = s
        .all_presence("ns")
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(all, ["d1", "d2"]);
    let counts = s.fleet_counts("ns").unwrap();
    assert_eq!((counts.online, counts.offline), (1, 1));
    let mut reset = s.reset_presence(20).unwrap();
    reset.sort();
    assert_eq!(
        reset,
        [
            ("ns".to_string(), "d1".to_string()),
            ("other".to_string(), "d3".to_string())
        ]
    );
    assert_eq!(s.fleet_counts("ns").unwrap().online, 0);
    s.delete_presence("ns", "d1").unwrap();
    assert_eq!(s.get_presence("ns", "d1").unwrap(), None);
}

fn delete_device<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let limits = TwinLimits::default();
    for d in ["d", "keep"] {
        s.update_twin("ns", d, "", &reported(json!({"a": 1})), &limits, 1)
            .unwrap()
            .unwrap();
        s.create_command("ns", d, cmd("m", Some(10)), 1).unwrap();
        s.update_presence("ns", d, &mut |p| p.connected(None, "mqtt/5", 1))
            .unwrap();
    }
    s.delete_device("ns", "d").unwrap();
    assert!(s.list_twins("ns", "d").unwrap().is_empty());
    assert!(s.pending_commands("ns", "d").unwrap().is_empty());
    assert_eq!(s.get_presence("ns", "d").unwrap(), None);
    // Its command is gone from the deadline index too.
    let expired = s.expire_commands(100).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].device_id, "keep");
    assert_eq!(s.list_twins("ns", "keep").unwrap().len(), 1);
}

fn durability<S: DeviceStateStorage>(stores: &Stores<'_, S>) {
    let (_dir, path) = stores.temp_path();
    let limits = TwinLimits::default();
    let (twin, command, presence) = {
        let s = stores.open(&path);
        let (_, t) = s
            .update_twin("ns", "d", "", &reported(json!({"fw": "1"})), &limits, 1)
            .unwrap()
            .unwrap();
        let c = s.create_command("ns", "d", cmd("m", None), 2).unwrap();
        let (p, _) = s
            .update_presence("ns", "d", &mut |p| p.connected(None, "mqtt/5", 3))
            .unwrap();
        (t, c, p)
    };
    let s = stores.open(&path);
    assert_eq!(s.get_twin("ns", "d", "").unwrap(), Some(twin));
    assert_eq!(
        s.get_command("ns", "d", &command.id).unwrap(),
        Some(command.clone())
    );
    assert_eq!(s.get_presence("ns", "d").unwrap(), Some(presence));
    let next = s.create_command("ns", "d", cmd("n", None), 4).unwrap();
    assert!(next.seq > command.seq, "sequence numbers are never reused");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_redb_store_conforms() {
        super::run(|path| crate::DeviceStateStore::open(path).expect("open"));
    }
}
