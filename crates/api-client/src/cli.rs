//! The `millwright device|rule|alarm|twin|command|telemetry|user|token`
//! commands over [`Client`], so they work against a running server, local
//! or remote. Exit codes ([`Failure::code`]): 0 done, 1 failed (server or
//! network), 2 usage, 3 not found, 4 not authorised, 5 conflict or
//! rejected input.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{
    AlarmFilter, Client, CommandRequest, DeviceFilter, Error, ImportFormat, NewDevice, QueryAnswer,
    TelemetryQuery,
};

/// The commands that talk to the HTTP API (flattened into the binary's).
#[derive(clap::Subcommand)]
pub enum ApiCommand {
    /// Manage devices through the HTTP API.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Manage rules through the HTTP API.
    #[command(subcommand)]
    Rule(RuleCommand),
    /// List, acknowledge and clear alarms through the HTTP API.
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Read twins and set desired state through the HTTP API.
    #[command(subcommand)]
    Twin(TwinCommand),
    /// Send, list and cancel device commands through the HTTP API.
    #[command(subcommand, name = "command")]
    Commands(CommandCommand),
    /// Query telemetry through the HTTP API.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Manage operator accounts through the HTTP API (admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens through the HTTP API (admin).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// A command that failed, with the exit code scripts see.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure {
            code: e.status().map_or(1, exit_code),
            message: e.to_string(),
        }
    }
}

/// The exit code of a refusal with HTTP `status`.
pub fn exit_code(status: u16) -> i32 {
    match status {
        404 => 3,
        401 | 403 => 4,
        400 | 409 | 413 | 422 => 5,
        _ => 1,
    }
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

/// Runs one command, printing its answer on stdout.
pub fn run(cmd: ApiCommand) -> Result<(), Failure> {
    match cmd {
        ApiCommand::Device(c) => device(c),
        ApiCommand::Rule(c) => rule(c),
        ApiCommand::Alarm(c) => alarm(c),
        ApiCommand::Twin(c) => twin(c),
        ApiCommand::Commands(c) => command(c),
        ApiCommand::Telemetry(c) => telemetry(c),
        ApiCommand::User(c) => user(c),
        ApiCommand::Token(c) => token(c),
    }
}

#[derive(clap::Args, Clone)]
pub struct Remote {
    /// The API's base URL.
    #[arg(
        long,
        env = "MILLWRIGHT_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An API token (operator role or above for changes).
    #[arg(long, env = "MILLWRIGHT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

impl Remote {
    fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }
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

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
}

fn json_arg(text: &str, what: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| usage(format!("{what}: not valid JSON: {e}")))
}

fn label_pairs(labels: &[String]) -> Result<Vec<(String, String)>, Failure> {
    labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| usage(format!("--label {l:?}: expected key=value")))
        })
        .collect()
}

/// A typed answer as the JSON the API sent.
fn to_value(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// An answer as indented JSON (members sorted, as the API's JSON reads).
fn pretty(v: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(&to_value(v)).unwrap_or_default()
    );
}

fn twin(cmd: TwinCommand) -> Result<(), Failure> {
    match cmd {
        TwinCommand::Get {
            device,
            name,
            remote,
        } => pretty(&remote.client().twin(&device, name.as_deref())?),
        TwinCommand::SetDesired {
            device,
            desired,
            name,
            version,
            remote,
        } => {
            let desired = json_arg(&desired, "desired")?;
            pretty(
                &remote
                    .client()
                    .set_desired(&device, name.as_deref(), desired, version)?,
            );
        }
    }
    Ok(())
}

fn command(cmd: CommandCommand) -> Result<(), Failure> {
    match cmd {
        CommandCommand::Send {
            device,
            method,
            params,
            wait,
            timeout,
            remote,
        } => {
            let c = CommandRequest {
                method,
                params: json_arg(&params, "--params")?,
                wait,
                timeout,
            };
            pretty(&remote.client().send_command(&device, &c)?);
        }
        CommandCommand::List {
            device,
            output,
            remote,
        } => print_table(
            &remote.client().commands(&device)?,
            &["id", "method", "status", "created_at", "error"],
            output,
        ),
        CommandCommand::Cancel { device, id, remote } => {
            remote.client().cancel_command(&device, &id)?;
            println!("cancelled {id}");
        }
    }
    Ok(())
}

