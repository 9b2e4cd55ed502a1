//! Operator accounts: roles, passwords, login.

use std::fmt;
use std::str::FromStr;

use crate::api_tokens::Principal;
use crate::error::RegistryError;
use crate::records::{ApiTokenRec, UserRec};
use crate::registry::Registry;
use crate::secret::{self, token_id};
use crate::store::{Reads, Writes};
use crate::validate;

/// Shortest accepted password or self-chosen token, in characters.
pub(crate) const MIN_SECRET_CHARS: usize = 8;
/// Longest accepted password or self-chosen token, in bytes.
pub(crate) const MAX_SECRET_BYTES: usize = 1024;

/// What an operator may do; ordered (`Viewer < Operator < Admin`) so that
/// the effective role of a token is the minimum of two.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    /// `"viewer"`, `"operator"` or `"admin"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role named by [`Role::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub(crate) fn from_stored(s: &str) -> Result<Role, RegistryError> {
        Role::parse(s).ok_or_else(|| RegistryError::Storage(format!("unknown stored role {s:?}")))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Role, RegistryError> {
        Role::parse(s).ok_or_else(|| {
            RegistryError::invalid("role", format!("{s:?} is not viewer, operator or admin"))
        })
    }
}

/// An operator account (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at_ms: u64,
}

fn user_from(name: &str, rec: &UserRec) -> Result<User, RegistryError> {
    Ok(User {
        username: name.to_string(),
        role: Role::from_stored(&rec.role)?,
        disabled: rec.disabled,
        created_at_ms: rec.created_at_ms,
    })
}

