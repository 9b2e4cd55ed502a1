//! The store through its public API: durability across reopen, atomic
//! twin updates, command order, expiry, paging, presence.

use std::sync::Arc;

use serde_json::{json, Value};
use twin::{
    Command, CommandStatus, DeviceStateStore, FleetCounts, NewCommand, PresenceState, Twin,
    TwinError, TwinLimits, TwinQuery, TwinUpdate, UpdateError, FILE_NAME,
};

fn open(dir: &tempfile::TempDir) -> DeviceStateStore {
    DeviceStateStore::open(&dir.path().join(FILE_NAME)).unwrap()
}

fn reported(v: Value) -> TwinUpdate {
    TwinUpdate {
        reported: Some(v),
        ..TwinUpdate::default()
    }
}

fn desired(v: Value) -> TwinUpdate {
    TwinUpdate {
        desired: Some(v),
        ..TwinUpdate::default()
    }
}

fn cmd(method: &str, ttl_ms: Option<u64>) -> NewCommand {
    NewCommand {
        method: method.into(),
        params: json!({"n": 1}),
        timeout_ms: 1_000,
        ttl_ms,
    }
}

fn update_twin(
    s: &DeviceStateStore,
    device: &str,
    name: &str,
    u: &TwinUpdate,
    now: u64,
) -> (Twin, Twin) {
    s.update_twin("ns", device, name, u, &TwinLimits::default(), now)
        .unwrap()
        .unwrap()
}

fn ids(cs: &[Command]) -> Vec<&str> {
    cs.iter().map(|c| c.id.as_str()).collect()
}

#[test]
fn the_store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DeviceStateStore>();
}

#[test]
fn everything_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (twin, command, presence) = {
        let s = open(&dir);
        update_twin(&s, "d1", "", &desired(json!({"speed": 10})), 100);
        let (_, twin) = update_twin(&s, "d1", "", &reported(json!({"speed": 5})), 200);
        update_twin(&s, "d1", "config", &reported(json!({"x": [1, 2]})), 300);
        let c = s
            .create_command("ns", "d1", cmd("reboot", Some(60_000)), 400)
            .unwrap();
        let command = s
            .update_command("ns", "d1", &c.id, |c| c.mark_sent(500))
            .unwrap()
            .unwrap();
        let (presence, event) = s
            .update_presence("ns", "d1", |p| {
                p.connected(Some("10.0.0.9:1234"), "mqtt/5", 600)
            })
            .unwrap();
        assert!(event);
        (twin, command, presence)
    };
    let s = open(&dir);
    assert_eq!(s.get_twin("ns", "d1", "").unwrap(), Some(twin.clone()));
    assert_eq!(twin.version, 2);
    let names: Vec<String> = s
        .list_twins("ns", "d1")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["", "config"]);
    assert_eq!(
        s.get_command("ns", "d1", &command.id).unwrap(),
        Some(command.clone())
    );
    assert_eq!(s.get_presence("ns", "d1").unwrap(), Some(presence));
    // The command sequence continues after a reopen.
    let next = s
        .create_command("ns", "d1", cmd("ping", None), 700)
        .unwrap();
    assert!(next.seq > command.seq);
    // The deadline index survived too.
    assert_eq!(s.expire_commands(500 + 999).unwrap().len(), 0);
    let timed_out = s.expire_commands(500 + 1_000).unwrap();
    assert_eq!(ids(&timed_out), [command.id.as_str()]);
    assert_eq!(timed_out[0].status, CommandStatus::TimedOut);
}

