//! The ingest drivers against their own null servers over loopback: every
//! message and value of the file is sent and counted as acknowledged.

use std::path::Path;

use bench::ingest::{http, mqtt, IngestCommon};
use tokio::net::TcpListener;

fn common(file: &Path) -> IngestCommon {
    IngestCommon {
        file: Some(file.to_path_buf()),
        deadline_secs: 60,
        label: "test".into(),
        null_server: None,
    }
}

/// Runs the MQTT driver on `data` against a null server.
async fn mqtt_run(data: &str, connections: usize) -> Result<serde_json::Value, bench::BenchError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.mqtt");
    std::fs::write(&file, data).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(mqtt::null_server(listener));
    let args = mqtt::MqttLoadArgs {
        addr: Some(addr.to_string()),
        connections,
        window: 16,
        common: common(&file),
    };
    let outcome = mqtt::run(&args).await;
    server.abort();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_driver_counts_every_acknowledged_message() {
    let mut data = String::new();
    for i in 0..300 {
        let device = i % 7;
        data.push_str(&format!(
            "truck_{device}\t2\t{{\"ts\":{i},\"values\":{{\"a\":1,\"b\":2}}}}\n"
        ));
    }
    let report = mqtt_run(&data, 3).await.unwrap();
    assert_eq!(report["file_messages"], 300, "{report}");
    assert_eq!(report["ok_messages"], 300, "{report}");
    assert_eq!(report["ok_values"], 600, "{report}");
    assert_eq!(report["failed_messages"], 0, "{report}");
    assert_eq!(report["connections"], 3, "{report}");
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_driver_refuses_a_malformed_file() {
    let outcome = mqtt_run("truck_0 no tabs\n", 1).await;
    assert!(
        matches!(outcome, Err(bench::BenchError::Data(_))),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_driver_sends_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.lp");
    let mut data = String::new();
    for i in 0..1_001 {
        data.push_str(&format!("readings,device=t{} a=1,b=2,c=3 {i}\n", i % 5));
    }
    std::fs::write(&file, &data).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(http::null_server(listener));
    let args = http::LpLoadArgs {
        url: Some(format!("http://{addr}/write?db=bench&precision=ms")),
        batch_lines: 100,
        clients: 3,
        headers: vec!["Authorization: Bearer x".into()],
        common: common(&file),
    };
    let report = tokio::task::spawn_blocking(move || http::run(&args))
        .await
        .unwrap()
        .unwrap();
    server.abort();
    assert_eq!(report["batches"], 11, "{report}");
    assert_eq!(report["ok_requests"], 11, "{report}");
    assert_eq!(report["ok_values"], 3_003, "{report}");
    assert_eq!(report["ok_bytes"], data.len(), "{report}");
    assert_eq!(report["failed_requests"], 0, "{report}");
}
