//! The MQTT telemetry ingest driver of `bench/tsdb/run.sh`
//! ([`bench::ingest::mqtt`]): publishes a `data.mqtt` file with QoS 1, one
//! connection per device authenticated with that device's token, and
//! prints the acknowledged rate as JSON. Exits non-zero (after the report)
//! when any message was refused or a connection failed.
//!
//! `mqtt_load --addr 127.0.0.1:1883 --file data.mqtt --credentials tokens.txt
//!  [--window 8000] [--deadline-secs 170] [--label NAME]`
//!
//! `mqtt_load --null-server 127.0.0.1:0` acknowledges everything without
//! storing it (prints `listening ADDR`), to measure the driver's ceiling.

use std::process::ExitCode;

use bench::ingest::{listen, mqtt, print_json};
use clap::Parser;

#[derive(Parser)]
#[command(name = "mqtt_load", about = "MQTT 5 QoS 1 telemetry ingest driver")]
struct Cli {
    #[command(flatten)]
    args: mqtt::MqttLoadArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse().args;
    let outcome = match &args.common.null_server {
        Some(addr) => match listen(addr).await {
            Ok(listener) => mqtt::null_server(listener).await,
            Err(e) => Err(e),
        },
        None => match mqtt::run(&args).await {
            Ok(report) => print_json(&report).and_then(|()| mqtt::check(&report)),
            Err(e) => Err(e),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqtt_load: {e}");
            ExitCode::FAILURE
        }
    }
}
