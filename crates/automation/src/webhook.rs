//! The webhook sender: takes due entries from the disk-backed outbox, POSTs
//! them, and records success or schedules a retry with back-off. A down
//! endpoint only grows the outbox (bounded); it never blocks the rules.
//! Where a call may go (and how) is the client's business: see `egress`.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::egress::{EgressPolicy, WebhookClient, WebhookError};
use crate::engine::Automation;

pub(crate) fn notify(wake: &(Mutex<bool>, Condvar)) {
    let (m, c) = wake;
    let _ = m.lock().map(|mut _g| ());
    c.notify_all();
}

/// Asks the sender to stop (sets the flag, wakes it).
pub(crate) fn stop(wake: &(Mutex<bool>, Condvar)) {
    let (m, c) = wake;
    if let Ok(mut g) = m.lock() {
        *g = true;
    }
    c.notify_all();
}

/// Starts the sender thread; fails if the webhook client cannot be built
/// (an unreadable `rules.webhook_ca_file`).
pub(crate) fn spawn_sender(a: Arc<Automation>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let c = a.config();
    let client = WebhookClient::new(
        Duration::from_millis(c.webhook_timeout_ms),
        EgressPolicy {
            allow_private: c.webhook_allow_private,
            allowed: c.webhook_allowed_cidrs.clone(),
        },
        c.webhook_ca_file.as_deref(),
    )
    .map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || {
            loop {
                let now = a.clock_now();
                let due = match a.outbox().due(now, 32) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the webhook outbox");
                        Vec::new()
                    }
                };
                for entry in &due {
                    let outcome = client.post(&entry.target, &entry.headers, &entry.body[..]);
                    let now = a.clock_now();
                    match outcome {
                        Ok(()) => {
                            if let Err(e) = a.outbox().done(entry.id) {
                                tracing::warn!(error = %e, "cannot remove a sent webhook");
                            }
                        }
                        Err(err) => {
                            // A refused destination or a redirect is the
                            // rule's configuration, not a passing outage:
                            // say so where operators look.
                            if matches!(
                                err,
                                WebhookError::Refused { .. } | WebhookError::Redirect { .. }
                            ) {
                                tracing::warn!(url = %entry.target, rule = %entry.rule, error = %err, "webhook not sent");
                            }
                            let why = err.to_string();
                            let c = a.config();
                            match a.outbox().failed(
                                entry.id,
                                &why,
                                now,
                                c.webhook_max_attempts,
                                c.webhook_max_age_ms,
                            ) {
                                Ok(retry) => tracing::debug!(url = %entry.target, error = %why, ?retry, "webhook failed"),
                                Err(e) => tracing::warn!(error = %e, "cannot record a webhook failure"),
                            }
                        }
                    }
                }
                // Sleep until the next entry is due (at most 1 s), or a
                // push or stop wakes us.
                let (m, c) = &**a.wake();
                let Ok(guard) = m.lock() else { return };
                if *guard {
                    return;
                }
                if due.len() == 32 {
                    continue;
                }
                let now = a.clock_now();
                let wait = a
                    .outbox()
                    .next_due_ms()
                    .ok()
                    .flatten()
                    .map(|t| t.saturating_sub(now))
                    .unwrap_or(1000)
                    .clamp(5, 1000);
                let Ok((guard, _)) = c.wait_timeout(guard, Duration::from_millis(wait)) else {
                    return;
                };
                if *guard {
                    return;
                }
            }
        })
}