#[test]
fn concurrent_twin_updates_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut conflicts = 0;
                for i in 0..100 {
                    loop {
                        let current = s.get_twin("ns", "d", "").unwrap().unwrap_or_default();
                        let count = current
                            .reported
                            .get("count")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        let u = TwinUpdate {
                            reported: Some(json!({"count": count + 1, format!("t{t}"): i})),
                            expected_version: Some(current.version),
                            ..TwinUpdate::default()
                        };
                        match s
                            .update_twin("ns", "d", "", &u, &TwinLimits::default(), i)
                            .unwrap()
                        {
                            Ok(_) => break,
                            Err(UpdateError::VersionConflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let twin = s.get_twin("ns", "d", "").unwrap().unwrap();
    assert_eq!(twin.version, 200);
    assert_eq!(twin.reported["count"], json!(200));
    assert_eq!(twin.reported["t0"], json!(99));
    assert_eq!(twin.reported["t1"], json!(99));
}

#[test]
fn update_twin_returns_previous_and_current_and_refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let (prev, cur) = update_twin(&s, "d", "", &desired(json!({"a": 1})), 10);
    assert_eq!(prev, Twin::default());
    assert_eq!(cur.version, 1);
    let stale = TwinUpdate {
        expected_version: Some(0),
        ..desired(json!({"a": 2}))
    };
    let r = s
        .update_twin("ns", "d", "", &stale, &TwinLimits::default(), 20)
        .unwrap();
    assert_eq!(r, Err(UpdateError::VersionConflict { current: 1 }));
    assert_eq!(s.get_twin("ns", "d", "").unwrap(), Some(cur));
    // Names are checked, and a device has a bounded number of twins.
    assert!(matches!(
        s.update_twin(
            "ns",
            "d",
            "get",
            &desired(json!({})),
            &TwinLimits::default(),
            1
        ),
        Err(TwinError::Invalid { .. })
    ));
    let limits = TwinLimits {
        max_twins_per_device: 2,
        ..TwinLimits::default()
    };
    s.update_twin("ns", "d", "one", &desired(json!({})), &limits, 1)
        .unwrap()
        .unwrap();
    let r = s
        .update_twin("ns", "d", "two", &desired(json!({})), &limits, 1)
        .unwrap();
    assert_eq!(r, Err(UpdateError::TooManyTwins { limit: 2 }));
    // Existing twins can still be updated.
    s.update_twin("ns", "d", "one", &desired(json!({"b": 1})), &limits, 1)
        .unwrap()
        .unwrap();
    assert!(s.delete_twin("ns", "d", "one").unwrap());
    assert!(!s.delete_twin("ns", "d", "one").unwrap());
    s.delete_twins("ns", "d").unwrap();
    assert!(s.list_twins("ns", "d").unwrap().is_empty());
}

#[test]
fn query_twins_pages_by_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for (d, fw) in [
        ("a", "1.2.0"),
        ("b", "1.1.0"),
        ("c", "1.2.0"),
        ("d", "1.2.0"),
        ("e", "1.2.0"),
    ] {
        update_twin(&s, d, "", &reported(json!({"firmware": fw})), 1);
        // A named twin with the same value must not be confused with it.
        update_twin(&s, d, "extra", &reported(json!({"firmware": "1.2.0"})), 1);
    }
    update_twin(&s, "z", "extra", &reported(json!({"firmware": "1.2.0"})), 1);
    s.update_twin(
        "other",
        "a",
        "",
        &reported(json!({"firmware": "1.2.0"})),
        &TwinLimits::default(),
        1,
    )
    .unwrap()
    .unwrap();
    let q = TwinQuery::parse(r#"reported.firmware = "1.2.0""#).unwrap();
    let (page, next) = s.query_twins("ns", "", &q, None, 2).unwrap();
    assert_eq!(page, ["a", "c"]);
    assert_eq!(next.as_deref(), Some("c"));
    let (page, next) = s.query_twins("ns", "", &q, next.as_deref(), 2).unwrap();
    assert_eq!(page, ["d", "e"]);
    assert_eq!(next, None);
    let (page, _) = s.query_twins("ns", "extra", &q, Some("c"), 10).unwrap();
    assert_eq!(page, ["d", "e", "z"]);
}

#[test]
fn pending_commands_in_creation_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let c: Vec<Command> = (0..5)
        .map(|i| {
            s.create_command("ns", "d", cmd(&format!("m{i}"), None), i)
                .unwrap()
        })
        .collect();
    s.create_command("ns", "other", cmd("x", None), 0).unwrap();
    s.create_command("ns2", "d", cmd("x", None), 0).unwrap();
    s.update_command("ns", "d", &c[1].id, |c| c.mark_sent(10))
        .unwrap()
        .unwrap();
    s.update_command("ns", "d", &c[2].id, |c| {
        c.mark_sent(10)?;
        c.mark_delivered(11)
    })
    .unwrap()
    .unwrap();
    s.update_command("ns", "d", &c[3].id, |c| c.cancel(12))
        .unwrap()
        .unwrap();
    s.update_command("ns", "d", &c[0].id, |c| {
        c.mark_sent(10)?;
        c.respond(&json!({"status": 0}), 13)
    })
    .unwrap()
    .unwrap();
    let pending = s.pending_commands("ns", "d").unwrap();
    assert_eq!(ids(&pending), [&c[1].id, &c[2].id, &c[4].id]);
    let statuses: Vec<_> = pending.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [
            CommandStatus::Sent,
            CommandStatus::Delivered,
            CommandStatus::Queued
        ]
    );
    assert_eq!(pending[2].method, "m4");
}

