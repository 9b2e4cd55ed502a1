//! The simulator against the real Millwright broker (in-process, anonymous
//! access with an ACL file that opens the devices' tree, a free port) over
//! plain pub/sub: the test plays the platform's part of the twin and
//! command exchange itself.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::{AccessControl, BrokerConfig};
use broker_net::{NetConfig, Server, ServerOptions};
use kv::RedbSessionStore;
use mqtt_client::{Client, ConnectOptions, Protocol, Publish, QoS};
use serde_json::{json, Value};
use simulator::{run_fleet, Fleet, FleetOptions, MachineKind, Report};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Time limit of every step.
const STEP: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A broker on a free port; stops when `stop` is sent or dropped.
struct Broker {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Broker {
    async fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = RedbSessionStore::open(&dir.path().join("broker.redb")).expect("store");
        let config = NetConfig {
            bind: "127.0.0.1".into(),
            port: 0,
            ws_port: None,
            sys_interval_secs: 0,
            ..NetConfig::default()
        };
        // Plain pub/sub: `devices/...` belongs to registered devices, so
        // this broker without a registry grants the tree explicitly.
        let access = AccessControl::new(true)
            .with_acl_file("topic readwrite #\ntopic readwrite devices/#\n")
            .expect("ACL");
        let options = ServerOptions {
            access,
            ..Default::default()
        };
        let server = Server::bind(config, BrokerConfig::default(), Arc::new(store), options)
            .await
            .expect("bind");
        let addr = server.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Broker {
            addr,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = within("broker stop", &mut self.task).await;
    }
}

/// Runs `fleet` in a task until the returned sender fires.
fn start_fleet(fleet: Fleet, options: FleetOptions) -> (oneshot::Sender<()>, JoinHandle<Report>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run_fleet(fleet, options, async {
        let _ = stopped.await;
    }));
    (stop, task)
}

fn fleet(ids: &[&str]) -> Fleet {
    Fleet {
        devices: ids
            .iter()
            .enumerate()
            // The anonymous broker takes any password.
            .map(|(i, id)| {
                (
                    id.to_string(),
                    "fake-token".to_string(),
                    MachineKind::for_index(i),
                )
            })
            .collect(),
    }
}

fn options(addr: SocketAddr, protocol: Protocol) -> FleetOptions {
    FleetOptions {
        protocol,
        interval: Duration::from_millis(200),
        seed: 1,
        ..FleetOptions::new(addr)
    }
}

/// The platform's side: one client subscribed to what devices publish.
async fn observer(addr: SocketAddr, filters: &[&str]) -> Client {
    let client = Client::connect(addr, ConnectOptions::new("observer").protocol(Protocol::V5))
        .await
        .expect("observer connects");
    let suback = client
        .subscribe(filters.iter().map(|f| (*f, QoS::AtLeastOnce)))
        .await
        .expect("observer subscribes");
    assert!(suback.reason_codes.iter().all(|c| !c.is_error()));
    client
}

/// The next message whose topic is `topic`, skipping others.
async fn next_on(client: &mut Client, topic: &str) -> Publish {
    within(topic, async {
        loop {
            let message = client.recv().await.expect("observer connection open");
            if &*message.topic == topic {
                return message;
            }
        }
    })
    .await
}

fn json_of(message: &Publish) -> Value {
    serde_json::from_slice(&message.payload).expect("JSON payload")
}

