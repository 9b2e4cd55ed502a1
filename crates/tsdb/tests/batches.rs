//! `Tsdb::write_batches`: one WAL commit, a verdict per batch. One
//! publisher's bad batch (type conflict, series cap, invalid point) never
//! fails another's; and the series-per-device cap.

use std::sync::Arc;

use tsdb::{
    Error, Options, Selector, SeriesKey, Tsdb, Value, WriteError, WritePoint, MAX_TIMESTAMP_MS,
};

fn point(key: &Arc<SeriesKey>, ts: i64, value: Value) -> WritePoint {
    WritePoint {
        series: key.clone(),
        ts,
        value,
    }
}

fn count(db: &Tsdb, device: &str) -> usize {
    db.query_raw(
        &Selector::namespace("default").device(device),
        i64::MIN,
        i64::MAX,
        usize::MAX,
    )
    .unwrap()
    .iter()
    .map(|s| s.points.len())
    .sum()
}

/// Two devices in the same calls: one sends a conflicting type 1,000
/// times, the other's 10,000 points are all stored, and reopen agrees.
#[test]
fn conflicting_device_never_fails_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Arc::new(SeriesKey::new("default", "bad", "x"));
    let good = Arc::new(SeriesKey::new("default", "good", "x"));
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        db.write(&[point(&bad, 0, Value::F64(1.0))]).unwrap();
        for i in 0..1_000i64 {
            let conflicting = vec![point(&bad, i + 1, Value::Str(Arc::from("s")))];
            let fine: Vec<WritePoint> = (0..10)
                .map(|j| point(&good, i * 10 + j, Value::F64((i * 10 + j) as f64)))
                .collect();
            let verdicts = db.write_batches(&[&conflicting, &fine]).unwrap();
            assert!(
                matches!(verdicts[0], Err(WriteError::TypeConflict { .. })),
                "{verdicts:?}"
            );
            assert_eq!(verdicts[1], Ok(()));
        }
        assert_eq!(count(&db, "good"), 10_000);
        assert_eq!(count(&db, "bad"), 1);
        let st = db.write_stats();
        assert_eq!((st.batches_refused, st.type_conflicts), (1_000, 1_000));
        // The old single-batch API still reports the conflict as before.
        assert!(matches!(
            db.write(&[point(&bad, 5, Value::Bool(true))]),
            Err(Error::Refused(WriteError::TypeConflict { .. }))
        ));
    }
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(count(&db, "good"), 10_000);
    assert_eq!(count(&db, "bad"), 1);
}

/// A new series' type is set by the first batch of the call; a second
/// batch with another type is refused, and so is a batch conflicting with
/// itself. A refused batch registers none of its new series.
#[test]
fn conflicts_within_one_call_and_within_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let x = Arc::new(SeriesKey::new("default", "d", "x"));
    // An equal key in another Arc: lookup must not rely on pointers.
    let x2 = Arc::new(SeriesKey::new("default", "d", "x"));
    let y = Arc::new(SeriesKey::new("default", "d", "y"));
    let z = Arc::new(SeriesKey::new("default", "e", "z"));
    let a = vec![point(&x, 1, Value::I64(1))];
    let b = vec![
        point(&y, 1, Value::F64(1.0)),
        point(&x2, 2, Value::Bool(true)),
    ];
    let c = vec![point(&z, 1, Value::F64(1.0)), point(&z, 2, Value::I64(2))];
    let d = vec![point(&x2, 3, Value::I64(3))];
    let v = db.write_batches(&[&a, &b, &c, &d, &[]]).unwrap();
    assert_eq!(v[0], Ok(()));
    assert!(
        matches!(v[1], Err(WriteError::TypeConflict { .. })),
        "{v:?}"
    );
    assert!(
        matches!(v[2], Err(WriteError::TypeConflict { .. })),
        "{v:?}"
    );
    assert_eq!(v[3], Ok(()));
    assert_eq!(v[4], Ok(()));
    let names: Vec<String> = db
        .list_series("default", None)
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["default/d/x".to_string()],
        "refused batches left series behind"
    );
    assert_eq!(count(&db, "d"), 2);
    // y can still be created with any type later.
    db.write(&[point(&y, 1, Value::Str(Arc::from("ok")))])
        .unwrap();
}

