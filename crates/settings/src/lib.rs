//! The settings tree: defaults in code < TOML file < environment
//! (`MILLWRIGHT_SECTION__KEY=value`). Unknown keys and bad values stop
//! start-up with a message that names the key.
//!
//! What it is: the one configuration model of the platform, its parsing
//! and validation, and the mapping of each section onto the configuration
//! type of the crate it configures (`Settings::broker_config`,
//! `RulesSettings::automation_config`, ...), so each component gets only
//! its own part. What it is not: it opens no store and binds no socket;
//! the binary does that with what this crate returns. Every key is
//! documented in `docs/configuration.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why settings could not be loaded; each message names the file, the
/// variable or the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is not valid TOML: {source}", path.display())]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {key}: {reason}")]
    Env { key: String, reason: String },
    /// A value of the wrong type, out of range, or inconsistent with
    /// another; the message names the key or keys.
    #[error("invalid setting {0}")]
    Invalid(String),
    /// A file a setting names cannot be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The password or ACL file a setting names is not valid.
    #[error("{key} {}: {source}", path.display())]
    Access {
        key: &'static str,
        path: PathBuf,
        source: broker::AclError,
    },
}

/// Returns `Error::Invalid` from the enclosing function; the message
/// starts with the key(s) in backquotes.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(Error::Invalid(format!($($arg)*)))
    };
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub mqtt: MqttSettings,
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub devices: DevicesSettings,
    pub rules: RulesSettings,
    pub log: LogSettings,
}

/// `[rules]`: the rules engine, alarms and webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Evaluations kept per rule for its trace.
    pub trace_capacity: usize,
    /// Most rules.
    pub max_rules: usize,
    /// Messages waiting for evaluation, per worker; when full, messages
    /// only sampled rules read are dropped (counted), others make the
    /// publishers wait.
    pub queue: usize,
    /// Evaluation threads, each owning the devices hashed to it; 0 = the
    /// number of CPUs.
    pub workers: usize,
    /// Immediate retries of a failed action (webhooks retry with back-off).
    pub action_retries: u32,
    pub webhook_timeout_secs: u64,
    /// A webhook call is dropped after this many attempts or this age.
    pub webhook_max_attempts: u32,
    pub webhook_max_age_hours: u64,
    /// Bounds of the disk-backed webhook queue; beyond, the webhook action
    /// fails (recorded in the rule's trace and counters).
    pub outbox_max_entries: usize,
    pub outbox_max_bytes: usize,
    /// Webhooks may reach loopback, link-local and private addresses
    /// (checked on the resolved address at connect time).
    pub webhook_allow_private: bool,
    /// Internal ranges webhooks may reach anyway, e.g. `["10.20.0.0/16"]`.
    pub webhook_allowed_cidrs: Vec<String>,
    /// PEM file of CA certificates trusted for HTTPS webhooks besides the
    /// webpki (Mozilla) roots, for endpoints behind a private CA.
    pub webhook_ca_file: Option<PathBuf>,
}

impl Default for RulesSettings {
    fn default() -> Self {
        let a = automation::AutomationConfig::default();
        RulesSettings {
            trace_capacity: a.trace_capacity,
            max_rules: a.max_rules,
            queue: 65_536,
            workers: 0,
            action_retries: a.action_retries,
            webhook_timeout_secs: a.webhook_timeout_ms / 1000,
            webhook_max_attempts: a.webhook_max_attempts,
            webhook_max_age_hours: a.webhook_max_age_ms / 3_600_000,
            outbox_max_entries: 100_000,
            outbox_max_bytes: 64 * 1024 * 1024,
            webhook_allow_private: a.webhook_allow_private,
            webhook_allowed_cidrs: Vec::new(),
            webhook_ca_file: None,
        }
    }
}

impl RulesSettings {
    /// The number of evaluation threads (`workers`, or the CPUs).
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn automation_config(&self) -> automation::AutomationConfig {
        automation::AutomationConfig {
            trace_capacity: self.trace_capacity,
            max_rules: self.max_rules,
            action_retries: self.action_retries,
            webhook_timeout_ms: self.webhook_timeout_secs * 1000,
            webhook_max_attempts: self.webhook_max_attempts,
            webhook_max_age_ms: self.webhook_max_age_hours * 3_600_000,
            webhook_allow_private: self.webhook_allow_private,
            // Checked by `Settings::validate`; a bad entry cannot get here.
            webhook_allowed_cidrs: self
                .webhook_allowed_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            webhook_ca_file: self.webhook_ca_file.clone(),
        }
    }
}

