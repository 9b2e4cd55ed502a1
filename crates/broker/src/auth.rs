//! Interim access control: a mosquitto-compatible password file and ACL
//! file. (The device registry replaces this for devices later; plain-broker
//! users keep it.) Parsing takes the files' text, not paths: no I/O here.
//!
//! Password file lines are `user:hash`, with hashes in `mosquitto_passwd`
//! format: `$7$<iterations>$<salt b64>$<hash b64>` (PBKDF2-SHA512) or
//! `$6$<salt b64>$<hash b64>` (salted SHA-512).
//!
//! ACL file lines (as mosquitto's `acl_file`): `user <name>` starts a
//! section for that user; `topic [read|write|readwrite|deny] <filter>` adds a
//! rule for the current section (before any `user` line: for every client);
//! `pattern [read|write|readwrite|deny] <filter>` adds a rule for every
//! client with `%c` (client id) and `%u` (username) substituted. Access is
//! granted when some rule grants it and no matching `deny` rule exists.

pub use iot_types::device_topics::in_device_tree;
use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha512};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Subscribe / receive.
    Read,
    /// Publish.
    Write,
}

/// A problem in a password or ACL file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("password file line {line}: {reason}")]
    Password { line: usize, reason: String },
    #[error("ACL file line {line}: {reason}")]
    Acl { line: usize, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PasswordHash {
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
    pattern: bool,
}

/// Authentication and authorization for the plain broker.
#[derive(Debug, Clone, Default)]
pub struct AccessControl {
    pub allow_anonymous: bool,
    passwords: Option<HashMap<String, PasswordHash>>,
    /// `None` = no ACL file: every authenticated client may do anything.
    acl: Option<AclRules>,
}

#[derive(Debug, Clone, Default)]
struct AclRules {
    general: Vec<Rule>,
    per_user: HashMap<String, Vec<Rule>>,
}

impl AccessControl {
    /// Anonymous access allowed or not, no files.
    pub fn new(allow_anonymous: bool) -> AccessControl {
        AccessControl {
            allow_anonymous,
            passwords: None,
            acl: None,
        }
    }

    /// Loads a password file's text.
    pub fn with_password_file(mut self, text: &str) -> Result<Self, AclError> {
        let mut map = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| AclError::Password {
                line: i + 1,
                reason: reason.to_string(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected user:hash"))?;
            map.insert(user.to_string(), parse_hash(hash).map_err(err)?);
        }
        self.passwords = Some(map);
        Ok(self)
    }

    /// Loads an ACL file's text.
    pub fn with_acl_file(mut self, text: &str) -> Result<Self, AclError> {
        let mut rules = AclRules::default();
        let mut current: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| AclError::Acl {
                line: i + 1,
                reason: reason.to_string(),
            };
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("expected a keyword and a value"))?;
            let rest = rest.trim();
            match keyword {
                "user" => current = Some(rest.to_string()),
                "topic" | "pattern" => {
                    let (access, filter) = match rest.split_once(char::is_whitespace) {
                        Some((a @ ("read" | "write" | "readwrite" | "deny"), f)) => (a, f.trim()),
                        _ => ("readwrite", rest),
                    };
                    let access = match access {
                        "read" => Access::Read,
                        "write" => Access::Write,
                        "deny" => Access::Deny,
                        _ => Access::ReadWrite,
                    };
                    if filter.is_empty() {
                        return Err(err("missing topic filter"));
                    }
                    let rule = Rule {
                        access,
                        filter: filter.to_string(),
                        pattern: keyword == "pattern",
                    };
                    match (&current, rule.pattern) {
                        (Some(user), false) => {
                            rules.per_user.entry(user.clone()).or_default().push(rule)
                        }
                        _ => rules.general.push(rule),
                    }
                }
                other => return Err(err(&format!("unknown keyword {other:?}"))),
            }
        }
        self.acl = Some(rules);
        Ok(self)
    }

    /// Checks CONNECT credentials. `Ok(())` when the client may connect.
    pub fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), AuthFailure> {
        match (username, &self.passwords) {
            (None, _) if self.allow_anonymous => Ok(()),
            (None, _) => Err(AuthFailure::NotAuthorized),
            (Some(_), None) if self.allow_anonymous => Ok(()),
            (Some(_), None) => Err(AuthFailure::BadCredentials),
            (Some(user), Some(map)) => {
                let Some(hash) = map.get(user) else {
                    return Err(AuthFailure::BadCredentials);
                };
                let Some(password) = password else {
                    return Err(AuthFailure::BadCredentials);
                };
                if verify(hash, password) {
                    Ok(())
                } else {
                    Err(AuthFailure::BadCredentials)
                }
            }
        }
    }

    /// Whether an ACL file is in force (then deliveries are checked per
    /// message too, so `deny` rules hold under wildcard subscriptions).
    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// Whether a client may read or write `topic` (a name, or for
    /// subscriptions a filter, compared literally against rule filters that
    /// match it).
    pub fn allowed(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        action: Action,
    ) -> bool {
        if in_device_tree(topic) {
            // `devices/{id}/...` belongs to the devices: a client that is
            // not the device needs a rule that names the tree explicitly
            // (`topic read devices/+/telemetry`); `#` grants nothing here.
            return self.check(username, client_id, topic, action, true);
        }
        if self.acl.is_none() {
            return true;
        }
        self.check(username, client_id, topic, action, false)
    }

    fn check(
        &self,
        username: Option<&str>,
        client_id: &str,
        topic: &str,
        action: Action,
        device_tree: bool,
    ) -> bool {
        let Some(acl) = &self.acl else { return false };
        let user_rules = username
            .and_then(|u| acl.per_user.get(u))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut granted = false;
        for rule in acl.general.iter().chain(user_rules) {
            if device_tree && !in_device_tree(&rule.filter) && rule.access != Access::Deny {
                continue;
            }
            let filter = if rule.pattern {
                if username.is_none() && rule.filter.contains("%u") {
                    continue;
                }
                // A client id or username with wildcards must not widen a
                // pattern (`devices/%c/#` for client `+`): such a pattern
                // grants nothing (a `deny` pattern still applies).
                let wild = |s: &str| s.contains(['+', '#']);
                let widens = (rule.filter.contains("%c") && wild(client_id))
                    || (rule.filter.contains("%u") && username.is_some_and(wild));
                if widens && rule.access != Access::Deny {
                    continue;
                }
                rule.filter
                    .replace("%c", client_id)
                    .replace("%u", username.unwrap_or(""))
            } else {
                rule.filter.clone()
            };
            if !filter_covers(&filter, topic) {
                continue;
            }
            match (rule.access, action) {
                (Access::Deny, _) => return false,
                (Access::ReadWrite, _)
                | (Access::Read, Action::Read)
                | (Access::Write, Action::Write) => granted = true,
                _ => {}
            }
        }
        granted
    }
}