#[test]
fn update_command_refusals_and_missing_commands() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let c = s.create_command("ns", "d", cmd("m", None), 1).unwrap();
    let refused = s
        .update_command("ns", "d", &c.id, |c| c.mark_delivered(2))
        .unwrap();
    assert_eq!(refused.unwrap_err().status, CommandStatus::Queued);
    assert_eq!(s.get_command("ns", "d", &c.id).unwrap(), Some(c.clone()));
    // Identity fields cannot be changed through the closure.
    let updated = s
        .update_command("ns", "d", &c.id, |c| {
            c.id = "other".into();
            c.device_id = "other".into();
            c.mark_sent(3)
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        (updated.id.as_str(), updated.device_id.as_str()),
        (c.id.as_str(), "d")
    );
    for (device, id) in [
        ("d", "c0000000000000fff"),
        ("d", "nonsense"),
        ("x", c.id.as_str()),
    ] {
        let e = s
            .update_command("ns", device, id, |c| c.cancel(4))
            .unwrap_err();
        assert!(
            matches!(
                e,
                TwinError::NotFound {
                    kind: "command",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(s.get_command("ns", device, id).unwrap(), None);
    }
    // Invalid commands are refused before anything is stored.
    let e = s.create_command("ns", "d", cmd("", None), 1).unwrap_err();
    assert!(
        matches!(e, TwinError::Invalid { ref field, .. } if field == "method"),
        "{e}"
    );
    let e = s.create_command("", "d", cmd("m", None), 1).unwrap_err();
    assert!(matches!(e, TwinError::Invalid { .. }), "{e}");
}

#[test]
fn expire_commands_with_a_virtual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let ttl = s
        .create_command("ns", "d", cmd("ttl", Some(500)), 1_000)
        .unwrap();
    let forever = s
        .create_command("ns", "d", cmd("forever", None), 1_000)
        .unwrap();
    let sent = s
        .create_command("ns", "e", cmd("sent", Some(500)), 1_000)
        .unwrap();
    // Sending moves the deadline from the ttl to the response timeout.
    s.update_command("ns", "e", &sent.id, |c| c.mark_sent(1_400))
        .unwrap()
        .unwrap();
    assert_eq!(s.deadline_index_len().unwrap(), 2);

    assert!(s.expire_commands(1_499).unwrap().is_empty());
    let expired = s.expire_commands(1_500).unwrap();
    assert_eq!(ids(&expired), [ttl.id.as_str()]);
    assert_eq!(expired[0].status, CommandStatus::Expired);
    assert_eq!(
        s.get_command("ns", "d", &ttl.id).unwrap().unwrap().status,
        CommandStatus::Expired
    );
    // Delivery keeps the deadline of the first send.
    s.update_command("ns", "e", &sent.id, |c| c.mark_delivered(1_450))
        .unwrap()
        .unwrap();
    assert!(s.expire_commands(2_399).unwrap().is_empty());
    let timed_out = s.expire_commands(2_400).unwrap();
    assert_eq!(ids(&timed_out), [sent.id.as_str()]);
    assert_eq!(timed_out[0].status, CommandStatus::TimedOut);
    assert_eq!(s.deadline_index_len().unwrap(), 0);
    assert!(s.expire_commands(u64::MAX).unwrap().is_empty());
    assert_eq!(
        ids(&s.pending_commands("ns", "d").unwrap()),
        [forever.id.as_str()]
    );

    // A response before the deadline removes it from the index.
    let answered = s
        .create_command("ns", "d", cmd("answered", Some(10)), 3_000)
        .unwrap();
    s.update_command("ns", "d", &answered.id, |c| {
        c.mark_sent(3_001)?;
        c.respond(&json!({"status": 2}), 3_002)
    })
    .unwrap()
    .unwrap();
    assert_eq!(s.deadline_index_len().unwrap(), 0);

    // Final commands are kept for the retention, then pruned.
    // (finished: expired at 1500, timed out at 2400, failed at 3002)
    assert_eq!(s.prune_commands(1_500 + 999, 1_000).unwrap(), 0);
    assert_eq!(s.prune_commands(2_400 + 1_000, 1_000).unwrap(), 2);
    assert_eq!(s.get_command("ns", "d", &ttl.id).unwrap(), None);
    assert_eq!(s.prune_commands(u64::MAX, 0).unwrap(), 1);
    assert_eq!(s.prune_commands(5, 10).unwrap(), 0);
    assert_eq!(
        ids(&s.list_commands("ns", "d", None, 10).unwrap().0),
        [forever.id.as_str()]
    );
}

#[test]
fn list_commands_pages_in_creation_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let all: Vec<String> = (0..5)
        .map(|i| s.create_command("ns", "d", cmd("m", None), i).unwrap().id)
        .collect();
    s.create_command("ns", "d2", cmd("m", None), 9).unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, next) = s.list_commands("ns", "d", after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|c| c.id));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, all);
    let (page, next) = s.list_commands("ns", "d", Some(&all[4]), 2).unwrap();
    assert!(page.is_empty() && next.is_none());
    let (page, _) = s.list_commands("ns", "d", None, 0).unwrap();
    assert_eq!(page.len(), 1, "a limit of 0 is taken as 1");
    let e = s.list_commands("ns", "d", Some("bogus"), 2).unwrap_err();
    assert!(
        matches!(e, TwinError::Invalid { ref field, .. } if field == "after"),
        "{e}"
    );
}

