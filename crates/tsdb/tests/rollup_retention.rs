//! Rollups stay correct under late and duplicate data; retention removes
//! exactly what it documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use tsdb::{
    Agg, GroupBy, Options, RollupLevel, Selector, SeriesKey, Tsdb, Value, WritePoint, DAY_MS,
};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

fn pt(key: &Arc<SeriesKey>, ts: i64, v: f64) -> WritePoint {
    WritePoint {
        series: key.clone(),
        ts,
        value: Value::F64(v),
    }
}

/// (bucket, count, sum, min, max, first, last) computed directly.
fn expected(
    points: &BTreeMap<i64, f64>,
    start: i64,
    end: i64,
    bucket: i64,
) -> Vec<(i64, [f64; 6])> {
    let mut out: BTreeMap<i64, [f64; 6]> = BTreeMap::new();
    for (&t, &v) in points.range(start..end) {
        let b = t.div_euclid(bucket) * bucket;
        out.entry(b)
            .and_modify(|a| {
                a[0] += 1.0;
                a[1] += v;
                a[2] = a[2].min(v);
                a[3] = a[3].max(v);
                a[5] = v;
            })
            .or_insert([1.0, v, v, v, v, v]);
    }
    out.into_iter().collect()
}

fn agg(db: &Tsdb, start: i64, end: i64, bucket: i64) -> Vec<(i64, [f64; 6])> {
    let sel = Selector::series("default", "d", "m");
    let q = |a| {
        let r = db
            .query_agg(&sel, start, end, bucket, a, GroupBy::Series)
            .unwrap();
        r.into_iter().next().map(|s| s.points).unwrap_or_default()
    };
    let (c, s, mi, ma, f, l) = (
        q(Agg::Count),
        q(Agg::Sum),
        q(Agg::Min),
        q(Agg::Max),
        q(Agg::First),
        q(Agg::Last),
    );
    (0..c.len())
        .map(|i| {
            (
                c[i].ts,
                [
                    c[i].value,
                    s[i].value,
                    mi[i].value,
                    ma[i].value,
                    f[i].value,
                    l[i].value,
                ],
            )
        })
        .collect()
}

#[test]
fn rollups_with_late_and_duplicate_data() {
    let dir = tempfile::tempdir().unwrap();
    // Rollup chunks written at every flush (deferred rollups are checked
    // by `deferred_rollups_answer_the_same_before_and_after_materialization`).
    let eager = || Options {
        deferred_rollups_below_ms: 0,
        ..Options::default()
    };
    let db = Tsdb::open(dir.path(), eager()).unwrap();
    let key = Arc::new(SeriesKey::new("default", "d", "m"));
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    // Three hours every 10 s, in order, flushed every 20 minutes.
    let t0 = 1_700_000_400_000 - 1_700_000_400_000 % HOUR;
    for block in 0..9 {
        let batch: Vec<WritePoint> = (0..120)
            .map(|i| {
                let t = t0 + (block * 120 + i) * 10_000;
                pt(&key, t, ((block * 120 + i) % 17) as f64)
            })
            .collect();
        for p in &batch {
            if let Value::F64(v) = p.value {
                model.insert(p.ts, v);
            }
        }
        db.write(&batch).unwrap();
        db.flush(t0).unwrap();
    }
    let (start, end) = (t0, t0 + 3 * HOUR);
    assert_eq!(db.rollup_level_for("default", start, end, HOUR), Some(HOUR));
    assert_eq!(
        db.rollup_level_for("default", start, end, 5 * MIN),
        Some(MIN)
    );
    assert_eq!(db.rollup_level_for("default", start + 1, end, HOUR), None);
    for bucket in [MIN, 5 * MIN, HOUR] {
        assert_eq!(
            agg(&db, start, end, bucket),
            expected(&model, start, end, bucket)
        );
    }
    let before = db.query_stats();
    assert_eq!(
        agg(&db, start, end, HOUR),
        expected(&model, start, end, HOUR)
    );
    let after = db.query_stats();
    assert!(after.rollup_series_read > before.rollup_series_read);
    assert_eq!(
        after.chunk_series_decoded, before.chunk_series_decoded,
        "rollups, not raw"
    );

    // Late data: new points, duplicates overriding old values, and points
    // earlier than everything, first still in memory, then flushed.
    let late = vec![
        pt(&key, t0 + 5_000, 100.0),          // new point inside the first minute
        pt(&key, t0 + 10_000, -50.0),         // duplicate timestamp: overrides
        pt(&key, t0 + HOUR + 20_000, 1000.0), // duplicate in the second hour
        pt(&key, t0 - 30_000, 7.0),           // before the first bucket
        pt(&key, t0 + 10_000, -60.0),         // duplicate within the batch: last wins
    ];
    for p in &late {
        if let Value::F64(v) = p.value {
            model.insert(p.ts, v);
        }
    }
    db.write(&late).unwrap();
    let (start, end) = (t0 - HOUR, t0 + 3 * HOUR);
    for bucket in [MIN, HOUR, 2 * HOUR] {
        assert_eq!(
            agg(&db, start, end, bucket),
            expected(&model, start, end, bucket),
            "in memory"
        );
    }
    db.flush(t0).unwrap();
    for bucket in [MIN, HOUR, 2 * HOUR] {
        assert_eq!(
            agg(&db, start, end, bucket),
            expected(&model, start, end, bucket),
            "flushed"
        );
    }
    db.compact().unwrap();
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), eager()).unwrap();
    for bucket in [MIN, HOUR] {
        assert_eq!(
            agg(&db, start, end, bucket),
            expected(&model, start, end, bucket),
            "reopened"
        );
    }
    // The raw path agrees too (unaligned start forces raw data).
    let s1 = start + 1;
    assert_eq!(agg(&db, s1, end, HOUR), expected(&model, s1, end, HOUR));
}

