//! Commands: a method call sent to one device, and its state machine.
//!
//! | from | call | to |
//! |---|---|---|
//! | Queued | `mark_sent` | Sent |
//! | Sent | `mark_delivered` | Delivered |
//! | Sent, Delivered | `respond` | Succeeded (status 0) or Failed |
//! | Queued, Sent, Delivered | `cancel` | Cancelled |
//! | Queued | `check_time` at or past `expires_at_ms` | Expired |
//! | Sent, Delivered | `check_time` at or past sent time + `timeout_ms` | TimedOut |
//!
//! Any other call is refused with a [`TransitionError`] and changes
//! nothing. Each transition appends `(status, now_ms)` to the trail, so a
//! trail has at most four entries. Succeeded, Failed, TimedOut, Expired
//! and Cancelled are final.

use std::fmt;

use serde_json::{json, Value};

use crate::error::TwinError;

/// Longest method name, in characters.
pub const MAX_METHOD_CHARS: usize = 128;
/// Largest `params`, serialised as JSON.
pub const MAX_PARAMS_BYTES: usize = 16 * 1024;
/// Largest response kept whole; a larger one is kept as its `status` only.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Longest response timeout (7 days).
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// Longest time to live of a queued command (30 days).
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandStatus {
    /// Created, waiting for the device.
    Queued,
    /// Published to the device.
    Sent,
    /// The device acknowledged the message (QoS 1 PUBACK).
    Delivered,
    /// The device answered with status 0.
    Succeeded,
    /// The device answered with another status, or an unreadable answer.
    Failed,
    /// No answer within `timeout_ms` of being sent.
    TimedOut,
    /// Not sent before `expires_at_ms`.
    Expired,
    /// Cancelled by an operator.
    Cancelled,
}

impl CommandStatus {
    /// Every status, in life order.
    pub const ALL: [CommandStatus; 8] = [
        CommandStatus::Queued,
        CommandStatus::Sent,
        CommandStatus::Delivered,
        CommandStatus::Succeeded,
        CommandStatus::Failed,
        CommandStatus::TimedOut,
        CommandStatus::Expired,
        CommandStatus::Cancelled,
    ];

    /// The lowercase name (`"timed_out"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Queued => "queued",
            CommandStatus::Sent => "sent",
            CommandStatus::Delivered => "delivered",
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
            CommandStatus::TimedOut => "timed_out",
            CommandStatus::Expired => "expired",
            CommandStatus::Cancelled => "cancelled",
        }
    }

    /// The status named by [`CommandStatus::as_str`].
    pub fn parse(s: &str) -> Option<CommandStatus> {
        CommandStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether nothing can happen to the command any more.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            CommandStatus::Queued | CommandStatus::Sent | CommandStatus::Delivered
        )
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command as an operator asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    /// 1..=128 characters, no control characters.
    pub method: String,
    /// A JSON object or `null`, at most 16 KiB serialised.
    pub params: Value,
    /// How long the device has to answer once the command is sent:
    /// 1 ms ..= 7 days.
    pub timeout_ms: u64,
    /// How long the command may wait to be sent (1 ms ..= 30 days); `None`
    /// waits until the device connects or the command is cancelled.
    pub ttl_ms: Option<u64>,
}