fn telemetry(cmd: TelemetryCommand) -> Result<(), Failure> {
    match cmd {
        TelemetryCommand::Latest {
            device,
            output,
            remote,
        } => print_table(
            &remote.client().latest(&device)?,
            &["device", "metric", "ts", "value"],
            output,
        ),
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
            let q = TelemetryQuery {
                device,
                metric,
                start,
                end,
                agg,
                bucket,
                csv,
            };
            match remote.client().query(&q)? {
                QueryAnswer::Csv(text) => print!("{text}"),
                QueryAnswer::Json(v) => pretty(&v),
            }
        }
    }
    Ok(())
}

fn user(cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add {
            username,
            role,
            password,
            remote,
        } => {
            remote.client().add_user(&username, &password, &role)?;
            println!("added {username} ({role})");
        }
        UserCommand::List { output, remote } => print_table(
            &remote.client().users()?,
            &["username", "role", "disabled", "created_at"],
            output,
        ),
        UserCommand::Delete { username, remote } => {
            remote.client().delete_user(&username)?;
            println!("deleted {username}");
        }
    }
    Ok(())
}

fn token(cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Create { name, role, remote } => {
            println!("{}", remote.client().create_token(&name, &role)?);
        }
        TokenCommand::List { output, remote } => print_table(
            &remote.client().tokens()?,
            &["id", "name", "role", "owner", "session", "expires_at"],
            output,
        ),
        TokenCommand::Revoke { id, remote } => {
            remote.client().revoke_token(&id)?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

fn rule(cmd: RuleCommand) -> Result<(), Failure> {
    match cmd {
        RuleCommand::Add {
            file,
            replace,
            remote,
        } => {
            let text = read_text(&file)?;
            let def: Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{} is not JSON: {e}", file.display())))?;
            let v = if replace {
                let name = def
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                remote.client().replace_rule(&name, def)?
            } else {
                remote.client().create_rule(def)?
            };
            println!(
                "saved rule {}",
                v.get("name").and_then(Value::as_str).unwrap_or_default()
            );
        }
        RuleCommand::List { output, remote } => {
            let mut items = remote.client().rules()?;
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
        RuleCommand::Get { name, remote } => pretty(&remote.client().rule(&name)?),
        RuleCommand::Enable { name, remote } => {
            remote.client().set_rule_enabled(&name, true)?;
            println!("enabled {name}");
        }
        RuleCommand::Disable { name, remote } => {
            remote.client().set_rule_enabled(&name, false)?;
            println!("disabled {name}");
        }
        RuleCommand::Delete { name, remote } => {
            remote.client().delete_rule(&name)?;
            println!("deleted {name}");
        }
        RuleCommand::Traces { name, remote } => pretty(&remote.client().rule_traces(&name)?),
        RuleCommand::DryRun {
            name,
            topic,
            payload,
            remote,
        } => {
            let payload: Value = serde_json::from_str(&payload).unwrap_or(Value::String(payload));
            pretty(&remote.client().dry_run(&name, &topic, payload)?)
        }
    }
    Ok(())
}

fn alarm(cmd: AlarmCommand) -> Result<(), Failure> {
    match cmd {
        AlarmCommand::List {
            device,
            state,
            severity,
            output,
            remote,
        } => {
            let f = AlarmFilter {
                device,
                state,
                severity,
            };
            print_table(
                &remote.client().alarms(&f)?,
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
            remote.client().acknowledge_alarm(&id)?;
            println!("acknowledged {id}");
        }
        AlarmCommand::Clear { id, remote } => {
            remote.client().clear_alarm(&id)?;
            println!("cleared {id}");
        }
    }
    Ok(())
}

/// Prints `items` as a table, CSV or a JSON array; objects and arrays in
/// a cell are joined with `;`.
pub fn print_table<T: serde::Serialize>(items: &[T], cols: &[&str], output: Output) {
    let items: Vec<Value> = items.iter().map(to_value).collect();
    print!("{}", render_table(&items, cols, output));
}

fn render_table(items: &[Value], cols: &[&str], output: Output) -> String {
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
    let mut out = String::new();
    match output {
        Output::Json => out = format!("{}\n", Value::Array(items.to_vec())),
        Output::Csv => {
            out.push_str(&cols.join(","));
            out.push('\n');
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
                out.push_str(&row.join(","));
                out.push('\n');
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
            out.push_str(&line(cols.iter().map(|c| c.to_uppercase()).collect()));
            out.push('\n');
            for r in rows {
                out.push_str(&line(r));
                out.push('\n');
            }
        }
    }
    out
}

fn device(cmd: DeviceCommand) -> Result<(), Failure> {
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
            let d = NewDevice {
                id: id.clone(),
                name,
                device_type,
                labels: label_pairs(&labels)?.into_iter().collect(),
                groups,
                token: !no_token,
            };
            let v = remote.client().create_device(&d)?;
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
            let f = DeviceFilter {
                device_type,
                group,
                labels: label_pairs(&labels)?,
                state,
                prefix: None,
            };
            let devices = remote.client().all_devices(&f)?;
            print_table(
                &devices,
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
        DeviceCommand::Get { id, remote } => pretty(&remote.client().device(&id)?),
        DeviceCommand::Import {
            file,
            tokens,
            remote,
        } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
            let format = if file.extension().is_some_and(|e| e == "json") {
                ImportFormat::Json
            } else {
                ImportFormat::Csv
            };
            let started = std::time::Instant::now();
            // A progress bar for long uploads on a terminal.
            let mut shown = usize::MAX;
            let mut bar = |sent: usize, total: usize| {
                let pct = sent * 100 / total.max(1);
                if pct != shown {
                    shown = pct;
                    let bar = "#".repeat(pct / 4);
                    eprint!(
                        "\rsending [{bar:<25}] {pct:>3}%  {} / {} KiB",
                        sent / 1024,
                        total / 1024
                    );
                }
            };
            let progress =
                std::io::IsTerminal::is_terminal(&std::io::stderr()) && bytes.len() > 64 * 1024;
            let v = remote.client().import_devices(
                &bytes,
                format,
                tokens,
                progress.then_some(&mut bar as &mut dyn FnMut(usize, usize)),
            );
            if progress {
                eprintln!();
            }
            let v = v?;
            eprintln!(
                "imported {} devices in {:.2} s",
                v.created,
                started.elapsed().as_secs_f64()
            );
            if let Some(t) = v.tokens {
                println!("id,token");
                for e in t {
                    println!("{},{}", e.id, e.token);
                }
            }
        }
        DeviceCommand::Disable { id, remote } => {
            remote.client().set_device_enabled(&id, false)?;
            println!("disabled {id}");
        }
        DeviceCommand::Enable { id, remote } => {
            remote.client().set_device_enabled(&id, true)?;
            println!("enabled {id}");
        }
        DeviceCommand::Delete { id, remote } => {
            remote.client().delete_device(&id)?;
            println!("deleted {id}");
        }
        DeviceCommand::Token { id, grace, remote } => {
            println!("{}", remote.client().issue_device_token(&id, grace)?);
        }
        DeviceCommand::Cert {
            id,
            out,
            csr,
            remote,
        } => {
            let csr = csr.as_deref().map(read_text).transpose()?;
            let c = remote.client().issue_certificate(&id, csr.as_deref())?;
            let write = |name: String, text: &str, private: bool| -> Result<(), Failure> {
                let path = out.join(name);
                write_file(&path, text, private).map_err(|e| Failure {
                    code: 1,
                    message: format!("cannot write {}: {e}", path.display()),
                })
            };
            write(format!("{id}.pem"), &c.certificate, false)?;
            write("ca.pem".into(), &c.ca_certificate, false)?;
            if csr.is_none() {
                write(
                    format!("{id}.key"),
                    c.private_key.as_deref().unwrap_or_default(),
                    true,
                )?;
                println!(
                    "wrote {0}/{id}.pem, {0}/{id}.key (0600), {0}/ca.pem; serial {1}",
                    out.display(),
                    c.serial
                );
            } else {
                println!(
                    "wrote {0}/{id}.pem (signed from the CSR), {0}/ca.pem; serial {1}",
                    out.display(),
                    c.serial
                );
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    o.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_csv_and_json() {
        let items = [
            json!({"id": "m1", "labels": {"line": "a"}, "groups": ["g1", "g2"], "n": 3}),
            json!({"id": "m,2", "labels": {}, "groups": []}),
        ];
        let cols = ["id", "labels", "groups", "n"];
        assert_eq!(
            render_table(&items, &cols, Output::Table),
            "ID   LABELS  GROUPS  N\nm1   line=a  g1;g2   3\nm,2                   \n"
        );
        assert_eq!(
            render_table(&items, &cols, Output::Csv),
            "id,labels,groups,n\nm1,line=a,g1;g2,3\n\"m,2\",,,\n"
        );
        let json: Value = serde_json::from_str(&render_table(&items, &cols, Output::Json)).unwrap();
        assert_eq!(json, Value::Array(items.to_vec()));
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(exit_code(404), 3);
        assert_eq!(exit_code(403), 4);
        assert_eq!(exit_code(409), 5);
        assert_eq!(exit_code(500), 1);
        let f = Failure::from(Error::Transport {
            method: "GET",
            url: "http://x".into(),
            message: "refused".into(),
        });
        assert_eq!((f.code, f.message.as_str()), (1, "GET http://x: refused"));
    }
}