#[test]
fn whole_chunk_summaries_answer_coarse_queries() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        rollups: Vec::new(),
        ..Options::default()
    };
    let db = Tsdb::open(dir.path(), opts).unwrap();
    let key = Arc::new(SeriesKey::new("default", "d", "m"));
    for day in 0..3 {
        let batch: Vec<WritePoint> = (0..100)
            .map(|i| pt(&key, day * DAY_MS + i * 1000, i as f64))
            .collect();
        db.write(&batch).unwrap();
        db.flush(0).unwrap();
    }
    let before = db.query_stats();
    let r = db
        .query_agg(
            &Selector::series("default", "d", "m"),
            0,
            3 * DAY_MS,
            DAY_MS,
            Agg::Avg,
            GroupBy::All,
        )
        .unwrap();
    assert_eq!(r[0].points.len(), 3);
    assert!(r[0].points.iter().all(|p| p.value == 49.5));
    let after = db.query_stats();
    assert_eq!(after.chunk_summaries_used - before.chunk_summaries_used, 3);
    assert_eq!(after.chunk_series_decoded, before.chunk_series_decoded);
}

#[test]
fn retention_removes_exactly_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options {
        partition_ms: HOUR,
        default_retention_ms: 2 * HOUR,
        rollups: vec![RollupLevel {
            bucket_ms: HOUR,
            retention_ms: 4 * HOUR,
        }],
        ..Options::default()
    };
    opts.namespace_retention_ms.insert("short".into(), HOUR);
    let db = Tsdb::open(dir.path(), opts.clone()).unwrap();
    let a = Arc::new(SeriesKey::new("default", "d", "m"));
    let b = Arc::new(SeriesKey::new("short", "d", "m"));
    // Six hours of points every 15 minutes in both namespaces.
    let mut batch = Vec::new();
    for i in 0..24 {
        batch.push(pt(&a, i * 15 * MIN, i as f64));
        batch.push(pt(&b, i * 15 * MIN, i as f64));
    }
    db.write(&batch).unwrap();
    db.flush(0).unwrap();
    let files_before = db.storage_stats().raw_chunks;
    assert_eq!(files_before, 12, "six hourly partitions in two namespaces");

    let now = 6 * HOUR + 10 * MIN;
    let stats = db.enforce_retention(now).unwrap();
    assert!(stats.files_removed > 0);

    // Raw: ts < now - retention is gone, ts >= now - retention stays.
    let raw = |ns: &str| -> Vec<i64> {
        db.query_raw(
            &Selector::series(ns, "d", "m"),
            i64::MIN,
            i64::MAX,
            usize::MAX,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.points.into_iter().map(|p| p.ts))
        .collect()
    };
    let h_default = now - 2 * HOUR; // 4h10m
    let h_short = now - HOUR; // 5h10m
    let expect = |h: i64| {
        (0..24)
            .map(|i| i * 15 * MIN)
            .filter(|&t| t >= h)
            .collect::<Vec<_>>()
    };
    assert_eq!(raw("default"), expect(h_default));
    assert_eq!(raw("short"), expect(h_short));

    // Rollups outlive raw data: hourly buckets with start + 1h > now - 4h stay.
    let roll_h = now - 4 * HOUR; // 2h10m: the 1h-2h bucket ends at 2h <= 2h10m
    let q = db
        .query_agg(
            &Selector::series("default", "d", "m"),
            3 * HOUR,
            6 * HOUR,
            HOUR,
            Agg::Count,
            GroupBy::All,
        )
        .unwrap();
    assert_eq!(
        db.rollup_level_for("default", 3 * HOUR, 6 * HOUR, HOUR),
        Some(HOUR)
    );
    assert_eq!(
        q[0].points.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![4.0, 4.0, 4.0]
    );
    // 2h..3h: rollup bucket 2h-3h is live (ends after 2h10m), but the range
    // starts before the rollup horizon, so it is answered from raw data,
    // which only has points from 4h10m on.
    assert_eq!(
        db.rollup_level_for("default", 2 * HOUR, 6 * HOUR, HOUR),
        None
    );
    assert!(roll_h > 2 * HOUR);

    // Files: partitions entirely past retention are deleted, the straddling
    // one rewritten; nothing comes back after reopen.
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts).unwrap();
    let raw2: Vec<i64> = db
        .query_raw(
            &Selector::series("default", "d", "m"),
            i64::MIN,
            i64::MAX,
            usize::MAX,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.points.into_iter().map(|p| p.ts))
        .collect();
    assert_eq!(raw2, expect(h_default));
    let st = db.storage_stats();
    assert_eq!(
        st.raw_chunks,
        2 + 1,
        "default: 4h-5h (rewritten), 5h-6h; short: 5h-6h"
    );
    assert_eq!(
        st.raw_chunk_points,
        (expect(h_default).len() + expect(h_short).len()) as u64
    );
}

