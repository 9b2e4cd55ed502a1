//! Secrets: generation, token ids, the two stored forms (a salted
//! HMAC-SHA256 for generated tokens, argon2id for chosen passwords) and
//! their verification, and the digests the verification cache is keyed by.

use std::sync::{Condvar, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

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

/// Random bytes in a generated secret: 256 bits, twice the 128 bits that
/// make guessing (online or against a stolen hash) hopeless; the fast
/// token hash relies on it.
pub(crate) const SECRET_BYTES: usize = 32;
// The fast token hash is safe only for secrets of at least 128 bits.
const _: () = assert!(SECRET_BYTES * 8 >= 128);
/// Characters of [`SECRET_BYTES`] in base64url without padding.
const SECRET_CHARS: usize = 43;

/// A new secret: `prefix` then [`SECRET_BYTES`] random bytes from the
/// thread's CSPRNG (ChaCha, seeded from the OS) in base64url without
/// padding.
pub(crate) fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = String::with_capacity(prefix.len() + SECRET_CHARS);
    s.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s
}

/// Whether `token` has the shape of a secret [`generate`]d with `prefix`
/// (the prefix, then 43 base64url characters). A secret an operator chose
/// (the bootstrap admin token) could take this shape only on purpose.
pub(crate) fn is_generated(token: &[u8], prefix: &str) -> bool {
    token.len() == prefix.len() + SECRET_CHARS
        && token.starts_with(prefix.as_bytes())
        && token[prefix.len()..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
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

/// Tag of the stored form of generated tokens:
/// `$hmac-sha256$v=1$<salt>$<mac>`, with a 16-byte random salt and the
/// 32-byte HMAC-SHA256 of the token keyed by that salt, both in base64
/// without padding (the PHC string alphabet). Anything else stored is a
/// PHC argon2 string. See the crate documentation for why this suffices.
const TOKEN_HASH_TAG: &str = "$hmac-sha256$v=1$";
const TOKEN_SALT_LEN: usize = 16;
const TOKEN_MAC_LEN: usize = 32;

/// Whether a stored hash is the fast form of [`hash_token`] (as opposed to
/// argon2, for passwords, chosen tokens and tokens stored before the fast
/// form existed).
pub(crate) fn is_token_hash(stored: &str) -> bool {
    stored.starts_with(TOKEN_HASH_TAG)
}

fn token_mac(salt: &[u8], token: &[u8]) -> Result<[u8; TOKEN_MAC_LEN], String> {
    // HMAC takes keys of any length; the error cannot happen.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).map_err(|e| e.to_string())?;
    mac.update(token);
    Ok(mac.finalize().into_bytes().into())
}

/// The stored form of a generated (high-entropy) token: one HMAC-SHA256,
/// about a microsecond and no memory beyond the stack.
pub(crate) fn hash_token(token: &[u8]) -> Result<String, RegistryError> {
    let mut salt = [0u8; TOKEN_SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mac = token_mac(&salt, token).map_err(|e| RegistryError::Storage(format!("hmac: {e}")))?;
    let mut s = String::with_capacity(TOKEN_HASH_TAG.len() + 22 + 1 + 43);
    s.push_str(TOKEN_HASH_TAG);
    STANDARD_NO_PAD.encode_string(salt, &mut s);
    s.push('$');
    STANDARD_NO_PAD.encode_string(mac, &mut s);
    Ok(s)
}

/// Whether `token` matches a stored [`hash_token`] form. The MACs are
/// compared in constant time.
fn verify_token_hash(token: &[u8], stored: &str) -> Result<bool, String> {
    let rest = stored
        .strip_prefix(TOKEN_HASH_TAG)
        .ok_or("not an hmac-sha256 token hash")?;
    let (salt, mac) = rest.split_once('$').ok_or("no MAC")?;
    let salt = STANDARD_NO_PAD
        .decode(salt)
        .map_err(|e| format!("salt: {e}"))?;
    let mac = STANDARD_NO_PAD
        .decode(mac)
        .map_err(|e| format!("MAC: {e}"))?;
    if salt.len() != TOKEN_SALT_LEN || mac.len() != TOKEN_MAC_LEN {
        return Err("wrong salt or MAC length".into());
    }
    Ok(ct_eq(&token_mac(&salt, token)?, &mac))
}

/// Constant-time equality of two byte strings: the time depends on their
/// lengths (public: a MAC's length is fixed) but not on where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Largest argon2 memory cost accepted, in KiB (1 GiB), for new hashes and
/// for stored ones (a corrupt stored hash must not allocate terabytes).
const MAX_MEMORY_KIB: u32 = 1 << 20;

/// Most argon2 runs at once in one registry, and argon2 working buffers
/// kept for reuse between runs (each `argon2_memory_kib`). More callers
/// wait for a slot, so argon2 never holds more than `ARGON2_SLOTS` ×
/// `argon2_memory_kib` (32 MiB with the defaults) however many threads
/// call, and every buffer is reused rather than allocated afresh: fresh
/// pages more than doubled the cost of one hash (8 MiB: 7.8 ms against
/// 3.1 ms in a release build), and buffers freed by dozens of threads at
/// once stayed resident in the allocator's arenas.
const ARGON2_SLOTS: usize = 4;

/// A counting gate: at most `limit` holders of a [`Slot`] at once.
struct Gate {
    limit: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One place in a [`Gate`], released on drop.
struct Slot<'a>(&'a Gate);

impl Gate {
    fn new(limit: usize) -> Gate {
        Gate {
            limit,
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free place. A std mutex is right: it is held to count,
    /// never across the hash.
    fn enter(&self) -> Slot<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= self.limit {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|e| e.into_inner());
        *busy = busy.saturating_sub(1);
        drop(busy);
        self.0.freed.notify_one();
    }
}

/// The two stored forms: [`hash_token`] for generated tokens, argon2id
/// with the configured cost for passwords and chosen tokens. Verification
/// reads the form and the argon2 parameters from each stored hash, so
/// changing the cost keeps old hashes valid.
pub(crate) struct Hasher {
    params: Params,
    pool: Mutex<Vec<Vec<Block>>>,
    gate: Gate,
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
            gate: Gate::new(ARGON2_SLOTS),
        })
    }

    /// Runs argon2 into `out` with pooled working memory, in one of the
    /// [`ARGON2_SLOTS`].
    fn run(
        &self,
        argon2: &Argon2<'_>,
        params: &Params,
        secret: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let _slot = self.gate.enter();
        let taken = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut blocks = taken.unwrap_or_default();
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        // Every block is written before it is read, so stale contents of a
        // reused buffer do not matter.
        let result = argon2.hash_password_into_with_memory(secret, salt, out, &mut blocks[..]);
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < ARGON2_SLOTS && blocks.len() == self.params.block_count() {
            pool.push(blocks);
        }
        result
    }

    /// The PHC string (`$argon2id$v=19$m=..,t=..,p=1$salt$hash`) of a
    /// secret a person chose (a password, the bootstrap token).
    pub(crate) fn hash_password(&self, secret: &[u8]) -> Result<String, RegistryError> {
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

    /// Whether `secret` matches the stored hash: the fast token form, or an
    /// argon2 PHC string verified with the parameters recorded in it. An
    /// unreadable stored hash matches nothing (and is logged).
    pub(crate) fn verify(&self, secret: &[u8], stored: &str) -> bool {
        let checked = if is_token_hash(stored) {
            verify_token_hash(secret, stored)
        } else {
            self.verify_argon2(secret, stored)
        };
        match checked {
            Ok(matches) => matches,
            Err(e) => {
                tracing::error!(error = %e, "stored password hash cannot be verified");
                false
            }
        }
    }

    fn verify_argon2(&self, secret: &[u8], phc: &str) -> Result<bool, String> {
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
    fn generated_secrets_carry_256_random_bits() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let t = generate(CLAIM_PREFIX);
            let raw = URL_SAFE_NO_PAD.decode(&t[4..]).unwrap();
            assert_eq!(raw.len(), SECRET_BYTES);
            assert!(is_generated(t.as_bytes(), CLAIM_PREFIX));
            assert!(seen.insert(raw));
        }
        assert!(!is_generated(b"mwc_short", CLAIM_PREFIX));
        assert!(!is_generated(generate(API_PREFIX).as_bytes(), CLAIM_PREFIX));
        let bad = format!("{CLAIM_PREFIX}{}", "!".repeat(SECRET_CHARS));
        assert!(!is_generated(bad.as_bytes(), CLAIM_PREFIX));
    }

    #[test]
    fn token_hash_is_salted_hmac_sha256() {
        let t = generate(DEVICE_PREFIX);
        let stored = hash_token(t.as_bytes()).unwrap();
        assert!(stored.starts_with("$hmac-sha256$v=1$"), "{stored}");
        assert!(is_token_hash(&stored));
        assert_eq!(stored.len(), TOKEN_HASH_TAG.len() + 22 + 1 + 43);
        assert_ne!(stored, hash_token(t.as_bytes()).unwrap(), "salted");
        // The MAC is HMAC-SHA256 keyed by the salt (RFC 4231 test case 2
        // shape: key "Jefe").
        let mac = token_mac(b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn token_hash_verifies_only_its_token() {
        let h = cheap();
        let t = generate(DEVICE_PREFIX);
        let stored = hash_token(t.as_bytes()).unwrap();
        assert!(h.verify(t.as_bytes(), &stored));
        assert!(!h.verify(generate(DEVICE_PREFIX).as_bytes(), &stored));
        assert!(!h.verify(&t.as_bytes()[..t.len() - 1], &stored));
        assert!(!h.verify(b"", &stored));
        // Last character flipped.
        let mut wrong = t.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        assert!(!h.verify(&wrong, &stored));
    }

    #[test]
    fn malformed_token_hashes_match_nothing() {
        let h = cheap();
        let stored = hash_token(b"tok").unwrap();
        let (head, mac) = stored.rsplit_once('$').unwrap();
        for bad in [
            TOKEN_HASH_TAG.to_string(),
            head.to_string(),
            format!("{head}$"),
            format!("{head}${}", &mac[1..]),
            format!("{head}$!{}", &mac[1..]),
            format!("{TOKEN_HASH_TAG}${mac}"),
            stored.replace("v=1", "v=2"),
        ] {
            assert!(!h.verify(b"tok", &bad), "{bad}");
        }
        assert!(h.verify(b"tok", &stored));
    }

    #[test]
    fn constant_time_compare_is_plain_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(&[7; 32], &[7; 32]));
        let mut first = [7u8; 32];
        first[0] = 8;
        let mut last = [7u8; 32];
        last[31] = 8;
        assert!(!ct_eq(&first, &[7; 32]));
        assert!(!ct_eq(&last, &[7; 32]));
        assert!(!ct_eq(&[7; 31], &[7; 32]), "a prefix is not equal");
    }

    #[test]
    fn argon2_runs_never_exceed_the_slots() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Gate::new(2);
        let (now, max) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _slot = gate.enter();
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        std::hint::black_box((0..1000).sum::<u64>());
                        now.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(max.load(Ordering::SeqCst) <= 2);
        assert_eq!(*gate.busy.lock().unwrap(), 0, "every slot released");
        let h = cheap();
        let phc = h.hash_password(b"pw").unwrap();
        std::thread::scope(|s| {
            for _ in 0..(ARGON2_SLOTS * 2) {
                s.spawn(|| assert!(h.verify(b"pw", &phc)));
            }
        });
        assert!(h.pool.lock().unwrap().len() <= ARGON2_SLOTS);
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
        let phc = h.hash_password(b"secret").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h.verify(b"secret", &phc));
        assert!(!h.verify(b"secreT", &phc));
        assert!(!h.verify(b"secret", "not a hash"));
        assert_ne!(phc, h.hash_password(b"secret").unwrap(), "salted");
    }

    #[test]
    fn interoperates_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = cheap();
        let ours = h.hash_password(b"pw").unwrap();
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
        let phc = h
            .hash_password(b"pw")
            .unwrap()
            .replace("m=64", "m=4000000000");
        assert!(!h.verify(b"pw", &phc));
    }

    #[test]
    fn verification_uses_the_stored_parameters() {
        let phc = cheap().hash_password(b"pw").unwrap();
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
