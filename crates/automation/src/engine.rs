//! The engine: rule definitions (storage, compilation, CRUD, dry runs),
//! traces and metrics, and the operations the API calls. The worker
//! threads around the pure `core` are in `engine/shell.rs`, carrying out
//! actions in `engine/run.rs`, alarm events and JSON in `engine/alarm.rs`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use broker::bus::Bus;
use broker::StoredMessage;
use serde_json::{json, Value};

use crate::actions::{parse_actions, Action, ActionResult};
use crate::core::{Loaded, Partition};
use crate::queues::RuleQueues;
use crate::store::{RedbRuleStore, RuleStorage};

mod alarm;
mod metrics;
mod run;
mod shell;

use crate::{AutomationError, NAMESPACE};
pub use alarm::alarm_json;
pub use shell::Workers;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct AutomationConfig {
    /// Evaluations kept per rule for its trace.
    pub trace_capacity: usize,
    /// Most rules.
    pub max_rules: usize,
    /// Immediate retries of a failed action (not webhooks: they retry with
    /// back-off through the outbox).
    pub action_retries: u32,
    pub webhook_timeout_ms: u64,
    pub webhook_max_attempts: u32,
    pub webhook_max_age_ms: u64,
    /// Webhooks may reach loopback, link-local and private addresses.
    pub webhook_allow_private: bool,
    /// Internal ranges webhooks may reach even without `allow_private`.
    pub webhook_allowed_cidrs: Vec<crate::Cidr>,
    /// PEM certificates trusted for HTTPS webhooks besides the webpki roots.
    pub webhook_ca_file: Option<std::path::PathBuf>,
}

impl Default for AutomationConfig {
    fn default() -> Self {
        AutomationConfig {
            trace_capacity: 100,
            max_rules: 1000,
            action_retries: 2,
            webhook_timeout_ms: 5000,
            webhook_max_attempts: 20,
            webhook_max_age_ms: 86_400_000,
            webhook_allow_private: false,
            webhook_allowed_cidrs: Vec::new(),
            webhook_ca_file: None,
        }
    }
}

/// Counters of one rule.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    pub evaluations: AtomicU64,
    pub matches: AtomicU64,
    pub errors: AtomicU64,
    pub action_failures: AtomicU64,
    pub eval_nanos: AtomicU64,
}

/// One evaluation as recorded in a rule's trace.
#[derive(Debug, Clone)]
pub struct Trace {
    pub time_ms: u64,
    pub topic: String,
    /// The payload, cut to 1 KiB.
    pub payload: String,
    pub matched: bool,
    pub group: String,
    pub outputs: Value,
    pub actions: Vec<ActionResult>,
    pub latency_us: u64,
    pub error: Option<String>,
}

/// Payload bytes a trace shows.
const TRACE_PAYLOAD: usize = 1024;

/// A trace as kept: the message shared by the rules' traces, not copied
/// (a copy cut to [`TRACE_PAYLOAD`] when it is larger).
#[derive(Debug)]
pub(crate) struct RawTrace {
    time_ms: u64,
    message: Arc<StoredMessage>,
    matched: bool,
    group: String,
    outputs: Value,
    actions: Vec<ActionResult>,
    latency_us: u64,
    error: Option<String>,
}

impl RawTrace {
    fn view(&self) -> Trace {
        let mut payload = String::from_utf8_lossy(&self.message.payload).into_owned();
        if payload.len() > TRACE_PAYLOAD {
            let mut cut = TRACE_PAYLOAD;
            while !payload.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.truncate(cut);
        }
        Trace {
            time_ms: self.time_ms,
            topic: self.message.topic.to_string(),
            payload,
            matched: self.matched,
            group: self.group.clone(),
            outputs: self.outputs.clone(),
            actions: self.actions.clone(),
            latency_us: self.latency_us,
            error: self.error.clone(),
        }
    }
}

/// A rule as the API shows it.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub name: String,
    pub description: String,
    pub sql: String,
    pub actions: Value,
    pub enabled: bool,
    pub filter: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub evaluations: u64,
    pub matches: u64,
    pub errors: u64,
    pub action_failures: u64,
    pub avg_eval_us: f64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registry lookups for `device_type()` and `label(...)` in rules.
struct RegistryContext<'a>(&'a registry::Registry);