#[test]
fn deferred_rollups_answer_the_same_before_and_after_materialization() {
    let dir = tempfile::tempdir().unwrap();
    // Both levels deferred (by default only the 1-minute one is).
    let opts = Options {
        partition_ms: HOUR,
        default_retention_ms: 2 * HOUR,
        deferred_rollups_below_ms: i64::MAX,
        ..Options::default()
    };
    let db = Tsdb::open(dir.path(), opts.clone()).unwrap();
    let key = Arc::new(SeriesKey::new("default", "d", "m"));
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let t0 = 1_700_000_400_000 - 1_700_000_400_000 % HOUR;
    let write = |db: &Tsdb, pts: Vec<WritePoint>, model: &mut BTreeMap<i64, f64>| {
        for p in &pts {
            if let Value::F64(v) = p.value {
                model.insert(p.ts, v);
            }
        }
        db.write(&pts).unwrap();
    };
    // Four hours every 10 s, flushed every hour, then late and duplicate
    // points: nothing is past raw retention yet, so no rollup chunk.
    for h in 0..4 {
        let pts = (0..360)
            .map(|i| {
                pt(
                    &key,
                    t0 + h * HOUR + i * 10_000,
                    ((h * 360 + i) % 23) as f64,
                )
            })
            .collect();
        write(&db, pts, &mut model);
        db.flush(t0).unwrap();
    }
    let late = vec![
        pt(&key, t0 + 5_000, 100.0),
        pt(&key, t0 + 20_000, -50.0),
        pt(&key, t0 + 2 * HOUR + 30_000, 7.5),
    ];
    write(&db, late, &mut model);
    db.flush(t0).unwrap();
    assert_eq!(db.storage_stats().rollup_chunks, 0, "rollups deferred");
    let (start, end) = (t0, t0 + 4 * HOUR);
    let buckets = [MIN, 5 * MIN, HOUR, 2 * HOUR];
    let before: Vec<_> = buckets.iter().map(|&b| agg(&db, start, end, b)).collect();
    for (i, &b) in buckets.iter().enumerate() {
        assert_eq!(
            before[i],
            expected(&model, start, end, b),
            "from raw, {b} ms"
        );
    }

    // The raw horizon enters the second partition (t0 + 1h30m): the first
    // two partitions get rollup chunks (1 min and 1 h), then raw points
    // before the horizon go.
    let now = t0 + 3 * HOUR + 30 * MIN;
    db.enforce_retention(now).unwrap();
    assert_eq!(db.storage_stats().rollup_chunks, 4);
    let raw_left: Vec<i64> = db
        .query_raw(
            &Selector::series("default", "d", "m"),
            start,
            end,
            usize::MAX,
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.points.into_iter().map(|p| p.ts))
        .collect();
    assert_eq!(raw_left.first(), Some(&(t0 + HOUR + 30 * MIN)));
    let q0 = db.query_stats();
    for (i, &b) in buckets.iter().enumerate() {
        assert_eq!(agg(&db, start, end, b), before[i], "materialized, {b} ms");
    }
    assert!(db.query_stats().rollup_series_read > q0.rollup_series_read);

    // Late data into a materialized partition (a new point; a duplicate
    // there falls under the approximation documented in the rollup module
    // for the hour bucket that straddles the horizon) and into a deferred
    // one (a new point and a duplicate), first in memory, then flushed,
    // then after reopening.
    let late = vec![
        pt(&key, t0 + HOUR + 45 * MIN + 5_000, 1.25),
        pt(&key, t0 + 3 * HOUR + 20_000, -9.0),
        pt(&key, t0 + 3 * HOUR + 10_000, 42.0),
    ];
    write(&db, late, &mut model);
    for &b in &buckets {
        assert_eq!(
            agg(&db, start, end, b),
            expected(&model, start, end, b),
            "in memory, {b} ms"
        );
    }
    db.flush(now).unwrap();
    for &b in &buckets {
        assert_eq!(
            agg(&db, start, end, b),
            expected(&model, start, end, b),
            "flushed, {b} ms"
        );
    }
    db.close().unwrap();
    drop(db);
    let db = Tsdb::open(dir.path(), opts).unwrap();
    db.compact().unwrap();
    for &b in &buckets {
        assert_eq!(
            agg(&db, start, end, b),
            expected(&model, start, end, b),
            "reopened, {b} ms"
        );
    }
    // Raw retention moving on keeps every rollup: a day later no raw point
    // is left, the rollups still answer.
    db.enforce_retention(now + DAY_MS).unwrap();
    assert_eq!(db.storage_stats().raw_chunks, 0);
    for &b in &[MIN, HOUR] {
        assert_eq!(
            agg(&db, start, end, b),
            expected(&model, start, end, b),
            "raw gone, {b} ms"
        );
    }
}

