//! Crash recovery: torn and corrupt WAL tails, corrupt chunk files.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsdb::{Options, Selector, SeriesKey, Tsdb, Value, WritePoint};

fn batch(key: &Arc<SeriesKey>, from: i64, n: i64) -> Vec<WritePoint> {
    (from..from + n)
        .map(|t| WritePoint {
            series: key.clone(),
            ts: t * 1000,
            value: Value::F64(t as f64),
        })
        .collect()
}

fn largest_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .map(|p| (fs::metadata(&p).unwrap().len(), p))
        .collect();
    segs.sort();
    segs.pop().unwrap().1
}

fn timestamps(db: &Tsdb) -> Vec<i64> {
    let r = db
        .query_raw(
            &Selector::series("default", "d1", "temp"),
            i64::MIN,
            i64::MAX,
            usize::MAX,
        )
        .unwrap();
    r.into_iter()
        .flat_map(|s| s.points.into_iter().map(|p| p.ts))
        .collect()
}

fn write_three_batches(dir: &Path) -> Arc<SeriesKey> {
    let key = Arc::new(SeriesKey::new("default", "d1", "temp"));
    let db = Tsdb::open(dir, Options::default()).unwrap();
    db.write(&batch(&key, 0, 10)).unwrap();
    db.write(&batch(&key, 10, 10)).unwrap();
    db.write(&batch(&key, 20, 10)).unwrap();
    db.close().unwrap();
    key
}

#[test]
fn torn_tail_is_truncated_and_earlier_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_three_batches(dir.path());
    let seg = largest_segment(dir.path());
    let len = fs::metadata(&seg).unwrap().len();
    // Cut into the last record, as a crash during its write would.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let rep = db.recovery_report();
    assert!(rep.wal_truncated(), "{rep:?}");
    assert_eq!(rep.truncated.len(), 1);
    assert!(rep.truncated[0].reason.contains("torn"), "{rep:?}");
    assert_eq!(
        timestamps(&db),
        (0..20).map(|t| t * 1000).collect::<Vec<_>>()
    );
    assert!(fs::metadata(&seg).unwrap().len() < len - 5);

    // The database keeps working and the repair is stable across reopen.
    db.write(&batch(&key, 100, 1)).unwrap();
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert!(!db.recovery_report().wal_truncated());
    assert_eq!(timestamps(&db).len(), 21);
}

#[test]
fn corrupt_last_record_is_detected_by_crc() {
    let dir = tempfile::tempdir().unwrap();
    write_three_batches(dir.path());
    let seg = largest_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();

    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let rep = db.recovery_report();
    assert!(rep.wal_truncated());
    assert!(rep.truncated[0].reason.contains("checksum"), "{rep:?}");
    assert_eq!(timestamps(&db).len(), 20);
}

#[test]
fn garbage_length_and_short_header_are_survivable() {
    let dir = tempfile::tempdir().unwrap();
    write_three_batches(dir.path());
    let seg = largest_segment(dir.path());
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5]);
    fs::write(&seg, &bytes).unwrap();
    // A segment torn inside its header, as after a crash while creating it.
    fs::write(
        dir.path().join("wal").join("00000000000000000099.wal"),
        b"MWTS",
    )
    .unwrap();

    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.recovery_report().truncated.len(), 2);
    assert_eq!(timestamps(&db).len(), 30);
}

#[test]
fn flushed_data_survives_without_wal_and_corrupt_chunks_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SeriesKey::new("default", "d1", "temp"));
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        db.write(&batch(&key, 0, 100)).unwrap();
        db.flush(0).unwrap();
        db.write(&batch(&key, 100, 100)).unwrap();
        db.flush(0).unwrap();
        db.close().unwrap();
    }
    {
        let db = Tsdb::open(dir.path(), Options::default()).unwrap();
        assert_eq!(
            db.recovery_report().points_replayed,
            0,
            "flushed segments are gone"
        );
        assert_eq!(timestamps(&db).len(), 200);
    }
    // Flip a byte inside the first raw chunk's data.
    let mut chunks: Vec<PathBuf> = fs::read_dir(dir.path().join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    let mut bytes = fs::read(&chunks[0]).unwrap();
    bytes[40] ^= 0x55;
    fs::write(&chunks[0], &bytes).unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    // A flip inside a data block is caught when that block is read; one in
    // the index at open. Either way no panic and no silent wrong answer.
    let r = db.query_raw(
        &Selector::series("default", "d1", "temp"),
        i64::MIN,
        i64::MAX,
        usize::MAX,
    );
    let quarantined = !db.recovery_report().chunks_quarantined.is_empty();
    assert!(quarantined || r.is_err(), "corruption must be reported");
}

/// Every type, several series per batch, duplicates and out-of-order
/// points, across many WAL segments, abandoned without close or flush (as
/// a kill would): reopening replays exactly what was acknowledged, the
/// latest values included.
#[test]
fn unflushed_points_of_every_type_come_back_after_a_kill() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        head_max_points: usize::MAX / 4,
        wal_segment_bytes: 4096,
        ..Options::default()
    };
    let keys: Vec<Arc<SeriesKey>> = ["f", "i", "b", "s"]
        .iter()
        .flat_map(|m| {
            (0..3).map(move |d| {
                Arc::new(
                    SeriesKey::new("default", &format!("d{d}"), m).with_labels([("site", "x")]),
                )
            })
        })
        .collect();
    let value = |m: &str, v: i64| match m {
        "f" => Value::F64(v as f64 * 0.25),
        "i" => Value::I64(-v),
        "b" => Value::Bool(v % 3 == 0),
        _ => Value::Str(format!("s{}", v % 7).into()),
    };
    let mut model: BTreeMap<(String, String, i64), Value> = BTreeMap::new();
    let db = Tsdb::open(dir.path(), opts.clone()).unwrap();
    for b in 0..200i64 {
        let mut batch = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            // Mostly ascending, every fifth batch rewrites an older point.
            let t = if b % 5 == 4 {
                (b - 3) * 1000
            } else {
                b * 1000 + k as i64
            };
            let v = value(key.metric(), b * 31 + k as i64);
            model.insert((key.device().into(), key.metric().into(), t), v.clone());
            batch.push(WritePoint {
                series: key.clone(),
                ts: t,
                value: v,
            });
        }
        db.write(&batch).unwrap();
    }
    let segments = fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(segments > 5, "{segments} segments");
    std::mem::forget(db);

    let db = Tsdb::open(dir.path(), opts).unwrap();
    let r = db.recovery_report();
    assert!(!r.wal_truncated());
    assert_eq!(r.points_replayed, 200 * keys.len() as u64);
    let got: BTreeMap<(String, String, i64), Value> = db
        .query_raw(
            &Selector::namespace("default"),
            i64::MIN,
            i64::MAX,
            usize::MAX,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| {
            let (d, m) = (s.series.device().to_string(), s.series.metric().to_string());
            s.points
                .into_iter()
                .map(move |p| ((d.clone(), m.clone(), p.ts), p.value))
        })
        .collect();
    assert_eq!(got, model);
    for (key, p) in db.latest("default", &tsdb::Filter::All, &tsdb::Filter::All) {
        let last = model
            .range((key.device().to_string(), key.metric().to_string(), i64::MIN)..)
            .take_while(|((d, m, _), _)| d == key.device() && m == key.metric())
            .last()
            .unwrap();
        assert_eq!((p.ts, &p.value), (last.0 .2, last.1), "{key}");
    }
}