impl rules::Context for RegistryContext<'_> {
    fn device_type(&self, device_id: &str) -> Option<String> {
        self.0
            .get_device(NAMESPACE, device_id)
            .ok()
            .flatten()
            .map(|d| d.device_type)
    }

    fn label(&self, device_id: &str, key: &str) -> Option<String> {
        self.0
            .get_device(NAMESPACE, device_id)
            .ok()
            .flatten()
            .and_then(|d| d.labels.get(key).cloned())
    }
}

/// The rules engine service.
pub struct Automation {
    store: Box<dyn RuleStorage>,
    alarms: Arc<alarms::AlarmStore>,
    outbox: Arc<alarms::Outbox>,
    fleet: Option<Arc<fleet::Fleet>>,
    tsdb: Option<Arc<tsdb::Tsdb>>,
    registry: Arc<registry::Registry>,
    bus: Arc<dyn Bus>,
    clock: iot_types::SharedClock,
    config: AutomationConfig,
    rules: RwLock<Arc<Vec<Arc<Loaded>>>>,
    /// Wakes the webhook sender after a push.
    wake: Arc<(Mutex<bool>, Condvar)>,
    /// The input queues, once the workers run.
    queues: OnceLock<Arc<RuleQueues>>,
    /// The workers' partitions (rule state), by worker.
    partitions: OnceLock<Vec<Arc<Mutex<Partition>>>>,
    /// Messages not evaluated because the queue was full (counted by the
    /// forwarder) are in the fleet's counter; these are the webhook calls
    /// refused because the outbox was full.
    pub outbox_full: AtomicU64,
}

