//! Restart with a full WAL: fills the write-ahead log with `WAL_MB`
//! megabytes (default 1024) of unflushed points (a generated truck fleet,
//! one durable `write` per tick of every truck), abandons the database
//! without closing or flushing it (as a kill would: every acknowledged write
//! is already in the fsynced WAL), then times `Tsdb::open`, which replays the
//! whole WAL into memory, and checks that every point came back. Prints one
//! JSON object.
//!
//! `cargo run --release -p tsdb --example wal_restart -j2 -- [WAL_MB] [TRUCKS] [DIR]`
//!
//! The data directory (a new temporary one unless DIR is given) is removed
//! at the end. With `OPEN_ONLY=1` the run only opens DIR (left by a run with
//! `KEEP=1`) and times that, for profiling the replay alone. The reopen reads the segments from the page cache when the
//! machine has the memory for it (it usually does right after the fill).

use std::time::Instant;

use tsdb::gen::{Fleet, FleetConfig};
use tsdb::{Options, Tsdb};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resident memory of this process in bytes (Linux), 0 if unknown.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let wal_mb: u64 = argv.first().map_or(Ok(1024), |s| s.parse())?;
    let trucks: usize = argv.get(1).map_or(Ok(1000), |s| s.parse())?;
    let dir = match argv.get(2) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("mw-wal-restart-{}", std::process::id())),
    };
    let opts_open = Options {
        head_max_points: usize::MAX / 4,
        ..Options::default()
    };
    if std::env::var("OPEN_ONLY").is_ok_and(|v| v == "1") {
        let t = Instant::now();
        let db = Tsdb::open(&dir, opts_open)?;
        let open_s = t.elapsed().as_secs_f64();
        let r = db.recovery_report();
        println!(
            "{}",
            serde_json::json!({"open_seconds": open_s, "points_replayed": r.points_replayed, "wal_bytes": wal_bytes(&dir)})
        );
        std::mem::forget(db);
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    // No automatic flush: everything stays in the head and the WAL.
    let opts = Options {
        head_max_points: usize::MAX / 4,
        ..Options::default()
    };
    let target = wal_mb << 20;

    let db = Tsdb::open(&dir, opts.clone())?;
    let mut fleet = Fleet::new(FleetConfig {
        trucks,
        ..FleetConfig::default()
    });
    let t = Instant::now();
    let mut written = 0u64;
    let mut batch = Vec::new();
    let mut ticks = 0u64;
    loop {
        let e = fleet.tick();
        batch.clear();
        fleet.to_points(&e, &mut batch);
        db.write(&batch)?;
        written += batch.len() as u64;
        ticks += 1;
        if ticks.is_multiple_of(64) && wal_bytes(&dir) >= target {
            break;
        }
    }
    let fill_s = t.elapsed().as_secs_f64();
    let wal = wal_bytes(&dir);
    let rss_full = rss_bytes();
    // Abandon it as a kill would: no close, no flush, no destructor.
    std::mem::forget(db);

    let t = Instant::now();
    let db = Tsdb::open(&dir, opts)?;
    let open_s = t.elapsed().as_secs_f64();
    let report = db.recovery_report().clone();
    let stats = db.storage_stats();
    let out = serde_json::json!({
        "wal_bytes": wal,
        "wal_segments": report.segments_replayed,
        "points_written": written,
        "points_replayed": report.points_replayed,
        "head_points_after_open": stats.head_points,
        "all_points_back": report.points_replayed == written && !report.wal_truncated(),
        "fill_seconds": (fill_s * 100.0).round() / 100.0,
        "fill_values_per_s": (written as f64 / fill_s).round(),
        "open_seconds": (open_s * 1000.0).round() / 1000.0,
        "replay_mb_per_s": ((wal as f64 / 1e6) / open_s).round(),
        "rss_bytes_before_kill": rss_full,
        "rss_bytes_after_open": rss_bytes(),
    });
    println!("{out}");
    drop(db);
    if !std::env::var("KEEP").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