/// What a client authenticated outside the core (by the device registry,
/// a client certificate or a claim credential) may do. Computed by the
/// network layer's authenticator and handed over with the CONNECT; the
/// core then skips its own password check and applies these rules instead
/// of the ACL file. Rules are concrete filters (templates already filled
/// in); access is granted when some rule grants it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// Who: a device id, or `claim:<id>` for a provisioning credential.
    pub principal: String,
    pub rules: Vec<GrantRule>,
    pub limits: RateLimits,
}

/// One rule of a [`Grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRule {
    pub filter: String,
    pub read: bool,
    pub write: bool,
}

/// Per-connection publish limits (0 = unlimited). Over the limit a
/// PUBLISH is refused: QoS 1/2 in v5 get 0x97 (quota exceeded), otherwise
/// it is dropped; both are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    pub messages_per_sec: u32,
    pub bytes_per_sec: u32,
}

impl Grant {
    /// Whether `topic` (a name, or a subscription filter that must be
    /// covered entirely) may be read or written.
    pub fn allows(&self, topic: &str, action: Action) -> bool {
        self.rules.iter().any(|r| {
            let ok = match action {
                Action::Read => r.read,
                Action::Write => r.write,
            };
            ok && filter_covers(&r.filter, topic)
        })
    }
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Anonymous clients are not allowed.
    NotAuthorized,
    /// Unknown user or wrong password.
    BadCredentials,
}

/// Whether the rule filter `rule` covers `topic`, which is a topic name or a
/// subscription filter. A subscription filter is covered when every topic
/// it can match is matched by the rule (checked level by level).
fn filter_covers(rule: &str, topic: &str) -> bool {
    let mut r = rule.split('/');
    let mut t = topic.split('/');
    loop {
        match (r.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn parse_hash(text: &str) -> Result<PasswordHash, &'static str> {
    let parts: Vec<&str> = text.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => Ok(PasswordHash::Pbkdf2Sha512 {
            iterations: iterations.parse().map_err(|_| "bad iteration count")?,
            salt: B64.decode(salt).map_err(|_| "bad base64 salt")?,
            hash: B64.decode(hash).map_err(|_| "bad base64 hash")?,
        }),
        ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
            salt: B64.decode(salt).map_err(|_| "bad base64 salt")?,
            hash: B64.decode(hash).map_err(|_| "bad base64 hash")?,
        }),
        _ => Err("unknown hash format (expected $7$ or $6$ as written by mosquitto_passwd or millwright passwd)"),
    }
}

