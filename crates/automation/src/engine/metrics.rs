//! The rules engine's and the alarms' figures for `/metrics`: per rule
//! evaluations, matches, errors and failed actions; per worker queue depth,
//! taken, held and dropped messages; alarms by state and severity.

use std::sync::atomic::Ordering;

use super::Automation;
use crate::NAMESPACE;

impl metrics::Source for Automation {
    fn collect(&self, out: &mut metrics::Exposition) {
        let rules = self.snapshot();
        let per_rule = |name: &str,
                        help: &str,
                        read: fn(&crate::RuleMetrics) -> u64,
                        out: &mut metrics::Exposition| {
            out.counters(
                name,
                help,
                &["rule"],
                rules.iter().map(|r| ([r.name.as_str()], read(&r.metrics))),
            );
        };
        per_rule(
            "millwright_rule_evaluations_total",
            "Messages a rule was evaluated against.",
            |m| m.evaluations.load(Ordering::Relaxed),
            out,
        );
        per_rule(
            "millwright_rule_matches_total",
            "Evaluations whose condition held (actions ran).",
            |m| m.matches.load(Ordering::Relaxed),
            out,
        );
        per_rule(
            "millwright_rule_errors_total",
            "Evaluations that failed (a bad payload, a type error).",
            |m| m.errors.load(Ordering::Relaxed),
            out,
        );
        per_rule(
            "millwright_rule_action_failures_total",
            "Actions of a rule that failed.",
            |m| m.action_failures.load(Ordering::Relaxed),
            out,
        );
        let queues = self.queues();
        let workers: Vec<String> = (0..queues.len()).map(|i| i.to_string()).collect();
        let per_worker = |f: fn(&crate::QueueFigures) -> u64| {
            workers
                .iter()
                .zip(&queues)
                .map(move |(w, q)| ([w.as_str()], f(q)))
        };
        out.gauges(
            "millwright_rules_queue_messages",
            "Messages waiting in a rules worker's queue.",
            &["worker"],
            per_worker(|q| q.queued as u64).map(|(w, v)| (w, v as f64)),
        );
        out.counters(
            "millwright_rules_queue_taken_total",
            "Messages a rules worker took for evaluation.",
            &["worker"],
            per_worker(|q| q.taken),
        );
        out.counters(
            "millwright_rules_queue_held_total",
            "Messages queued past the bound for rules that must see every message (publishers waited).",
            &["worker"],
            per_worker(|q| q.held),
        );
        out.counters(
            "millwright_rules_queue_dropped_total",
            "Messages dropped at the bound (read only by rules that may be sampled).",
            &["worker"],
            per_worker(|q| q.dropped),
        );
        out.counter(
            "millwright_webhook_outbox_full_total",
            "Webhook calls refused because the outbox was full.",
            self.outbox_full.load(Ordering::Relaxed),
        );
        match self.alarms.counts(NAMESPACE) {
            Ok(counts) => {
                let mut samples = Vec::new();
                for state in alarms::AlarmState::ALL {
                    for severity in alarms::Severity::ALL {
                        samples.push((
                            [state.as_str(), severity.as_str()],
                            counts.get(state, severity) as f64,
                        ));
                    }
                }
                out.gauges(
                    "millwright_alarms",
                    "Alarms by state and severity.",
                    &["state", "severity"],
                    samples,
                );
            }
            Err(e) => tracing::warn!(error = %e, "alarm counts unavailable for /metrics"),
        }
    }
}
