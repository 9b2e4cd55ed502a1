//! The [`Registry`] handle: the store, the hasher, the verification cache
//! and the revoked-serial set. The operations live in the modules named for
//! what they manage (`devices.rs`, `tokens.rs`, ...), each an `impl Registry`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use crate::audit::AuditStore;
use crate::cache::AuthCache;
use crate::config::RegistryConfig;
use crate::error::RegistryError;
use crate::secret::{self, Hasher};
use crate::store::{self, Reads};

/// The outcome of [`Registry::verify_stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    Refused,
    /// Matched the fast form.
    Matched,
    /// Matched an argon2 hash: the caller may store the fast form instead
    /// if the secret is a generated one.
    MatchedLegacy,
}

/// The identity store. `Send + Sync`; every method takes `&self`, so one
/// handle is shared (in an `Arc`) by the broker, the API and the
/// provisioning handler.
pub struct Registry {
    /// The registry file, shared with [`Registry::audit`].
    pub(crate) store: Arc<kv::Db>,
    pub(crate) audit: AuditStore,
    pub(crate) hasher: Hasher,
    pub(crate) cache: AuthCache,
    pub(crate) config: RegistryConfig,
    /// Revoked certificate serials, swapped as a whole on revocation so
    /// that TLS handshakes read a snapshot without I/O or waiting on writers.
    pub(crate) revoked: RwLock<Arc<HashSet<String>>>,
    /// A hash of a random secret, verified against when a login names an
    /// unknown user so that the answer takes as long as for a known one.
    pub(crate) dummy_hash: OnceLock<String>,
}

impl Registry {
    /// Opens (or creates) the registry file at `path`. Fails if the file
    /// has a newer schema version, is in use, or `config` is unusable.
    pub fn open(path: &Path, config: RegistryConfig) -> Result<Registry, RegistryError> {
        AuditStore::check_bound(config.audit_max_entries)?;
        let hasher = Hasher::new(&config)?;
        let store = Arc::new(store::open(path)?);
        let audit = AuditStore::new(Arc::clone(&store), config.audit_max_entries);
        let revoked: HashSet<String> = store.read(|tx| tx.revoked_serials())?.into_iter().collect();
        tracing::debug!(
            path = %path.display(),
            revoked_serials = revoked.len(),
            "registry opened"
        );
        Ok(Registry {
            store,
            audit,
            hasher,
            cache: AuthCache::new(config.auth_cache_capacity),
            config,
            revoked: RwLock::new(Arc::new(revoked)),
            dummy_hash: OnceLock::new(),
        })
    }

    /// Whether `secret` matches the stored hash `stored`. The fast form
    /// (generated tokens) is simply verified: one HMAC costs less than a
    /// cache lookup. An argon2 hash goes through the verification cache,
    /// keyed by (`kind`, `parts`, `secret`).
    pub(crate) fn verify_stored(
        &self,
        kind: &str,
        parts: &[&str],
        secret: &[u8],
        stored: &str,
    ) -> Checked {
        if secret::is_token_hash(stored) {
            return if self.hasher.verify(secret, stored) {
                Checked::Matched
            } else {
                Checked::Refused
            };
        }
        let key = secret::cache_key(kind, parts, secret);
        let fp = secret::fingerprint(stored);
        if self.cache.get(&key) == Some(fp) {
            return Checked::MatchedLegacy;
        }
        if self.hasher.verify(secret, stored) {
            self.cache.insert(key, fp);
            Checked::MatchedLegacy
        } else {
            Checked::Refused
        }
    }

    /// Entries in the verification cache (for metrics).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// The settings the registry was opened with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }
}

/// A registry in a temporary directory with cheap argon2 parameters.
#[cfg(test)]
pub(crate) fn test_registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(
        &dir.path().join("registry.redb"),
        RegistryConfig {
            argon2_memory_kib: 64,
            ..RegistryConfig::default()
        },
    )
    .unwrap();
    (dir, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn registry_is_send_and_sync() {
        assert_send_sync::<Registry>();
    }

    #[test]
    fn zero_audit_bound_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(
            &dir.path().join("r.redb"),
            RegistryConfig {
                audit_max_entries: 0,
                ..RegistryConfig::default()
            },
        );
        assert!(matches!(r, Err(RegistryError::Invalid { .. })));
    }

    #[test]
    fn second_open_of_same_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let _first = Registry::open(&path, RegistryConfig::default()).unwrap();
        let Err(RegistryError::Storage(m)) = Registry::open(&path, RegistryConfig::default())
        else {
            panic!("expected a storage error");
        };
        assert!(m.contains("already open"), "{m}");
    }
}
