//! The MQTT ingest driver against a real Millwright (the debug `millwright`
//! binary, started here on free loopback ports with a temporary data
//! directory, anonymous MQTT off): devices registered through the HTTP API
//! as `bench/tsdb/run.sh` registers them, the driver publishing as those
//! devices, every message acknowledged with success and every value
//! queryable afterwards; a wrong token is refused at CONNECT.
//!
//! The binary is `$MILLWRIGHT_BIN`, else `$CARGO_TARGET_DIR/debug/millwright`,
//! else `target/debug/millwright`; build it first with
//! `cargo build -j2 -p millwright`.

use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bench::ingest::{mqtt, IngestCommon};

const ADMIN_TOKEN: &str = "bench-test-admin-token-0123456789";
const READY: Duration = Duration::from_secs(60);
const DEVICES: [&str; 3] = ["truck_0", "truck_1", "truck_2"];
const MESSAGES: usize = 40;
/// Metric values per message.
const VALUES: usize = 3;

fn millwright_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MILLWRIGHT_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("debug").join("millwright")
}

fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// A millwright process, killed when dropped.
struct Server {
    child: Child,
    http: u16,
    mqtt: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let bin = millwright_bin();
        assert!(
            bin.exists(),
            "{} is missing: build it first with `cargo build -j2 -p millwright` (same \
             CARGO_TARGET_DIR), or point MILLWRIGHT_BIN at a millwright binary",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (http, mut mqtt) = (free_port(), free_port());
        while mqtt == http {
            mqtt = free_port();
        }
        let config = dir.path().join("millwright.toml");
        std::fs::write(
            &config,
            format!(
                "[mqtt]\nbind = \"127.0.0.1\"\nport = {mqtt}\nws_port = 0\ntls_port = 0\n\
                 wss_port = 0\nallow_anonymous = false\n\n\
                 [http]\nbind = \"127.0.0.1\"\nport = {http}\ntls_port = 0\n\n\
                 [tls]\nenabled = false\n\n\
                 [auth]\nbootstrap_admin_token = \"{ADMIN_TOKEN}\"\n"
            ),
        )
        .expect("write the config");
        let log = dir.path().join("millwright.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Server {
            child,
            http,
            mqtt,
            log,
            _dir: dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("millwright exited with {status}; log:\n{}", self.log_tail());
            }
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .into();
            let health = agent
                .get(&format!("http://127.0.0.1:{}/health", self.http))
                .call();
            if health.is_ok() && std::net::TcpStream::connect(("127.0.0.1", self.mqtt)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "millwright not ready within {READY:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50)); // polling interval
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or(&text).to_string()
    }

    /// An API call with the admin token: (status, body).
    fn api(&self, method: &str, path_and_query: &str, body: Option<&str>) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path_and_query}", self.http);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let response = match (method, body) {
            ("POST", Some(body)) => agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body),
            ("GET", None) => agent.get(&url).header("Authorization", &auth).call(),
            other => panic!("unsupported call {other:?}"),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"));
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: body: {e}"));
        (status, text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("ms fit u64")
}

/// A small `data.mqtt` in tsbs_gen's format: each device's messages one
/// second apart from `t0`, interleaved as the generator writes them.
fn data_file(t0: u64) -> String {
    let mut out = String::new();
    for i in 0..MESSAGES {
        for (d, device) in DEVICES.iter().enumerate() {
            let ts = t0 + i as u64 * 1000;
            let v = (i * 10 + d) as f64 / 4.0;
            out.push_str(&format!(
                "{device}\t{VALUES}\t{{\"ts\":{ts},\"values\":{{\"readings.velocity\":{v},\
                 \"readings.fuel_state\":{},\"diagnostics.load\":{i}}}}}\n",
                v + 1.0
            ));
        }
    }
    out
}

fn run_driver(
    addr: String,
    file: &Path,
    credentials: &Path,
) -> Result<serde_json::Value, bench::BenchError> {
    let args = mqtt::MqttLoadArgs {
        addr: Some(addr),
        credentials: Some(credentials.to_path_buf()),
        window: 8,
        common: IngestCommon {
            file: Some(file.to_path_buf()),
            deadline_secs: 60,
            label: "test".into(),
            null_server: None,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(mqtt::run(&args))
}

#[test]
fn registered_devices_publish_their_own_telemetry_and_every_value_is_stored() {
    let server = Server::start();
    let work = tempfile::tempdir().expect("temp dir");

    // Register the devices as run.sh does: the bulk import, tokens issued;
    // its answer is the credentials file as is.
    let devices: Vec<serde_json::Value> = DEVICES
        .iter()
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    let (status, answer) = server.api(
        "POST",
        "/api/devices/import?tokens=true",
        Some(&serde_json::Value::Array(devices).to_string()),
    );
    assert_eq!(status, 200, "{answer}");
    let credentials = work.path().join("credentials.json");
    std::fs::write(&credentials, &answer).expect("write credentials");

    let t0 = now_ms() - 10 * 60 * 1000;
    let file = work.path().join("data.mqtt");
    std::fs::write(&file, data_file(t0)).expect("write data");

    let addr = format!("127.0.0.1:{}", server.mqtt);
    let report = run_driver(addr.clone(), &file, &credentials)
        .unwrap_or_else(|e| panic!("{e}; server log:\n{}", server.log_tail()));
    let total = DEVICES.len() * MESSAGES;
    assert_eq!(report["connections"], DEVICES.len(), "{report}");
    assert_eq!(report["file_messages"], total, "{report}");
    assert_eq!(report["ok_messages"], total, "{report}");
    assert_eq!(report["ok_values"], total * VALUES, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["unacknowledged"], 0, "{report}");
    mqtt::check(&report).unwrap_or_else(|e| panic!("{e}: {report}"));

    // Every value is queryable, under its device.
    let end = t0 + MESSAGES as u64 * 1000;
    for device in DEVICES {
        let (status, body) = server.api(
            "GET",
            &format!("/api/telemetry/query?device={device}&start={t0}&end={end}&limit=100000"),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON answer");
        let series = doc["series"].as_array().expect("series");
        let points: usize = series
            .iter()
            .map(|s| s["points"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(series.len(), VALUES, "{device}: {body}");
        assert_eq!(points, MESSAGES * VALUES, "{device}: {body}");
    }

    // A wrong token is no way in: the driver stops before its clock starts.
    let mut wrong: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
    wrong["tokens"][1]["token"] = serde_json::Value::String("not-the-token".into());
    let wrong_file = work.path().join("wrong.json");
    let mut f = std::fs::File::create(&wrong_file).expect("create");
    f.write_all(wrong.to_string().as_bytes()).expect("write");
    match run_driver(addr, &file, &wrong_file) {
        Err(bench::BenchError::DeviceConnect { device, .. }) => assert_eq!(device, "truck_1"),
        other => panic!("a wrong token was not refused: {other:?}"),
    }
}