impl NewCommand {
    /// Checks the rules documented on the fields.
    pub fn validate(&self) -> Result<(), TwinError> {
        let chars = self.method.chars().count();
        if chars == 0 || chars > MAX_METHOD_CHARS {
            return Err(TwinError::invalid(
                "method",
                format!("must have 1 to {MAX_METHOD_CHARS} characters"),
            ));
        }
        if self.method.chars().any(char::is_control) {
            return Err(TwinError::invalid(
                "method",
                "control characters not allowed",
            ));
        }
        if !(self.params.is_object() || self.params.is_null()) {
            return Err(TwinError::invalid(
                "params",
                "must be a JSON object or null",
            ));
        }
        let bytes = serde_json::to_vec(&self.params).map_or(usize::MAX, |b| b.len());
        if bytes > MAX_PARAMS_BYTES {
            return Err(TwinError::invalid(
                "params",
                format!("{bytes} bytes, more than the limit of {MAX_PARAMS_BYTES}"),
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(TwinError::invalid(
                "timeout_ms",
                format!("must be 1 to {MAX_TIMEOUT_MS}"),
            ));
        }
        if let Some(ttl) = self.ttl_ms {
            if !(1..=MAX_TTL_MS).contains(&ttl) {
                return Err(TwinError::invalid(
                    "ttl_ms",
                    format!("must be 1 to {MAX_TTL_MS}"),
                ));
            }
        }
        Ok(())
    }
}

/// One command and its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub namespace: String,
    pub device_id: String,
    /// Unique in the store: `c` and 16 lowercase hex digits of `seq`
    /// (`c000000000000002a`); a valid MQTT topic level.
    pub id: String,
    /// Store-wide creation order (increasing, never reused): orders a
    /// device's commands, with gaps.
    pub seq: u64,
    pub method: String,
    pub params: Value,
    pub status: CommandStatus,
    /// Every status the command has had, with when: starts with
    /// `(Queued, created_at_ms)`.
    pub trail: Vec<(CommandStatus, u64)>,
    pub created_at_ms: u64,
    /// How long the device has to answer once sent.
    pub timeout_ms: u64,
    /// If still queued at this time, the command expires.
    pub expires_at_ms: Option<u64>,
    /// The device's answer (`{"status": n, "result": ...}`) as it sent it.
    pub response: Option<Value>,
    /// Why the command failed or what was dropped, for people.
    pub error: Option<String>,
}

/// A transition the command's status does not allow; 409 in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a command that is {status}")]
pub struct TransitionError {
    /// The command's status when the transition was asked for.
    pub status: CommandStatus,
    /// What was asked: `"send"`, `"mark as delivered"`, `"respond to"`,
    /// `"cancel"`.
    pub action: &'static str,
}

/// The id of the command with sequence number `seq`.
pub fn command_id(seq: u64) -> String {
    kv::seq_id('c', seq)
}

/// The sequence number in a command id, if it is one.
pub(crate) fn parse_command_id(id: &str) -> Option<u64> {
    kv::parse_seq_id('c', id)
}

impl Command {
    /// A queued command (`new` already validated).
    pub(crate) fn queued(
        namespace: &str,
        device_id: &str,
        seq: u64,
        new: NewCommand,
        now_ms: u64,
    ) -> Command {
        Command {
            namespace: namespace.to_string(),
            device_id: device_id.to_string(),
            id: command_id(seq),
            seq,
            method: new.method,
            params: new.params,
            status: CommandStatus::Queued,
            trail: vec![(CommandStatus::Queued, now_ms)],
            created_at_ms: now_ms,
            timeout_ms: new.timeout_ms,
            expires_at_ms: new.ttl_ms.map(|t| now_ms.saturating_add(t)),
            response: None,
            error: None,
        }
    }

    /// The message published to the device:
    /// `{"method": ..., "params": ...}`.
    pub fn message(&self) -> Value {
        json!({ "method": self.method, "params": self.params })
    }

    /// When the command was sent, if it was.
    pub fn sent_at_ms(&self) -> Option<u64> {
        self.trail
            .iter()
            .find(|(s, _)| *s == CommandStatus::Sent)
            .map(|&(_, t)| t)
    }

    /// When a final status was reached, if one was.
    pub fn finished_at_ms(&self) -> Option<u64> {
        match self.trail.last() {
            Some(&(s, t)) if s.is_final() => Some(t),
            _ => None,
        }
    }

