//! Opens a stopped Millwright telemetry store (`<data-dir>/tsdb`), reports
//! its storage statistics, then (unless `--stats-only`) flushes whatever the
//! WAL replay put in memory, compacts, and reports again, as JSON on stdout.
//! Used by `bench/tsdb/run.sh` to count the points a server stored and to
//! show the size after compaction (the server itself only flushes).
//!
//! `tsdb_compact --dir DATA_DIR/tsdb [--stats-only]`

use std::time::Instant;

use serde_json::json;
use tsdb::{Options, StorageStats, Tsdb};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn stats(s: &StorageStats) -> serde_json::Value {
    json!({
        "series": s.series,
        "raw_chunks": s.raw_chunks,
        "raw_chunk_bytes": s.raw_chunk_bytes,
        "raw_chunk_points": s.raw_chunk_points,
        "rollup_chunks": s.rollup_chunks,
        "rollup_chunk_bytes": s.rollup_chunk_bytes,
        "wal_bytes": s.wal_bytes,
        "head_points": s.head_points,
    })
}

fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut dir = None;
    let mut stats_only = false;
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "--dir" => {
                dir = argv.get(i + 1).cloned();
                i += 1;
            }
            "--stats-only" => stats_only = true,
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 1;
    }
    let dir = dir.ok_or("--dir is required")?;
    let t = Instant::now();
    let db = Tsdb::open(std::path::Path::new(&dir), Options::default())?;
    let open_s = t.elapsed().as_secs_f64();
    let before = db.storage_stats();
    let mut out = json!({ "dir": dir, "open_seconds": open_s, "before": stats(&before) });
    if !stats_only {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let t = Instant::now();
        db.flush(now)?;
        db.compact()?;
        out["compact_seconds"] = json!(t.elapsed().as_secs_f64());
        out["after"] = stats(&db.storage_stats());
    }
    db.close()?;
    println!("{out}");
    Ok(())
}
