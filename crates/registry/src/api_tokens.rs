//! API tokens (`mwa_...`) and login sessions (`mws_...`): bearer tokens of
//! the HTTP API, looked up by token id. Generated tokens are stored in the
//! fast form (HMAC-SHA256); a token the operator chose (the bootstrap admin
//! token) as argon2, verified through the cache.

use crate::error::RegistryError;
use crate::records::ApiTokenRec;
use crate::registry::{Checked, Registry};
use crate::secret::{self, token_id};
use crate::store::{Reads, Writes};
use crate::users::{check_secret, Role};
use crate::validate;

/// An API or session token (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The token id: first 32 hex digits of the token's SHA-256.
    pub id: String,
    pub name: String,
    /// The user it acts for, if any.
    pub owner: Option<String>,
    pub role: Role,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    /// The last four characters of the token, to recognise it.
    pub last4: String,
    /// A login session rather than an API token.
    pub session: bool,
}

/// Who an authenticated API request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The username for a login session, `token:<name>` for an API token.
    pub name: String,
    /// The effective role: min(token role, owner's current role).
    pub role: Role,
    pub token_id: Option<String>,
}

pub(crate) fn last4(token: &str) -> String {
    let n = token.chars().count();
    token.chars().skip(n.saturating_sub(4)).collect()
}

fn token_from(id: &str, rec: &ApiTokenRec) -> Result<ApiToken, RegistryError> {
    Ok(ApiToken {
        id: id.to_string(),
        name: rec.name.clone(),
        owner: rec.owner.clone(),
        role: Role::from_stored(&rec.role)?,
        created_at_ms: rec.created_at_ms,
        expires_at_ms: rec.expires_at_ms,
        last4: rec.last4.clone(),
        session: rec.session,
    })
}