    /// When [`Command::check_time`] will change the command: `expires_at_ms`
    /// while queued, sent time + `timeout_ms` while sent or delivered;
    /// `None` otherwise.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self.status {
            CommandStatus::Queued => self.expires_at_ms,
            CommandStatus::Sent | CommandStatus::Delivered => {
                self.sent_at_ms().map(|t| t.saturating_add(self.timeout_ms))
            }
            _ => None,
        }
    }

    fn go(&mut self, to: CommandStatus, now_ms: u64) {
        self.status = to;
        self.trail.push((to, now_ms));
    }

    fn refuse(&self, action: &'static str) -> TransitionError {
        TransitionError {
            status: self.status,
            action,
        }
    }

    /// Queued → Sent; the response timeout starts now.
    pub fn mark_sent(&mut self, now_ms: u64) -> Result<(), TransitionError> {
        if self.status != CommandStatus::Queued {
            return Err(self.refuse("send"));
        }
        self.go(CommandStatus::Sent, now_ms);
        Ok(())
    }

    /// Sent → Delivered (the device acknowledged the message).
    pub fn mark_delivered(&mut self, now_ms: u64) -> Result<(), TransitionError> {
        if self.status != CommandStatus::Sent {
            return Err(self.refuse("mark as delivered"));
        }
        self.go(CommandStatus::Delivered, now_ms);
        Ok(())
    }

    /// Sent or Delivered → Succeeded (`"status": 0`) or Failed (any other
    /// number, or no numeric status). `error` says why it failed. A response
    /// larger than [`MAX_RESPONSE_BYTES`] is kept as `{"status": ...}` only,
    /// and `error` says so.
    pub fn respond(&mut self, response: &Value, now_ms: u64) -> Result<(), TransitionError> {
        if !matches!(self.status, CommandStatus::Sent | CommandStatus::Delivered) {
            return Err(self.refuse("respond to"));
        }
        let status = response.get("status").filter(|s| s.is_number());
        let (to, mut error) = match status.and_then(Value::as_f64) {
            Some(0.0) => (CommandStatus::Succeeded, None),
            Some(_) => (
                CommandStatus::Failed,
                Some(format!(
                    "the device answered with status {}",
                    status.unwrap_or(&Value::Null)
                )),
            ),
            None => (
                CommandStatus::Failed,
                Some("the response has no numeric \"status\"".to_string()),
            ),
        };
        let bytes = serde_json::to_vec(response).map_or(usize::MAX, |b| b.len());
        self.response = if bytes > MAX_RESPONSE_BYTES {
            let dropped =
                format!("the response of {bytes} bytes was dropped (limit {MAX_RESPONSE_BYTES})");
            error = Some(match error {
                Some(e) => format!("{e}; {dropped}"),
                None => dropped,
            });
            Some(json!({ "status": status }))
        } else {
            Some(response.clone())
        };
        self.error = error;
        self.go(to, now_ms);
        Ok(())
    }

    /// Queued, Sent or Delivered → Cancelled.
    pub fn cancel(&mut self, now_ms: u64) -> Result<(), TransitionError> {
        if self.status.is_final() {
            return Err(self.refuse("cancel"));
        }
        self.go(CommandStatus::Cancelled, now_ms);
        Ok(())
    }

    /// Applies the clock: Queued past `expires_at_ms` → Expired, Sent or
    /// Delivered past sent time + `timeout_ms` → TimedOut (a deadline equal
    /// to `now_ms` has passed). Returns whether the status changed.
    pub fn check_time(&mut self, now_ms: u64) -> bool {
        let Some(deadline) = self.deadline_ms() else {
            return false;
        };
        if deadline > now_ms {
            return false;
        }
        let to = if self.status == CommandStatus::Queued {
            CommandStatus::Expired
        } else {
            CommandStatus::TimedOut
        };
        self.go(to, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(ttl_ms: Option<u64>) -> Command {
        let new = NewCommand {
            method: "reboot".into(),
            params: json!({"delay": 5}),
            timeout_ms: 1_000,
            ttl_ms,
        };
        new.validate().unwrap();
        Command::queued("ns", "d1", 42, new, 100)
    }

    fn statuses(c: &Command) -> Vec<CommandStatus> {
        c.trail.iter().map(|&(s, _)| s).collect()
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(command_id(42), "c000000000000002a");
        assert_eq!(parse_command_id("c000000000000002a"), Some(42));
        assert_eq!(parse_command_id(&command_id(u64::MAX)), Some(u64::MAX));
        for bad in [
            "",
            "c",
            "c2a",
            "x000000000000002a",
            "c000000000000002A",
            "c+00000000000002a",
        ] {
            assert_eq!(parse_command_id(bad), None, "{bad}");
        }
        assert!(cmd(None).message() == json!({"method": "reboot", "params": {"delay": 5}}));
    }

    #[test]
    fn statuses_round_trip() {
        for s in CommandStatus::ALL {
            assert_eq!(CommandStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CommandStatus::TimedOut.to_string(), "timed_out");
        assert_eq!(CommandStatus::parse("nope"), None);
        let finals: Vec<_> = CommandStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals.len(), 5);
    }

    #[test]
    fn success_path() {
        let mut c = cmd(None);
        c.mark_sent(200).unwrap();
        c.mark_delivered(210).unwrap();
        c.respond(&json!({"status": 0, "result": {"ok": true}}), 300)
            .unwrap();
        assert_eq!(c.status, CommandStatus::Succeeded);
        assert_eq!(
            c.trail,
            vec![
                (CommandStatus::Queued, 100),
                (CommandStatus::Sent, 200),
                (CommandStatus::Delivered, 210),
                (CommandStatus::Succeeded, 300)
            ]
        );
        assert_eq!(c.response.as_ref().unwrap()["result"]["ok"], json!(true));
        assert_eq!(c.error, None);
        assert_eq!(c.finished_at_ms(), Some(300));
        assert_eq!(c.deadline_ms(), None);
    }

    #[test]
    fn responses_from_sent_and_failures() {
        let mut c = cmd(None);
        c.mark_sent(200).unwrap();
        c.respond(&json!({"status": 0.0}), 250).unwrap();
        assert_eq!(c.status, CommandStatus::Succeeded);

        let mut c = cmd(None);
        c.mark_sent(200).unwrap();
        c.respond(&json!({"status": 3, "result": "no disk"}), 250)
            .unwrap();
        assert_eq!(c.status, CommandStatus::Failed);
        assert!(c.error.as_deref().unwrap().contains("status 3"));

        for bad in [json!({"status": "0"}), json!({}), json!("ok"), json!(null)] {
            let mut c = cmd(None);
            c.mark_sent(200).unwrap();
            c.mark_delivered(201).unwrap();
            c.respond(&bad, 250).unwrap();
            assert_eq!(c.status, CommandStatus::Failed, "{bad}");
            assert!(c.error.as_deref().unwrap().contains("no numeric"));
            assert_eq!(c.response, Some(bad));
        }

        let mut c = cmd(None);
        c.mark_sent(200).unwrap();
        let big = json!({"status": 0, "result": "x".repeat(MAX_RESPONSE_BYTES)});
        c.respond(&big, 250).unwrap();
        assert_eq!(c.status, CommandStatus::Succeeded);
        assert_eq!(c.response, Some(json!({"status": 0})));
        assert!(c.error.as_deref().unwrap().contains("dropped"));
    }

    #[test]
    fn cancel_from_every_open_status() {
        for steps in 0..3 {
            let mut c = cmd(None);
            if steps >= 1 {
                c.mark_sent(200).unwrap();
            }
            if steps >= 2 {
                c.mark_delivered(201).unwrap();
            }
            c.cancel(300).unwrap();
            assert_eq!(c.status, CommandStatus::Cancelled);
            assert_eq!(c.trail.len(), steps + 2);
            assert_eq!(c.finished_at_ms(), Some(300));
        }
    }

    #[test]
    fn illegal_transitions_are_refused_and_change_nothing() {
        let mut queued = cmd(None);
        let before = queued.clone();
        let e = queued.mark_delivered(1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot mark as delivered a command that is queued"
        );
        assert!(queued.respond(&json!({"status": 0}), 1).is_err());
        assert_eq!(queued, before);

        let mut sent = cmd(None);
        sent.mark_sent(200).unwrap();
        assert!(sent.mark_sent(201).is_err());

        let mut delivered = sent.clone();
        delivered.mark_delivered(202).unwrap();
        assert!(delivered.mark_sent(203).is_err());
        assert!(delivered.mark_delivered(203).is_err());

        let mut done = delivered.clone();
        done.respond(&json!({"status": 0}), 204).unwrap();
        let mut cancelled = cmd(None);
        cancelled.cancel(5).unwrap();
        let mut expired = cmd(Some(10));
        assert!(expired.check_time(110));
        let mut timed_out = sent.clone();
        assert!(timed_out.check_time(1_200));
        for mut c in [done, cancelled, expired, timed_out] {
            let before = c.clone();
            assert!(c.mark_sent(9_999).is_err());
            assert!(c.mark_delivered(9_999).is_err());
            assert!(c.respond(&json!({"status": 0}), 9_999).is_err());
            let e = c.cancel(9_999).unwrap_err();
            assert_eq!(e.action, "cancel");
            assert!(!c.check_time(u64::MAX));
            assert_eq!(c, before);
        }
    }

    #[test]
    fn time_checks_with_a_virtual_clock() {
        // Queued with a ttl: expires at created + ttl, inclusive.
        let mut c = cmd(Some(50));
        assert_eq!(c.deadline_ms(), Some(150));
        assert!(!c.check_time(149));
        assert!(c.check_time(150));
        assert_eq!(c.status, CommandStatus::Expired);
        assert_eq!(
            statuses(&c),
            [CommandStatus::Queued, CommandStatus::Expired]
        );

        // Queued without a ttl never expires.
        let mut c = cmd(None);
        assert!(!c.check_time(u64::MAX));

        // Sent: the ttl no longer applies, the timeout does (from sending).
        let mut c = cmd(Some(50));
        c.mark_sent(140).unwrap();
        assert_eq!(c.deadline_ms(), Some(1_140));
        assert!(!c.check_time(1_000));
        c.mark_delivered(150).unwrap();
        assert_eq!(c.deadline_ms(), Some(1_140));
        assert!(!c.check_time(1_139));
        assert!(c.check_time(1_140));
        assert_eq!(c.status, CommandStatus::TimedOut);
        assert_eq!(
            statuses(&c),
            [
                CommandStatus::Queued,
                CommandStatus::Sent,
                CommandStatus::Delivered,
                CommandStatus::TimedOut
            ]
        );
    }

    #[test]
    fn new_command_rules() {
        let ok = NewCommand {
            method: "set".into(),
            params: Value::Null,
            timeout_ms: 1,
            ttl_ms: Some(MAX_TTL_MS),
        };
        ok.validate().unwrap();
        let bad = [
            NewCommand {
                method: String::new(),
                ..ok.clone()
            },
            NewCommand {
                method: "x".repeat(129),
                ..ok.clone()
            },
            NewCommand {
                method: "a\nb".into(),
                ..ok.clone()
            },
            NewCommand {
                params: json!([1]),
                ..ok.clone()
            },
            NewCommand {
                params: json!({"x": "y".repeat(MAX_PARAMS_BYTES)}),
                ..ok.clone()
            },
            NewCommand {
                timeout_ms: 0,
                ..ok.clone()
            },
            NewCommand {
                timeout_ms: MAX_TIMEOUT_MS + 1,
                ..ok.clone()
            },
            NewCommand {
                ttl_ms: Some(0),
                ..ok.clone()
            },
        ];
        for b in bad {
            assert!(
                matches!(b.validate(), Err(TwinError::Invalid { .. })),
                "{b:?}"
            );
        }
        assert!(NewCommand {
            method: "é".repeat(128),
            ..ok
        }
        .validate()
        .is_ok());
    }
}
