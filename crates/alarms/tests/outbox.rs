//! The webhook outbox driven by a virtual clock: push, due, done, failed,
//! back-off doubling and its cap, drops, the bounds, and what survives a
//! crash.

use alarms::{
    backoff_ms, AlarmError, Outbox, OutboxError, Retry, BACKOFF_BASE_MS, BACKOFF_MAX_MS,
    OUTBOX_FILE_NAME,
};

const HOUR: u64 = 3_600_000;

fn open(dir: &tempfile::TempDir, max_entries: usize, max_bytes: usize) -> Outbox {
    Outbox::open(&dir.path().join(OUTBOX_FILE_NAME), max_entries, max_bytes).unwrap()
}

fn push(o: &Outbox, target: &str, body: &str, now: u64) -> u64 {
    o.push(
        target,
        body.as_bytes(),
        vec![("content-type".into(), "application/json".into())],
        "r1",
        now,
    )
    .unwrap()
}

fn due_ids(o: &Outbox, now: u64) -> Vec<u64> {
    o.due(now, 100).unwrap().into_iter().map(|e| e.id).collect()
}

#[test]
fn push_due_done() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, 100, 1 << 20);
    assert!(o.is_empty());
    assert_eq!(o.next_due_ms().unwrap(), None);
    assert_eq!(o.due(0, 10).unwrap(), vec![]);

    let a = push(&o, "http://a/hook", r#"{"n":1}"#, 1_000);
    let b = push(&o, "http://b/hook", r#"{"n":2}"#, 1_000);
    let c = push(&o, "http://a/hook", r#"{"n":3}"#, 2_000);
    assert!(a < b && b < c);
    assert_eq!(o.len(), 3);
    let size = "http://a/hook".len() + 7 + "content-type".len() + "application/json".len() + 2;
    assert_eq!(o.bytes(), 3 * size);

    // Due at their push time, oldest first, at most n.
    assert_eq!(due_ids(&o, 999), Vec::<u64>::new());
    assert_eq!(due_ids(&o, 1_000), [a, b]);
    assert_eq!(due_ids(&o, 5_000), [a, b, c]);
    let first = o.due(5_000, 1).unwrap();
    assert_eq!(first.len(), 1);
    let e = &first[0];
    assert_eq!(
        (e.id, e.target.as_str(), e.body.as_slice(), e.rule.as_str()),
        (a, "http://a/hook", br#"{"n":1}"#.as_slice(), "r1")
    );
    assert_eq!(
        (e.attempts, e.next_attempt_ms, e.created_ms),
        (0, 1_000, 1_000)
    );
    assert_eq!(
        e.headers,
        [("content-type".into(), "application/json".into())]
    );
    assert_eq!(e.last_error, None);
    assert_eq!(e.size(), size);
    assert_eq!(o.next_due_ms().unwrap(), Some(1_000));

    // Due changes nothing; done removes.
    assert_eq!(due_ids(&o, 5_000), [a, b, c]);
    o.done(a).unwrap();
    o.done(a).unwrap(); // repeated: harmless
    assert_eq!(due_ids(&o, 5_000), [b, c]);
    assert_eq!(o.get(a).unwrap(), None);
    assert_eq!((o.len(), o.bytes()), (2, 2 * size));
    o.done(b).unwrap();
    o.done(c).unwrap();
    assert!(o.is_empty());
    assert_eq!(o.bytes(), 0);
    assert_eq!(o.next_due_ms().unwrap(), None);
}

#[test]
fn failures_back_off_doubling_up_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, 100, 1 << 20);
    let id = push(&o, "http://down/hook", "{}", 0);
    let mut now = 0u64;
    let mut waits = Vec::new();
    for attempt in 1..=15u32 {
        assert_eq!(due_ids(&o, now), [id], "attempt {attempt} is due");
        let Retry::Scheduled(at) = o
            .failed(id, "connection refused", now, 100, 24 * HOUR)
            .unwrap()
        else {
            panic!("dropped too early");
        };
        let wait = at - now;
        assert_eq!(wait, backoff_ms(attempt, id));
        let base = (BACKOFF_BASE_MS << (attempt - 1).min(20)).min(BACKOFF_MAX_MS);
        assert!(
            wait >= base && wait <= base + base / 10,
            "{attempt}: {wait}"
        );
        // Not due before its time, due at it.
        assert_eq!(due_ids(&o, at - 1), Vec::<u64>::new());
        assert_eq!(o.next_due_ms().unwrap(), Some(at));
        let e = o.get(id).unwrap().unwrap();
        assert_eq!((e.attempts, e.next_attempt_ms), (attempt, at));
        assert_eq!(e.last_error.as_deref(), Some("connection refused"));
        waits.push(wait);
        now = at;
    }
    // 1 s, 2 s, 4 s, ... doubling, then flat at 5 min, each plus up to
    // 10% of jitter.
    let expected_s = [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300, 300, 300,
    ];
    for (wait, s) in waits.iter().zip(expected_s) {
        assert!(*wait >= s * 1_000 && *wait <= s * 1_100, "{waits:?}");
    }
    // The jitter is there: not every wait is a whole base.
    assert!(waits.iter().any(|w| w % 1_000 != 0), "{waits:?}");
    // Delivered at last.
    o.done(id).unwrap();
    assert!(o.is_empty());
}

#[test]
fn drops_after_max_attempts_or_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, 100, 1 << 20);
    let a = push(&o, "http://x", "a", 0);
    let mut now = 0;
    for _ in 1..3 {
        let Retry::Scheduled(at) = o.failed(a, "500", now, 3, HOUR).unwrap() else {
            panic!("dropped too early");
        };
        now = at;
    }
    assert_eq!(o.failed(a, "500", now, 3, HOUR).unwrap(), Retry::Dropped);
    assert_eq!(o.get(a).unwrap(), None);
    assert!(o.is_empty());
    assert!(matches!(
        o.failed(a, "500", now, 3, HOUR),
        Err(AlarmError::NotFound { .. })
    ));

    // Too old: dropped whatever the attempts.
    let b = push(&o, "http://x", "b", 10 * HOUR);
    assert!(matches!(
        o.failed(b, "timeout", 10 * HOUR + 1_000, 100, HOUR)
            .unwrap(),
        Retry::Scheduled(_)
    ));
    assert_eq!(
        o.failed(b, "timeout", 11 * HOUR, 100, HOUR).unwrap(),
        Retry::Dropped
    );

    // max_attempts 0 counts as 1: the first failure drops.
    let c = push(&o, "http://x", "c", 0);
    assert_eq!(o.failed(c, "x", 0, 0, HOUR).unwrap(), Retry::Dropped);
    assert_eq!((o.len(), o.bytes()), (0, 0));

    // The error kept is cut to its limit.
    let d = push(&o, "http://x", "d", 0);
    o.failed(d, &"e".repeat(5_000), 0, 10, HOUR).unwrap();
    let kept = o.get(d).unwrap().unwrap().last_error.unwrap();
    assert_eq!(kept.chars().count(), alarms::MAX_ERROR_CHARS);
}

