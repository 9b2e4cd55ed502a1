//! Device tokens: the MQTT password of a device whose user name is its id.
//!
//! A device holds at most two tokens, newest first. Issuing a new one gives
//! the tokens valid until then a grace period (so a fleet can roll over
//! without a gap) and drops all but the newest previous one.

use crate::devices::{device_from, Device};
use crate::error::RegistryError;
use crate::records::{DeviceRec, DeviceTokenRec, DeviceTokensRec};
use crate::registry::{Checked, Registry};
use crate::secret;
use crate::store::{Reads, Writes};

/// The outcome of a device's authentication.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per authentication, never stored in bulk; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAuth {
    /// The token is valid; the device as stored now.
    Ok(Device),
    /// No such device in that namespace.
    UnknownDevice,
    /// The token is right but the device is disabled (reported only then,
    /// so that a wrong token learns nothing about the device's state).
    Disabled,
    /// No valid token of the device matches.
    BadToken,
}

/// Most tokens kept per device.
const MAX_TOKENS: usize = 2;

impl Registry {
    /// A new plaintext device token and its stored form.
    pub(crate) fn new_device_token(
        &self,
        now_ms: u64,
    ) -> Result<(String, DeviceTokenRec), RegistryError> {
        let token = secret::generate(secret::DEVICE_PREFIX);
        let hash = secret::hash_token(token.as_bytes())?;
        Ok((
            token,
            DeviceTokenRec {
                hash,
                created_at_ms: now_ms,
                expires_at_ms: None,
            },
        ))
    }

    /// Creates a new token for the device and returns it (plaintext, shown
    /// once). Tokens valid until now keep working until `now_ms + grace_ms`
    /// (`grace_ms = 0`: revoked at once); at most two tokens are kept (the
    /// new one and the newest previous one).
    pub fn issue_device_token(
        &self,
        ns: &str,
        device_id: &str,
        grace_ms: u64,
        now_ms: u64,
    ) -> Result<String, RegistryError> {
        if !self.store.read(|tx| tx.device_exists(ns, device_id))? {
            return Err(RegistryError::not_found("device", device_id));
        }
        let (token, new) = self.new_device_token(now_ms)?;
        self.store.write(|tx| {
            if !tx.device_exists(ns, device_id)? {
                return Err(RegistryError::not_found("device", device_id));
            }
            let old = tx.device_tokens(ns, device_id)?;
            let rec = rotate(old, new, grace_ms, now_ms);
            tx.put_device_tokens(ns, device_id, &rec)
        })?;
        tracing::debug!(ns, device_id, grace_ms, "device token issued");
        Ok(token)
    }

    /// Removes every token of the device at once; returns how many were
    /// stored. `NotFound` if the device does not exist.
    pub fn revoke_device_tokens(&self, ns: &str, device_id: &str) -> Result<usize, RegistryError> {
        self.store.write(|tx| {
            if !tx.device_exists(ns, device_id)? {
                return Err(RegistryError::not_found("device", device_id));
            }
            let n = tx.device_tokens(ns, device_id)?.tokens.len();
            tx.put_device_tokens(ns, device_id, &DeviceTokensRec::default())?;
            Ok(n)
        })
    }

    /// Tokens of the device valid at `now_ms`. `NotFound` if the device
    /// does not exist.
    pub fn device_token_count(
        &self,
        ns: &str,
        device_id: &str,
        now_ms: u64,
    ) -> Result<usize, RegistryError> {
        self.store.read(|tx| {
            if !tx.device_exists(ns, device_id)? {
                return Err(RegistryError::not_found("device", device_id));
            }
            let rec = tx.device_tokens(ns, device_id)?;
            Ok(rec.tokens.iter().filter(|t| t.valid_at(now_ms)).count())
        })
    }

    /// Checks `token` against the device's tokens valid at `now_ms`: one
    /// store read and one HMAC-SHA256 per valid token (at most two). A
    /// token stored by an older version as argon2 costs one argon2 run (or
    /// a cache hit) and is then stored in the fast form.
    pub fn authenticate_device(
        &self,
        ns: &str,
        device_id: &str,
        token: &[u8],
        now_ms: u64,
    ) -> Result<DeviceAuth, RegistryError> {
        let (rec, tokens) = self.store.read(|tx| {
            Ok::<_, RegistryError>((tx.device(ns, device_id)?, tx.device_tokens(ns, device_id)?))
        })?;
        let Some(rec) = rec else {
            return Ok(DeviceAuth::UnknownDevice);
        };
        for t in tokens.tokens.iter().filter(|t| t.valid_at(now_ms)) {
            match self.verify_stored("device", &[ns, device_id], token, &t.hash) {
                Checked::Refused => {}
                Checked::Matched => return Ok(outcome(ns, device_id, rec)),
                Checked::MatchedLegacy => {
                    // Device tokens are always generated: upgrade it.
                    self.upgrade_device_token(ns, device_id, &t.hash, token);
                    return Ok(outcome(ns, device_id, rec));
                }
            }
        }
        Ok(DeviceAuth::BadToken)
    }