#[test]
fn open_commands_per_device_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    // One fsynced transaction per command: this fills the real quota.
    let n = twin::MAX_OPEN_COMMANDS_PER_DEVICE;
    for i in 0..n {
        s.create_command("ns", "d", cmd("m", None), i as u64)
            .unwrap();
    }
    let e = s.create_command("ns", "d", cmd("m", None), 0).unwrap_err();
    assert!(matches!(e, TwinError::Conflict(_)), "{e}");
    // Another device is not affected; a final command frees a slot.
    s.create_command("ns", "d2", cmd("m", None), 0).unwrap();
    let first = s.list_commands("ns", "d", None, 1).unwrap().0.remove(0);
    s.update_command("ns", "d", &first.id, |c| c.cancel(1))
        .unwrap()
        .unwrap();
    s.create_command("ns", "d", cmd("m", None), 0).unwrap();
}

#[test]
fn presence_survives_and_resets_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.update_presence("ns", "on", |p| p.connected(None, "mqtt/5", 10))
            .unwrap();
        s.update_presence("ns", "on", |p| p.connected(None, "ws", 11))
            .unwrap();
        s.update_presence("ns", "idle", |p| p.connected(None, "mqtt/5", 10))
            .unwrap();
        let (p, event) = s
            .update_presence("ns", "idle", |p| p.check_inactive(100, 200))
            .unwrap();
        assert!(event);
        assert_eq!(p.state, PresenceState::Inactive);
        s.update_presence("ns", "off", |p| p.connected(None, "mqtt/5", 10))
            .unwrap();
        let (p, event) = s
            .update_presence("ns", "off", |p| p.disconnected("bye", 20))
            .unwrap();
        assert!(event);
        assert_eq!(p.state, PresenceState::Offline);
        s.update_presence("ns2", "x", |p| p.connected(None, "mqtt/5", 10))
            .unwrap();
        // A transition that changes nothing.
        let (p, event) = s.update_presence("ns", "never", |p| p.seen(5)).unwrap();
        assert!(!event);
        assert_eq!(p.state, PresenceState::NeverConnected);
        assert_eq!(
            s.fleet_counts("ns").unwrap(),
            FleetCounts {
                online: 1,
                offline: 1,
                inactive: 1,
                never_connected: 1
            }
        );
    }
    let s = open(&dir);
    let on = s.get_presence("ns", "on").unwrap().unwrap();
    assert_eq!((on.state, on.connections), (PresenceState::Online, 2));
    let mut reset = s.reset_presence(1_000).unwrap();
    reset.sort();
    assert_eq!(
        reset,
        [
            ("ns".to_string(), "idle".to_string()),
            ("ns".to_string(), "on".to_string()),
            ("ns2".to_string(), "x".to_string())
        ]
    );
    let on = s.get_presence("ns", "on").unwrap().unwrap();
    assert_eq!((on.state, on.connections), (PresenceState::Offline, 0));
    assert_eq!(on.last_reason.as_deref(), Some("server restart"));
    assert_eq!(on.last_disconnected_ms, Some(1_000));
    let off = s.get_presence("ns", "off").unwrap().unwrap();
    assert_eq!(off.last_reason.as_deref(), Some("bye"));
    assert!(s.reset_presence(2_000).unwrap().is_empty());
    let all: Vec<String> = s
        .all_presence("ns")
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(all, ["idle", "never", "off", "on"]);
    assert_eq!(s.fleet_counts("ns").unwrap().offline, 3);
}

