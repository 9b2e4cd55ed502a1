//! `millwright serve`: opens the stores, binds the listeners, runs until
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use iot_types::{Clock, SharedClock, SystemClock};

use crate::security;
use lifecycle as role;
use settings::Settings;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where all state is kept.
    #[arg(long, default_value = "./millwright-data")]
    pub data_dir: PathBuf,
    /// A TOML settings file; every key can be overridden by an environment
    /// variable MILLWRIGHT_SECTION__KEY.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also run a simulated factory (machines with telemetry, twins,
    /// commands, occasional faults) and demo rules, and print a login.
    #[arg(long)]
    pub demo: bool,
    /// How many simulated machines with --demo.
    #[arg(long, default_value_t = 200)]
    pub demo_machines: usize,
}

/// Warns when the connection caps together (`Settings::fd_budget`) exceed
/// the soft open-file limit: past it, accepts fail (EMFILE) for MQTT and
/// HTTP alike instead of the cap refusing cleanly.
fn warn_fd_budget(settings: &Settings) {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        });
    let need = settings.fd_budget();
    if let Some(soft) = soft.filter(|s| *s < need) {
        tracing::warn!(
            open_files_limit = soft,
            needed = need,
            "mqtt.max_connections + http.max_connections (+ TLS handshakes and a reserve) exceed the open-file limit; raise `ulimit -n` or lower the caps"
        );
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref(), std::env::vars())?;
    crate::init_logging(&settings.log.level, settings.log.format);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let access = settings.access_control()?;
    let policy = Arc::new(settings.auth.policy()?);
    warn_fd_budget(&settings);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut role = role::Role::new(if args.demo { "serve --demo" } else { "serve" });
        // The one clock every component reads (tests hand theirs a
        // `ManualClock` instead).
        let clock: SharedClock = Arc::new(SystemClock);
        let data_dir = &args.data_dir;
        let store_path = data_dir.join("broker.redb");
        let store = kv::RedbSessionStore::open(&store_path).with_context(|| {
            format!(
                "cannot open {} (is another millwright using this data directory?)",
                store_path.display()
            )
        })?;
        let registry = security::open_registry(data_dir, &settings)?;
        security::bootstrap_admin(&registry, &settings, &*clock)?;
        let ca = security::load_ca(data_dir, &settings, &*clock)?;
        let tls = if settings.tls.enabled {
            Some(security::tls_configs(&settings, &ca, &registry, &*clock)?)
        } else {
            None
        };

        let mut tsdb_handle = None;
        let ingest = if settings.telemetry.enabled {
            let dir = data_dir.join("tsdb");
            let db = tsdb::Tsdb::open(&dir, settings.telemetry.tsdb_options())
                .with_context(|| format!("cannot open the telemetry store {}", dir.display()))?;
            let db = Arc::new(db);
            let report = db.recovery_report();
            tracing::info!(dir = %dir.display(), ?report, "telemetry store open");
            let (flush, flusher) = telemetry::spawn_maintenance(
                db.clone(),
                std::time::Duration::from_secs(settings.telemetry.flush_interval),
                {
                    let clock = clock.clone();
                    move || clock.now().as_millis_i64()
                },
            )?;
            // Stopped last: a last flush so the next start has little WAL
            // to replay.
            role.add(role::Threads(
                "telemetry maintenance",
                Box::new(move || {
                    drop(flush);
                    let _ = flusher.join();
                }),
            ));
            tsdb_handle = Some(db.clone());
            let limits = settings.telemetry.clone();
            Some(Arc::new(telemetry::Ingest::with_limits(
                db,
                identity::NAMESPACE,
                move |now| limits.parse_limits(now),
            )) as Arc<dyn broker_net::IngestStage>)
        } else {
            None
        };

        let devices_path = data_dir.join(twin::FILE_NAME);
        let device_store = Arc::new(twin::DeviceStateStore::open(&devices_path).with_context(
            || format!("cannot open the device state store {}", devices_path.display()),
        )?);
        // Platform events (device messages the fleet taps, command
        // acknowledgements, presence): bounded, see fleet's docs.
        let (event_tx, event_rx) = tokio::sync::mpsc::channel(settings.devices.event_queue);
        let (prov_tx, prov_rx) = tokio::sync::mpsc::channel(settings.devices.provision_queue);
        let rule_queues =
            automation::RuleQueues::new(settings.rules.worker_count(), settings.rules.queue);
        let alarms_path = data_dir.join("alarms.redb");
        let alarm_store = Arc::new(alarms::AlarmStore::open(&alarms_path).with_context(|| {
            format!("cannot open the alarm store {}", alarms_path.display())
        })?);
        let outbox_path = data_dir.join("outbox.redb");
        let outbox = Arc::new(
            alarms::Outbox::open(
                &outbox_path,
                settings.rules.outbox_max_entries,
                settings.rules.outbox_max_bytes,
            )
            .with_context(|| format!("cannot open the webhook outbox {}", outbox_path.display()))?,
        );
        let m = &settings.mqtt;
        let options = broker_net::ServerOptions {
            access,
            telemetry: ingest,
            authenticator: Some(Arc::new(
                identity::RegistryAuthenticator::new(registry.clone(), policy, clock.clone())
                    .with_client_id_policy(settings.mqtt.client_id_policy),
            )),
            tls: tls.as_ref().map(|t| broker_net::TlsListeners {
                config: t.mqtt.clone(),
                port: (m.tls_port != 0).then_some(m.tls_port),
                wss_port: (m.wss_port != 0).then_some(m.wss_port),
            }),
            taps: fleet::TAPS
                .iter()
                .chain([&identity::PROVISION_TAP])
                .map(|t| t.to_string())
                .collect(),
            ack_taps: fleet::ACK_TAPS.iter().map(|t| t.to_string()).collect(),
            events: Some(event_tx),
            rule_events: Some(rule_queues.clone()),
        };
        let server = broker_net::Server::bind(
            settings.net_config(),
            settings.broker_config(),
            Arc::new(store),
            options,
        )
        .await?;
        let addr = server.local_addr()?;
        tracing::info!(
            %addr,
            websocket = ?server.ws_addr(),
            tls = ?server.tls_addr(),
            secure_websocket = ?server.wss_addr(),
            data_dir = %data_dir.display(),
            "MQTT broker listening"
        );
        if settings.mqtt.allow_anonymous && settings.mqtt.bind.is_none() {
            tracing::warn!("anonymous MQTT clients are allowed (mqtt.allow_anonymous), so the plaintext MQTT and WebSocket listeners bind 127.0.0.1 only; set mqtt.bind to listen elsewhere");
        } else if settings.mqtt.allow_anonymous {
            tracing::warn!(bind = %settings.mqtt_bind(), "anonymous MQTT clients are allowed on every listener (mqtt.allow_anonymous)");
        }
        if !settings.mqtt.allow_anonymous && settings.mqtt.password_file.is_none() {
            tracing::info!("devices authenticate with their registry credentials (token or certificate); anonymous clients are refused (mqtt.allow_anonymous)");
        }
        let handle = server.handle();
        let fleet = fleet::Fleet::new(
            device_store,
            registry.clone(),
            handle.clone(),
            settings.devices.fleet_config(),
            clock.clone(),
        );
        let fleet_thread = fleet
            .spawn(event_rx, prov_tx)
            .context("cannot start the fleet threads")?;
        let automation = automation::Automation::open(
            &data_dir.join("rules.redb"),
            alarm_store,
            outbox,
            Some(fleet.clone()),
            tsdb_handle.clone(),
            registry.clone(),
            handle.clone(),
            settings.rules.automation_config(),
            clock.clone(),
        )
        .context("cannot start the rules engine")?;
        let rules_thread = automation
            .spawn(rule_queues)
            .context("cannot start the rules threads")?;
        tokio::spawn(identity::serve_provisioning(
            prov_rx,
            handle.clone(),
            registry.clone(),
            Some(ca.clone()),
            settings.tls.device_cert_days,
            clock.clone(),
        ));

        let stop = role.token();
        let mut http_tasks = Vec::new();
        if let (Some(db), true) = (&tsdb_handle, settings.http.enabled) {
            let guards = Arc::new(api::Guards::new(settings.api_limits()));
            let http_server = api::HttpServer::new(guards.clone());
            let state = api::ApiState {
                tsdb: db.clone(),
                namespace: identity::NAMESPACE.into(),
                max_body_bytes: settings.http.max_body_bytes,
                clock: clock.clone(),
                devices: registry.clone(),
                operators: registry.clone(),
                audit: Arc::new(registry.audit().clone()),
                ca: Some(ca.clone()),
                live: Arc::new(security::Live(handle.clone())),
                device_cert_days: settings.tls.device_cert_days,
                session_ttl_ms: settings.auth.session_ttl_hours * 3_600_000,
                fleet: Some(fleet.clone()),
                automation: Some(automation.clone()),
                stream: Some(Arc::new(crate::streams::BrokerStreams(
                    handle.clone(),
                    settings.http.stream_queue,
                ))),
                stream_queue: settings.http.stream_queue,
                system: Some(Arc::new(crate::streams::BrokerSystem(handle.clone()))),
                guards,
                ingest_limits: {
                    let t = settings.telemetry.clone();
                    Arc::new(move |now| t.parse_limits(now))
                },
                device_tags: settings.telemetry.device_tags.clone(),
                metrics: vec![
                    Arc::new(handle.clone()),
                    Arc::new(telemetry::StoreMetrics(db.clone())),
                    automation.clone(),
                    fleet.clone(),
                ],
                ready: vec![("mqtt", Arc::new(crate::streams::BrokerReady(handle.clone())))],
                http_metrics: Default::default(),
            };
            let router = api::router(state);
            let addr = format!("{}:{}", settings.http.bind, settings.http.port);
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http.port)"))?;
            let stopped = stop.clone();
            let server = http_server.clone();
            let r = router.clone();
            http_tasks.push(tokio::spawn(async move {
                server
                    .serve(listener, r, async move { stopped.cancelled().await })
                    .await
            }));
            if let (Some(t), true) = (&tls, settings.http.tls_port != 0) {
                let addr = format!("{}:{}", settings.http.bind, settings.http.tls_port);
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (http.tls_port)"))?;
                let stopped = stop.clone();
                let https = t.https.clone();
                http_tasks.push(tokio::spawn(async move {
                    http_server
                        .serve_tls(listener, https, router, async move {
                            stopped.cancelled().await
                        })
                        .await
                }));
            }
        }
        let demo = if args.demo {
            let local = std::net::SocketAddr::new(
                if addr.ip().is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    addr.ip()
                },
                addr.port(),
            );
            let http = (tsdb_handle.is_some() && settings.http.enabled).then(|| {
                let host = if settings.http.bind == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    settings.http.bind.clone()
                };
                format!("http://{host}:{}", settings.http.port)
            });
            Some(tokio::spawn(demo::run(
                registry.clone(),
                automation.clone(),
                local,
                http,
                args.demo_machines,
                clock.clone(),
                stop.clone(),
            )))
        } else {
            None
        };
        // Stopped in the reverse order: the demo, the HTTP listeners, the
        // broker, then the fleet and rules threads (which end once the
        // broker has dropped their queues).
        role.add(role::Threads(
            "fleet and rules",
            Box::new(move || {
                drop((fleet, automation));
                let _ = fleet_thread.join();
                rules_thread.join();
            }),
        ));
        // The broker ending (on its own too) ends the role.
        let broker = server.run(stop.clone().cancelled_owned());
        role.add(role::Task(
            "broker",
            tokio::spawn(async move {
                broker.await;
                stop.cancel();
                Ok::<(), std::convert::Infallible>(())
            }),
        ));
        for h in http_tasks {
            role.add(role::Task("http", h));
        }
        if let Some(d) = demo {
            role.add(role::Task("demo", d));
        }
        role.run().await;
        Ok::<(), anyhow::Error>(())
    })
}

/// `millwright admin-token`: a new admin API token, made offline (the
/// server must not be running on this data directory: the registry file is
/// locked while it runs).
pub fn admin_token(
    data_dir: &std::path::Path,
    name: &str,
    config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let settings = Settings::load(config, std::env::vars())?;
    let registry = security::open_registry(data_dir, &settings)?;
    let (_, token) = registry
        .create_api_token(
            name,
            None,
            registry::Role::Admin,
            None,
            SystemClock.now().as_millis(),
        )
        .context("cannot create the token")?;
    println!("{token}");
    Ok(())
}
