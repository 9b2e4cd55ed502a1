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

/// Runs the MQTT driver on `data` against a null server, with `credentials`
/// as the credentials file.
async fn mqtt_run(data: &str, credentials: &str) -> Result<serde_json::Value, bench::BenchError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.mqtt");
    std::fs::write(&file, data).unwrap();
    let cred_file = dir.path().join("tokens.txt");
    std::fs::write(&cred_file, credentials).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(mqtt::null_server(listener));
    let args = mqtt::MqttLoadArgs {
        addr: Some(addr.to_string()),
        credentials: Some(cred_file),
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
    let tokens: String = (0..7).map(|d| format!("truck_{d} token-{d}\n")).collect();
    let report = mqtt_run(&data, &format!("# device token\n\n{tokens}"))
        .await
        .unwrap();
    assert_eq!(report["file_messages"], 300, "{report}");
    assert_eq!(report["ok_messages"], 300, "{report}");
    assert_eq!(report["ok_values"], 600, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["unacknowledged"], 0, "{report}");
    // One connection per device; the total window shared out.
    assert_eq!(report["connections"], 7, "{report}");
    assert_eq!(report["window_per_connection"], 3, "{report}");
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    mqtt::check(&report).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_driver_takes_the_import_answer_as_credentials() {
    let data = "a\t1\t{\"ts\":1,\"values\":{\"v\":1}}\nb\t1\t{\"ts\":1,\"values\":{\"v\":1}}\n";
    let import =
        r#"{"created": 2, "tokens": [{"id": "a", "token": "ta"}, {"id": "b", "token": "tb"}]}"#;
    let report = mqtt_run(data, import).await.unwrap();
    assert_eq!(report["ok_messages"], 2, "{report}");
    assert_eq!(report["connections"], 2, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_driver_wants_a_token_for_every_device() {
    let data = "a\t1\t{}\nb\t1\t{}\n";
    let outcome = mqtt_run(data, "a ta\n").await;
    match outcome {
        Err(bench::BenchError::InvalidArgs(why)) => assert!(why.contains(": b"), "{why}"),
        other => panic!("{other:?}"),
    }
    let outcome = mqtt_run(data, "a ta\nb\n").await;
    assert!(
        matches!(outcome, Err(bench::BenchError::InvalidArgs(_))),
        "{outcome:?}"
    );
    let outcome = mqtt_run(data, "a ta\nb tb\na tc\n").await;
    assert!(
        matches!(outcome, Err(bench::BenchError::InvalidArgs(_))),
        "{outcome:?}"
    );
}

#[test]
fn a_report_with_a_refused_message_is_not_valid() {
    let report = serde_json::json!({
        "refused": 2,
        "first_refused": {"device": "truck_1", "reason": "0x87"},
        "errors": [],
    });
    let err = mqtt::check(&report).unwrap_err().to_string();
    assert!(
        err.contains("0x87") && err.contains("truck_1") && err.contains('2'),
        "{err}"
    );
    let broken = serde_json::json!({"refused": 0, "errors": ["truck_0: 3 PUBACKs missing"]});
    assert!(mqtt::check(&broken).is_err());
    mqtt::check(&serde_json::json!({"refused": 0, "errors": []})).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_driver_refuses_a_malformed_file() {
    let outcome = mqtt_run("truck_0 no tabs\n", "truck_0 t\n").await;
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
