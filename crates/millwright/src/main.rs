//! The `millwright` binary: command line, settings and wiring. It holds no
//! logic of its own; every capability lives in a crate under `crates/`.

mod settings;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::settings::Settings;

#[derive(Parser)]
#[command(
    name = "millwright",
    version,
    about = "A self-hosted IoT platform in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform.
    Serve(ServeArgs),
    /// Load-test an MQTT broker (this one or any other).
    Bench(bench::BenchArgs),
    /// Add or update a user in a password file (mosquitto_passwd format).
    Passwd {
        /// The password file (created if missing).
        file: PathBuf,
        /// The username.
        user: String,
        /// The password (read from MILLWRIGHT_PASSWORD when absent).
        #[arg(long, env = "MILLWRIGHT_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where all state is kept.
    #[arg(long, default_value = "./millwright-data")]
    data_dir: PathBuf,
    /// A TOML settings file; every key can be overridden by an environment
    /// variable MILLWRIGHT_SECTION__KEY.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => run_bench(args),
        Command::Passwd {
            file,
            user,
            password,
        } => passwd(&file, &user, &password),
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref(), std::env::vars())?;
    init_logging(&settings.log.level);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;

    let mut access = broker::AccessControl::new(settings.mqtt.allow_anonymous);
    if let Some(p) = &settings.mqtt.password_file {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("mqtt.password_file: cannot read {}", p.display()))?;
        access = access
            .with_password_file(&text)
            .with_context(|| format!("mqtt.password_file {}", p.display()))?;
    }
    if let Some(p) = &settings.mqtt.acl_file {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("mqtt.acl_file: cannot read {}", p.display()))?;
        access = access
            .with_acl_file(&text)
            .with_context(|| format!("mqtt.acl_file {}", p.display()))?;
    }
    if !settings.mqtt.allow_anonymous && settings.mqtt.password_file.is_none() {
        tracing::warn!(
            "mqtt.allow_anonymous is false and no mqtt.password_file is set: no client can connect"
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store_path = args.data_dir.join("broker.redb");
        let store = kv::RedbSessionStore::open(&store_path)
            .with_context(|| format!("cannot open {} (is another millwright using this data directory?)", store_path.display()))?;
        let mut maintenance = None;
        let mut tsdb_handle = None;
        let ingest = if settings.telemetry.enabled {
            let dir = args.data_dir.join("tsdb");
            let db = tsdb::Tsdb::open(&dir, settings.telemetry.tsdb_options())
                .with_context(|| format!("cannot open the telemetry store {}", dir.display()))?;
            let db = Arc::new(db);
            let report = db.recovery_report();
            tracing::info!(dir = %dir.display(), ?report, "telemetry store open");
            maintenance = Some(telemetry::spawn_maintenance(
                db.clone(),
                std::time::Duration::from_secs(settings.telemetry.flush_interval),
                unix_ms,
            )?);
            tsdb_handle = Some(db.clone());
            Some(broker_net::TelemetryIngest {
                decoder: Box::new(telemetry::JsonDecoder::new("default")),
                sink: Arc::new(telemetry::TsdbSink::new(db)),
            })
        } else {
            None
        };
        let server = broker_net::Server::bind(
            settings.net_config(),
            settings.broker_config(),
            access,
            Arc::new(store),
            ingest,
        )
        .await?;
        let addr = server.local_addr()?;
        match server.ws_addr() {
            Some(ws) => tracing::info!(%addr, websocket = %ws, data_dir = %args.data_dir.display(), "MQTT broker listening"),
            None => tracing::info!(%addr, data_dir = %args.data_dir.display(), "MQTT broker listening"),
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let http = match (&tsdb_handle, settings.http.enabled) {
            (Some(db), true) => {
                let token = api_token(&settings.http, &args.data_dir)?;
                let addr = format!("{}:{}", settings.http.bind, settings.http.port);
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (http.port)"))?;
                let state = api::ApiState {
                    tsdb: db.clone(),
                    namespace: "default".into(),
                    token: Some(token),
                    max_body_bytes: settings.http.max_body_bytes,
                    clock: Arc::new(unix_ms),
                };
                let stopped = stop.clone();
                Some(tokio::spawn(api::serve(listener, api::router(state), async move {
                    stopped.cancelled().await
                })))
            }
            _ => None,
        };
        let stopper = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stopper.cancel();
        });
        server.run(stop.cancelled()).await;
        if let Some(h) = http {
            match h.await {
                Ok(Err(e)) => tracing::error!(error = %e, "HTTP API failed"),
                Err(e) => tracing::error!(error = %e, "HTTP API task failed"),
                Ok(Ok(())) => {}
            }
        }
        if let Some((stop, handle)) = maintenance {
            // A last flush so the next start has little WAL to replay.
            drop(stop);
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        Ok::<(), anyhow::Error>(())
    })
}

/// The API token: from the settings, else the one kept in the data
/// directory, else a new one (printed once).
fn api_token(http: &settings::HttpSettings, data_dir: &std::path::Path) -> anyhow::Result<String> {
    if let Some(t) = &http.token {
        return Ok(t.clone());
    }
    let path = data_dir.join("api-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 24] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Created the API token (shown once; kept in {}):\n  {token}",
        path.display()
    );
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Wall-clock milliseconds since the Unix epoch.
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run_bench(args: bench::BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let json = args.json;
    let report = runtime.block_on(bench::run(args))?;
    bench::print_report(&report, json)?;
    Ok(())
}

fn passwd(file: &std::path::Path, user: &str, password: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.contains(':') {
        anyhow::bail!("username must be non-empty and contain no ':'");
    }
    let existing = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let salt: [u8; 12] = rand::random();
    let line = format!("{user}:{}", broker::hash_password(password, salt));
    let mut out: Vec<String> = existing
        .lines()
        .filter(|l| l.split_once(':').map(|(u, _)| u) != Some(user))
        .map(str::to_string)
        .collect();
    out.push(line);
    std::fs::write(file, out.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