/// Invalid points and timestamps are refused per batch too.
#[test]
fn invalid_points_are_refused_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let k = Arc::new(SeriesKey::new("default", "d", "x"));
    let empty = Arc::new(SeriesKey::new("default", "", "x"));
    let ok = vec![point(&k, 1, Value::F64(1.0))];
    let nan = vec![point(&k, 2, Value::F64(f64::NAN))];
    let far = vec![point(&k, MAX_TIMESTAMP_MS + 1, Value::F64(1.0))];
    let min = vec![point(&k, i64::MIN, Value::F64(1.0))];
    let bad_key = vec![point(&empty, 1, Value::F64(1.0))];
    let v = db
        .write_batches(&[&nan, &ok, &far, &min, &bad_key])
        .unwrap();
    assert_eq!(v[1], Ok(()));
    for i in [0, 2, 3, 4] {
        assert!(matches!(v[i], Err(WriteError::Invalid(_))), "{i}: {v:?}");
    }
    assert_eq!(count(&db, "d"), 1);
    assert!(matches!(db.write(&far), Err(Error::InvalidSeries(_))));
}

/// Beyond `max_series_per_device` new series are refused and counted;
/// existing series and other devices keep working, also after reopen.
#[test]
fn series_cap_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_series_per_device: 5,
        ..Options::default()
    };
    let key = |d: &str, m: usize| Arc::new(SeriesKey::new("default", d, &format!("m{m}")));
    {
        let db = Tsdb::open(dir.path(), opts.clone()).unwrap();
        let first: Vec<WritePoint> = (0..4)
            .map(|m| point(&key("a", m), 1, Value::F64(1.0)))
            .collect();
        db.write(&first).unwrap();
        // Two new series where one fits: the whole batch is refused.
        let over: Vec<WritePoint> = (4..6)
            .map(|m| point(&key("a", m), 1, Value::F64(1.0)))
            .collect();
        let other: Vec<WritePoint> = (0..6)
            .map(|m| point(&key("b", m), 1, Value::F64(1.0)))
            .collect();
        let fits: Vec<WritePoint> = (0..5)
            .map(|m| point(&key("c", m), 1, Value::F64(1.0)))
            .collect();
        let v = db.write_batches(&[&over, &other, &fits]).unwrap();
        assert!(
            matches!(&v[0], Err(WriteError::TooManySeries { limit: 5, device, .. }) if device == "a"),
            "{v:?}"
        );
        assert!(
            matches!(&v[1], Err(WriteError::TooManySeries { .. })),
            "{v:?}"
        );
        assert_eq!(v[2], Ok(()));
        assert_eq!(db.write_stats().series_refused, 2 + 6);
        // One more fits, then the device is full.
        db.write(&over[..1]).unwrap();
        assert!(matches!(
            db.write(&over[1..]),
            Err(Error::Refused(WriteError::TooManySeries { .. }))
        ));
        // Existing series keep working.
        db.write(&[point(&key("a", 0), 2, Value::F64(2.0))])
            .unwrap();
        assert_eq!(db.list_series("default", Some("a")).len(), 5);
    }
    let db = Tsdb::open(dir.path(), opts).unwrap();
    assert_eq!(db.list_series("default", Some("a")).len(), 5);
    assert!(db
        .write(&[point(&key("a", 9), 3, Value::F64(1.0))])
        .is_err());
    db.write(&[point(&key("a", 1), 3, Value::F64(1.0))])
        .unwrap();
    assert_eq!(count(&db, "a"), 7);
}