fn verify(hash: &PasswordHash, password: &[u8]) -> bool {
    let computed = match hash {
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt,
            hash,
        } => {
            let mut out = vec![0u8; hash.len()];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
            out
        }
        PasswordHash::Sha512 { salt, .. } => {
            let mut h = Sha512::new();
            h.update(password);
            h.update(salt);
            h.finalize().to_vec()
        }
    };
    let expected = match hash {
        PasswordHash::Pbkdf2Sha512 { hash, .. } | PasswordHash::Sha512 { hash, .. } => hash,
    };
    constant_time_eq(&computed, expected)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hashes a password in `mosquitto_passwd`'s `$7$` format (PBKDF2-SHA512,
/// 101 iterations as mosquitto uses, 12-byte salt).
pub fn hash_password(password: &str, salt: [u8; 12]) -> String {
    let iterations = 101;
    let mut out = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iterations, &mut out);
    format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_roundtrip() {
        let line = format!("alice:{}\n", hash_password("s3cret", [7; 12]));
        let ac = AccessControl::new(false).with_password_file(&line).unwrap();
        assert_eq!(ac.authenticate(Some("alice"), Some(b"s3cret")), Ok(()));
        assert_eq!(
            ac.authenticate(Some("alice"), Some(b"nope")),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(
            ac.authenticate(Some("bob"), Some(b"s3cret")),
            Err(AuthFailure::BadCredentials)
        );
        assert_eq!(ac.authenticate(None, None), Err(AuthFailure::NotAuthorized));
    }

    #[test]
    fn bad_password_file_names_line() {
        let err = AccessControl::new(false)
            .with_password_file("# c\nalice\n")
            .unwrap_err();
        assert_eq!(
            err,
            AclError::Password {
                line: 2,
                reason: "expected user:hash".into()
            }
        );
    }

    #[test]
    fn acl_rules() {
        let acl = "topic read $SYS/#\npattern readwrite devices/%c/#\nuser admin\ntopic #\ntopic deny secret/#\n";
        let ac = AccessControl::new(true).with_acl_file(acl).unwrap();
        assert!(ac.allowed(None, "d1", "devices/d1/telemetry", Action::Write));
        assert!(!ac.allowed(None, "d1", "devices/d2/telemetry", Action::Write));
        assert!(ac.allowed(None, "d1", "$SYS/broker/uptime", Action::Read));
        assert!(!ac.allowed(None, "d1", "$SYS/broker/uptime", Action::Write));
        assert!(ac.allowed(Some("admin"), "x", "anything/at/all", Action::Write));
        assert!(!ac.allowed(Some("admin"), "x", "secret/x", Action::Read));
        // A wildcard subscription is allowed only when the rule covers it.
        assert!(ac.allowed(None, "d1", "devices/d1/#", Action::Read));
        assert!(!ac.allowed(None, "d1", "devices/+/telemetry", Action::Read));
        // A wildcard client id does not turn the pattern into a wildcard.
        assert!(!ac.allowed(None, "+", "devices/x/telemetry", Action::Write));
        assert!(!ac.allowed(None, "#", "devices/x", Action::Read));
    }

    #[test]
    fn grant_rules() {
        let g = Grant {
            principal: "d1".into(),
            rules: vec![
                GrantRule {
                    filter: "devices/d1/#".into(),
                    read: true,
                    write: true,
                },
                GrantRule {
                    filter: "fleet/+/announce".into(),
                    read: true,
                    write: false,
                },
            ],
            limits: RateLimits::default(),
        };
        assert!(g.allows("devices/d1/telemetry", Action::Write));
        assert!(g.allows("devices/d1/#", Action::Read));
        assert!(!g.allows("devices/d2/telemetry", Action::Write));
        assert!(!g.allows("devices/+/telemetry", Action::Read));
        assert!(g.allows("fleet/x/announce", Action::Read));
        assert!(!g.allows("fleet/x/announce", Action::Write));
    }

    #[test]
    fn bad_acl_names_line() {
        let err = AccessControl::new(true)
            .with_acl_file("topic read a\nfrobnicate x\n")
            .unwrap_err();
        assert!(matches!(err, AclError::Acl { line: 2, .. }));
    }
}
