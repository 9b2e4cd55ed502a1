//! `millwright device ...`: device management over the HTTP API (so it
//! works against a running server, local or remote). Exit codes: 0 done,
//! 1 failed (server or network), 2 usage, 3 not found, 4 not authorised,
//! 5 conflict or rejected input.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

#[derive(clap::Args, Clone)]
pub struct Remote {
    /// The API's base URL.
    #[arg(
        long,
        env = "MILLWRIGHT_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// An API token (operator role or above for changes).
    #[arg(long, env = "MILLWRIGHT_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Csv,
}

#[derive(clap::Subcommand)]
pub enum DeviceCommand {
    /// Register a device; prints its token (shown once).
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "type")]
        device_type: Option<String>,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Register without a token (for certificate or provisioned devices).
        #[arg(long)]
        no_token: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List devices (every page).
    List {
        #[arg(long = "type")]
        device_type: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// online or offline.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one device.
    Get {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Import devices from a CSV (id,name,type,labels,groups) or JSON file;
    /// all or nothing.
    Import {
        file: PathBuf,
        /// Also create a token per device (printed as CSV id,token).
        #[arg(long)]
        tokens: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Disable a device (its live sessions are dropped).
    Disable {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Enable a device again.
    Enable {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a device (its live sessions are dropped).
    Delete {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue a new token; the old one stays valid for --grace seconds.
    Token {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Issue a client certificate and key from the CA into --out (DIR/<id>.pem,
    /// DIR/<id>.key, DIR/ca.pem).
    Cert {
        id: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// A PEM certificate signing request made on the device: sign it
        /// instead of generating a key (no key file is written).
        #[arg(long)]
        csr: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum RuleCommand {
    /// Create a rule from a JSON file (`{"name", "sql", "actions", ...}`),
    /// or replace it with --replace.
    Add {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List rules with their counters.
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one rule.
    Get {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    Enable {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    Disable {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    Delete {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Recent evaluations of a rule, newest first.
    Traces {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Evaluate a rule against a sample message, without side effects.
    DryRun {
        name: String,
        #[arg(long)]
        topic: String,
        /// The payload (JSON text).
        #[arg(long)]
        payload: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum AlarmCommand {
    /// List alarms, newest first (state: active, cleared, active_unack, ...).
    List {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Acknowledge an alarm.
    Ack {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Clear an alarm.
    Clear {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum TwinCommand {
    /// Show a device's twin (or a named twin).
    Get {
        device: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Merge desired fields (JSON), optionally only at a version.
    SetDesired {
        device: String,
        /// A JSON merge patch, e.g. '{"speed": 900}'.
        desired: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum CommandCommand {
    /// Send a command; with --wait, wait for the device's answer.
    Send {
        device: String,
        method: String,
        /// Parameters as JSON.
        #[arg(long, default_value = "{}")]
        params: String,
        #[arg(long)]
        wait: bool,
        /// Seconds the device has to answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// A device's commands (oldest first).
    List {
        device: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    Cancel {
        device: String,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum TelemetryCommand {
    /// The latest point of each metric of a device.
    Latest {
        device: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    /// Points or aggregates (e.g. --agg avg --bucket 1m) over a range.
    Query {
        device: String,
        metric: String,
        #[arg(long, default_value = "now-1h")]
        start: String,
        #[arg(long, default_value = "now")]
        end: String,
        #[arg(long)]
        agg: Option<String>,
        #[arg(long)]
        bucket: Option<String>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add an operator account (role: admin, operator or viewer).
    Add {
        username: String,
        #[arg(long, default_value = "viewer")]
        role: String,
        /// The password (read from MILLWRIGHT_PASSWORD when absent).
        #[arg(long, env = "MILLWRIGHT_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    Delete {
        username: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token (printed once).
    Create {
        name: String,
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        remote: Remote,
    },
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// An API failure with the exit code scripts see.
struct Failure {
    code: i32,
    message: String,
}

fn exit_code(status: u16) -> i32 {
    match status {
        404 => 3,
        401 | 403 => 4,
        400 | 409 | 413 | 422 => 5,
        _ => 1,
    }
}

impl Remote {
    fn call(&self, method: &str, path: &str, body: Option<Body>) -> Result<Value, Failure> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{}", self.url.trim_end_matches('/'), path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let fail = |e: ureq::Error| Failure {
            code: 1,
            message: format!("{method} {url}: {e}"),
        };
        macro_rules! with_auth {
            ($req:expr) => {{
                let r = $req;
                match &auth {
                    Some(a) => r.header("Authorization", a),
                    None => r,
                }
            }};
        }
        let resp = match (method, body) {
            ("GET", _) => with_auth!(agent.get(&url)).call(),
            ("DELETE", _) => with_auth!(agent.delete(&url)).call(),
            (m, Some(Body::Json(v))) => {
                let r = if m == "PATCH" {
                    agent.patch(&url)
                } else {
                    agent.post(&url)
                };
                with_auth!(r).send_json(&v)
            }
            (m, Some(Body::Raw(bytes, ctype))) => {
                let r = if m == "PATCH" {
                    agent.patch(&url)
                } else {
                    agent.post(&url)
                };
                let r = with_auth!(r).header("Content-Type", ctype);
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) && bytes.len() > 64 * 1024 {
                    // A progress bar for long uploads (imports).
                    let mut reader = Progress::new(&bytes);
                    let sent = r.send(ureq::SendBody::from_reader(&mut reader));
                    eprintln!();
                    sent
                } else {
                    r.send(&bytes[..])
                }
            }
            (_, None) => with_auth!(agent.post(&url)).send_empty(),
        }
        .map_err(fail)?;
        let status = resp.status().as_u16();
        let mut resp = resp;
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let detail = value
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            let mut message = format!("{status}: {detail}");
            if let Some(errors) = value.get("errors").and_then(Value::as_array) {
                for e in errors {
                    message.push_str(&format!("\n  {e}"));
                }
            }
            Err(Failure {
                code: exit_code(status),
                message,
            })
        }
    }
}

/// Reads a body while drawing a progress bar on stderr.
struct Progress<'a> {
    data: &'a [u8],
    pos: usize,
    shown: usize,
}

impl<'a> Progress<'a> {
    fn new(data: &'a [u8]) -> Self {
        Progress {
            data,
            pos: 0,
            shown: usize::MAX,
        }
    }
}

impl std::io::Read for Progress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos).min(64 * 1024);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        let pct = self.pos * 100 / self.data.len().max(1);
        if pct != self.shown {
            self.shown = pct;
            let bar = "#".repeat(pct / 4);
            eprint!(
                "\rsending [{bar:<25}] {pct:>3}%  {} / {} KiB",
                self.pos / 1024,
                self.data.len() / 1024
            );
        }
        Ok(n)
    }
}

enum Body {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

fn labels_map(labels: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for l in labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected key=value"))?;
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

fn items(v: &Value) -> Vec<Value> {
    v.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn json_arg(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure {
        code: 2,
        message: format!("{what}: not valid JSON: {e}"),
    })
}

pub fn twin(cmd: TwinCommand) -> anyhow::Result<()> {
    finish((|| {
        match cmd {
            TwinCommand::Get {
                device,
                name,
                remote,
            } => {
                let path = match name {
                    Some(n) => format!("/api/devices/{}/twins/{}", enc(&device), enc(&n)),
                    None => format!("/api/devices/{}/twin", enc(&device)),
                };
                pretty(&remote.call("GET", &path, None)?);
            }
            TwinCommand::SetDesired {
                device,
                desired,
                name,
                version,
                remote,
            } => {
                let mut body = json!({ "desired": json_arg(&desired, "desired")? });
                if let Some(v) = version {
                    body["version"] = json!(v);
                }
                let path = match name {
                    Some(n) => format!("/api/devices/{}/twins/{}", enc(&device), enc(&n)),
                    None => format!("/api/devices/{}/twin", enc(&device)),
                };
                pretty(&remote.call("PATCH", &path, Some(Body::Json(body)))?);
            }
        }
        Ok(())
    })())
}

pub fn command(cmd: CommandCommand) -> anyhow::Result<()> {
    finish((|| {
        match cmd {
            CommandCommand::Send {
                device,
                method,
                params,
                wait,
                timeout,
                remote,
            } => {
                let body = json!({
                    "method": method, "params": json_arg(&params, "--params")?,
                    "wait": wait, "timeout": timeout,
                });
                pretty(&remote.call(
                    "POST",
                    &format!("/api/devices/{}/commands", enc(&device)),
                    Some(Body::Json(body)),
                )?);
            }
            CommandCommand::List {
                device,
                output,
                remote,
            } => {
                let v = remote.call(
                    "GET",
                    &format!("/api/devices/{}/commands?limit=1000", enc(&device)),
                    None,
                )?;
                print_table(
                    &items(&v),
                    &["id", "method", "status", "created_at", "error"],
                    output,
                );
            }
            CommandCommand::Cancel { device, id, remote } => {
                remote.call(
                    "POST",
                    &format!("/api/devices/{}/commands/{}/cancel", enc(&device), enc(&id)),
                    None,
                )?;
                println!("cancelled {id}");
            }
        }
        Ok(())
    })())
}

pub fn telemetry(cmd: TelemetryCommand) -> anyhow::Result<()> {
    finish((|| {
        match cmd {
            TelemetryCommand::Latest {
                device,
                output,
                remote,
            } => {
                let v = remote.call(
                    "GET",
                    &format!("/api/telemetry/latest?device={}", enc(&device)),
                    None,
                )?;
                let rows = v
                    .get("latest")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                print_table(&rows, &["device", "metric", "ts", "value"], output);
            }
            TelemetryCommand::Query {
                device,
                metric,
                start,
                end,
                agg,
                bucket,
                csv,
                remote,
            } => {
                let mut q = format!(
                    "device={}&metric={}&start={}&end={}",
                    enc(&device),
                    enc(&metric),
                    enc(&start),
                    enc(&end)
                );
                if let Some(a) = agg {
                    q.push_str(&format!("&agg={}", enc(&a)));
                }
                if let Some(b) = bucket {
                    q.push_str(&format!("&bucket={}", enc(&b)));
                }
                if csv {
                    q.push_str("&format=csv");
                }
                match remote.call("GET", &format!("/api/telemetry/query?{q}"), None)? {
                    Value::String(text) => print!("{text}"),
                    v => pretty(&v),
                }
            }
        }
        Ok(())
    })())
}

pub fn user(cmd: UserCommand) -> anyhow::Result<()> {
    finish((|| {
        match cmd {
            UserCommand::Add {
                username,
                role,
                password,
                remote,
            } => {
                remote.call(
                    "POST",
                    "/api/users",
                    Some(Body::Json(
                        json!({"username": username, "password": password, "role": role}),
                    )),
                )?;
                println!("added {username} ({role})");
            }
            UserCommand::List { output, remote } => {
                let v = remote.call("GET", "/api/users", None)?;
                print_table(
                    &items(&v),
                    &["username", "role", "disabled", "created_at"],
                    output,
                );
            }
            UserCommand::Delete { username, remote } => {
                remote.call("DELETE", &format!("/api/users/{}", enc(&username)), None)?;
                println!("deleted {username}");
            }
        }
        Ok(())
    })())
}

pub fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    finish((|| {
        match cmd {
            TokenCommand::Create { name, role, remote } => {
                let v = remote.call(
                    "POST",
                    "/api/tokens",
                    Some(Body::Json(json!({"name": name, "role": role}))),
                )?;
                println!(
                    "{}",
                    v.get("token").and_then(Value::as_str).unwrap_or_default()
                );
            }
            TokenCommand::List { output, remote } => {
                let v = remote.call("GET", "/api/tokens", None)?;
                print_table(
                    &items(&v),
                    &["id", "name", "role", "owner", "session", "expires_at"],
                    output,
                );
            }
            TokenCommand::Revoke { id, remote } => {
                remote.call("DELETE", &format!("/api/tokens/{}", enc(&id)), None)?;
                println!("revoked {id}");
            }
        }
        Ok(())
    })())
}

pub fn rule(cmd: RuleCommand) -> anyhow::Result<()> {
    finish(run_rule(cmd))
}

pub fn alarm(cmd: AlarmCommand) -> anyhow::Result<()> {
    finish(run_alarm(cmd))
}

fn finish(r: Result<(), Failure>) -> anyhow::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(f) => {
            eprintln!("error: {}", f.message);
            std::process::exit(f.code);
        }
    }
}

fn pretty(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn run_rule(cmd: RuleCommand) -> Result<(), Failure> {
    match cmd {
        RuleCommand::Add {
            file,
            replace,
            remote,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(usage)?;
            let def: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))
                .map_err(usage)?;
            let v = if replace {
                let name = def.get("name").and_then(Value::as_str).unwrap_or_default();
                remote.call(
                    "PUT",
                    &format!("/api/rules/{}", enc(name)),
                    Some(Body::Json(def.clone())),
                )?
            } else {
                remote.call("POST", "/api/rules", Some(Body::Json(def)))?
            };
            println!(
                "saved rule {}",
                v.get("name").and_then(Value::as_str).unwrap_or_default()
            );
        }
        RuleCommand::List { output, remote } => {
            let v = remote.call("GET", "/api/rules", None)?;
            let mut items: Vec<Value> = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for r in &mut items {
                if let (Some(m), Some(o)) = (r.get("metrics").cloned(), r.as_object_mut()) {
                    for k in ["evaluations", "matches", "errors", "action_failures"] {
                        o.insert(k.into(), m.get(k).cloned().unwrap_or(Value::Null));
                    }
                }
            }
            print_table(
                &items,
                &[
                    "name",
                    "enabled",
                    "filter",
                    "evaluations",
                    "matches",
                    "errors",
                    "action_failures",
                ],
                output,
            );
        }
        RuleCommand::Get { name, remote } => {
            pretty(&remote.call("GET", &format!("/api/rules/{}", enc(&name)), None)?)
        }
        RuleCommand::Enable { name, remote } => {
            remote.call("POST", &format!("/api/rules/{}/enable", enc(&name)), None)?;
            println!("enabled {name}");
        }
        RuleCommand::Disable { name, remote } => {
            remote.call("POST", &format!("/api/rules/{}/disable", enc(&name)), None)?;
            println!("disabled {name}");
        }
        RuleCommand::Delete { name, remote } => {
            remote.call("DELETE", &format!("/api/rules/{}", enc(&name)), None)?;
            println!("deleted {name}");
        }
        RuleCommand::Traces { name, remote } => {
            pretty(&remote.call("GET", &format!("/api/rules/{}/traces", enc(&name)), None)?)
        }
        RuleCommand::DryRun {
            name,
            topic,
            payload,
            remote,
        } => {
            let payload: Value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
            pretty(&remote.call(
                "POST",
                "/api/rules/dry-run",
                Some(Body::Json(
                    json!({"rule": name, "topic": topic, "payload": payload}),
                )),
            )?)
        }
    }
    Ok(())
}

fn run_alarm(cmd: AlarmCommand) -> Result<(), Failure> {
    match cmd {
        AlarmCommand::List {
            device,
            state,
            severity,
            output,
            remote,
        } => {
            let mut q = vec!["limit=1000".to_string()];
            for (k, v) in [("device", device), ("state", state), ("severity", severity)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", enc(&v)));
                }
            }
            let v = remote.call("GET", &format!("/api/alarms?{}", q.join("&")), None)?;
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_table(
                &items,
                &[
                    "id",
                    "device_id",
                    "type",
                    "severity",
                    "state",
                    "count",
                    "last_raised",
                ],
                output,
            );
        }
        AlarmCommand::Ack { id, remote } => {
            remote.call("POST", &format!("/api/alarms/{}/ack", enc(&id)), None)?;
            println!("acknowledged {id}");
        }
        AlarmCommand::Clear { id, remote } => {
            remote.call("POST", &format!("/api/alarms/{}/clear", enc(&id)), None)?;
            println!("cleared {id}");
        }
    }
    Ok(())
}

pub fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    match run(cmd) {
        Ok(()) => Ok(()),
        Err(f) => {
            eprintln!("error: {}", f.message);
            std::process::exit(f.code);
        }
    }
}

fn usage(e: anyhow::Error) -> Failure {
    Failure {
        code: 2,
        message: format!("{e:#}"),
    }
}

fn print_devices(items: &[Value], output: Output) {
    print_table(
        items,
        &[
            "id",
            "name",
            "type",
            "labels",
            "groups",
            "enabled",
            "connected",
        ],
        output,
    );
}

fn print_table(items: &[Value], cols: &[&str], output: Output) {
    let field = |d: &Value, k: &str| -> String {
        match d.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(";"),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
                .join(";"),
            Some(v) => v.to_string(),
        }
    };
    match output {
        Output::Json => println!("{}", Value::Array(items.to_vec())),
        Output::Csv => {
            println!("{}", cols.join(","));
            for d in items {
                let row: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        let v = field(d, c);
                        if v.contains([',', '"', '\n']) {
                            format!("\"{}\"", v.replace('"', "\"\""))
                        } else {
                            v
                        }
                    })
                    .collect();
                println!("{}", row.join(","));
            }
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|d| cols.iter().map(|c| field(d, c)).collect())
                .collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                        .max(c.len())
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            println!("{}", line(cols.iter().map(|c| c.to_uppercase()).collect()));
            for r in rows {
                println!("{}", line(r));
            }
        }
    }
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn run(cmd: DeviceCommand) -> Result<(), Failure> {
    match cmd {
        DeviceCommand::Add {
            id,
            name,
            device_type,
            labels,
            groups,
            no_token,
            remote,
        } => {
            let mut body = json!({"id": id, "labels": labels_map(&labels).map_err(usage)?, "groups": groups, "token": !no_token});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            if let Some(t) = device_type {
                body["type"] = json!(t);
            }
            let v = remote.call("POST", "/api/devices", Some(Body::Json(body)))?;
            match v.get("token").and_then(Value::as_str) {
                Some(t) => println!("created {id}; its token (shown once):\n{t}"),
                None => println!("created {id}"),
            }
        }
        DeviceCommand::List {
            device_type,
            group,
            labels,
            state,
            output,
            remote,
        } => {
            let mut q = vec!["limit=1000".to_string()];
            if let Some(t) = device_type {
                q.push(format!("type={}", enc(&t)));
            }
            if let Some(g) = group {
                q.push(format!("group={}", enc(&g)));
            }
            for l in labels {
                let (k, v) = l.split_once('=').ok_or_else(|| Failure {
                    code: 2,
                    message: format!("--label {l:?}: expected key=value"),
                })?;
                q.push(format!("label={}", enc(&format!("{k}:{v}"))));
            }
            if let Some(s) = state {
                q.push(format!("state={}", enc(&s)));
            }
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut query = q.clone();
                if let Some(a) = &after {
                    query.push(format!("after={}", enc(a)));
                }
                let v = remote.call("GET", &format!("/api/devices?{}", query.join("&")), None)?;
                if let Some(a) = v.get("items").and_then(Value::as_array) {
                    items.extend(a.iter().cloned());
                }
                match v.get("next").and_then(Value::as_str) {
                    Some(n) => after = Some(n.to_string()),
                    None => break,
                }
            }
            print_devices(&items, output);
        }
        DeviceCommand::Get { id, remote } => {
            let v = remote.call("GET", &format!("/api/devices/{}", enc(&id)), None)?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        DeviceCommand::Import {
            file,
            tokens,
            remote,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(usage)?;
            let is_json = file.extension().is_some_and(|e| e == "json");
            let ctype = if is_json {
                "application/json"
            } else {
                "text/csv"
            };
            let started = std::time::Instant::now();
            let v = remote.call(
                "POST",
                &format!("/api/devices/import?tokens={tokens}"),
                Some(Body::Raw(bytes, ctype)),
            )?;
            let created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
            eprintln!(
                "imported {created} devices in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            if let Some(t) = v.get("tokens").and_then(Value::as_array) {
                println!("id,token");
                for e in t {
                    println!(
                        "{},{}",
                        e.get("id").and_then(Value::as_str).unwrap_or_default(),
                        e.get("token").and_then(Value::as_str).unwrap_or_default()
                    );
                }
            }
        }
        DeviceCommand::Disable { id, remote } => {
            set_enabled(&id, &remote, false)?;
            println!("disabled {id}");
        }
        DeviceCommand::Enable { id, remote } => {
            set_enabled(&id, &remote, true)?;
            println!("enabled {id}");
        }
        DeviceCommand::Delete { id, remote } => {
            remote.call("DELETE", &format!("/api/devices/{}", enc(&id)), None)?;
            println!("deleted {id}");
        }
        DeviceCommand::Token { id, grace, remote } => {
            let v = remote.call(
                "POST",
                &format!("/api/devices/{}/tokens", enc(&id)),
                Some(Body::Json(json!({"grace_seconds": grace}))),
            )?;
            println!(
                "{}",
                v.get("token").and_then(Value::as_str).unwrap_or_default()
            );
        }
        DeviceCommand::Cert {
            id,
            out,
            csr,
            remote,
        } => {
            let body = match &csr {
                Some(path) => {
                    let pem = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))
                        .map_err(usage)?;
                    json!({ "csr": pem })
                }
                None => json!({}),
            };
            let v = remote.call(
                "POST",
                &format!("/api/devices/{}/certificates", enc(&id)),
                Some(Body::Json(body)),
            )?;
            let get = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let write = |name: String, text: String, private: bool| -> Result<(), Failure> {
                let path = out.join(name);
                write_file(&path, &text, private)
                    .with_context(|| format!("cannot write {}", path.display()))
                    .map_err(|e| Failure {
                        code: 1,
                        message: format!("{e:#}"),
                    })
            };
            write(format!("{id}.pem"), get("certificate"), false)?;
            write("ca.pem".into(), get("ca_certificate"), false)?;
            if csr.is_none() {
                write(format!("{id}.key"), get("private_key"), true)?;
                println!(
                    "wrote {0}/{id}.pem, {0}/{id}.key (0600), {0}/ca.pem; serial {1}",
                    out.display(),
                    get("serial")
                );
            } else {
                println!(
                    "wrote {0}/{id}.pem (signed from the CSR), {0}/ca.pem; serial {1}",
                    out.display(),
                    get("serial")
                );
            }
        }
    }
    Ok(())
}

fn set_enabled(id: &str, remote: &Remote, enabled: bool) -> Result<(), Failure> {
    remote.call(
        "PATCH",
        &format!("/api/devices/{}", enc(id)),
        Some(Body::Json(json!({ "enabled": enabled }))),
    )?;
    Ok(())
}

fn write_file(path: &std::path::Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    f.write_all(text.as_bytes())
}