async fn publish(client: &Client, topic: &str, payload: Value) {
    within(
        topic,
        client.publish(topic, payload.to_string(), QoS::AtLeastOnce, false),
    )
    .await
    .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_publish_answer_commands_and_follow_their_twin() {
    let broker = Broker::start().await;
    let mut platform = observer(
        broker.addr,
        &[
            "devices/+/telemetry",
            "devices/+/twin/get",
            "devices/+/twin/update",
            "devices/+/commands/+/response",
        ],
    )
    .await;
    let ids = ["sim-0001", "sim-0002", "sim-0003"];
    let (stop, fleet_task) = start_fleet(fleet(&ids), options(broker.addr, Protocol::V5));

    // Telemetry from every device, in the contract's shape.
    let mut seen = std::collections::HashSet::new();
    within("telemetry from every device", async {
        while seen.len() < ids.len() {
            let message = platform.recv().await.expect("open");
            let Some(id) = message
                .topic
                .strip_prefix("devices/")
                .and_then(|t| t.strip_suffix("/telemetry"))
            else {
                continue;
            };
            let v = json_of(&message);
            for field in ["temp", "vibration", "rpm", "power"] {
                assert!(v[field].is_number(), "{field} in {v}");
            }
            seen.insert(id.to_string());
        }
    })
    .await;

    // A command is answered on its response topic.
    publish(
        &platform,
        "devices/sim-0001/commands/c1",
        json!({"method": "ping", "params": {}}),
    )
    .await;
    let response = json_of(&next_on(&mut platform, "devices/sim-0001/commands/c1/response").await);
    assert_eq!(response["status"], json!(0), "{response}");
    assert_eq!(response["result"]["pong"], json!(true), "{response}");
    publish(
        &platform,
        "devices/sim-0001/commands/c2",
        json!({"method": "warp"}),
    )
    .await;
    let response = json_of(&next_on(&mut platform, "devices/sim-0001/commands/c2/response").await);
    assert_eq!(response["status"], json!(404), "{response}");

    // A delta is applied and reported back.
    publish(
        &platform,
        "devices/sim-0002/twin/delta",
        json!({"state": {"speed": 900, "led": "on"}, "version": 2}),
    )
    .await;
    let update = json_of(&next_on(&mut platform, "devices/sim-0002/twin/update").await);
    assert_eq!(
        update["state"]["reported"],
        json!({"speed": 900, "led": "on"}),
        "{update}"
    );
    assert!(update["clientToken"].is_string());

    // The twin document is asked for on connect; its answer is reported on.
    publish(
        &platform,
        "devices/sim-0003/twin/get/accepted",
        json!({
            "state": {"desired": {"mode": "idle"}, "reported": {}, "delta": {"mode": "idle"}},
            "metadata": {}, "version": 3, "timestamp": 1
        }),
    )
    .await;
    let update = json_of(&next_on(&mut platform, "devices/sim-0003/twin/update").await);
    assert_eq!(
        update["state"]["reported"]["mode"],
        json!("idle"),
        "{update}"
    );
    assert_eq!(update["state"]["reported"]["firmware"], json!("1.0.0"));
    publish(
        &platform,
        "devices/sim-0003/commands/c3",
        json!({"method": "get_state"}),
    )
    .await;
    let state = json_of(&next_on(&mut platform, "devices/sim-0003/commands/c3/response").await);
    assert_eq!(state["result"]["mode"], json!("idle"), "{state}");

    // A reboot is answered, then the device reconnects (and asks for its
    // twin again).
    publish(
        &platform,
        "devices/sim-0002/commands/r1",
        json!({"method": "reboot"}),
    )
    .await;
    let response = json_of(&next_on(&mut platform, "devices/sim-0002/commands/r1/response").await);
    assert_eq!(response["status"], json!(0), "{response}");
    next_on(&mut platform, "devices/sim-0002/twin/get").await;

    let _ = stop.send(());
    let report = within("fleet stop", fleet_task).await.expect("fleet task");
    assert_eq!(report.devices, 3);
    assert_eq!(report.connected_at_end, 3, "{report:?}");
    assert_eq!(report.reboots, 1, "{report:?}");
    assert_eq!(report.connects, 4, "{report:?}");
    assert_eq!(report.commands_answered, 4, "{report:?}");
    assert_eq!(report.commands_failed, 1, "{report:?}");
    assert!(report.twin_reports >= 2, "{report:?}");
    assert!(report.telemetry_sent >= 3, "{report:?}");
    assert!(report.telemetry_acked >= 3, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_devices_work_too() {
    let broker = Broker::start().await;
    let mut platform = observer(
        broker.addr,
        &["devices/+/telemetry", "devices/+/commands/+/response"],
    )
    .await;
    let (stop, fleet_task) = start_fleet(fleet(&["old-1"]), options(broker.addr, Protocol::V311));
    next_on(&mut platform, "devices/old-1/telemetry").await;
    publish(
        &platform,
        "devices/old-1/commands/p",
        json!({"method": "ping"}),
    )
    .await;
    let response = json_of(&next_on(&mut platform, "devices/old-1/commands/p/response").await);
    assert_eq!(response["status"], json!(0), "{response}");
    let _ = stop.send(());
    let report = within("fleet stop", fleet_task).await.expect("fleet task");
    assert_eq!(report.protocol, 3);
    assert_eq!(report.errors, 0, "{report:?}");
    broker.stop().await;
}
