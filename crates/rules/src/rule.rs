//! A compiled rule and its evaluation entry points.

use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use crate::ast::{Expr, Item, SlotSpec};
use crate::error::ParseError;
use crate::eval::Env;
use crate::message::{Context, Message, ParsedMessage};
use crate::parser;
use crate::slot::SlotState;
use crate::state::{Group, RuleState};
use crate::topic;
use crate::value::Val;

/// A compiled rule: parsed and validated, ready to evaluate. Immutable;
/// its per-group state lives in a [`RuleState`] the host owns.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    filter: String,
    items: Vec<Item>,
    where_: Option<Expr>,
    slots: Vec<SlotSpec>,
    /// Fingerprint of the stateful expressions (see [`RuleState`]).
    layout: u64,
}

/// Compiles a rule, or says where and why it is malformed.
pub fn compile(text: &str) -> Result<Rule, ParseError> {
    let parsed = parser::parse(text)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for slot in &parsed.slots {
        slot.kind.hash(&mut hasher);
        text[slot.arg.span.start..slot.arg.span.end].hash(&mut hasher);
    }
    let layout = if parsed.slots.is_empty() {
        0
    } else {
        hasher.finish() | 1
    };
    Ok(Rule {
        source: text.to_string(),
        filter: parsed.filter,
        items: parsed.items,
        where_: parsed.where_,
        slots: parsed.slots,
        layout,
    })
}

/// The result of evaluating a rule on one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Whether the WHERE condition held (true when there is none). Only
    /// `true` matches: null, false and non-booleans do not.
    pub matched: bool,
    /// The state's group key: the device id, or the topic when the topic
    /// is not `devices/{id}/...`.
    pub group: String,
    pub device_id: Option<String>,
    pub topic: String,
    /// The message time (`timestamp()`).
    pub time_ms: u64,
    /// The SELECT results when matched (empty when not), named by `AS` or
    /// by the expression's text; `*` contributes the payload object's
    /// fields (a non-object payload appears as `"payload"`), and later
    /// items override earlier ones of the same name.
    pub outputs: Map<String, Value>,
    /// The first runtime error met (`line 1, column 30: division by
    /// zero`). The expression that failed yielded null and evaluation went
    /// on, so `matched` and `outputs` are still meaningful.
    pub error: Option<String>,
}

impl Rule {
    /// The rule's text as compiled.
    pub fn text(&self) -> &str {
        &self.source
    }

    /// The FROM topic filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Whether a message on `topic` is evaluated by this rule (MQTT filter
    /// matching; `$` topics only match filters that spell the `$` level).
    pub fn matches_topic(&self, topic: &str) -> bool {
        topic::matches(&self.filter, topic)
    }

    /// Whether the rule keeps state between messages (windows, `FOR`,
    /// change detection, `zscore`).
    pub fn is_stateful(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The output names of the SELECT list, in order (`*` for a star).
    pub fn output_names(&self) -> Vec<&str> {
        self.items
            .iter()
            .map(|i| match i {
                Item::Star => "*",
                Item::Expr { name, .. } => name.as_str(),
            })
            .collect()
    }

    /// Evaluates one message (whose topic is known to match), updating
    /// `state`. Never panics: runtime errors yield null and are recorded
    /// in [`Evaluation::error`].
    pub fn evaluate(&self, msg: &Message, state: &mut RuleState, ctx: &dyn Context) -> Evaluation {
        self.evaluate_parsed(&ParsedMessage::new(*msg), state, ctx)
    }

    /// [`Rule::evaluate`] on a message whose payload many rules share
    /// (parsed once, on first use).
    pub fn evaluate_parsed(
        &self,
        msg: &ParsedMessage,
        state: &mut RuleState,
        ctx: &dyn Context,
    ) -> Evaluation {
        if self.slots.is_empty() {
            return self.run(msg, None, 0, ctx);
        }
        let max_samples = state.limits().max_samples_per_window;
        let key = group_key(msg);
        let group = state.group_mut(self.layout, key, || self.fresh_slots());
        self.run(msg, group, max_samples, ctx)
    }

    /// Evaluates a sample message as [`Rule::evaluate`] would, against a
    /// scratch copy of its group's state: `state` is not changed.
    pub fn dry_run(&self, msg: &Message, state: &RuleState, ctx: &dyn Context) -> Evaluation {
        let parsed = ParsedMessage::new(*msg);
        if self.slots.is_empty() {
            return self.run(&parsed, None, 0, ctx);
        }
        let mut scratch = state
            .group(self.layout, group_key(&parsed))
            .cloned()
            .unwrap_or_else(|| Group::new(self.fresh_slots()));
        let max_samples = state.limits().max_samples_per_window;
        self.run(&parsed, Some(&mut scratch), max_samples, ctx)
    }

    fn fresh_slots(&self) -> Vec<SlotState> {
        self.slots.iter().map(|s| SlotState::new(&s.kind)).collect()
    }

    fn run(
        &self,
        parsed: &ParsedMessage,
        group: Option<&mut Group>,
        max_samples: usize,
        ctx: &dyn Context,
    ) -> Evaluation {
        let msg = parsed.message();
        let mut env = Env::new(parsed, ctx, &self.source);
        if let Some(group) = group {
            // Every stateful expression sees every message, in post-order
            // (inner ones first), whatever WHERE or short-circuits decide.
            let now = msg.time_ms.max(group.clock);
            group.clock = now;
            for (i, spec) in self.slots.iter().enumerate() {
                let arg = env.eval(&spec.arg);
                let value = match group.slots.get_mut(i) {
                    Some(slot) => slot.update(&spec.kind, now, &arg, max_samples),
                    None => Val::Null,
                };
                drop(arg);
                env.push_slot(value);
            }
        }
        let matched = self.where_.as_ref().is_none_or(|w| env.eval(w).is_true());
        let mut outputs = Map::new();
        if matched {
            for item in &self.items {
                match item {
                    Item::Star => star(parsed, &mut outputs),
                    Item::Expr { expr, name } => {
                        let v = env.eval(expr).into_json();
                        outputs.insert(name.clone(), v);
                    }
                }
            }
        }
        let device_id = parsed.device_id();
        Evaluation {
            matched,
            group: group_key(parsed).to_string(),
            device_id: device_id.map(str::to_string),
            topic: msg.topic.to_string(),
            time_ms: msg.time_ms,
            outputs,
            error: env.into_error(),
        }
    }
}

fn group_key<'a>(msg: &ParsedMessage<'a>) -> &'a str {
    msg.device_id().unwrap_or(msg.message().topic)
}

/// `SELECT *`: the payload object's fields, or the payload as `"payload"`.
fn star(parsed: &ParsedMessage, outputs: &mut Map<String, Value>) {
    match parsed.json() {
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                outputs.insert(k.clone(), v.clone());
            }
        }
        Some(other) => {
            outputs.insert("payload".to_string(), other.clone());
        }
        None => {
            let raw = String::from_utf8_lossy(parsed.message().payload).into_owned();
            outputs.insert("payload".to_string(), Value::String(raw));
        }
    }
}
