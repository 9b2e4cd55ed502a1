//! The client against the real API: the `api` router and stores on a
//! loopback port (the API's own test harness), every method called over
//! HTTP. Calls block, so each test runs them on the blocking pool while
//! the server runs on the runtime.

#[allow(dead_code)]
#[path = "../../api/tests/http/harness.rs"]
mod harness;

use api_client::{
    AlarmFilter, Client, CommandRequest, DeviceFilter, Error, ImportFormat, NewDevice, QueryAnswer,
    TelemetryQuery,
};
use harness::{Server, NOW};
use serde_json::json;

fn client(srv: &Server, token: &str) -> Client {
    Client::new(&format!("http://{}/", srv.addr), Some(token.to_string()))
}

fn status<T: std::fmt::Debug>(r: Result<T, Error>) -> u16 {
    r.expect_err("a refusal")
        .status()
        .expect("an HTTP status, not a transport error")
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_tokens_certificates_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let srv = harness::start(dir.path()).await;
    let c = client(&srv, &srv.admin);
    blocking(move || {
        for (id, t) in [("m1", "press"), ("m2", "press"), ("m3", "lathe")] {
            let v = c
                .create_device(&NewDevice {
                    id: id.into(),
                    name: Some(format!("Machine {id}")),
                    device_type: Some(t.into()),
                    labels: [("line".to_string(), "a".to_string())].into(),
                    groups: vec!["hall".into()],
                    token: true,
                })
                .unwrap();
            assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
        }
        // Again: a conflict.
        assert_eq!(
            status(c.create_device(&NewDevice {
                id: "m1".into(),
                ..NewDevice::default()
            })),
            409
        );

        // Pages and filters.
        let page = c.list_devices(&DeviceFilter::default(), None, 2).unwrap();
        assert_eq!(page.items.len(), 2);
        let next = page.next.expect("a second page");
        let rest = c
            .list_devices(&DeviceFilter::default(), Some(&next), 2)
            .unwrap();
        assert_eq!((rest.items.len(), rest.next), (1, None));
        let presses = DeviceFilter {
            device_type: Some("press".into()),
            labels: vec![("line".into(), "a".into())],
            ..DeviceFilter::default()
        };
        let ids: Vec<String> = c
            .all_devices(&presses)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, ["m1", "m2"]);
        let none = DeviceFilter {
            group: Some("elsewhere".into()),
            ..DeviceFilter::default()
        };
        assert!(c.all_devices(&none).unwrap().is_empty());

        let d = c.device("m1").unwrap();
        assert_eq!(
            (d.name.as_str(), d.device_type.as_str()),
            ("Machine m1", "press")
        );
        assert_eq!(d.labels["line"], "a");
        assert_eq!(
            (d.groups, d.enabled, d.connected),
            (vec!["hall".to_string()], true, false)
        );
        assert!(!c.set_device_enabled("m1", false).unwrap().enabled);
        assert!(!c.device("m1").unwrap().enabled);
        c.set_device_enabled("m1", true).unwrap();

        // Token rotation: a new secret each time.
        let t1 = c.issue_device_token("m2", 0).unwrap();
        let t2 = c.issue_device_token("m2", 60).unwrap();
        assert!(!t1.is_empty() && t1 != t2);

        // A certificate with a key made by the server.
        let cert = c.issue_certificate("m3", None).unwrap();
        assert!(cert.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert
            .ca_certificate
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.private_key.is_some_and(|k| k.contains("PRIVATE KEY")));
        assert!(!cert.serial.is_empty());
        assert_eq!(status(c.issue_certificate("m3", Some("not a csr"))), 400);

        // Import, CSV with tokens and JSON, with the progress callback.
        let csv = b"id,name,type,labels,groups\nc1,One,meter,site=x,\nc2,Two,meter,,\n";
        let mut seen = Vec::new();
        let mut progress = |sent: usize, total: usize| seen.push((sent, total));
        let v = c
            .import_devices(csv, ImportFormat::Csv, true, Some(&mut progress))
            .unwrap();
        assert_eq!(v.created, 2, "{v:?}");
        assert_eq!(v.tokens.as_ref().map(Vec::len), Some(2));
        assert_eq!(seen.last(), Some(&(csv.len(), csv.len())));
        let v = c
            .import_devices(br#"[{"id": "j1"}]"#, ImportFormat::Json, false, None)
            .unwrap();
        assert_eq!(v.created, 1, "{v:?}");
        assert!(v.tokens.is_none(), "{v:?}");

        c.delete_device("c2").unwrap();
        assert_eq!(status(c.device("c2")), 404);
        assert_eq!(status(c.delete_device("c2")), 404);
        assert_eq!(c.all_devices(&DeviceFilter::default()).unwrap().len(), 5);
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_write_latest_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let srv = harness::start(dir.path()).await;
    let c = client(&srv, &srv.admin);
    blocking(move || {
        let t0 = NOW - 60_000;
        let lines: String = (0..6)
            .map(|i| format!("machine,device=m1 temp={} {}\n", 20 + i, t0 + i * 10_000))
            .collect();
        c.write_lines(&lines).unwrap();
        c.write_device_telemetry("m2", json!({"rpm": 900})).unwrap();
        assert_eq!(status(c.write_lines("not line protocol")), 400);

        let latest = c.latest("m1").unwrap();
        assert_eq!(latest.len(), 1, "{latest:?}");
        assert_eq!(
            (latest[0]["metric"].as_str(), latest[0]["value"].as_f64()),
            (Some("machine.temp"), Some(25.0))
        );
        assert_eq!(c.latest("m2").unwrap()[0]["value"], 900.0);

        let mut q = TelemetryQuery {
            device: "m1".into(),
            metric: "machine.temp".into(),
            start: (NOW - 3_600_000).to_string(),
            end: (NOW + 1).to_string(),
            agg: None,
            bucket: None,
            csv: false,
        };
        let QueryAnswer::Json(v) = c.query(&q).unwrap() else {
            panic!("JSON asked for");
        };
        assert_eq!(harness::raw_points(&v).len(), 6, "{v}");
        q.agg = Some("avg".into());
        q.bucket = Some("1h".into());
        let QueryAnswer::Json(v) = c.query(&q).unwrap() else {
            panic!("JSON asked for");
        };
        assert!(v.to_string().contains("22.5"), "{v}");
        q.csv = true;
        let QueryAnswer::Csv(text) = c.query(&q).unwrap() else {
            panic!("CSV asked for");
        };
        assert!(text.lines().count() >= 2 && text.contains("22.5"), "{text}");
        q.agg = Some("nonsense".into());
        assert_eq!(status(c.query(&q)), 400);
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_tokens_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let srv = harness::start(dir.path()).await;
    let viewer = client(&srv, &srv.token(registry::Role::Viewer));
    let anonymous = Client::new(&format!("http://{}", srv.addr), None);
    let c = client(&srv, &srv.admin);
    blocking(move || {
        c.add_user("ada", "a long enough password", "operator")
            .unwrap();
        let users = c.users().unwrap();
        assert!(users
            .iter()
            .any(|u| u.username == "ada" && u.role == "operator"));
        assert_eq!(status(c.add_user("bob", "x", "emperor")), 400);
        c.delete_user("ada").unwrap();
        assert_eq!(status(c.delete_user("ada")), 404);

        let secret = c.create_token("ci", "operator").unwrap();
        let tokens = c.tokens().unwrap();
        let id = tokens
            .iter()
            .find(|t| t.name == "ci")
            .map(|t| t.id.clone())
            .expect("the new token listed");
        let ci = Client::new(&format!("http://{}", c_addr(&c)), Some(secret));
        ci.create_device(&NewDevice {
            id: "by-ci".into(),
            ..NewDevice::default()
        })
        .unwrap();
        c.revoke_token(&id).unwrap();
        assert_eq!(status(ci.device("by-ci")), 401);

        // Roles and credentials: the exit codes scripts see.
        let e = viewer
            .create_device(&NewDevice {
                id: "nope".into(),
                ..NewDevice::default()
            })
            .unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert_eq!(api_client::cli::Failure::from(e).code, 4);
        assert_eq!(viewer.device("by-ci").unwrap().id, "by-ci");
        assert_eq!(status(anonymous.users()), 401);
        assert_eq!(status(viewer.users()), 403);
    })
    .await;
    srv.stop().await;
}

/// The base URL a client was made with (for a second credential).
fn c_addr(c: &Client) -> String {
    c.base_url().trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twins_and_commands_over_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let srv = harness::start_fleet(dir.path()).await;
    srv.device_with_token("m1", "press").await;
    let c = client(&srv, &srv.admin);
    blocking(move || {
        let v = c
            .set_desired("m1", None, json!({"speed": 900}), None)
            .unwrap();
        assert_eq!(v["state"]["desired"]["speed"], 900, "{v}");
        let version = v["version"].as_u64().expect("a version");
        assert_eq!(
            c.twin("m1", None).unwrap()["state"]["desired"]["speed"],
            900
        );
        // A stale version is a conflict.
        assert_eq!(
            status(c.set_desired("m1", None, json!({"speed": 1}), Some(version + 5))),
            409
        );
        c.set_desired("m1", Some("extra"), json!({"mode": "eco"}), None)
            .unwrap();
        assert_eq!(
            c.twin("m1", Some("extra")).unwrap()["state"]["desired"]["mode"],
            "eco"
        );
        assert_eq!(status(c.twin("ghost", None)), 404);

        // The device is offline: the command is queued, then cancelled.
        let cmd = c
            .send_command(
                "m1",
                &CommandRequest {
                    method: "stop".into(),
                    params: json!({"now": true}),
                    wait: false,
                    timeout: 30,
                },
            )
            .unwrap();
        let id = cmd.id.clone();
        assert_eq!(cmd.status, "queued", "{cmd:?}");
        assert_eq!(cmd.params, json!({"now": true}));
        let list = c.commands("m1").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].method, "stop");
        let cancelled = c.cancel_command("m1", &id).unwrap();
        assert_eq!(cancelled.status, "cancelled");
        assert_eq!(
            cancelled.trail.last().map(|s| s.status.as_str()),
            Some("cancelled")
        );
        assert_eq!(status(c.cancel_command("m1", &id)), 409);
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_alarms_reach_their_routes() {
    // The harness runs no rules engine: every rules and alarms call must
    // reach its route (503 `unavailable`, not 404 or 405).
    let dir = tempfile::tempdir().unwrap();
    let srv = harness::start(dir.path()).await;
    let c = client(&srv, &srv.admin);
    blocking(move || {
        let def = json!({"name": "hot", "sql": "SELECT * FROM 'devices/+/telemetry'"});
        assert_eq!(status(c.create_rule(def.clone())), 503);
        assert_eq!(status(c.replace_rule("hot", def)), 503);
        assert_eq!(status(c.rules()), 503);
        assert_eq!(status(c.rule("hot")), 503);
        assert_eq!(status(c.set_rule_enabled("hot", true)), 503);
        assert_eq!(status(c.set_rule_enabled("hot", false)), 503);
        assert_eq!(status(c.rule_traces("hot")), 503);
        assert_eq!(
            status(c.dry_run("hot", "devices/m1/telemetry", json!({}))),
            503
        );
        assert_eq!(status(c.delete_rule("hot")), 503);
        assert_eq!(status(c.alarms(&AlarmFilter::default())), 503);
        assert_eq!(status(c.acknowledge_alarm("a1")), 503);
        assert_eq!(status(c.clear_alarm("a1")), 503);
    })
    .await;
    srv.stop().await;
}

#[test]
fn an_unreachable_server_is_a_transport_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::new(&format!("http://127.0.0.1:{port}"), None);
    let e = c.device("m1").unwrap_err();
    assert!(matches!(e, Error::Transport { method: "GET", .. }), "{e}");
    assert_eq!(e.status(), None);
    assert_eq!(api_client::cli::Failure::from(e).code, 1);
}
