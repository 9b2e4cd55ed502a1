//! Rollup size and 10-minute aggregate query timing on generated fleet data.
//!
//! `cargo run --release -p tsdb --example rollup_probe -j2 -- [TRUCKS] [HOURS]`

use std::time::Instant;

use tsdb::gen::{Fleet, FleetConfig};
use tsdb::{Agg, GroupBy, Options, Selector, Tsdb};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let trucks: usize = argv.first().map_or(Ok(200), |s| s.parse())?;
    let hours: i64 = argv.get(1).map_or(Ok(6), |s| s.parse())?;
    let cfg = FleetConfig {
        trucks,
        ..FleetConfig::default()
    };
    let start = cfg.start_ms;
    let end = start + hours * 3_600_000;
    let mut fleet = Fleet::new(cfg);
    let dir = std::env::temp_dir().join(format!("mw-rollup-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = Tsdb::open(&dir, Options::default())?;
    let mut total = 0usize;
    let ticks = hours * 360;
    let mut batch = Vec::new();
    for _ in 0..ticks {
        let e = fleet.tick();
        fleet.to_points(&e, &mut batch);
        if batch.len() >= 20_000 {
            total += batch.len();
            db.write(&batch)?;
            batch.clear();
        }
    }
    total += batch.len();
    db.write(&batch)?;
    db.flush(end + 3_600_000)?;
    db.compact()?;
    let st = db.storage_stats();
    println!(
        "values {total}: raw {} bytes ({:.3} B/value), rollups {} bytes ({:.3} B/value)",
        st.raw_chunk_bytes,
        st.raw_chunk_bytes as f64 / total as f64,
        st.rollup_chunk_bytes,
        st.rollup_chunk_bytes as f64 / total as f64
    );
    let sel = Selector::namespace("default").metric("readings.velocity");
    let mut best = f64::MAX;
    let mut npts = 0;
    let runs: usize = std::env::var("QUERY_RUNS").map_or(Ok(10), |s| s.parse())?;
    for _ in 0..runs {
        let t = Instant::now();
        let r = db.query_agg(&sel, start, end, 600_000, Agg::Avg, GroupBy::Device)?;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        npts = r.iter().map(|s| s.points.len()).sum::<usize>();
    }
    println!("query_agg avg 10m by device: {npts} points, best of {runs} {best:.2} ms");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
