//! Short end-to-end runs of the load generator against a real Mosquitto
//! (skipped, with a message, when it is not installed).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bench::{BenchArgs, BenchError, Mode};
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn args(extra: &[&str]) -> BenchArgs {
    let argv = std::iter::once("bench").chain(extra.iter().copied());
    Cli::parse_from(argv).args
}

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(test: &str) -> Option<Mosquitto> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(binary) = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
    else {
        eprintln!("skipping {test}: the mosquitto binary is not installed");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("m.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nmax_connections -1\n"),
    )
    .unwrap();
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Owned at once, so that it is killed and reaped on every path.
    let broker = Mosquitto {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(broker);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not start");
}

#[test]
fn arguments_are_validated() {
    let plan = |extra: &[&str]| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Port 9 (discard) is never reached: validation fails first.
        let mut a = vec!["--port", "9"];
        a.extend_from_slice(extra);
        rt.block_on(bench::run(args(&a)))
    };
    for bad in [
        &["--qos", "3"][..],
        &["--payload", "4"],
        &["--protocol", "6"],
        &["--mode", "pairs", "--subscribers", "3"],
        &["--duration", "0"],
        &["--inflight", "0"],
        &["--topic-prefix", "a/+"],
    ] {
        assert!(
            matches!(plan(bad), Err(BenchError::InvalidArgs(_))),
            "{bad:?} should be rejected"
        );
    }
    let a = args(&["--mode", "fan-out", "--source-addrs", "127.0.0.1,127.0.0.2"]);
    assert_eq!(a.mode, Mode::FanOut);
    assert_eq!(a.source_addrs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_qos1_run_reports_throughput_and_latency() {
    let Some(broker) = start_mosquitto("pairs_qos1_run_reports_throughput_and_latency") else {
        return;
    };
    let port = broker.port.to_string();
    let report = bench::run(args(&[
        "--port",
        &port,
        "--mode",
        "pairs",
        "--publishers",
        "2",
        "--qos",
        "1",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--quiet",
    ]))
    .await
    .unwrap();
    let json = report.to_json().unwrap();
    assert!(json.contains("\"received_per_sec\""));
    let load = report.load.expect("a load report");
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert!(load.sent_total > 1000, "{load:?}");
    assert_eq!(load.acked_total, load.sent_total);
    assert_eq!(load.received_total, load.expected_total);
    assert_eq!(load.missing, 0);
    // Per message: every acknowledged message reached its subscriber.
    assert_eq!(load.expected_acked_deliveries, load.acked_total);
    assert_eq!(load.acked_not_delivered, 0);
    assert_eq!((load.duplicates, load.unacked), (0, 0));
    assert!(json.contains("\"acked_not_delivered\": 0"));
    assert!(load.latency.samples > 0 && load.latency.p99_us > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_in_and_fan_out_deliver_to_every_subscriber() {
    let Some(broker) = start_mosquitto("fan_in_and_fan_out_deliver_to_every_subscriber") else {
        return;
    };
    let port = broker.port.to_string();
    for (mode, pubs, subs) in [("fan-in", "5", "2"), ("fan-out", "1", "5")] {
        let report = bench::run(args(&[
            "--port",
            &port,
            "--mode",
            mode,
            "--publishers",
            pubs,
            "--subscribers",
            subs,
            "--qos",
            "0",
            "--count",
            "500",
            "--rate",
            "5000",
            "--duration",
            "2",
            "--warmup",
            "0",
            "--quiet",
        ]))
        .await
        .unwrap();
        let load = report.load.expect("a load report");
        assert_eq!(load.sent_total, 500, "{mode}");
        let fanout: u64 = subs.parse().unwrap();
        assert_eq!(load.expected_total, 500 * fanout, "{mode}");
        assert_eq!(load.received_total, load.expected_total, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_loss_is_counted_per_publisher_and_subscriber() {
    let Some(broker) = start_mosquitto("qos1_loss_is_counted_per_publisher_and_subscriber") else {
        return;
    };
    let port = broker.port.to_string();
    // Paced and bounded by time, so publishers end with counts that differ
    // a little and finish in any order: the accounting must match each
    // subscriber's deliveries with the right publisher's acknowledgements.
    for (mode, pubs, subs) in [
        ("fan-in", "3", "2"),
        ("pairs", "3", "3"),
        ("fan-out", "1", "3"),
    ] {
        let report = bench::run(args(&[
            "--port",
            &port,
            "--mode",
            mode,
            "--publishers",
            pubs,
            "--subscribers",
            subs,
            "--qos",
            "1",
            "--rate",
            "3000",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--quiet",
        ]))
        .await
        .unwrap();
        assert_eq!(report.errors, 0, "{mode}: {:?}", report.error_samples);
        let load = report.load.expect("a load report");
        let per_message: u64 = if mode == "pairs" {
            1
        } else {
            subs.parse().unwrap()
        };
        assert_eq!(load.acked_total, load.sent_total, "{mode}");
        assert_eq!(
            load.expected_acked_deliveries,
            load.acked_total * per_message,
            "{mode}"
        );
        assert_eq!(
            load.received_total, load.expected_acked_deliveries,
            "{mode}"
        );
        assert_eq!(load.acked_not_delivered, 0, "{mode}: {load:?}");
        assert_eq!(load.refused_total, 0, "{mode}");
        assert_eq!(load.subscribers_disconnected, 0, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_mode_measures_rate_and_broker_memory() {
    let Some(broker) = start_mosquitto("connections_mode_measures_rate_and_broker_memory") else {
        return;
    };
    let port = broker.port.to_string();
    let pid = broker.child.id().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let report = bench::run(args(&[
        "--port",
        &port,
        "--mode",
        "connections",
        "--connections",
        "200",
        "--pid",
        &pid,
        "--hold",
        "1",
        "--source-addrs",
        "127.0.0.1,127.0.0.2",
        "--ready-file",
        ready.to_str().unwrap(),
        "--quiet",
    ]))
    .await
    .unwrap();
    let c = report.connections.expect("a connections report");
    assert_eq!(c.opened, 200);
    assert_eq!(c.failed, 0);
    assert!(c.connections_per_sec > 0.0);
    assert!(c.broker_rss_before.is_some() && c.broker_rss_after.is_some());
    assert!(c.broker_bytes_per_connection.is_some());
    assert!(ready.exists());
}