/// `[devices]`: twins, commands and presence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesSettings {
    /// A connected device silent longer than this is `inactive`, seconds.
    pub inactivity_timeout_secs: u64,
    /// Per device type, overriding `inactivity_timeout_secs`.
    pub type_inactivity_secs: std::collections::BTreeMap<String, u64>,
    /// Largest twin document (desired + reported + metadata), bytes.
    pub twin_max_bytes: usize,
    /// Deepest nesting of a twin document.
    pub twin_max_depth: usize,
    /// Finished commands are kept this long, days.
    pub command_retention_days: u64,
    /// How often presence, inactivity and command deadlines are checked, ms.
    pub scan_interval_ms: u64,
    /// Platform events (messages the fleet taps, command acknowledgements,
    /// presence) waiting for the fleet thread; when full, the broker drops
    /// and counts them (`$SYS/broker/platform/taps_dropped`).
    pub event_queue: usize,
    /// Provisioning requests (`$provision/+/request`) waiting for the
    /// provisioning service.
    pub provision_queue: usize,
}

impl Default for DevicesSettings {
    fn default() -> Self {
        let t = twin::TwinLimits::default();
        DevicesSettings {
            inactivity_timeout_secs: 300,
            type_inactivity_secs: Default::default(),
            twin_max_bytes: t.max_document_bytes,
            twin_max_depth: t.max_depth,
            command_retention_days: 30,
            scan_interval_ms: 1000,
            event_queue: 65_536,
            provision_queue: 1024,
        }
    }
}

impl DevicesSettings {
    pub fn fleet_config(&self) -> fleet::FleetConfig {
        fleet::FleetConfig {
            twin_limits: twin::TwinLimits {
                max_document_bytes: self.twin_max_bytes,
                max_depth: self.twin_max_depth,
                ..twin::TwinLimits::default()
            },
            inactivity_timeout_ms: self.inactivity_timeout_secs * 1000,
            type_inactivity_ms: self
                .type_inactivity_secs
                .iter()
                .map(|(k, v)| (k.clone(), v * 1000))
                .collect(),
            scan_interval_ms: self.scan_interval_ms,
            command_retention_ms: self.command_retention_days * 86_400_000,
        }
    }
}

/// `[tls]`: the certificate authority and the TLS listeners' certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Serve MQTT over TLS, secure WebSocket and HTTPS (ports in `[mqtt]`
    /// and `[http]`).
    pub enabled: bool,
    /// An operator-supplied CA (PEM certificate and key); when unset, the
    /// built-in CA in `<data-dir>/ca/` is used (created at first start).
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
    /// The listeners' certificate chain and key (PEM); when unset, one is
    /// issued by the CA for `hostnames` and kept in `<data-dir>/tls/`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Names (DNS or IP) of the issued server certificate.
    pub hostnames: Vec<String>,
    /// Refuse TLS clients without a certificate (otherwise they may
    /// authenticate with a token).
    pub require_client_cert: bool,
    /// Validity of device certificates the CA issues, days.
    pub device_cert_days: u32,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            enabled: true,
            ca_cert_file: None,
            ca_key_file: None,
            cert_file: None,
            key_file: None,
            hostnames: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            require_client_cert: false,
            device_cert_days: 365,
        }
    }
}

/// `[auth]`: identities, credentials and device limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Creates this admin API token at start (automated deployments);
    /// otherwise the first start generates one and prints it once.
    pub bootstrap_admin_token: Option<String>,
    /// Dashboard login sessions last this long, hours.
    pub session_ttl_hours: u64,
    /// argon2id cost of stored secrets.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    /// Verified credentials remembered so reconnects skip argon2.
    pub auth_cache_capacity: usize,
    /// Audit log entries kept (oldest dropped first).
    pub audit_max_entries: u64,
    /// Default per-connection publish limits of devices (0 = none).
    pub device_messages_per_sec: u32,
    pub device_bytes_per_sec: u32,
    /// Limits per device type, overriding the defaults.
    pub type_limits: std::collections::BTreeMap<String, TypeLimits>,
    /// Extra ACL rules for devices (besides their own `devices/{id}/#`).
    pub acl: Vec<AclRuleSetting>,
    /// Dashboard logins checking a password (argon2) at once; others wait
    /// at most `login_wait_ms`, then get 503.
    pub login_concurrency: usize,
    pub login_wait_ms: u64,
    /// Failed logins of one address or one username before back-off
    /// (429 with `Retry-After`, no password check) starts; it doubles
    /// from `login_backoff_base_ms` up to `login_backoff_max_ms`.
    pub login_backoff_after: u32,
    pub login_backoff_base_ms: u64,
    pub login_backoff_max_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let r = registry::RegistryConfig::default();
        let l = api::Limits::default();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        AuthSettings {
            bootstrap_admin_token: None,
            session_ttl_hours: 12,
            argon2_memory_kib: r.argon2_memory_kib,
            argon2_iterations: r.argon2_iterations,
            auth_cache_capacity: r.auth_cache_capacity,
            audit_max_entries: r.audit_max_entries,
            device_messages_per_sec: 0,
            device_bytes_per_sec: 0,
            type_limits: Default::default(),
            acl: Vec::new(),
            login_concurrency: l.login_concurrency,
            login_wait_ms: ms(l.login_wait),
            login_backoff_after: l.login_backoff_after,
            login_backoff_base_ms: ms(l.login_backoff_base),
            login_backoff_max_ms: ms(l.login_backoff_max),
        }
    }
}

