//! The verification cache: a successful argon2 verification is remembered so
//! that the next presentation of the same secret costs one SHA-256 and a
//! store read instead of an argon2 run. Only argon2 hashes go through it
//! (the bootstrap admin token, and tokens stored before the fast form
//! until they are upgraded); a fast-form hash is verified directly, one
//! HMAC being cheaper than a lookup.
//!
//! Key: [`crate::secret::cache_key`] over (kind, subject, secret). Value: the
//! fingerprint of the stored hash the secret matched. A hit is only a hint:
//! the caller re-reads the credential and accepts only if a credential with
//! that fingerprint still exists and is valid at `now_ms` (expiry, revocation,
//! disabled owner, current role). Rotation, revocation, deletion, disabling
//! and role changes therefore take effect at once without touching the
//! cache, and also when another process changed the store.
//!
//! Bound: at most `capacity` entries; inserting into a full cache clears it
//! first (the next presentation of each secret pays one argon2 run again).
//! Entries whose credential is gone stay until then: harmless, since a hit
//! counts only if the fingerprint names a stored, valid credential.

use std::collections::HashMap;
use std::sync::Mutex;

/// A std mutex is right here: it is held for one map operation, never across
/// I/O, hashing or an `.await`.
pub(crate) struct AuthCache {
    capacity: usize,
    map: Mutex<HashMap<[u8; 32], [u8; 16]>>,
}

impl AuthCache {
    pub(crate) fn new(capacity: usize) -> AuthCache {
        AuthCache {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], [u8; 16]>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<[u8; 16]> {
        self.map().get(key).copied()
    }

    pub(crate) fn insert(&self, key: [u8; 32], fingerprint: [u8; 16]) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, fingerprint);
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_clearing() {
        let c = AuthCache::new(3);
        for i in 0..3u8 {
            c.insert([i; 32], [i; 16]);
        }
        assert_eq!(c.len(), 3);
        c.insert([1; 32], [9; 16]);
        assert_eq!(c.len(), 3, "replacing an entry does not clear");
        assert_eq!(c.get(&[1; 32]), Some([9; 16]));
        c.insert([7; 32], [7; 16]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&[7; 32]), Some([7; 16]));
        assert_eq!(c.get(&[0; 32]), None);
    }

    #[test]
    fn zero_capacity_disables() {
        let c = AuthCache::new(0);
        c.insert([1; 32], [1; 16]);
        assert_eq!(c.len(), 0);
    }
}
