//! The line-protocol HTTP ingest driver of `bench/tsdb/run.sh`
//! ([`bench::ingest::http`]): posts a `data.lp` file in batches from
//! keep-alive clients and prints the accepted rate as JSON.
//!
//! `lp_load --url http://127.0.0.1:8086/write?db=bench&precision=ms
//!  --file data.lp [--batch-lines 5000] [--clients 8] [--header 'K: V']...
//!  [--deadline-secs 170] [--label NAME]`
//!
//! `lp_load --null-server 127.0.0.1:0` answers every request with 204
//! (prints `listening ADDR`), to measure the driver's ceiling.

use std::process::ExitCode;

use bench::ingest::{http, listen, print_json};
use clap::Parser;

#[derive(Parser)]
#[command(name = "lp_load", about = "Line-protocol HTTP telemetry ingest driver")]
struct Cli {
    #[command(flatten)]
    args: http::LpLoadArgs,
}

fn main() -> ExitCode {
    let args = Cli::parse().args;
    let outcome = match &args.common.null_server {
        Some(addr) => tokio::runtime::Runtime::new()
            .map_err(bench::BenchError::from)
            .and_then(|runtime| {
                runtime.block_on(async { http::null_server(listen(addr).await?).await })
            }),
        None => http::run(&args).and_then(|report| print_json(&report)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lp_load: {e}");
            ExitCode::FAILURE
        }
    }
}