/// `[auth.type_limits.<type>]`.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TypeLimits {
    pub messages_per_sec: u32,
    pub bytes_per_sec: u32,
}

/// One `[[auth.acl]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleSetting {
    /// Only devices of this type / in this group (both optional).
    #[serde(rename = "type", default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// `read`, `write` or `readwrite`.
    pub access: String,
    /// Topic filter; `{id}` / `%u` = device id, `%c` = client id.
    pub topic: String,
}

impl AuthSettings {
    pub fn registry_config(&self) -> registry::RegistryConfig {
        registry::RegistryConfig {
            argon2_memory_kib: self.argon2_memory_kib,
            argon2_iterations: self.argon2_iterations,
            auth_cache_capacity: self.auth_cache_capacity,
            audit_max_entries: self.audit_max_entries,
        }
    }

    pub fn policy(&self) -> Result<identity::Policy, Error> {
        let mut rules = Vec::new();
        for (i, r) in self.acl.iter().enumerate() {
            let (read, write) = match r.access.as_str() {
                "read" => (true, false),
                "write" => (false, true),
                "readwrite" => (true, true),
                other => invalid!(
                    "`auth.acl[{i}].access`: {other:?} (expected read, write or readwrite)"
                ),
            };
            rules.push(identity::AclRule {
                device_type: r.device_type.clone(),
                group: r.group.clone(),
                read,
                write,
                topic: r.topic.clone(),
            });
        }
        let limits = |m, b| broker::RateLimits {
            messages_per_sec: m,
            bytes_per_sec: b,
        };
        let types = self
            .type_limits
            .iter()
            .map(|(k, v)| (k.clone(), limits(v.messages_per_sec, v.bytes_per_sec)))
            .collect();
        identity::Policy::new(
            rules,
            limits(self.device_messages_per_sec, self.device_bytes_per_sec),
            types,
        )
        .map_err(|e| Error::Invalid(format!("`auth.acl`: {e}")))
    }
}

/// `[telemetry]`: the embedded time-series store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Store `devices/{id}/telemetry` messages (PUBACK once durable).
    pub enabled: bool,
    /// Days raw points are kept.
    pub retention_days: u32,
    /// Days the 1-minute rollups are kept.
    pub rollup_1m_retention_days: u32,
    /// Days the 1-hour rollups are kept.
    pub rollup_1h_retention_days: u32,
    /// Points held in memory before they are flushed to compressed chunks.
    pub head_max_points: usize,
    /// Seconds between background flushes (which also bound WAL replay at
    /// start) and retention runs.
    pub flush_interval: u64,
    /// Most values in one telemetry message (MQTT JSON); a larger message
    /// is refused whole (0x99, v3.1.1: connection closed).
    pub max_metrics_per_message: usize,
    /// Most series (metrics) per device; a message that would create one
    /// more is refused and counted, existing series keep working.
    pub max_series_per_device: usize,
    /// Earliest device timestamp accepted, Unix milliseconds (default
    /// 2000-01-01).
    pub earliest_timestamp_ms: i64,
    /// How far ahead of the server's clock a device timestamp may be,
    /// seconds (default one day).
    pub max_ahead_secs: u64,
    /// Line-protocol tags that may hold the device id, the preferred first
    /// (default `device`, then `host` as Telegraf sends it); a line with
    /// none of them is the device named by its measurement.
    pub device_tags: Vec<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            enabled: true,
            retention_days: 30,
            rollup_1m_retention_days: 365,
            rollup_1h_retention_days: 5 * 365,
            head_max_points: 4_000_000,
            flush_interval: 60,
            max_metrics_per_message: 1_000,
            max_series_per_device: 10_000,
            earliest_timestamp_ms: tsdb::parse::YEAR_2000_MS,
            max_ahead_secs: 24 * 3600,
            device_tags: vec!["device".into(), "host".into()],
        }
    }
}

impl TelemetrySettings {
    pub fn tsdb_options(&self) -> tsdb::Options {
        let day = tsdb::DAY_MS;
        tsdb::Options {
            head_max_points: self.head_max_points,
            default_retention_ms: i64::from(self.retention_days) * day,
            rollups: vec![
                tsdb::RollupLevel {
                    bucket_ms: 60_000,
                    retention_ms: i64::from(self.rollup_1m_retention_days) * day,
                },
                tsdb::RollupLevel {
                    bucket_ms: 3_600_000,
                    retention_ms: i64::from(self.rollup_1h_retention_days) * day,
                },
            ],
            max_series_per_device: self.max_series_per_device,
            ..tsdb::Options::default()
        }
    }