#[test]
fn a_retry_does_not_hold_back_newer_entries() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, 100, 1 << 20);
    let a = push(&o, "http://x", "a", 0);
    let Retry::Scheduled(at) = o.failed(a, "503", 0, 10, HOUR).unwrap() else {
        panic!("dropped");
    };
    let b = push(&o, "http://x", "b", 10);
    assert_eq!(due_ids(&o, 10), [b]);
    // Once both are due, the older goes first.
    assert_eq!(due_ids(&o, at), [a, b]);
}

#[test]
fn full_when_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // By entries.
    let o = open(&dir, 2, 1 << 20);
    push(&o, "http://x", "1", 0);
    let second = push(&o, "http://x", "2", 0);
    let full = o.push("http://x", b"3", vec![], "r1", 0);
    assert!(
        matches!(full, Err(OutboxError::Full { entries: 2, .. })),
        "{full:?}"
    );
    assert_eq!(o.len(), 2);
    o.done(second).unwrap();
    push(&o, "http://x", "3", 0);
    drop(o);

    // By bytes: each entry below is 8 + 10 + 2 = 20 bytes.
    let dir = tempfile::tempdir().unwrap();
    let o = open(&dir, 100, 50);
    let body = [b'x'; 10];
    let one = o.push("http://x", &body, vec![], "r1", 0).unwrap();
    o.push("http://x", &body, vec![], "r1", 0).unwrap();
    assert_eq!(o.bytes(), 40);
    assert!(matches!(
        o.push("http://x", &body, vec![], "r1", 0),
        Err(OutboxError::Full {
            entries: 2,
            bytes: 40
        })
    ));
    // A smaller one still fits; one larger than the bound never does.
    o.push("http://x", b"", vec![], "r1", 0).unwrap();
    o.done(one).unwrap();
    o.done(one + 1).unwrap();
    assert!(matches!(
        o.push("http://x", &[0u8; 100], vec![], "r1", 0),
        Err(OutboxError::Full { .. })
    ));
    assert_eq!(due_ids(&o, 0).len(), 1);
}

#[test]
fn entries_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, retry_at) = {
        let o = open(&dir, 100, 1 << 20);
        let a = push(&o, "http://x", "a", 0);
        let b = push(&o, "http://y", "b", 1);
        let c = push(&o, "http://x", "c", 2);
        o.done(b).unwrap();
        let Retry::Scheduled(at) = o.failed(a, "refused", 5, 10, HOUR).unwrap() else {
            panic!("dropped");
        };
        // c was taken for delivery, and the process died before `done`:
        let taken = o.due(5, 10).unwrap();
        assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), [c]);
        (a, b, c, at)
        // Dropped here without done: a crash as far as the file knows.
    };
    let o = open(&dir, 100, 1 << 20);
    assert_eq!(o.len(), 2);
    assert_eq!(
        o.bytes(),
        2 * (8 + 1 + 2 + "content-type".len() + "application/json".len())
    );
    assert_eq!(o.get(b).unwrap(), None);
    // c is delivered again; a keeps its attempts and back-off.
    assert_eq!(due_ids(&o, 5), [c]);
    assert_eq!(due_ids(&o, retry_at), [a, c]);
    let ea = o.get(a).unwrap().unwrap();
    assert_eq!((ea.attempts, ea.next_attempt_ms), (1, retry_at));
    assert_eq!(ea.last_error.as_deref(), Some("refused"));
    assert_eq!(o.next_due_ms().unwrap(), Some(2));
    // Ids are never reused.
    let d = push(&o, "http://x", "d", 10);
    assert!(d > c);
}

#[test]
fn a_smaller_bound_after_reopen_keeps_entries_and_refuses_pushes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(&dir, 10, 1 << 20);
        for i in 0..5 {
            push(&o, "http://x", &i.to_string(), 0);
        }
    }
    let o = open(&dir, 3, 1 << 20);
    assert_eq!(o.len(), 5);
    assert!(matches!(
        o.push("http://x", b"", vec![], "r", 0),
        Err(OutboxError::Full { entries: 5, .. })
    ));
    for e in o.due(0, 3).unwrap() {
        o.done(e.id).unwrap();
    }
    push(&o, "http://x", "again", 0);
    assert_eq!(o.len(), 3);
}