#[test]
fn delete_device_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    update_twin(&s, "d", "", &desired(json!({"a": 1})), 1);
    update_twin(&s, "d", "n", &desired(json!({"a": 1})), 1);
    update_twin(&s, "keep", "", &desired(json!({"a": 1})), 1);
    let c = s.create_command("ns", "d", cmd("m", Some(100)), 1).unwrap();
    s.create_command("ns", "d", cmd("m", Some(100)), 1).unwrap();
    s.update_command("ns", "d", &c.id, |c| c.cancel(2))
        .unwrap()
        .unwrap();
    s.create_command("ns", "keep", cmd("m", Some(100)), 1)
        .unwrap();
    s.update_presence("ns", "d", |p| p.connected(None, "mqtt/5", 1))
        .unwrap();
    s.delete_device("ns", "d").unwrap();
    assert!(s.list_twins("ns", "d").unwrap().is_empty());
    assert!(s.list_commands("ns", "d", None, 10).unwrap().0.is_empty());
    assert_eq!(s.get_presence("ns", "d").unwrap(), None);
    assert_eq!(s.deadline_index_len().unwrap(), 1);
    assert_eq!(
        s.prune_commands(u64::MAX, 0).unwrap(),
        0,
        "the finished index was cleared"
    );
    assert_eq!(s.list_twins("ns", "keep").unwrap().len(), 1);
    s.delete_commands("ns", "keep").unwrap();
    assert_eq!(s.deadline_index_len().unwrap(), 0);
    s.delete_presence("ns", "keep").unwrap();
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(&dir);
    let e = DeviceStateStore::open(&dir.path().join(FILE_NAME))
        .err()
        .expect("second open must fail");
    assert!(
        matches!(e, TwinError::Storage(ref m) if m.contains("already open")),
        "{e}"
    );
}