#[test]
fn by_default_hourly_rollups_are_written_and_minute_rollups_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), Options::default()).unwrap();
    let key = Arc::new(SeriesKey::new("default", "d", "m"));
    let t0 = 1_700_000_400_000 - 1_700_000_400_000 % DAY_MS;
    let batch: Vec<WritePoint> = (0..360)
        .map(|i| pt(&key, t0 + i * 10_000, i as f64))
        .collect();
    db.write(&batch).unwrap();
    db.flush(t0).unwrap();
    assert_eq!(db.storage_stats().rollup_chunks, 1, "the hourly level only");
    let (start, end) = (t0, t0 + HOUR);
    let q0 = db.query_stats();
    let hourly = agg(&db, start, end, HOUR);
    let q1 = db.query_stats();
    assert!(q1.rollup_series_read > q0.rollup_series_read);
    assert_eq!(
        q1.chunk_series_decoded, q0.chunk_series_decoded,
        "hourly rollups, not raw"
    );
    let minutes = agg(&db, start, end, MIN);
    let q2 = db.query_stats();
    assert_eq!(q2.rollup_series_read, q1.rollup_series_read);
    assert!(
        q2.chunk_series_decoded > q1.chunk_series_decoded,
        "1-minute level from raw"
    );
    assert_eq!(minutes.len(), 60);
    assert_eq!(hourly[0].1[0], 360.0);
}
