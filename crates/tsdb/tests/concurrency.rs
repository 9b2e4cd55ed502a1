//! Many writers at once: group commit must lose and duplicate nothing.

use std::sync::Arc;

use tsdb::{Filter, Options, Selector, SeriesKey, Tsdb, Value, WritePoint};

#[test]
fn eight_writers_all_points_present() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        head_max_points: 5_000,
        ..Options::default()
    };
    let db = Arc::new(Tsdb::open(dir.path(), opts.clone()).unwrap());
    let threads = 8;
    let batches = 60;
    let per_batch = 50;
    let shared = Arc::new(SeriesKey::new("default", "shared", "v"));
    let mut handles = Vec::new();
    for t in 0..threads {
        let db = db.clone();
        let shared = shared.clone();
        handles.push(std::thread::spawn(move || {
            let own = Arc::new(SeriesKey::new("default", &format!("dev{t}"), "v"));
            for b in 0..batches {
                let mut batch = Vec::new();
                for i in 0..per_batch {
                    let ts = (b * per_batch + i) as i64;
                    batch.push(WritePoint {
                        series: own.clone(),
                        ts,
                        value: Value::I64(ts),
                    });
                    // Shared series: each thread owns distinct timestamps.
                    batch.push(WritePoint {
                        series: shared.clone(),
                        ts: ts * threads as i64 + t as i64,
                        value: Value::I64(t as i64),
                    });
                }
                db.write(&batch).unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let check = |db: &Tsdb| {
        let n = (batches * per_batch) as usize;
        let all = db
            .query_raw(
                &Selector::namespace("default"),
                i64::MIN,
                i64::MAX,
                usize::MAX,
            )
            .unwrap();
        assert_eq!(all.len(), threads + 1);
        for s in &all {
            let expect = if s.series.device() == "shared" {
                n * threads
            } else {
                n
            };
            assert_eq!(s.points.len(), expect, "{}", s.series);
        }
        let latest = db.latest(
            "default",
            &Filter::Only(vec!["shared".into()]),
            &Filter::All,
        );
        assert_eq!(latest[0].1.ts, (n * threads - 1) as i64);
    };
    check(&db);
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts).unwrap();
    check(&db);
}