    /// What a telemetry message may hold, at `now` (Unix ms).
    pub fn parse_limits(&self, now_ms: i64) -> tsdb::parse::ParseLimits {
        let ahead = i64::try_from(self.max_ahead_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut l =
            tsdb::parse::ParseLimits::with_window(now_ms, self.earliest_timestamp_ms, ahead);
        l.max_metrics = self.max_metrics_per_message;
        l
    }
}

/// `[mqtt]`: the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Address of the plaintext MQTT and WebSocket listeners. Unset: every
    /// address, except with `allow_anonymous` (then 127.0.0.1 only, as
    /// Mosquitto 2 does: anonymous access is for trying things on one
    /// machine).
    pub bind: Option<String>,
    pub port: u16,
    /// MQTT over WebSocket port (path `/mqtt`); 0 disables it.
    pub ws_port: u16,
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    pub max_connections: usize,
    /// The broker core's limits (`max_keepalive`, `receive_maximum`,
    /// `max_queued_messages`, ...): keys of `[mqtt]` named and defaulted
    /// as the fields of `broker::BrokerConfig`.
    #[serde(flatten)]
    pub broker: broker::BrokerConfig,
    pub outbound_queue: usize,
    pub connect_timeout: u64,
    pub sys_interval: u64,
    /// MQTT over TLS port; 0 disables it (also off when `tls.enabled` is false).
    pub tls_port: u16,
    /// MQTT over secure WebSocket port (path `/mqtt`); 0 disables it.
    pub wss_port: u16,
    /// New connections per second from one address (0 = no limit).
    pub max_conn_rate_per_ip: u32,
    /// Authentication failures of one (address, username) before back-off.
    pub auth_failure_threshold: u32,
    pub auth_backoff_base_ms: u64,
    pub auth_backoff_max_ms: u64,
    /// Live connections with one device identity (0 = no limit).
    pub max_connections_per_device: usize,
    /// Credential checks (device tokens, claims) running at once on the
    /// blocking pool; further CONNECTs wait their turn (0 = twice the CPUs).
    pub auth_concurrency: usize,
    /// Which client ids a registered device may use: `device_id` (its id,
    /// or `{id}-...` / `{id}/...`, as AWS IoT's usual policy), `prefix`
    /// (its id followed by any of `-/_.:@` and more), `any_owned` (any id
    /// no other principal holds).
    pub client_id_policy: identity::ClientIdPolicy,
}

impl Default for MqttSettings {
    fn default() -> Self {
        let n = broker_net::NetConfig::default();
        MqttSettings {
            bind: None,
            port: n.port,
            ws_port: n.ws_port.unwrap_or(0),
            allow_anonymous: false,
            password_file: None,
            acl_file: None,
            max_connections: n.max_connections,
            broker: broker::BrokerConfig::default(),
            outbound_queue: n.outbound_queue,
            connect_timeout: n.connect_timeout_secs,
            sys_interval: n.sys_interval_secs,
            tls_port: 8883,
            wss_port: 8084,
            max_conn_rate_per_ip: n.max_conn_rate_per_ip,
            auth_failure_threshold: n.auth_failure_threshold,
            auth_backoff_base_ms: n.auth_backoff_base_ms,
            auth_backoff_max_ms: n.auth_backoff_max_ms,
            max_connections_per_device: n.max_connections_per_identity,
            auth_concurrency: n.auth_concurrency,
            client_id_policy: identity::ClientIdPolicy::default(),
        }
    }
}

