//! HTTP line-protocol ingest: a file sent in batches of N lines as `POST`
//! requests from K clients, each a ureq agent on its own keep-alive
//! connection. Batches go out in file order (the next free client takes the
//! next batch).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;

use super::IngestCommon;
use crate::BenchError;

/// Error messages kept for the report.
const ERROR_SAMPLES: usize = 5;
/// Bytes of a refused request's answer kept in its error message.
const ERROR_BODY: usize = 300;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// `lp_load`: line-protocol HTTP loader.
#[derive(Debug, Clone, Args)]
pub struct LpLoadArgs {
    /// Where to `POST`, e.g. `http://127.0.0.1:8086/write?db=bench&precision=ms`.
    #[arg(long, required_unless_present = "null_server")]
    pub url: Option<String>,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    pub batch_lines: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub common: IngestCommon,
}

/// A range of the file's lines, sent as one request.
struct Batch {
    start: usize,
    end: usize,
    /// Field values in those lines.
    values: usize,
}

/// What the clients achieved together.
#[derive(Default)]
struct Totals {
    ok_requests: usize,
    ok_values: usize,
    ok_bytes: usize,
    failed_requests: usize,
    failed_values: usize,
    errors: Vec<String>,
    latencies_ms: Vec<f64>,
}

impl Totals {
    fn fail(&mut self, batch: &Batch, message: String) {
        self.failed_requests += 1;
        self.failed_values += batch.values;
        if self.errors.len() < ERROR_SAMPLES {
            self.errors.push(message);
        }
    }

    fn add(&mut self, other: Totals) {
        self.ok_requests += other.ok_requests;
        self.ok_values += other.ok_values;
        self.ok_bytes += other.ok_bytes;
        self.failed_requests += other.failed_requests;
        self.failed_values += other.failed_values;
        self.errors.extend(other.errors);
        self.latencies_ms.extend(other.latencies_ms);
    }

    /// The `q` quantile of the request latencies (0 when there are none).
    fn latency_ms(&self, q: f64) -> f64 {
        let n = self.latencies_ms.len();
        if n == 0 {
            return 0.0;
        }
        self.latencies_ms[((n - 1) as f64 * q).round() as usize]
    }
}

/// Loads the file as `args` say and returns the report.
pub fn run(args: &LpLoadArgs) -> Result<serde_json::Value, BenchError> {
    let url = args
        .url
        .as_deref()
        .ok_or_else(|| BenchError::InvalidArgs("--url is required".into()))?;
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| BenchError::InvalidArgs(format!("--header {h:?}: not Name: value")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (file_name, data) = args.common.read_file()?;
    let all = batches(&data, args.batch_lines.max(1));
    let file_values: usize = all.iter().map(|b| b.values).sum();
    let deadline = args.common.deadline();

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let totals = Mutex::new(Totals::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.clients.max(1) {
            s.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(REQUEST_TIMEOUT))
                    .build()
                    .into();
                let mut local = Totals::default();
                loop {
                    if started.elapsed() > deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Some(batch) = all.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let body = &data[batch.start..batch.end];
                    let t0 = Instant::now();
                    let mut request = agent
                        .post(url)
                        .header("Content-Type", "text/plain; charset=utf-8");
                    for (name, value) in &headers {
                        request = request.header(*name, *value);
                    }
                    match request.send(body) {
                        Ok(mut response) => {
                            let status = response.status().as_u16();
                            let answer = response.body_mut().read_to_vec().unwrap_or_default();
                            if (200..300).contains(&status) {
                                local.ok_requests += 1;
                                local.ok_values += batch.values;
                                local.ok_bytes += body.len();
                            } else {
                                let shown = &answer[..answer.len().min(ERROR_BODY)];
                                let text = String::from_utf8_lossy(shown);
                                local.fail(batch, format!("HTTP {status}: {text}"));
                            }
                        }
                        Err(e) => local.fail(batch, e.to_string()),
                    }
                    local.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                // A std mutex is right here: one merge per client at the end.
                totals.lock().unwrap_or_else(|e| e.into_inner()).add(local);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let mut t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    t.latencies_ms.sort_by(f64::total_cmp);
    Ok(serde_json::json!({
        "label": args.common.label,
        "url": url,
        "file": file_name,
        "clients": args.clients,
        "batch_lines": args.batch_lines,
        "batches": all.len(),
        "file_values": file_values,
        "ok_requests": t.ok_requests,
        "ok_values": t.ok_values,
        "ok_bytes": t.ok_bytes,
        "failed_requests": t.failed_requests,
        "failed_values": t.failed_values,
        "deadline_hit": stop.load(Ordering::Relaxed),
        "seconds": secs,
        "values_per_s": t.ok_values as f64 / secs,
        "mb_per_s": t.ok_bytes as f64 / secs / 1e6,
        "request_ms_p50": t.latency_ms(0.5),
        "request_ms_p99": t.latency_ms(0.99),
        "request_ms_max": t.latency_ms(1.0),
        "errors": t.errors,
    }))
}

/// Values (fields) in a line-protocol line: the commas of the field set
/// plus one. Good for the generated data (no quoted strings, no escapes).
fn fields_in(line: &[u8]) -> usize {
    let mut spaces = line.iter().enumerate().filter(|(_, b)| **b == b' ');
    let (Some((a, _)), Some((b, _))) = (spaces.next(), spaces.next()) else {
        return 0;
    };
    1 + line[a + 1..b].iter().filter(|c| **c == b',').count()
}

/// The file cut into batches of `per` lines (the last one shorter).
fn batches(data: &[u8], per: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut lines = 0;
    let mut values = 0;
    let mut line_start = 0;
    while line_start < data.len() {
        let line_end = data[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| line_start + i + 1);
        values += fields_in(&data[line_start..line_end]);
        line_start = line_end;
        lines += 1;
        if lines == per || line_end == data.len() {
            out.push(Batch {
                start,
                end: line_end,
                values,
            });
            start = line_end;
            lines = 0;
            values = 0;
        }
    }
    out
}

/// Serves HTTP on `listener` until killed, answering every request with
/// 204 once its body has been read.
pub async fn null_server(listener: tokio::net::TcpListener) -> Result<(), BenchError> {
    let app = axum::Router::new().fallback(|body: axum::body::Body| async move {
        let _ = axum::body::to_bytes(body, usize::MAX).await;
        axum::http::StatusCode::NO_CONTENT
    });
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_file_and_count_fields() {
        let data = b"m,t=a x=1,y=2 10\nm,t=b x=3 11\nm z=1,y=2,w=3 12";
        let two = batches(data, 2);
        assert_eq!(two.len(), 2);
        assert_eq!((two[0].start, two[1].end), (0, data.len()));
        assert_eq!(two[0].end, two[1].start);
        assert_eq!((two[0].values, two[1].values), (3, 3));
        let one = batches(data, 10);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].values, 6);
        assert!(batches(b"", 5).is_empty());
    }
}
