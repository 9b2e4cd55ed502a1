//! Runs the load generator on its own, before (or without) the main binary:
//! `cargo run --release -p bench --example bench -- --mode pairs --qos 1`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "bench", about = "MQTT load generator (millwright bench)")]
struct Cli {
    #[command(flatten)]
    args: bench::BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.args.json;
    match bench::run(cli.args).await {
        Ok(report) => match bench::print_report(&report, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