/// `[http]`: the API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub enabled: bool,
    pub bind: String,
    pub port: u16,
    /// HTTPS port (same API); 0 disables it (also off when `tls.enabled`
    /// is false).
    pub tls_port: u16,
    /// Largest request body, bytes (after decompression too).
    pub max_body_bytes: usize,
    /// Messages queued toward one live-stream client (`GET /api/stream`);
    /// a client that falls further behind gets `event: overflow` and is
    /// disconnected.
    pub stream_queue: usize,
    /// Most HTTP and HTTPS connections open at once (together). When
    /// full, the oldest connection without a request in progress is
    /// closed to make room; when all have one, the new one is closed.
    pub max_connections: usize,
    /// Time to send a complete request head, from the connection's start
    /// or the end of the previous response (also the keep-alive limit).
    pub header_timeout_secs: u64,
    /// Time without a byte moving while the server waits on the client
    /// (a slow request body, a response not read).
    pub idle_timeout_secs: u64,
    /// Most live streams (`GET /api/stream`) at once; more get 429.
    pub max_streams: usize,
    /// Most topic filters one live stream taps (one per device and event
    /// kind, two for twins); more is 400.
    pub max_stream_filters: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        let l = api::Limits::default();
        HttpSettings {
            enabled: true,
            bind: "0.0.0.0".into(),
            port: 8080,
            tls_port: 8443,
            max_body_bytes: 32 * 1024 * 1024,
            stream_queue: api::DEFAULT_STREAM_QUEUE,
            max_connections: l.max_connections,
            header_timeout_secs: l.header_timeout.as_secs(),
            idle_timeout_secs: l.idle_timeout.as_secs(),
            max_streams: l.max_streams,
            max_stream_filters: l.max_stream_filters,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `broker=debug,info`; `RUST_LOG`
    /// wins when set.
    pub level: String,
    /// `text` (one human-readable line per event) or `json` (one JSON
    /// object per line, for log shippers).
    pub format: LogFormat,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

const ENV_PREFIX: &str = "MILLWRIGHT_";

impl Settings {
    /// Loads settings from an optional file and the given environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Settings, Error> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>().map_err(|source| Error::Toml {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => toml::Table::new(),
        };
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only MILLWRIGHT_SECTION__KEY names are settings; others
            // (MILLWRIGHT_PASSWORD for `passwd`, MILLWRIGHT_BIN in scripts)
            // are not ours to judge.
            if !rest.contains("__") {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.len() != 2 || path.iter().any(String::is_empty) {
                return Err(Error::Env {
                    key,
                    reason: format!("expected {ENV_PREFIX}SECTION__KEY"),
                });
            }
            let section = table
                .entry(path[0].clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(Error::Env {
                    reason: format!("{} is not a section", path[0]),
                    key,
                });
            };
            section.insert(path[1].clone(), env_value(&value));
        }
        let settings: Settings =
            serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                let path = e.path().to_string();
                let key = flattened_key(&table, &path).unwrap_or(path);
                Error::Invalid(format!("`{key}`: {}", e.into_inner().message()))
            })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), Error> {
        let (m, b) = (&self.mqtt, &self.mqtt.broker);
        if b.receive_maximum == 0 {
            invalid!("`mqtt.receive_maximum`: must be at least 1");
        }
        if b.max_inflight == 0 {
            invalid!("`mqtt.max_inflight`: must be at least 1");
        }
        if b.max_packet_size < 64 {
            invalid!("`mqtt.max_packet_size`: must be at least 64 bytes");
        }
        if b.max_packet_size > 268_435_455 {
            invalid!("`mqtt.max_packet_size`: MQTT allows at most 268435455 bytes");
        }
        if m.max_connections == 0 {
            invalid!("`mqtt.max_connections`: must be at least 1");
        }
        if m.outbound_queue == 0 {
            invalid!("`mqtt.outbound_queue`: must be at least 1");
        }
        if b.max_topic_levels == 0 {
            invalid!("`mqtt.max_topic_levels`: must be at least 1");
        }
        let t = &self.telemetry;
        if t.retention_days == 0 {
            invalid!("`telemetry.retention_days`: must be at least 1");
        }
        if t.head_max_points < 1000 {
            invalid!("`telemetry.head_max_points`: must be at least 1000");
        }
        if t.flush_interval == 0 {
            invalid!("`telemetry.flush_interval`: must be at least 1 second");
        }
        if self.http.enabled && !self.telemetry.enabled {
            invalid!("`http.enabled`: the HTTP API serves the telemetry store; enable `telemetry.enabled` or disable the API");
        }
        if self
            .auth
            .bootstrap_admin_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            invalid!("`auth.bootstrap_admin_token`: use at least 16 characters");
        }
        if self.auth.argon2_memory_kib < 8 || self.auth.argon2_iterations == 0 {
            invalid!(
                "`auth.argon2_memory_kib`/`auth.argon2_iterations`: at least 8 KiB and 1 iteration"
            );
        }
        if self.tls.ca_cert_file.is_some() != self.tls.ca_key_file.is_some() {
            invalid!("`tls.ca_cert_file`/`tls.ca_key_file`: give both or neither");
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            invalid!("`tls.cert_file`/`tls.key_file`: give both or neither");
        }
        if self.tls.device_cert_days == 0 {
            invalid!("`tls.device_cert_days`: must be at least 1");
        }
        self.auth.policy()?;
        let d = &self.devices;
        if d.inactivity_timeout_secs == 0 {
            invalid!("`devices.inactivity_timeout_secs`: must be at least 1");
        }
        if d.twin_max_bytes < 1024 {
            invalid!("`devices.twin_max_bytes`: must be at least 1024");
        }
        if d.twin_max_depth == 0 {
            invalid!("`devices.twin_max_depth`: must be at least 1");
        }
        let r = &self.rules;
        if r.queue == 0 || r.trace_capacity == 0 || r.max_rules == 0 {
            invalid!("`rules.queue`/`rules.trace_capacity`/`rules.max_rules`: must be at least 1");
        }
        if r.webhook_timeout_secs == 0 || r.webhook_max_attempts == 0 {
            invalid!(
                "`rules.webhook_timeout_secs`/`rules.webhook_max_attempts`: must be at least 1"
            );
        }
        for c in &r.webhook_allowed_cidrs {
            if let Err(e) = c.parse::<automation::Cidr>() {
                invalid!("`rules.webhook_allowed_cidrs`: {e}");
            }
        }
        if d.event_queue == 0 || d.provision_queue == 0 {
            invalid!("`devices.event_queue`/`devices.provision_queue`: must be at least 1");
        }
        if !(10..=60_000).contains(&d.scan_interval_ms) {
            invalid!("`devices.scan_interval_ms`: 10 to 60000");
        }
        if self.http.stream_queue == 0 {
            invalid!("`http.stream_queue`: must be at least 1");
        }
        if self.http.max_body_bytes < 1024 {
            invalid!("`http.max_body_bytes`: must be at least 1024");
        }
        let h = &self.http;
        if h.max_connections == 0 || h.max_streams == 0 || h.max_stream_filters == 0 {
            invalid!("`http.max_connections`/`http.max_streams`/`http.max_stream_filters`: must be at least 1");
        }
        if h.header_timeout_secs == 0 {
            invalid!("`http.header_timeout_secs`: must be at least 1");
        }
        if h.idle_timeout_secs <= api::STREAM_KEEPALIVE.as_secs() {
            invalid!("`http.idle_timeout_secs`: must be more than {} (live streams send a keep-alive that often)",
                api::STREAM_KEEPALIVE.as_secs()
            );
        }
        let a = &self.auth;
        if !(1..=64).contains(&a.login_concurrency) {
            invalid!("`auth.login_concurrency`: 1 to 64");
        }
        if a.login_backoff_base_ms == 0 || a.login_backoff_base_ms > a.login_backoff_max_ms {
            invalid!("`auth.login_backoff_base_ms`/`auth.login_backoff_max_ms`: base at least 1 and at most max");
        }
        Ok(())
    }

    /// The broker's own access control: anonymous clients, and the
    /// password and ACL files of `[mqtt]` (read now).
    pub fn access_control(&self) -> Result<broker::AccessControl, Error> {
        let mut access = broker::AccessControl::new(self.mqtt.allow_anonymous);
        let files = [
            ("mqtt.password_file", &self.mqtt.password_file),
            ("mqtt.acl_file", &self.mqtt.acl_file),
        ];
        for (key, path) in files {
            let Some(path) = path else { continue };
            let text = std::fs::read_to_string(path).map_err(|source| Error::File {
                key,
                path: path.clone(),
                source,
            })?;
            let parsed = if key == "mqtt.password_file" {
                access.with_password_file(&text)
            } else {
                access.with_acl_file(&text)
            };
            access = parsed.map_err(|source| Error::Access {
                key,
                path: path.clone(),
                source,
            })?;
        }
        Ok(access)
    }

    /// The API's limits (`[http]` connection and stream caps, `[auth]`
    /// login guards).
    pub fn api_limits(&self) -> api::Limits {
        use std::time::Duration;
        let (h, a) = (&self.http, &self.auth);
        api::Limits {
            max_connections: h.max_connections,
            header_timeout: Duration::from_secs(h.header_timeout_secs),
            idle_timeout: Duration::from_secs(h.idle_timeout_secs),
            max_streams: h.max_streams,
            max_stream_filters: h.max_stream_filters,
            login_concurrency: a.login_concurrency,
            login_wait: Duration::from_millis(a.login_wait_ms),
            login_backoff_after: a.login_backoff_after,
            login_backoff_base: Duration::from_millis(a.login_backoff_base_ms),
            login_backoff_max: Duration::from_millis(a.login_backoff_max_ms),
        }
    }

    /// File descriptors the listeners may hold at once: MQTT connections
    /// (`mqtt.max_connections`), HTTP(S) connections
    /// (`http.max_connections`) and TLS handshakes in progress, plus a
    /// reserve for stores, logs and listeners. Compared with the soft
    /// `RLIMIT_NOFILE` at start.
    pub fn fd_budget(&self) -> u64 {
        let http = if self.http.enabled {
            self.http.max_connections + api::MAX_HANDSHAKES
        } else {
            0
        };
        (self.mqtt.max_connections + http) as u64 + 256
    }

    /// The plaintext MQTT listeners' address: as set, else 127.0.0.1 when
    /// anonymous clients are allowed, else every address.
    pub fn mqtt_bind(&self) -> String {
        match &self.mqtt.bind {
            Some(b) => b.clone(),
            None if self.mqtt.allow_anonymous => "127.0.0.1".into(),
            None => broker_net::NetConfig::default().bind,
        }
    }

    pub fn broker_config(&self) -> broker::BrokerConfig {
        let b = &self.mqtt.broker;
        broker::BrokerConfig {
            outbound_topic_alias_maximum: b.topic_alias_maximum,
            ..b.clone()
        }
    }

    pub fn net_config(&self) -> broker_net::NetConfig {
        let m = &self.mqtt;
        broker_net::NetConfig {
            bind: self.mqtt_bind(),
            port: m.port,
            ws_port: (m.ws_port != 0).then_some(m.ws_port),
            max_connections: m.max_connections,
            outbound_queue: m.outbound_queue,
            connect_timeout_secs: m.connect_timeout,
            sys_interval_secs: m.sys_interval,
            max_conn_rate_per_ip: m.max_conn_rate_per_ip,
            auth_failure_threshold: m.auth_failure_threshold,
            auth_backoff_base_ms: m.auth_backoff_base_ms,
            auth_backoff_max_ms: m.auth_backoff_max_ms,
            max_connections_per_identity: m.max_connections_per_device,
            auth_concurrency: m.auth_concurrency,
        }
    }
}

