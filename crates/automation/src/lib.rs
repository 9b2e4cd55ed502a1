//! `automation`: the rules engine service.
//!
//! What it is: [`Automation`], which keeps rule definitions
//! (`rules.redb`), compiles them with the `rules` crate, evaluates every
//! message whose topic a rule's `FROM` filter matches (client publishes and
//! the platform's own, e.g. `$events/...` and twin documents, through the
//! broker's dynamic taps) on worker threads of its own, partitioned by
//! device (see [`RuleQueues`] and the pure core in `core.rs`), and carries
//! out the actions of matching rules: republish, store telemetry, desired twin
//! fields, device commands, webhooks (through a disk-backed outbox, sent by
//! a thread of its own with retries and back-off) and alarms (raise, update,
//! clear, auto-clear). Each rule has a bounded ring of recent evaluation
//! traces and counters. Alarm changes are published on
//! `$events/alarms/{device}/{type}`.
//!
//! What it is not: the rule language (that is `rules`), alarm storage (that
//! is `alarms`), HTTP (that is `api`). A failing rule or action is recorded
//! in its trace and never stops the others. It reads the time only from
//! the [`iot_types::Clock`] it is given.

mod actions;
mod core;
mod egress;
mod engine;
mod queues;
mod store;
mod webhook;

pub use crate::core::{partition_key, partition_of, Event};
pub use actions::{parse_actions, redact_headers, Action, ActionResult};
pub use egress::{is_internal, Cidr, CidrError, EgressPolicy, WebhookClient, WebhookError};
pub use engine::{alarm_json, Automation, AutomationConfig, RuleMetrics, RuleView, Trace, Workers};
pub use queues::{QueueFigures, RuleQueues};
#[cfg(any(test, feature = "conformance"))]
pub use store::conformance;
pub use store::{RedbRuleStore, RuleStorage};

/// The namespace (tenant) rules and alarms live in for now: the platform's
/// one default namespace.
pub const NAMESPACE: &str = iot_types::DEFAULT_NAMESPACE;

/// Why an automation operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AutomationError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The rule text does not parse: line and column.
    #[error("sql: line {line}, column {column}: {message}")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<alarms::AlarmError> for AutomationError {
    fn from(e: alarms::AlarmError) -> Self {
        let text = e.to_string();
        match e {
            alarms::AlarmError::NotFound { .. } => AutomationError::NotFound(text),
            alarms::AlarmError::Conflict(_) => AutomationError::Conflict(text),
            _ => AutomationError::Storage(text),
        }
    }
}
