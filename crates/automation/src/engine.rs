//! The engine: rule storage and the operations the API calls, the worker
//! threads (the shell around the pure `core`), actions, traces and metrics.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use broker::{StoredMessage, TapMessage};
use broker_net::ServerHandle;
use bytes::Bytes;
use mqtt_proto::QoS;
use serde_json::{json, Map, Value};

use crate::actions::{parse_actions, Action, ActionResult};
use crate::core::{partition_key, partition_of, Act, Effect, Event, Loaded, Partition, HOP};
use crate::queues::RuleQueues;
use crate::store::{RedbRuleStore, RuleStorage};
use crate::{AutomationError, Clock, NAMESPACE};

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
    handle: ServerHandle,
    clock: Clock,
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
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        rules_path: &Path,
        alarms: Arc<alarms::AlarmStore>,
        outbox: Arc<alarms::Outbox>,
        fleet: Option<Arc<fleet::Fleet>>,
        tsdb: Option<Arc<tsdb::Tsdb>>,
        registry: Arc<registry::Registry>,
        handle: ServerHandle,
        config: AutomationConfig,
        clock: Clock,
    ) -> Result<Arc<Automation>, AutomationError> {
        let store: Box<dyn RuleStorage> = Box::new(RedbRuleStore::open(rules_path)?);
        let a = Arc::new(Automation {
            store,
            alarms,
            outbox,
            fleet,
            tsdb,
            registry,
            handle,
            clock,
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

    fn now(&self) -> u64 {
        (self.clock)()
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
        self.handle.set_dynamic_taps(filters);
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
    /// (only rules that may be sampled read them).
    pub fn dropped(&self) -> u64 {
        self.handle.metrics().rules_dropped.load(Ordering::Relaxed)
    }

    /// The figures of each worker's queue (empty before the workers run).
    pub fn queues(&self) -> Vec<crate::QueueFigures> {
        self.queues.get().map(|q| q.figures()).unwrap_or_default()
    }

    pub fn list(&self) -> Vec<RuleView> {
        self.snapshot().iter().map(|l| Self::view(l)).collect()
    }

    pub fn get(&self, name: &str) -> Option<RuleView> {
        self.snapshot()
            .iter()
            .find(|l| l.name == name)
            .map(|l| Self::view(l))
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
        let existing = self.snapshot().iter().find(|l| l.name == name).cloned();
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
        let l = self
            .snapshot()
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .ok_or_else(|| AutomationError::NotFound(format!("rule {name:?} not found")))?;
        let def = json!({
            "name": l.name, "sql": l.sql, "actions": l.actions_json,
            "enabled": enabled, "description": l.description,
        });
        self.save(&def, false)
    }

    /// The rule's recent evaluations, newest first.
    pub fn traces(&self, name: &str) -> Option<Vec<Trace>> {
        self.snapshot()
            .iter()
            .find(|l| l.name == name)
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
                let l = self
                    .snapshot()
                    .iter()
                    .find(|l| l.name == n)
                    .cloned()
                    .ok_or_else(|| AutomationError::NotFound(format!("rule {n:?} not found")))?;
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

    /// What an action would do, rendered, for dry runs.
    fn describe(&self, a: &Action, rule: &str, e: &rules::Evaluation) -> Value {
        match a {
            Action::Republish { topic, payload, .. } => json!({
                "type": "republish", "topic": rules::render(topic, e),
                "payload": payload.as_ref().map(|p| rules::render_json(p, e)).unwrap_or_else(|| Value::Object(e.outputs.clone())),
            }),
            Action::Store {
                metric,
                value,
                device,
            } => json!({
                "type": "store", "metric": metric, "value": rules::render(value, e),
                "device": device.as_ref().map(|d| rules::render(d, e)).or_else(|| e.device_id.clone()),
            }),
            Action::Twin { name, desired } => {
                json!({"type": "twin", "device": e.device_id, "name": name, "desired": rules::render_json(desired, e)})
            }
            Action::Command { method, params, .. } => {
                json!({"type": "command", "device": e.device_id, "method": method, "params": rules::render_json(params, e)})
            }
            Action::Webhook { url, body, .. } => {
                json!({"type": "webhook", "url": url, "body": self.webhook_body(body.as_ref(), rule, e)})
            }
            Action::Alarm {
                alarm_type,
                severity,
                details,
                auto_clear,
            } => json!({
                "type": "alarm", "device": e.device_id, "alarm_type": alarm_type, "severity": severity.as_str(),
                "details": details.as_ref().map(|d| rules::render_json(d, e)).unwrap_or_else(|| Value::Object(e.outputs.clone())),
                "auto_clear": auto_clear,
            }),
            Action::ClearAlarm { alarm_type } => {
                json!({"type": "clear_alarm", "device": e.device_id, "alarm_type": alarm_type})
            }
        }
    }

    // ----------------------------------------------------------- evaluation

    /// A copy of a rule's state for the group of `topic`, from the
    /// partition that owns it (empty before the workers run).
    fn state_of(&self, l: &Loaded, topic: &str) -> rules::RuleState {
        let Some(parts) = self.partitions.get() else {
            return rules::RuleState::default();
        };
        let i = partition_of(partition_key(topic), parts.len());
        parts
            .get(i)
            .and_then(|p| lock(p).state(l.id))
            .unwrap_or_default()
    }

    /// Runs the engine: one worker thread per queue of `queues`, each
    /// evaluating the messages of its partition in order, and the webhook
    /// sender. [`Workers::join`] stops them.
    pub fn spawn(self: &Arc<Self>, queues: Arc<RuleQueues>) -> std::io::Result<Workers> {
        let n = queues.workers();
        let parts: Vec<Arc<Mutex<Partition>>> = (0..n)
            .map(|i| Arc::new(Mutex::new(Partition::new(i, n))))
            .collect();
        if self.partitions.set(parts.clone()).is_err() || self.queues.set(queues.clone()).is_err() {
            return Err(std::io::Error::other("the rules engine runs already"));
        }
        queues.set_rules(self.snapshot());
        let sender = crate::webhook::spawn_sender(self.clone())?;
        let mut threads = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            let me = self.clone();
            let q = queues.clone();
            let t = std::thread::Builder::new()
                .name(format!("rules-{i}"))
                .spawn(move || me.work(i, &part, &q));
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    queues.close();
                    return Err(e);
                }
            }
        }
        Ok(Workers {
            queues,
            threads,
            sender: Some(sender),
            wake: self.wake.clone(),
        })
    }

    /// One worker: takes its queue's messages until it is closed.
    fn work(&self, index: usize, part: &Mutex<Partition>, queues: &RuleQueues) {
        let mut generation = 0;
        let mut rules = Arc::new(Vec::new());
        let mut batch = Vec::new();
        let ctx = RegistryContext(&self.registry);
        while queues.take(index, &mut batch) {
            if let Some(r) = queues.rules_since(&mut generation) {
                rules = r;
            }
            for t in batch.drain(..) {
                self.process(&t, part, &rules, &ctx);
            }
        }
    }

    /// Evaluates one message (in its partition) and carries out what it
    /// calls for.
    fn process(
        &self,
        t: &TapMessage,
        part: &Mutex<Partition>,
        rules: &Arc<Vec<Arc<Loaded>>>,
        ctx: &dyn rules::Context,
    ) {
        let hops: u32 = t
            .message
            .user_properties
            .iter()
            .find(|(k, _)| &**k == HOP)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let now = self.now();
        let started = Instant::now();
        let effects = {
            let mut p = lock(part);
            p.set_rules(rules);
            p.handle(
                now,
                Event::Message {
                    topic: &t.message.topic,
                    payload: &t.message.payload,
                    hops,
                },
                ctx,
            )
        };
        if effects.is_empty() {
            return;
        }
        let kept = if t.message.payload.len() > TRACE_PAYLOAD {
            let mut m = (*t.message).clone();
            m.payload = Bytes::copy_from_slice(&t.message.payload[..TRACE_PAYLOAD]);
            Arc::new(m)
        } else {
            t.message.clone()
        };
        // The core evaluates every rule at once: each gets its share.
        let share = started.elapsed() / effects.len() as u32;
        for e in effects {
            self.carry_out(&kept, now, hops, e, share);
        }
    }

    /// Carries out one rule's evaluation: counters, actions, trace.
    fn carry_out(
        &self,
        message: &Arc<StoredMessage>,
        now: u64,
        hops: u32,
        e: Effect,
        eval_time: Duration,
    ) {
        let Effect {
            rule: l,
            eval,
            acts,
        } = e;
        // The clock is read only around actions (most evaluations have none).
        let started = (!acts.is_empty()).then(Instant::now);
        let m = &l.metrics;
        m.evaluations.fetch_add(1, Ordering::Relaxed);
        if eval.error.is_some() {
            m.errors.fetch_add(1, Ordering::Relaxed);
        }
        if eval.matched {
            m.matches.fetch_add(1, Ordering::Relaxed);
        }
        let mut results = Vec::new();
        for act in acts {
            let r = match act {
                Act::Run(i) => match l.actions.get(i) {
                    Some(a) => self.run_with_retries(&l, a, &eval, hops, now),
                    None => continue,
                },
                Act::AutoClear { device, alarm_type } => {
                    self.clear_alarm(&l, &device, &alarm_type, now)
                }
            };
            if !r.ok {
                m.action_failures.fetch_add(1, Ordering::Relaxed);
            }
            results.push(r);
        }
        let elapsed = eval_time + started.map_or(Duration::ZERO, |s| s.elapsed());
        m.eval_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        // The message is shared with the other rules' traces; the topic and
        // payload are rendered when the trace is read.
        let trace = RawTrace {
            time_ms: now,
            message: message.clone(),
            matched: eval.matched,
            group: eval.group,
            outputs: Value::Object(eval.outputs),
            actions: results,
            latency_us: elapsed.as_micros() as u64,
            error: eval.error,
        };
        let mut traces = lock(&l.traces);
        if traces.len() >= self.config.trace_capacity.max(1) {
            traces.pop_front();
        }
        traces.push_back(trace);
    }

    pub(crate) fn wake(&self) -> &Arc<(Mutex<bool>, Condvar)> {
        &self.wake
    }

    pub(crate) fn outbox(&self) -> &alarms::Outbox {
        &self.outbox
    }

    pub(crate) fn config(&self) -> &AutomationConfig {
        &self.config
    }

    pub(crate) fn clock_now(&self) -> u64 {
        self.now()
    }

    fn run_with_retries(
        &self,
        l: &Loaded,
        a: &Action,
        e: &rules::Evaluation,
        hops: u32,
        now: u64,
    ) -> ActionResult {
        let mut attempt = 0;
        loop {
            let r = self.run(l, a, e, hops, now);
            // Webhooks retry through the outbox; refusals of the input
            // (no device, bad value) would fail again.
            let retryable = !r.ok
                && !matches!(a, Action::Webhook { .. })
                && r.detail.get("retry").and_then(Value::as_bool) != Some(false);
            if !retryable || attempt >= self.config.action_retries {
                return r;
            }
            attempt += 1;
        }
    }

    fn run(
        &self,
        l: &Loaded,
        a: &Action,
        e: &rules::Evaluation,
        hops: u32,
        now: u64,
    ) -> ActionResult {
        let kind = a.kind();
        let no_retry = |msg: &str| ActionResult {
            kind,
            ok: false,
            detail: json!({"error": msg, "retry": false}),
        };
        let device = e.device_id.clone();
        match a {
            Action::Republish {
                topic,
                payload,
                qos,
                retain,
            } => {
                let topic = rules::render(topic, e);
                if topic.is_empty() || !mqtt_proto::topic::valid_topic_name(&topic) {
                    return no_retry(&format!("invalid topic {topic:?}"));
                }
                let body = payload
                    .as_ref()
                    .map(|p| rules::render_json(p, e))
                    .unwrap_or_else(|| Value::Object(e.outputs.clone()));
                let bytes = match &body {
                    Value::String(s) => s.clone().into_bytes(),
                    other => serde_json::to_vec(other).unwrap_or_default(),
                };
                self.handle.publish(StoredMessage {
                    topic: topic.clone().into(),
                    payload: Bytes::from(bytes),
                    qos: if *qos == 1 {
                        QoS::AtLeastOnce
                    } else {
                        QoS::AtMostOnce
                    },
                    retain: *retain,
                    payload_format_indicator: Some(true),
                    content_type: None,
                    response_topic: None,
                    correlation_data: None,
                    user_properties: vec![(HOP.into(), (hops + 1).to_string().into())],
                    expires_at: None,
                });
                ActionResult::ok(kind, json!({"topic": topic}))
            }
            Action::Store {
                metric,
                value,
                device: dev,
            } => {
                let Some(db) = &self.tsdb else {
                    return no_retry("no telemetry store");
                };
                let target = dev
                    .as_ref()
                    .map(|d| rules::render(d, e))
                    .or(device)
                    .unwrap_or_default();
                if target.is_empty() {
                    return no_retry("no device for the point");
                }
                let rendered = rules::render(value, e);
                let Ok(v) = rendered.trim().parse::<f64>() else {
                    return no_retry(&format!("value {rendered:?} is not a number"));
                };
                let point = tsdb::WritePoint {
                    series: Arc::new(tsdb::SeriesKey::new(NAMESPACE, &target, metric)),
                    ts: now as i64,
                    value: tsdb::Value::F64(v),
                };
                match db.write(&[point]) {
                    Ok(()) => ActionResult::ok(
                        kind,
                        json!({"device": target, "metric": metric, "value": v}),
                    ),
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::Twin { name, desired } => {
                let (Some(f), Some(d)) = (&self.fleet, device) else {
                    return no_retry("no device (or no twin service)");
                };
                match f.update_desired(&d, name, rules::render_json(desired, e), None) {
                    Ok(Ok(doc)) => {
                        ActionResult::ok(kind, json!({"device": d, "version": doc.get("version")}))
                    }
                    Ok(Err(err)) => no_retry(&err.to_string()),
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::Command {
                method,
                params,
                timeout_ms,
                ttl_ms,
            } => {
                let (Some(f), Some(d)) = (&self.fleet, device) else {
                    return no_retry("no device (or no command service)");
                };
                let new = twin::NewCommand {
                    method: method.clone(),
                    params: rules::render_json(params, e),
                    timeout_ms: *timeout_ms,
                    ttl_ms: *ttl_ms,
                };
                match f.create_command(&d, new, true, false) {
                    Ok((c, _)) => ActionResult::ok(kind, json!({"device": d, "command": c.id})),
                    Err(fleet::FleetError::Storage(s)) => ActionResult::failed(kind, s),
                    Err(err) => no_retry(&err.to_string()),
                }
            }
            Action::Webhook { url, body, headers } => {
                let body = self.webhook_body(body.as_ref(), &l.name, e);
                let bytes = serde_json::to_vec(&body).unwrap_or_default();
                match self.outbox.push(url, &bytes, headers.clone(), &l.name, now) {
                    Ok(id) => {
                        crate::webhook::notify(&self.wake);
                        ActionResult::ok(kind, json!({"queued": id, "url": url}))
                    }
                    Err(err) => {
                        self.outbox_full.fetch_add(1, Ordering::Relaxed);
                        ActionResult::failed(kind, err)
                    }
                }
            }
            Action::Alarm {
                alarm_type,
                severity,
                details,
                ..
            } => {
                let Some(d) = device else {
                    return no_retry("no device to raise the alarm on");
                };
                let details = details
                    .as_ref()
                    .map(|x| rules::render_json(x, e))
                    .unwrap_or_else(|| Value::Object(e.outputs.clone()));
                match self.alarms.raise(
                    NAMESPACE,
                    &d,
                    alarm_type,
                    *severity,
                    details,
                    Some(&l.name),
                    now,
                ) {
                    Ok(change) => {
                        let id = self.publish_change(&change);
                        ActionResult::ok(kind, json!({"device": d, "alarm": id}))
                    }
                    Err(err) => ActionResult::failed(kind, err),
                }
            }
            Action::ClearAlarm { alarm_type } => {
                let Some(d) = device else {
                    return no_retry("no device");
                };
                self.clear_alarm(l, &d, alarm_type, now)
            }
        }
    }

    fn clear_alarm(&self, l: &Loaded, device: &str, alarm_type: &str, now: u64) -> ActionResult {
        match self.alarms.clear_active(
            NAMESPACE,
            device,
            alarm_type,
            &format!("rule:{}", l.name),
            now,
        ) {
            Ok(Some(change)) => {
                let id = self.publish_change(&change);
                ActionResult::ok("clear_alarm", json!({"device": device, "alarm": id}))
            }
            Ok(None) => ActionResult::ok("clear_alarm", json!({"device": device, "alarm": null})),
            Err(err) => ActionResult::failed("clear_alarm", err),
        }
    }

    fn webhook_body(&self, body: Option<&Value>, rule: &str, e: &rules::Evaluation) -> Value {
        match body {
            Some(b) => rules::render_json(b, e),
            None => json!({
                "rule": rule,
                "device_id": e.device_id,
                "group": e.group,
                "outputs": Value::Object(e.outputs.clone()),
                "time": self.now(),
            }),
        }
    }

    // --------------------------------------------------------------- alarms

    /// Publishes an alarm change on `$events/alarms/{device}/{type}`;
    /// returns the alarm id.
    pub(crate) fn publish_change(&self, change: &alarms::Change) -> String {
        let (event, alarm) = match change {
            alarms::Change::Raised(a) => ("raised", a),
            alarms::Change::Updated(a) => ("updated", a),
            alarms::Change::Acknowledged(a) => ("acknowledged", a),
            alarms::Change::Cleared(a) => ("cleared", a),
            alarms::Change::Unchanged(a) => return a.id.clone(),
        };
        let doc = json!({"event": event, "alarm": alarm_json(alarm)});
        self.handle.publish(StoredMessage {
            topic: format!("$events/alarms/{}/{}", alarm.device_id, alarm.alarm_type).into(),
            payload: Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()),
            qos: QoS::AtLeastOnce,
            retain: false,
            payload_format_indicator: Some(true),
            content_type: Some("application/json".into()),
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            expires_at: None,
        });
        alarm.id.clone()
    }

    pub fn alarms(&self) -> &alarms::AlarmStore {
        &self.alarms
    }

    /// Acknowledges an alarm (by a user), publishing the change.
    pub fn acknowledge_alarm(&self, id: &str, by: &str) -> Result<alarms::Alarm, AutomationError> {
        let change = self.alarms.acknowledge(NAMESPACE, id, by, self.now())?;
        self.publish_change(&change);
        Ok(change_alarm(change))
    }

    /// Clears an alarm (by a user), publishing the change.
    pub fn clear_alarm_by(&self, id: &str, by: &str) -> Result<alarms::Alarm, AutomationError> {
        let change = self.alarms.clear(NAMESPACE, id, by, self.now())?;
        self.publish_change(&change);
        Ok(change_alarm(change))
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

/// The running workers.
pub struct Workers {
    queues: Arc<RuleQueues>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sender: Option<std::thread::JoinHandle<()>>,
    wake: Arc<(Mutex<bool>, Condvar)>,
}

impl Workers {
    /// Closes the queues, lets the workers finish what is queued, then
    /// stops the webhook sender.
    pub fn join(mut self) {
        self.queues.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        crate::webhook::stop(&self.wake);
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
    }
}

fn change_alarm(c: alarms::Change) -> alarms::Alarm {
    match c {
        alarms::Change::Raised(a)
        | alarms::Change::Updated(a)
        | alarms::Change::Acknowledged(a)
        | alarms::Change::Cleared(a)
        | alarms::Change::Unchanged(a) => a,
    }
}

/// The JSON form of an alarm (events and the API).
pub fn alarm_json(a: &alarms::Alarm) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id));
    m.insert("device_id".into(), json!(a.device_id));
    m.insert("type".into(), json!(a.alarm_type));
    m.insert("severity".into(), json!(a.severity.as_str()));
    m.insert("state".into(), json!(a.state.as_str()));
    m.insert("details".into(), a.details.clone());
    m.insert("count".into(), json!(a.count));
    m.insert("first_raised".into(), json!(a.first_raised_ms));
    m.insert("last_raised".into(), json!(a.last_raised_ms));
    m.insert("acknowledged_by".into(), json!(a.acknowledged_by));
    m.insert("acknowledged".into(), json!(a.acknowledged_ms));
    m.insert("cleared_by".into(), json!(a.cleared_by));
    m.insert("cleared".into(), json!(a.cleared_ms));
    m.insert("rule".into(), json!(a.rule));
    Value::Object(m)
}
