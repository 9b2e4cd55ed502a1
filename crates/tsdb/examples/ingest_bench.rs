//! Ingest benchmark on TSBS-like IoT data.
//!
//! Phase 1 writes pre-generated points through `Tsdb::write` from K threads
//! (durable: every `write` returns after its group's fdatasync), then
//! flushes and compacts and reports bytes per value on disk. Phase 2 does
//! the same from line protocol text, parsing included.
//!
//! `cargo run --release -p tsdb --example ingest_bench -j2 -- [--values N]
//! [--threads K] [--trucks T] [--batch B] [--level L] [--dir PATH]`

use std::time::Instant;

use tsdb::gen::{Fleet, FleetConfig};
use tsdb::{
    parse_line_protocol, Agg, GroupBy, LineProtocolOptions, Options, Selector, Tsdb, WritePoint,
};

struct Args {
    values: usize,
    threads: usize,
    trucks: usize,
    batch: usize,
    level: usize,
    dir: Option<std::path::PathBuf>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        values: 10_000_000,
        threads: 8,
        trucks: 200,
        batch: 10_000,
        level: Options::default().compression_level,
        dir: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        let num = || {
            v.parse::<usize>()
                .map_err(|_| format!("{} needs a number", argv[i]))
        };
        match argv[i].as_str() {
            "--values" => a.values = num()?,
            "--threads" => a.threads = num()?,
            "--trucks" => a.trucks = num()?,
            "--batch" => a.batch = num()?,
            "--level" => a.level = num()?,
            "--dir" => a.dir = Some(v.into()),
            other => return Err(format!("unknown flag {other}").into()),
        }
        i += 2;
    }
    Ok(a)
}

/// Per writer thread, its batches.
type PerThread<T> = Vec<Vec<T>>;

/// Generates about `values` values, split per thread (by truck) into
/// batches of about `batch` values, each as points and as line protocol.
fn generate(a: &Args) -> (PerThread<Vec<WritePoint>>, PerThread<String>, usize) {
    let mut fleet = Fleet::new(FleetConfig {
        trucks: a.trucks,
        ..FleetConfig::default()
    });
    let threads = a.threads.max(1);
    let mut points: Vec<Vec<Vec<WritePoint>>> = vec![Vec::new(); threads];
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); threads];
    let mut total = 0;
    while total < a.values {
        let entries = fleet.tick();
        for e in entries {
            let t = e.truck % threads;
            if points[t].last().is_none_or(|b| b.len() >= a.batch) {
                points[t].push(Vec::new());
                texts[t].push(String::new());
            }
            let (Some(cur), Some(txt)) = (points[t].last_mut(), texts[t].last_mut()) else {
                continue;
            };
            let before = cur.len();
            fleet.to_points(std::slice::from_ref(&e), cur);
            total += cur.len() - before;
            fleet.to_line_protocol(std::slice::from_ref(&e), txt);
        }
    }
    (points, texts, total)
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().map(|m| m.len()).unwrap_or(0);
            if e.path().is_dir() {
                n += dir_size(&e.path());
            } else {
                n += m;
            }
        }
    }
    n
}

fn report_storage(label: &str, db: &Tsdb, values: usize, now: i64) -> Result<(), BoxError> {
    let t = Instant::now();
    db.flush(now)?;
    let flush_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    db.compact()?;
    let compact_s = t.elapsed().as_secs_f64();
    let st = db.storage_stats();
    println!(
        "{label}: final flush {flush_s:.2} s, compaction {compact_s:.2} s; raw chunks {} files {} bytes = {:.3} bytes/value; rollups {} bytes ({:.3} bytes/value); WAL {} bytes; series {}",
        st.raw_chunks,
        st.raw_chunk_bytes,
        st.raw_chunk_bytes as f64 / values as f64,
        st.rollup_chunk_bytes,
        st.rollup_chunk_bytes as f64 / values as f64,
        st.wal_bytes,
        st.series,
    );
    Ok(())
}

/// Runs `write` over each thread's batches, one writer thread per list,
/// and returns the seconds it took them all.
fn write_from_threads<T: Sync>(
    db: &Tsdb,
    per_thread: &PerThread<T>,
    write: impl Fn(&Tsdb, &T) -> Result<(), tsdb::Error> + Sync,
) -> Result<f64, BoxError> {
    let t = Instant::now();
    std::thread::scope(|s| -> Result<(), BoxError> {
        let handles: Vec<_> = per_thread
            .iter()
            .map(|batches| {
                let write = &write;
                s.spawn(move || batches.iter().try_for_each(|b| write(db, b)))
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "writer thread panicked")??;
        }
        Ok(())
    })?;
    Ok(t.elapsed().as_secs_f64())
}

fn opts(a: &Args) -> Options {
    Options {
        compression_level: a.level,
        ..Options::default()
    }
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    let base = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("mw-ingest-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "generating ~{} values: {} trucks x 10 fields every 10 s, {} writer threads, batches of ~{} values",
        a.values, a.trucks, a.threads, a.batch
    );
    let (points, texts, total) = generate(&a);
    let lp_bytes: usize = texts.iter().flatten().map(String::len).sum();
    let now = points
        .iter()
        .flatten()
        .flatten()
        .map(|p| p.ts)
        .max()
        .unwrap_or(0);

    // Phase 1: points through write().
    let db = Tsdb::open(&base.join("points"), opts(&a))?;
    let secs = write_from_threads(&db, &points, |db, batch| db.write(batch))?;
    println!(
        "write(): {total} values in {secs:.2} s = {:.0} values/s durable (group commit, auto-flush included)",
        total as f64 / secs
    );
    report_storage("write()", &db, total, now)?;
    let sel = Selector::namespace("default").metric("readings.velocity");
    let t = Instant::now();
    let start = 1_451_606_400_000;
    let r = db.query_agg(
        &sel,
        start,
        now + 3_600_000 - now % 3_600_000,
        3_600_000,
        Agg::Max,
        GroupBy::All,
    )?;
    println!(
        "query: max(velocity) per hour over {} trucks: {} buckets in {:.1} ms",
        a.trucks,
        r.first().map_or(0, |s| s.points.len()),
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "disk total (points db): {} bytes",
        dir_size(&base.join("points"))
    );
    drop(db);

    // Phase 2: line protocol text, parsed and written by each thread.
    let db = Tsdb::open(&base.join("lp"), opts(&a))?;
    let opts = LineProtocolOptions {
        device_tags: vec!["name".into()],
        ..LineProtocolOptions::default()
    };
    let secs = write_from_threads(&db, &texts, |db, text| {
        let pts = parse_line_protocol(text, &opts, 0)?;
        db.write(&pts)
    })?;
    println!(
        "line protocol: {total} values ({lp_bytes} bytes of text) in {secs:.2} s = {:.0} values/s parsed and durable",
        total as f64 / secs
    );
    report_storage("line protocol", &db, total, now)?;
    drop(db);
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    Ok(())
}