fn valid_name(name: &str) -> bool {
    // `validate` and `dry-run` are routes of the API.
    !matches!(name, "validate" | "dry-run")
        && !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Automation {
    /// `bus` is the broker (`broker_net::ServerHandle` in the binary);
    /// `clock` is where every time the engine records comes from (the
    /// wall clock in the binary, a `ManualClock` in tests).
    #[allow(clippy::too_many_arguments)]
    pub fn open<B: Bus + 'static, C: iot_types::Clock + ?Sized + 'static>(
        rules_path: &Path,
        alarms: Arc<alarms::AlarmStore>,
        outbox: Arc<alarms::Outbox>,
        fleet: Option<Arc<fleet::Fleet>>,
        tsdb: Option<Arc<tsdb::Tsdb>>,
        registry: Arc<registry::Registry>,
        bus: B,
        config: AutomationConfig,
        clock: Arc<C>,
    ) -> Result<Arc<Automation>, AutomationError> {
        let store: Box<dyn RuleStorage> = Box::new(RedbRuleStore::open(rules_path)?);
        let a = Arc::new(Automation {
            store,
            alarms,
            outbox,
            fleet,
            tsdb,
            registry,
            bus: Arc::new(bus),
            clock: iot_types::shared(clock),
            config,
            rules: RwLock::new(Arc::new(Vec::new())),
            wake: Arc::new((Mutex::new(false), Condvar::new())),
            queues: OnceLock::new(),
            partitions: OnceLock::new(),
            outbox_full: AtomicU64::new(0),
        });
        let mut loaded = Vec::new();
        for rec in a.store.all(NAMESPACE)? {
            match a.load(&rec) {
                Ok(l) => loaded.push(l),
                Err(e) => {
                    tracing::warn!(rule = ?rec.get("name"), error = %e, "stored rule does not load; skipped")
                }
            }
        }
        // Alarms raised by rules before the restart still auto-clear.
        for l in &mut loaded {
            let types: Vec<&str> = l
                .actions
                .iter()
                .filter_map(|a| match a {
                    Action::Alarm {
                        alarm_type,
                        auto_clear: true,
                        ..
                    } => Some(alarm_type.as_str()),
                    _ => None,
                })
                .collect();
            if types.is_empty() {
                continue;
            }
            let filter = alarms::AlarmFilter {
                states: vec![
                    alarms::AlarmState::ActiveUnacknowledged,
                    alarms::AlarmState::ActiveAcknowledged,
                ],
                ..Default::default()
            };
            let types: Vec<String> = types.into_iter().map(str::to_string).collect();
            let mut after: Option<String> = None;
            while let Ok((page, next)) = a.alarms.query(NAMESPACE, &filter, after.as_deref(), 1000)
            {
                for al in page {
                    if al.rule.as_deref() == Some(l.name.as_str()) && types.contains(&al.alarm_type)
                    {
                        l.raised_at_start.push((al.device_id, al.alarm_type));
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        *a.rules.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(loaded.into_iter().map(Arc::new).collect());
        a.update_taps();
        Ok(a)
    }

    /// Unix milliseconds, as the alarm store and the rules take them.
    fn now(&self) -> u64 {
        self.clock.now().as_millis()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Loaded>>> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Compiles a stored or submitted definition.
    fn load(&self, rec: &Value) -> Result<Loaded, AutomationError> {
        compile(rec, Vec::new())
    }

    /// The broker taps every enabled rule's filter.
    fn update_taps(&self) {
        let filters = self
            .snapshot()
            .iter()
            .filter(|l| l.enabled)
            .map(|l| l.rule.filter().to_string())
            .collect();
        self.bus.set_dynamic_taps(filters);
    }

    // ------------------------------------------------------------ rule CRUD

    fn view(l: &Loaded) -> RuleView {
        let m = &l.metrics;
        let evals = m.evaluations.load(Ordering::Relaxed);
        RuleView {
            name: l.name.clone(),
            description: l.description.clone(),
            sql: l.sql.clone(),
            actions: l.actions_json.clone(),
            enabled: l.enabled,
            filter: l.rule.filter().to_string(),
            created_ms: l.created_ms,
            updated_ms: l.updated_ms,
            evaluations: evals,
            matches: m.matches.load(Ordering::Relaxed),
            errors: m.errors.load(Ordering::Relaxed),
            action_failures: m.action_failures.load(Ordering::Relaxed),
            avg_eval_us: if evals == 0 {
                0.0
            } else {
                m.eval_nanos.load(Ordering::Relaxed) as f64 / evals as f64 / 1000.0
            },
        }
    }

    /// Messages the engine could not take because its queue was full
    /// (only rules that may be sampled read them): the broker's
    /// `rules_dropped`, counted by the queues it offers them to.
    pub fn dropped(&self) -> u64 {
        self.queues().iter().map(|q| q.dropped).sum()
    }

    /// The figures of each worker's queue (empty before the workers run).
    pub fn queues(&self) -> Vec<crate::QueueFigures> {
        self.queues.get().map(|q| q.figures()).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<RuleView> {
        self.snapshot().iter().map(|l| Self::view(l)).collect()
    }

    pub fn get(&self, name: &str) -> Option<RuleView> {
        self.rule(name).map(|l| Self::view(&l))
    }

    /// The loaded rule of that name.
    fn rule(&self, name: &str) -> Option<Arc<Loaded>> {
        self.snapshot().iter().find(|l| l.name == name).cloned()
    }

    /// The loaded rule of that name, or why not (404).
    fn existing(&self, name: &str) -> Result<Arc<Loaded>, AutomationError> {
        self.rule(name)
            .ok_or_else(|| AutomationError::NotFound(format!("rule {name:?} not found")))
    }

    /// Validates a definition without saving it: `{"name", "sql",
    /// "actions", "enabled"?, "description"?}`.
    pub fn validate(&self, def: &Value) -> Result<(), AutomationError> {
        self.load(def).map(|_| ())
    }

    /// Creates (`create = true`, 409 if the name exists) or replaces a
    /// rule; it takes effect at once (its state starts empty).
    pub fn save(&self, def: &Value, create: bool) -> Result<RuleView, AutomationError> {
        let now = self.now();
        let mut rec = def.clone();
        let Some(o) = rec.as_object_mut() else {
            return Err(AutomationError::Invalid {
                field: "".into(),
                message: "expected a JSON object".into(),
            });
        };
        for k in o.keys() {
            if !matches!(
                k.as_str(),
                "name" | "sql" | "actions" | "enabled" | "description"
            ) {
                return Err(AutomationError::Invalid {
                    field: k.clone(),
                    message: "unknown field".into(),
                });
            }
        }
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let existing = self.rule(&name);
        match (&existing, create) {
            (Some(_), true) => {
                return Err(AutomationError::Conflict(format!("rule {name:?} exists")))
            }
            (None, false) => {
                return Err(AutomationError::NotFound(format!(
                    "rule {name:?} not found"
                )))
            }
            _ => {}
        }
        if existing.is_none() && self.snapshot().len() >= self.config.max_rules {
            return Err(AutomationError::Conflict(format!(
                "at most {} rules",
                self.config.max_rules
            )));
        }
        o.insert("v".into(), json!(1));
        o.insert(
            "created_ms".into(),
            json!(existing.as_ref().map_or(now, |e| e.created_ms)),
        );
        o.insert("updated_ms".into(), json!(now));
        let loaded = self.load(&rec)?;
        self.store.put(NAMESPACE, &name, &rec)?;
        self.replace(&name, Some(Arc::new(loaded)));
        self.get(&name)
            .ok_or_else(|| AutomationError::Storage("rule vanished".into()))
    }

    fn replace(&self, name: &str, new: Option<Arc<Loaded>>) {
        {
            let mut w = self.rules.write().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<Arc<Loaded>> = w.iter().filter(|l| l.name != name).cloned().collect();
            if let Some(n) = new {
                v.push(n);
                v.sort_by(|a, b| a.name.cmp(&b.name));
            }
            *w = Arc::new(v);
            if let Some(q) = self.queues.get() {
                q.set_rules(w.clone());
            }
        }
        self.update_taps();
    }

    pub fn delete(&self, name: &str) -> Result<bool, AutomationError> {
        let existed = self.store.delete(NAMESPACE, name)?;
        self.replace(name, None);
        Ok(existed)
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<RuleView, AutomationError> {
        let l = self.existing(name)?;
        let def = json!({
            "name": l.name, "sql": l.sql, "actions": l.actions_json,
            "enabled": enabled, "description": l.description,
        });
        self.save(&def, false)
    }

    /// The rule's recent evaluations, newest first.
    pub fn traces(&self, name: &str) -> Option<Vec<Trace>> {
        self.rule(name)
            .map(|l| lock(&l.traces).iter().rev().map(RawTrace::view).collect())
    }

    /// Evaluates a rule (an existing one by name, or a definition) against
    /// a sample message without side effects: no state change, no action
    /// carried out; the actions are returned as they would be rendered.
    pub fn dry_run(
        &self,
        name: Option<&str>,
        def: Option<&Value>,
        topic: &str,
        payload: &[u8],
    ) -> Result<Value, AutomationError> {
        let (loaded, state) = match (name, def) {
            (Some(n), _) => {
                let l = self.existing(n)?;
                let st = self.state_of(&l, topic);
                (l, st)
            }
            (None, Some(d)) => {
                let mut d = d.clone();
                if let Some(o) = d.as_object_mut() {
                    o.entry("name").or_insert(json!("dry_run"));
                }
                (Arc::new(self.load(&d)?), rules::RuleState::default())
            }
            (None, None) => {
                return Err(AutomationError::Invalid {
                    field: "rule".into(),
                    message: "give a rule name or a definition".into(),
                })
            }
        };
        let msg = rules::Message {
            topic,
            payload,
            time_ms: self.now(),
        };
        let topic_matches = loaded.rule.matches_topic(topic);
        let eval = loaded
            .rule
            .dry_run(&msg, &state, &RegistryContext(&self.registry));
        let actions: Vec<Value> = if eval.matched && topic_matches {
            loaded
                .actions
                .iter()
                .map(|a| self.describe(a, &loaded.name, &eval))
                .collect()
        } else {
            Vec::new()
        };
        Ok(json!({
            "topic_matches": topic_matches,
            "matched": eval.matched && topic_matches,
            "group": eval.group,
            "device_id": eval.device_id,
            "outputs": Value::Object(eval.outputs.clone()),
            "error": eval.error,
            "actions": actions,
        }))
    }
}

/// Compiles a stored or submitted definition; `raised_at_start`: the active
/// alarms it raised before a restart, to auto-clear.
pub(crate) fn compile(
    rec: &Value,
    raised_at_start: Vec<(String, String)>,
) -> Result<Loaded, AutomationError> {
    let Some(o) = rec.as_object() else {
        return Err(AutomationError::Invalid {
            field: "".into(),
            message: "expected a JSON object".into(),
        });
    };
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let name = s("name");
    if !valid_name(&name) {
        return Err(AutomationError::Invalid {
            field: "name".into(),
            message: "1 to 64 characters from A-Z a-z 0-9 - _ .".into(),
        });
    }
    let sql = s("sql");
    let rule = rules::compile(&sql).map_err(|e| AutomationError::Parse {
        line: e.line,
        column: e.column,
        message: e.message.clone(),
    })?;
    let actions_json = o.get("actions").cloned().unwrap_or(Value::Array(vec![]));
    let actions = parse_actions(&actions_json)?;
    Ok(Loaded {
        id: Loaded::next_id(),
        name,
        description: s("description"),
        sql,
        actions_json,
        actions,
        enabled: o.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        created_ms: o.get("created_ms").and_then(Value::as_u64).unwrap_or(0),
        updated_ms: o.get("updated_ms").and_then(Value::as_u64).unwrap_or(0),
        rule,
        traces: Mutex::new(VecDeque::new()),
        metrics: RuleMetrics::default(),
        raised_at_start,
    })
}