impl Registry {
    /// Creates an API token and returns it with its plaintext `mwa_...`
    /// (shown once). `owner`, if given, must be an existing user; the
    /// token then never has more rights than that user has at the time of
    /// use.
    pub fn create_api_token(
        &self,
        name: &str,
        owner: Option<&str>,
        role: Role,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(ApiToken, String), RegistryError> {
        let token = secret::generate(secret::API_PREFIX);
        let hash = secret::hash_token(token.as_bytes())?;
        let created =
            self.insert_api_token(&token, hash, name, owner, role, expires_at_ms, now_ms)?;
        Ok((created, token))
    }

    /// Stores a token chosen by the operator (`auth.bootstrap_admin_token`;
    /// at least 8 characters) as argon2, like a password: a person may
    /// have chosen it. Idempotent: if that token is stored already,
    /// returns the stored one unchanged.
    pub fn create_api_token_with_secret(
        &self,
        token: &str,
        name: &str,
        owner: Option<&str>,
        role: Role,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<ApiToken, RegistryError> {
        check_secret("token", token)?;
        let id = token_id(token.as_bytes());
        if let Some(rec) = self.store.read(|tx| tx.api_token(&id))? {
            if self.hasher.verify(token.as_bytes(), &rec.hash) {
                return token_from(&id, &rec);
            }
            return Err(RegistryError::Conflict(format!(
                "a different token has the id {id}"
            )));
        }
        let hash = self.hasher.hash_password(token.as_bytes())?;
        self.insert_api_token(token, hash, name, owner, role, expires_at_ms, now_ms)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "private; the two public callers differ only in the hash"
    )]
    fn insert_api_token(
        &self,
        token: &str,
        hash: String,
        name: &str,
        owner: Option<&str>,
        role: Role,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<ApiToken, RegistryError> {
        validate::text("name", name)?;
        if expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(RegistryError::invalid("expires_at_ms", "is in the past"));
        }
        let id = token_id(token.as_bytes());
        let rec = ApiTokenRec {
            name: name.to_string(),
            owner: owner.map(str::to_string),
            role: role.as_str().to_string(),
            hash,
            created_at_ms: now_ms,
            expires_at_ms,
            last4: last4(token),
            session: false,
        };
        self.store.write(|tx| {
            if let Some(owner) = owner {
                if tx.user(owner)?.is_none() {
                    return Err(RegistryError::not_found("user", owner));
                }
            }
            if tx.api_token(&id)?.is_some() {
                return Err(RegistryError::exists("API token", &id));
            }
            tx.put_api_token(&id, &rec)
        })?;
        tracing::info!(token_id = id, name, role = %role, "API token created");
        token_from(&id, &rec)
    }

    /// Number of API tokens (login sessions not counted), e.g. to decide
    /// whether to create a bootstrap token.
    pub fn api_token_count(&self) -> Result<usize, RegistryError> {
        let all = self.store.read(|tx| tx.api_tokens())?;
        Ok(all.iter().filter(|(_, r)| !r.session).count())
    }

    /// Every API token and login session, ordered by id.
    pub fn list_api_tokens(&self) -> Result<Vec<ApiToken>, RegistryError> {
        let all = self.store.read(|tx| tx.api_tokens())?;
        all.iter().map(|(id, r)| token_from(id, r)).collect()
    }

    /// Deletes an API token or session; it fails at once. False if there
    /// was no such token.
    pub fn revoke_api_token(&self, id: &str) -> Result<bool, RegistryError> {
        self.store.write(|tx| tx.remove_api_token(id))
    }

    /// The principal of an API or session token valid at `now_ms`, or
    /// `None`: unknown, expired, revoked, or its owner deleted or disabled.
    pub fn authenticate_api_token(
        &self,
        token: &[u8],
        now_ms: u64,
    ) -> Result<Option<Principal>, RegistryError> {
        let id = token_id(token);
        let found = self.store.read(|tx| -> Result<_, RegistryError> {
            let Some(rec) = tx.api_token(&id)? else {
                return Ok(None);
            };
            let owner = match &rec.owner {
                Some(o) => Some(tx.user(o)?),
                None => None,
            };
            Ok(Some((rec, owner)))
        })?;
        let Some((rec, owner)) = found else {
            return Ok(None);
        };
        if rec.expires_at_ms.is_some_and(|e| now_ms >= e) {
            return Ok(None);
        }
        match self.verify_stored("api", &[], token, &rec.hash) {
            Checked::Refused => return Ok(None),
            Checked::Matched => {}
            Checked::MatchedLegacy => {
                // Only a token this registry generated: a chosen one keeps
                // argon2.
                let prefix = if rec.session {
                    secret::SESSION_PREFIX
                } else {
                    secret::API_PREFIX
                };
                if secret::is_generated(token, prefix) {
                    self.upgrade_api_token(&id, &rec.hash, token);
                }
            }
        }
        let mut role = Role::from_stored(&rec.role)?;
        match owner {
            None => {}
            Some(None) => return Ok(None),
            Some(Some(user)) => {
                if user.disabled {
                    return Ok(None);
                }
                role = role.min(Role::from_stored(&user.role)?);
            }
        }
        let name = match (&rec.owner, rec.session) {
            (Some(owner), true) => owner.clone(),
            _ => format!("token:{}", rec.name),
        };
        Ok(Some(Principal {
            name,
            role,
            token_id: Some(id),
        }))
    }
}

impl Registry {
    /// Replaces the stored argon2 hash `old` of an API or session token
    /// with the fast form of `token` (which matched it). Best effort, like
    /// the device token upgrade.
    fn upgrade_api_token(&self, id: &str, old: &str, token: &[u8]) {
        let upgraded = secret::hash_token(token).and_then(|new| {
            self.store.write_unsynced(|tx| {
                let Some(mut rec) = tx.api_token(id)? else {
                    return Ok(false);
                };
                if rec.hash != old {
                    return Ok(false);
                }
                rec.hash = new;
                tx.put_api_token(id, &rec)?;
                Ok(true)
            })
        });
        match upgraded {
            Ok(true) => tracing::debug!(token_id = id, "API token hash upgraded to hmac-sha256"),
            Ok(false) => {}
            Err(e) => tracing::warn!(token_id = id, error = %e, "API token hash upgrade failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;

    #[test]
    fn create_authenticate_revoke() {
        let (_dir, r) = test_registry();
        let (t, secret) = r
            .create_api_token("ci", None, Role::Operator, Some(100), 0)
            .unwrap();
        assert!(secret.starts_with("mwa_"));
        assert_eq!(t.last4, secret[secret.len() - 4..]);
        assert_eq!(t.id, token_id(secret.as_bytes()));
        let p = r
            .authenticate_api_token(secret.as_bytes(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(p.name, "token:ci");
        assert_eq!(p.role, Role::Operator);
        assert_eq!(p.token_id.as_deref(), Some(t.id.as_str()));
        assert_eq!(
            r.authenticate_api_token(secret.as_bytes(), 100).unwrap(),
            None
        );
        assert_eq!(r.authenticate_api_token(b"mwa_other", 1).unwrap(), None);
        assert_eq!(r.api_token_count().unwrap(), 1);
        assert_eq!(r.list_api_tokens().unwrap(), vec![t.clone()]);
        assert!(r.revoke_api_token(&t.id).unwrap());
        assert!(!r.revoke_api_token(&t.id).unwrap());
        assert_eq!(
            r.authenticate_api_token(secret.as_bytes(), 1).unwrap(),
            None
        );
    }

    #[test]
    fn owner_must_exist() {
        let (_dir, r) = test_registry();
        assert!(matches!(
            r.create_api_token("x", Some("ghost"), Role::Viewer, None, 0),
            Err(RegistryError::NotFound { kind: "user", .. })
        ));
    }

    #[test]
    fn bootstrap_is_idempotent_and_checked() {
        let (_dir, r) = test_registry();
        let a = r
            .create_api_token_with_secret(
                "my-bootstrap-token",
                "bootstrap",
                None,
                Role::Admin,
                None,
                1,
            )
            .unwrap();
        let b = r
            .create_api_token_with_secret(
                "my-bootstrap-token",
                "other",
                None,
                Role::Viewer,
                None,
                2,
            )
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(r.api_token_count().unwrap(), 1);
        assert_eq!(a.last4, "oken");
        assert!(matches!(
            r.create_api_token_with_secret("short", "b", None, Role::Admin, None, 1),
            Err(RegistryError::Invalid { .. })
        ));
    }

    #[test]
    fn last4_is_char_safe() {
        assert_eq!(last4("ab"), "ab");
        assert_eq!(last4("xxééééé"), "éééé");
    }
}
