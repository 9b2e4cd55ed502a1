//! Secrets: generation, token ids, argon2id hashing and verification, and the
//! digests the verification cache is keyed by.

use std::sync::Mutex;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::config::RegistryConfig;
use crate::error::RegistryError;

/// Length of stored argon2 outputs, in bytes.
const OUTPUT_LEN: usize = 32;

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

/// Largest argon2 memory cost accepted, in KiB (1 GiB), for new hashes and
/// for stored ones (a corrupt stored hash must not allocate terabytes).
const MAX_MEMORY_KIB: u32 = 1 << 20;

/// argon2 working memory kept for reuse between hashes (each buffer is
/// `argon2_memory_kib`). Reusing it instead of allocating fresh pages for
/// every hash more than halves the cost of one hash (8 MiB: from about
/// 7.8 ms to 3.1 ms in a release build), most of which was page faults.
const POOLED_BUFFERS: usize = 2;

/// Argon2id with the configured cost for new hashes. Verification reads the
/// parameters from each stored hash, so changing the cost keeps old hashes
/// valid.
pub(crate) struct Hasher {
    params: Params,
    pool: Mutex<Vec<Vec<Block>>>,
}

impl Hasher {
    pub(crate) fn new(config: &RegistryConfig) -> Result<Hasher, RegistryError> {
        if config.argon2_memory_kib > MAX_MEMORY_KIB {
            return Err(RegistryError::invalid(
                "argon2_memory_kib",
                format!("more than {MAX_MEMORY_KIB} KiB"),
            ));
        }
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            1,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| RegistryError::invalid("argon2", e.to_string()))?;
        Ok(Hasher {
            params,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Runs argon2 into `out` with pooled working memory.
    fn run(
        &self,
        argon2: &Argon2<'_>,
        params: &Params,
        secret: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let taken = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut blocks = taken.unwrap_or_default();
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        // Every block is written before it is read, so stale contents of a
        // reused buffer do not matter.
        let result = argon2.hash_password_into_with_memory(secret, salt, out, &mut blocks[..]);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_BUFFERS && blocks.len() == self.params.block_count() {
            pool.push(blocks);
        }
        result
    }

    /// The PHC string (`$argon2id$v=19$m=..,t=..,p=1$salt$hash`) of `secret`.
    pub(crate) fn hash(&self, secret: &[u8]) -> Result<String, RegistryError> {
        let fail = |e: &dyn std::fmt::Display| RegistryError::Storage(format!("argon2: {e}"));
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut out = [0u8; OUTPUT_LEN];
        self.run(&argon2, &self.params, secret, &salt, &mut out)
            .map_err(|e| fail(&e))?;
        let salt_string = SaltString::encode_b64(&salt).map_err(|e| fail(&e))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(|e| fail(&e))?,
            salt: Some(salt_string.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `secret` matches the stored PHC string, using the parameters
    /// recorded in it. An unreadable stored hash matches nothing (and is
    /// logged).
    pub(crate) fn verify(&self, secret: &[u8], phc: &str) -> bool {
        match self.verify_inner(secret, phc) {
            Ok(matches) => matches,
            Err(e) => {
                tracing::error!(error = %e, "stored password hash cannot be verified");
                false
            }
        }
    }

    fn verify_inner(&self, secret: &[u8], phc: &str) -> Result<bool, String> {
        let parsed = PasswordHash::new(phc).map_err(|e| e.to_string())?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| e.to_string())?,
            None => Version::V0x13,
        };
        let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(format!("memory cost {} KiB too large", params.m_cost()));
        }
        let expected = parsed.hash.ok_or("no hash")?;
        let mut salt_buf = [0u8; 64];
        let salt = parsed
            .salt
            .ok_or("no salt")?
            .decode_b64(&mut salt_buf)
            .map_err(|e| e.to_string())?;
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        self.run(&argon2, &params, secret, salt, &mut out)
            .map_err(|e| e.to_string())?;
        // `Output` compares in constant time.
        Ok(Output::new(&out).map_err(|e| e.to_string())? == expected)
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
    fn interoperates_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = cheap();
        let ours = h.hash(b"pw").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"px", &parsed).is_err());
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let params = Params::new(32, 2, 1, None).unwrap();
        for alg in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            let theirs = Argon2::new(alg, Version::V0x13, params.clone())
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(h.verify(b"pw", &theirs), "{theirs}");
            assert!(!h.verify(b"px", &theirs));
        }
    }

    #[test]
    fn huge_stored_memory_cost_is_refused() {
        let h = cheap();
        let phc = h.hash(b"pw").unwrap().replace("m=64", "m=4000000000");
        assert!(!h.verify(b"pw", &phc));
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
