//! Secrets: generation, token ids, argon2id hashing and verification, and the
//! digests the verification cache is keyed by.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::config::RegistryConfig;
use crate::error::RegistryError;

/// Prefix of generated device tokens.
pub(crate) const DEVICE_PREFIX: &str = "mwd_";
/// Prefix of generated claim tokens.
pub(crate) const CLAIM_PREFIX: &str = "mwc_";
/// Prefix of generated API tokens.
pub(crate) const API_PREFIX: &str = "mwa_";
/// Prefix of login session tokens.
pub(crate) const SESSION_PREFIX: &str = "mws_";

/// A new secret: `prefix` then 32 random bytes in base64url without padding.
pub(crate) fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(prefix.len() + 43);
    s.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s
}

/// The lookup key of a claim, API or session token: the first 32 hex digits
/// of its SHA-256. Any string is a token, so this never fails.
pub(crate) fn token_id(token: &[u8]) -> String {
    hex(&Sha256::digest(token)[..16])
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The verification-cache key of a secret presented for a subject:
/// SHA-256 over the kind, the subject's key parts and the secret, separated
/// by NUL (which no kind or key part contains).
pub(crate) fn cache_key(kind: &str, parts: &[&str], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    h.update([0u8]);
    h.update(secret);
    h.finalize().into()
}

/// Names one stored hash: every hash has its own random salt, so a rotated,
/// re-issued or re-created credential never has the fingerprint of the one
/// it replaced.
pub(crate) fn fingerprint(phc: &str) -> [u8; 16] {
    let d = Sha256::digest(phc.as_bytes());
    let mut f = [0u8; 16];
    f.copy_from_slice(&d[..16]);
    f
}

/// Argon2id with the configured cost for new hashes. Verification reads the
/// parameters from each stored hash, so changing the cost keeps old hashes
/// valid.
pub(crate) struct Hasher {
    argon2: Argon2<'static>,
}

impl Hasher {
    pub(crate) fn new(config: &RegistryConfig) -> Result<Hasher, RegistryError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            1,
            None,
        )
        .map_err(|e| RegistryError::invalid("argon2", e.to_string()))?;
        Ok(Hasher {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=..,t=..,p=1$salt$hash`) of `secret`.
    pub(crate) fn hash(&self, secret: &[u8]) -> Result<String, RegistryError> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| RegistryError::Storage(format!("salt: {e}")))?;
        self.argon2
            .hash_password(secret, &salt)
            .map(|h| h.to_string())
            .map_err(|e| RegistryError::Storage(format!("argon2: {e}")))
    }

    /// Whether `secret` matches the stored PHC string. An unreadable stored
    /// hash matches nothing (and is logged).
    pub(crate) fn verify(&self, secret: &[u8], phc: &str) -> bool {
        let parsed = match PasswordHash::new(phc) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "unreadable stored password hash");
                return false;
            }
        };
        match self.argon2.verify_password(secret, &parsed) {
            Ok(()) => true,
            Err(argon2::password_hash::Error::Password) => false,
            Err(e) => {
                tracing::error!(error = %e, "stored password hash cannot be verified");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::new(&RegistryConfig {
            argon2_memory_kib: 64,
            ..RegistryConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn generated_secrets_have_prefix_and_length() {
        let a = generate(DEVICE_PREFIX);
        let b = generate(DEVICE_PREFIX);
        assert!(a.starts_with("mwd_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(a, b);
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn token_id_is_32_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(token_id(b"abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert_eq!(token_id(b"").len(), 32);
    }

    #[test]
    fn hash_verifies_and_is_argon2id() {
        let h = cheap();
        let phc = h.hash(b"secret").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h.verify(b"secret", &phc));
        assert!(!h.verify(b"secreT", &phc));
        assert!(!h.verify(b"secret", "not a hash"));
        assert_ne!(phc, h.hash(b"secret").unwrap(), "salted");
    }

    #[test]
    fn verification_uses_the_stored_parameters() {
        let phc = cheap().hash(b"pw").unwrap();
        let other = Hasher::new(&RegistryConfig {
            argon2_memory_kib: 128,
            argon2_iterations: 2,
            ..RegistryConfig::default()
        })
        .unwrap();
        assert!(other.verify(b"pw", &phc));
    }

    #[test]
    fn bad_parameters_are_refused() {
        let e = Hasher::new(&RegistryConfig {
            argon2_memory_kib: 1,
            ..RegistryConfig::default()
        });
        assert!(matches!(e, Err(RegistryError::Invalid { .. })));
    }

    #[test]
    fn cache_keys_separate_parts() {
        assert_ne!(
            cache_key("device", &["a", "b"], b"c"),
            cache_key("device", &["a", "bc"], b"")
        );
        assert_ne!(cache_key("api", &[], b"x"), cache_key("claim", &[], b"x"));
    }
}