/// Passwords and self-chosen tokens: 8 characters to 1 KiB.
pub(crate) fn check_secret(field: &str, s: &str) -> Result<(), RegistryError> {
    if s.chars().count() < MIN_SECRET_CHARS {
        return Err(RegistryError::invalid(
            field,
            format!("shorter than {MIN_SECRET_CHARS} characters"),
        ));
    }
    if s.len() > MAX_SECRET_BYTES {
        return Err(RegistryError::invalid(
            field,
            format!("longer than {MAX_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Removes the user's session tokens (all, or only those expired at
/// `expired_at`).
fn remove_sessions(
    tx: &crate::store::WriteTx,
    username: &str,
    expired_at: Option<u64>,
) -> Result<usize, RegistryError> {
    let mut removed = 0;
    for id in tx.user_token_ids(username)? {
        let Some(rec) = tx.api_token(&id)? else {
            continue;
        };
        let expired = match expired_at {
            Some(now) => rec.expires_at_ms.is_some_and(|e| now >= e),
            None => true,
        };
        if rec.session && expired {
            tx.remove_api_token(&id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Registry {
    /// Creates an operator. Usernames follow the id rules; passwords have
    /// at least 8 characters.
    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        now_ms: u64,
    ) -> Result<User, RegistryError> {
        validate::id("username", username)?;
        check_secret("password", password)?;
        let rec = UserRec {
            role: role.as_str().to_string(),
            disabled: false,
            password_hash: self.hasher.hash_password(password.as_bytes())?,
            created_at_ms: now_ms,
        };
        self.store.write(|tx| {
            if tx.user(username)?.is_some() {
                return Err(RegistryError::exists("user", username));
            }
            tx.put_user(username, &rec)
        })?;
        tracing::info!(username, role = %role, "user created");
        user_from(username, &rec)
    }

    /// The user, or `None`.
    pub fn get_user(&self, username: &str) -> Result<Option<User>, RegistryError> {
        let rec = self.store.read(|tx| tx.user(username))?;
        rec.map(|r| user_from(username, &r)).transpose()
    }

    /// All users, ordered by username.
    pub fn list_users(&self) -> Result<Vec<User>, RegistryError> {
        let users = self.store.read(|tx| tx.users())?;
        users.iter().map(|(n, r)| user_from(n, r)).collect()
    }

    /// Changes role, disabled flag and/or password; `NotFound` if absent.
    /// Disabling the user or changing the password ends the user's login
    /// sessions; API tokens stay but fail while the user is disabled, and a
    /// role change applies to every token at once (effective role =
    /// min(token role, user role)).
    pub fn update_user(
        &self,
        username: &str,
        role: Option<Role>,
        disabled: Option<bool>,
        password: Option<&str>,
    ) -> Result<User, RegistryError> {
        let new_hash = match password {
            Some(p) => {
                check_secret("password", p)?;
                Some(self.hasher.hash_password(p.as_bytes())?)
            }
            None => None,
        };
        let rec = self.store.write(|tx| -> Result<_, RegistryError> {
            let mut rec = tx
                .user(username)?
                .ok_or_else(|| RegistryError::not_found("user", username))?;
            if let Some(role) = role {
                rec.role = role.as_str().to_string();
            }
            if let Some(d) = disabled {
                rec.disabled = d;
            }
            let end_sessions = disabled == Some(true) || new_hash.is_some();
            if let Some(h) = &new_hash {
                rec.password_hash = h.clone();
            }
            tx.put_user(username, &rec)?;
            if end_sessions {
                remove_sessions(tx, username, None)?;
            }
            Ok(rec)
        })?;
        user_from(username, &rec)
    }

    /// Deletes the user with all of their API tokens and sessions; false if
    /// there was no such user.
    pub fn delete_user(&self, username: &str) -> Result<bool, RegistryError> {
        self.store.write(|tx| {
            if !tx.remove_user(username)? {
                return Ok(false);
            }
            for id in tx.user_token_ids(username)? {
                tx.remove_api_token(&id)?;
            }
            Ok(true)
        })
    }

    /// Checks a password and opens a session of `ttl_ms`: returns the
    /// session token (`mws_...`, shown once) and its principal. `None` for
    /// an unknown user, a wrong password or a disabled user (one answer for
    /// all three, taking about as long).
    pub fn login(
        &self,
        username: &str,
        password: &[u8],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<Option<(String, Principal)>, RegistryError> {
        if ttl_ms == 0 {
            return Err(RegistryError::invalid("ttl_ms", "must be positive"));
        }
        let Some(user) = self.store.read(|tx| tx.user(username))? else {
            let dummy = self.dummy_hash.get_or_init(|| {
                self.hasher
                    .hash_password(secret::generate("").as_bytes())
                    .unwrap_or_default()
            });
            if !dummy.is_empty() {
                self.hasher.verify(password, dummy);
            }
            return Ok(None);
        };
        if !self.hasher.verify(password, &user.password_hash) || user.disabled {
            return Ok(None);
        }
        let token = secret::generate(secret::SESSION_PREFIX);
        let id = token_id(token.as_bytes());
        let hash = secret::hash_token(token.as_bytes())?;
        let role = self.store.write(|tx| {
            // Disabled, deleted or re-created meanwhile: no session.
            let Some(now_user) = tx.user(username)? else {
                return Ok(None);
            };
            if now_user.disabled || now_user.password_hash != user.password_hash {
                return Ok(None);
            }
            remove_sessions(tx, username, Some(now_ms))?;
            let rec = ApiTokenRec {
                name: "session".to_string(),
                owner: Some(username.to_string()),
                role: now_user.role.clone(),
                hash,
                created_at_ms: now_ms,
                expires_at_ms: Some(now_ms.saturating_add(ttl_ms)),
                last4: crate::api_tokens::last4(&token),
                session: true,
            };
            tx.put_api_token(&id, &rec)?;
            Role::from_stored(&now_user.role).map(Some)
        })?;
        Ok(role.map(|role| {
            let principal = Principal {
                name: username.to_string(),
                role,
                token_id: Some(id),
            };
            (token, principal)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;

    #[test]
    fn roles() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
        }
        assert_eq!(Role::parse("root"), None);
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn user_crud() {
        let (_dir, r) = test_registry();
        let u = r
            .create_user("ada", "correct horse", Role::Admin, 1)
            .unwrap();
        assert_eq!(u.role, Role::Admin);
        assert!(matches!(
            r.create_user("ada", "correct horse", Role::Admin, 1),
            Err(RegistryError::AlreadyExists { kind: "user", .. })
        ));
        assert!(matches!(
            r.create_user("bob", "short", Role::Viewer, 1),
            Err(RegistryError::Invalid { field, .. }) if field == "password"
        ));
        assert!(matches!(
            r.create_user("b b", "long enough", Role::Viewer, 1),
            Err(RegistryError::Invalid { field, .. }) if field == "username"
        ));
        let u = r
            .update_user("ada", Some(Role::Viewer), None, None)
            .unwrap();
        assert_eq!(u.role, Role::Viewer);
        assert_eq!(r.get_user("ada").unwrap(), Some(u.clone()));
        assert_eq!(r.list_users().unwrap(), vec![u]);
        assert!(matches!(
            r.update_user("nobody", None, None, None),
            Err(RegistryError::NotFound { kind: "user", .. })
        ));
        assert!(r.delete_user("ada").unwrap());
        assert!(!r.delete_user("ada").unwrap());
    }

    #[test]
    fn login_and_password_change() {
        let (_dir, r) = test_registry();
        r.create_user("ada", "correct horse", Role::Operator, 1)
            .unwrap();
        assert_eq!(r.login("ada", b"wrong horse", 1000, 2).unwrap(), None);
        assert_eq!(r.login("bob", b"correct horse", 1000, 2).unwrap(), None);
        let (token, p) = r.login("ada", b"correct horse", 1000, 2).unwrap().unwrap();
        assert!(token.starts_with("mws_"));
        assert_eq!((p.name.as_str(), p.role), ("ada", Role::Operator));
        assert_eq!(
            r.authenticate_api_token(token.as_bytes(), 3).unwrap(),
            Some(p.clone())
        );
        assert_eq!(
            r.authenticate_api_token(token.as_bytes(), 1002).unwrap(),
            None
        );
        r.update_user("ada", None, None, Some("battery staple"))
            .unwrap();
        assert_eq!(r.authenticate_api_token(token.as_bytes(), 3).unwrap(), None);
        assert_eq!(r.login("ada", b"correct horse", 1000, 4).unwrap(), None);
        assert!(r
            .login("ada", b"battery staple", 1000, 4)
            .unwrap()
            .is_some());
        r.update_user("ada", None, Some(true), None).unwrap();
        assert_eq!(r.login("ada", b"battery staple", 1000, 5).unwrap(), None);
    }

    #[test]
    fn expired_sessions_are_pruned_on_login() {
        let (_dir, r) = test_registry();
        r.create_user("ada", "correct horse", Role::Operator, 1)
            .unwrap();
        for now in 0..3 {
            r.login("ada", b"correct horse", 10, now).unwrap().unwrap();
        }
        assert_eq!(r.list_api_tokens().unwrap().len(), 3);
        r.login("ada", b"correct horse", 10, 100).unwrap().unwrap();
        assert_eq!(r.list_api_tokens().unwrap().len(), 1);
        assert_eq!(
            r.api_token_count().unwrap(),
            0,
            "sessions are not API tokens"
        );
    }
}