    /// Replaces the stored argon2 hash `old` of a device token with the
    /// fast form of `token` (which matched it). Best effort: if it fails
    /// or `old` is gone meanwhile (rotated, revoked), nothing changes.
    fn upgrade_device_token(&self, ns: &str, device_id: &str, old: &str, token: &[u8]) {
        let upgraded = secret::hash_token(token).and_then(|new| {
            self.store.write_unsynced(|tx| {
                let mut rec = tx.device_tokens(ns, device_id)?;
                let Some(t) = rec.tokens.iter_mut().find(|t| t.hash == old) else {
                    return Ok(false);
                };
                t.hash = new;
                tx.put_device_tokens(ns, device_id, &rec)?;
                Ok(true)
            })
        });
        match upgraded {
            Ok(true) => tracing::debug!(ns, device_id, "device token hash upgraded to hmac-sha256"),
            Ok(false) => {}
            Err(e) => tracing::warn!(ns, device_id, error = %e, "device token hash upgrade failed"),
        }
    }
}

fn outcome(ns: &str, id: &str, rec: DeviceRec) -> DeviceAuth {
    if rec.enabled {
        DeviceAuth::Ok(device_from(ns, id, rec))
    } else {
        DeviceAuth::Disabled
    }
}

/// The token list after issuing `new`: previous tokens still valid get at
/// most `grace_ms` more (none when 0) and only the newest of them is kept.
fn rotate(
    old: DeviceTokensRec,
    new: DeviceTokenRec,
    grace_ms: u64,
    now_ms: u64,
) -> DeviceTokensRec {
    let mut tokens = vec![new];
    if grace_ms > 0 {
        let grace_end = now_ms.saturating_add(grace_ms);
        // Stored newest first.
        let previous = old.tokens.into_iter().find(|t| t.valid_at(now_ms));
        if let Some(mut prev) = previous {
            prev.expires_at_ms = Some(prev.expires_at_ms.map_or(grace_end, |e| e.min(grace_end)));
            tokens.push(prev);
        }
    }
    tokens.truncate(MAX_TOKENS);
    DeviceTokensRec { tokens }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{DevicePatch, NewDevice};
    use crate::registry::test_registry;

    fn tok(created: u64, expires: Option<u64>) -> DeviceTokenRec {
        DeviceTokenRec {
            hash: format!("h{created}"),
            created_at_ms: created,
            expires_at_ms: expires,
        }
    }

    #[test]
    fn rotate_keeps_newest_previous_with_grace() {
        let old = DeviceTokensRec {
            tokens: vec![tok(20, Some(150)), tok(10, Some(120))],
        };
        let r = rotate(old.clone(), tok(100, None), 100, 100);
        assert_eq!(r.tokens.len(), 2);
        assert_eq!(r.tokens[0].created_at_ms, 100);
        assert_eq!(r.tokens[1].created_at_ms, 20);
        assert_eq!(r.tokens[1].expires_at_ms, Some(150), "never extended");
        let r = rotate(old.clone(), tok(100, None), 10, 100);
        assert_eq!(r.tokens[1].expires_at_ms, Some(110), "shortened");
        let r = rotate(old, tok(100, None), 0, 100);
        assert_eq!(r.tokens.len(), 1);
        let expired = DeviceTokensRec {
            tokens: vec![tok(1, Some(50))],
        };
        assert_eq!(rotate(expired, tok(100, None), 10, 100).tokens.len(), 1);
    }

    #[test]
    fn authenticate_outcomes() {
        let (_dir, r) = test_registry();
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        assert_eq!(
            r.authenticate_device("default", "x", b"t", 0).unwrap(),
            DeviceAuth::UnknownDevice
        );
        assert_eq!(
            r.authenticate_device("default", "d", b"t", 0).unwrap(),
            DeviceAuth::BadToken,
            "no token yet"
        );
        let t = r.issue_device_token("default", "d", 0, 1).unwrap();
        assert!(matches!(
            r.authenticate_device("default", "d", t.as_bytes(), 2)
                .unwrap(),
            DeviceAuth::Ok(_)
        ));
        assert_eq!(r.cache_len(), 0, "the fast form needs no cache");
        // Same token for the same id in another namespace: unknown there.
        assert_eq!(
            r.authenticate_device("other", "d", t.as_bytes(), 2)
                .unwrap(),
            DeviceAuth::UnknownDevice
        );
        r.update_device(
            "default",
            "d",
            DevicePatch {
                enabled: Some(false),
                ..DevicePatch::default()
            },
            3,
        )
        .unwrap();
        assert_eq!(
            r.authenticate_device("default", "d", t.as_bytes(), 4)
                .unwrap(),
            DeviceAuth::Disabled
        );
        assert_eq!(
            r.authenticate_device("default", "d", b"wrong", 4).unwrap(),
            DeviceAuth::BadToken,
            "a wrong token does not learn that the device is disabled"
        );
    }

    #[test]
    fn counts_and_not_found() {
        let (_dir, r) = test_registry();
        assert!(matches!(
            r.issue_device_token("default", "nope", 0, 0),
            Err(RegistryError::NotFound { .. })
        ));
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        r.issue_device_token("default", "d", 0, 0).unwrap();
        r.issue_device_token("default", "d", 100, 10).unwrap();
        assert_eq!(r.device_token_count("default", "d", 50).unwrap(), 2);
        assert_eq!(r.device_token_count("default", "d", 110).unwrap(), 1);
        assert_eq!(r.revoke_device_tokens("default", "d").unwrap(), 2);
        assert_eq!(r.device_token_count("default", "d", 0).unwrap(), 0);
    }
}