/// The key at fault when an error is reported at a section (`path`): the
/// keys a section reads through `#[serde(flatten)]` (`[mqtt]`'s broker
/// limits) are not tracked one by one, so each key of the section is tried
/// alone to name the one that fails.
fn flattened_key(table: &toml::Table, path: &str) -> Option<String> {
    let toml::Value::Table(section) = table.get(path)? else {
        return None;
    };
    section.iter().find_map(|(key, value)| {
        let alone = toml::Table::from_iter([(key.clone(), value.clone())]);
        let tree = toml::Table::from_iter([(path.to_string(), toml::Value::Table(alone))]);
        Settings::deserialize(toml::Value::Table(tree))
            .is_err()
            .then(|| format!("{path}.{key}"))
    })
}

/// An environment value as TOML: integers, floats and booleans keep their
/// type, anything else is a string.
fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = v.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = v.parse::<f64>() {
        if v.contains('.') {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn defaults() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.mqtt.port, 1883);
        assert_eq!(s.mqtt.ws_port, 8083);
        assert!(!s.mqtt.allow_anonymous);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "[mqtt]\nport = 1999\nallow_anonymous = true\n").unwrap();
        let s = Settings::load(
            Some(&p),
            env(&[
                ("MILLWRIGHT_MQTT__PORT", "1884"),
                ("OTHER", "x"),
                ("MILLWRIGHT_BIN", "/x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.mqtt.port, 1884);
        assert!(s.mqtt.allow_anonymous);
        // Anonymous access without a bind address: loopback only.
        assert_eq!(s.mqtt_bind(), "127.0.0.1");
    }

    #[test]
    fn bind_default_and_explicit() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.mqtt_bind(), "0.0.0.0");
        let s = Settings::load(
            None,
            env(&[
                ("MILLWRIGHT_MQTT__ALLOW_ANONYMOUS", "true"),
                ("MILLWRIGHT_MQTT__BIND", "0.0.0.0"),
            ]),
        )
        .unwrap();
        assert_eq!(s.mqtt_bind(), "0.0.0.0");
        let s = Settings::load(
            None,
            env(&[("MILLWRIGHT_MQTT__CLIENT_ID_POLICY", "prefix")]),
        )
        .unwrap();
        assert_eq!(s.mqtt.client_id_policy, identity::ClientIdPolicy::Prefix);
        assert!(
            Settings::load(None, env(&[("MILLWRIGHT_MQTT__CLIENT_ID_POLICY", "nope")])).is_err()
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::load(None, env(&[("MILLWRIGHT_MQTT__PORTT", "1")])).unwrap_err();
        assert!(
            err.to_string().contains("mqtt") && err.to_string().contains("portt"),
            "{err}"
        );
    }

    #[test]
    fn webhook_egress_settings() {
        let s = Settings::load(None, env(&[])).unwrap();
        let a = s.rules.automation_config();
        assert!(!a.webhook_allow_private && a.webhook_allowed_cidrs.is_empty());
        assert_eq!(s.broker_config().max_share_group_bytes, 128);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "[rules]\nwebhook_allowed_cidrs = [\"10.20.0.0/16\", \"fd00::/8\"]\nwebhook_ca_file = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let a = Settings::load(Some(&p), env(&[]))
            .unwrap()
            .rules
            .automation_config();
        assert_eq!(a.webhook_allowed_cidrs.len(), 2);
        assert!(a.webhook_allowed_cidrs[0].contains("10.20.3.4".parse().unwrap()));
        assert_eq!(a.webhook_ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        std::fs::write(&p, "[rules]\nwebhook_allowed_cidrs = [\"10.0.0.0/40\"]\n").unwrap();
        let err = Settings::load(Some(&p), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("rules.webhook_allowed_cidrs"),
            "{err}"
        );
        let s = Settings::load(
            None,
            env(&[("MILLWRIGHT_RULES__WEBHOOK_ALLOW_PRIVATE", "true")]),
        )
        .unwrap();
        assert!(s.rules.automation_config().webhook_allow_private);
    }

    #[test]
    fn auth_rules_and_limits_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "[auth.type_limits.meter]\nmessages_per_sec = 5\n\n[[auth.acl]]\ntype = \"press\"\naccess = \"read\"\ntopic = \"plant/{id}/#\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&p), env(&[])).unwrap();
        assert_eq!(s.auth.type_limits["meter"].messages_per_sec, 5);
        assert!(s.auth.policy().is_ok());

        std::fs::write(&p, "[[auth.acl]]\naccess = \"readonly\"\ntopic = \"a/#\"\n").unwrap();
        let err = Settings::load(Some(&p), env(&[])).unwrap_err();
        assert!(err.to_string().contains("auth.acl[0].access"), "{err}");

        std::fs::write(&p, "[[auth.acl]]\naccess = \"read\"\ntopic = \"a/#/b\"\n").unwrap();
        let err = Settings::load(Some(&p), env(&[])).unwrap_err();
        assert!(err.to_string().contains("auth.acl"), "{err}");

        let err = Settings::load(
            None,
            env(&[("MILLWRIGHT_AUTH__BOOTSTRAP_ADMIN_TOKEN", "short")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("auth.bootstrap_admin_token"),
            "{err}"
        );
        let err =
            Settings::load(None, env(&[("MILLWRIGHT_TLS__CERT_FILE", "/x.pem")])).unwrap_err();
        assert!(err.to_string().contains("tls.cert_file"), "{err}");
    }

    #[test]
    fn access_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (pw, acl) = (dir.path().join("pw"), dir.path().join("acl"));
        std::fs::write(&pw, "ada:not a hash\n").unwrap();
        std::fs::write(&acl, "user ada\ntopic readwrite plant/#\n").unwrap();
        let load = |vars: &[(&str, &str)]| Settings::load(None, env(vars)).unwrap();
        let pw_var = ("MILLWRIGHT_MQTT__PASSWORD_FILE", pw.to_str().unwrap());
        let acl_var = ("MILLWRIGHT_MQTT__ACL_FILE", acl.to_str().unwrap());
        assert!(load(&[acl_var]).access_control().is_ok());
        let err = load(&[pw_var]).access_control().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Access {
                    key: "mqtt.password_file",
                    ..
                }
            ),
            "{err}"
        );
        let missing = ("MILLWRIGHT_MQTT__ACL_FILE", "/nonexistent/acl");
        let err = load(&[missing]).access_control().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("mqtt.acl_file: cannot read /nonexistent/acl"),
            "{err}"
        );
    }

    #[test]
    fn broker_keys_read_into_the_broker_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "[mqtt]\nport = 1999\nmax_keepalive = 120\ntopic_alias_maximum = 7\nretain_available = false\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&p),
            env(&[("MILLWRIGHT_MQTT__MAX_QUEUED_MESSAGES", "42")]),
        )
        .unwrap();
        let b = s.broker_config();
        assert_eq!(s.mqtt.port, 1999);
        assert_eq!((b.max_keepalive, b.max_queued_messages), (120, 42));
        assert!(!b.retain_available);
        // The aliases the broker assigns follow the client-side maximum.
        assert_eq!(
            (b.topic_alias_maximum, b.outbound_topic_alias_maximum),
            (7, 7)
        );
        // Untouched keys keep the broker's defaults.
        let d = broker::BrokerConfig::default();
        assert_eq!(b.max_retained_bytes, d.max_retained_bytes);
        assert_eq!(Settings::default().broker_config(), d);
        // Not a key: it follows `topic_alias_maximum`.
        let err = Settings::load(
            None,
            env(&[("MILLWRIGHT_MQTT__OUTBOUND_TOPIC_ALIAS_MAXIMUM", "3")]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("outbound_topic_alias_maximum"),
            "{err}"
        );
        let err =
            Settings::load(None, env(&[("MILLWRIGHT_MQTT__MAX_KEEPALIVE", "70000")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.max_keepalive"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Settings::load(None, env(&[("MILLWRIGHT_MQTT__PORT", "70000")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.port"), "{err}");
        let err =
            Settings::load(None, env(&[("MILLWRIGHT_MQTT__RECEIVE_MAXIMUM", "0")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.receive_maximum"), "{err}");
    }
}
