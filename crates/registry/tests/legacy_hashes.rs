//! Stored forms of secrets, read back from the file: generated tokens are
//! stored as salted HMAC-SHA256, passwords and chosen tokens as argon2id,
//! and a data directory written before the fast form existed (argon2
//! hashes of generated tokens) keeps working, its token hashes moving to
//! the fast form on their first successful use.

mod common;

use std::path::Path;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use common::open;
use registry::{ClaimAuth, DeviceAuth, NewDevice, ProvisioningTemplate};
use registry::{RegistryError, Role};
use serde_json::Value;

const NS: &str = "default";

const DEVICE_TOKENS: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("device_tokens");
const CLAIMS: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("claims");
const API_TOKENS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("api_tokens");
const USERS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("users");

fn is_ok(a: DeviceAuth) -> bool {
    matches!(a, DeviceAuth::Ok(_))
}

/// An argon2id PHC string as the previous binary wrote it (its default
/// cost: 8 MiB, one pass).
fn legacy_hash(secret: &str) -> String {
    let params = Params::new(8192, 1, 1, Some(32)).unwrap();
    let salt = SaltString::encode_b64(&[42u8; 16]).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Reads a JSON record straight from the file (the registry closed).
fn read_raw<K: redb::Key + 'static>(
    path: &Path,
    table: redb::TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
) -> Value {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(table).unwrap();
    let v = t.get(key).unwrap().unwrap();
    serde_json::from_slice(v.value()).unwrap()
}

/// Overwrites a JSON record straight in the file (the registry closed).
fn write_raw<K: redb::Key + 'static>(
    path: &Path,
    table: redb::TableDefinition<K, &[u8]>,
    key: K::SelfType<'_>,
    value: &Value,
) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(table).unwrap();
        t.insert(key, serde_json::to_vec(value).unwrap().as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

fn hash_of(rec: &Value) -> &str {
    rec["hash"].as_str().unwrap()
}

fn device_hashes(path: &Path, id: &str) -> Vec<String> {
    let rec = read_raw(path, DEVICE_TOKENS, (NS, id));
    rec["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| hash_of(t).to_string())
        .collect()
}

#[test]
fn new_secrets_are_stored_in_the_right_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let (claim_id, api_id, session_id, boot_id) = {
        let r = open(&path);
        r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
        r.issue_device_token(NS, "d1", 0, 0).unwrap();
        let (claim, _) = r
            .create_claim(NS, "c", ProvisioningTemplate::default(), None, None, 0)
            .unwrap();
        let (api, _) = r
            .create_api_token("ci", None, Role::Viewer, None, 0)
            .unwrap();
        r.create_user("ada", "correct horse", Role::Admin, 0)
            .unwrap();
        let (_, session) = r.login("ada", b"correct horse", 1000, 1).unwrap().unwrap();
        let boot = r
            .create_api_token_with_secret("chosen-by-a-person", "boot", None, Role::Admin, None, 0)
            .unwrap();
        (claim.id, api.id, session.token_id.unwrap(), boot.id)
    };
    let fast = "$hmac-sha256$v=1$";
    assert!(device_hashes(&path, "d1")[0].starts_with(fast));
    assert!(hash_of(&read_raw(&path, CLAIMS, (NS, claim_id.as_str()))).starts_with(fast));
    assert!(hash_of(&read_raw(&path, API_TOKENS, api_id.as_str())).starts_with(fast));
    assert!(hash_of(&read_raw(&path, API_TOKENS, session_id.as_str())).starts_with(fast));
    // What people choose stays argon2.
    assert!(hash_of(&read_raw(&path, API_TOKENS, boot_id.as_str())).starts_with("$argon2id$"));
    let user = read_raw(&path, USERS, "ada");
    assert!(user["password_hash"]
        .as_str()
        .unwrap()
        .starts_with("$argon2id$"));
}

#[test]
fn legacy_device_token_verifies_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    // A token of the generated shape (prefix + 43 base64url characters).
    let old = format!("mwd_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v");
    {
        let r = open(&path);
        r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
        r.create_device(NS, NewDevice::new("d2"), 0).unwrap();
        r.issue_device_token(NS, "d1", 0, 0).unwrap();
    }
    // What the previous binary left: the token's argon2 hash.
    let legacy = legacy_hash(&old);
    write_raw(
        &path,
        DEVICE_TOKENS,
        (NS, "d1"),
        &serde_json::json!({
            "v": 1,
            "tokens": [{"hash": legacy, "created_at_ms": 0, "expires_at_ms": null}]
        }),
    );
    {
        let r = open(&path);
        assert_eq!(
            r.authenticate_device(NS, "d1", b"mwd_wrong", 1).unwrap(),
            DeviceAuth::BadToken
        );
        assert_eq!(
            r.authenticate_device(NS, "d2", old.as_bytes(), 1).unwrap(),
            DeviceAuth::BadToken,
            "no token of its own"
        );
    }
    assert_eq!(
        device_hashes(&path, "d1"),
        vec![legacy.clone()],
        "a refusal changes nothing"
    );
    {
        let r = open(&path);
        assert!(is_ok(
            r.authenticate_device(NS, "d1", old.as_bytes(), 1).unwrap()
        ));
        assert!(is_ok(
            r.authenticate_device(NS, "d1", old.as_bytes(), 2).unwrap()
        ));
    }
    let hashes = device_hashes(&path, "d1");
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].starts_with("$hmac-sha256$v=1$"), "{}", hashes[0]);
    let r = open(&path);
    assert!(is_ok(
        r.authenticate_device(NS, "d1", old.as_bytes(), 3).unwrap()
    ));
    assert_eq!(
        r.authenticate_device(NS, "d1", b"mwd_wrong", 3).unwrap(),
        DeviceAuth::BadToken
    );
    assert_eq!(r.cache_len(), 0, "the fast form is not cached");
}

#[test]
fn legacy_token_in_its_grace_period_keeps_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let old = format!("mwd_{}", "z".repeat(43));
    let new = {
        let r = open(&path);
        r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
        r.issue_device_token(NS, "d1", 0, 0).unwrap()
    };
    // The new token (fast form) and the previous one (argon2) in its
    // grace period, newest first, as rotation stores them.
    let mut rec = read_raw(&path, DEVICE_TOKENS, (NS, "d1"));
    let fresh = rec["tokens"][0].clone();
    rec["tokens"] = serde_json::json!([
        fresh,
        {"hash": legacy_hash(&old), "created_at_ms": 0, "expires_at_ms": 100}
    ]);
    write_raw(&path, DEVICE_TOKENS, (NS, "d1"), &rec);
    {
        let r = open(&path);
        assert!(is_ok(
            r.authenticate_device(NS, "d1", new.as_bytes(), 10).unwrap()
        ));
        assert!(is_ok(
            r.authenticate_device(NS, "d1", old.as_bytes(), 10).unwrap()
        ));
        assert_eq!(
            r.authenticate_device(NS, "d1", old.as_bytes(), 100)
                .unwrap(),
            DeviceAuth::BadToken,
            "expired"
        );
    }
    let rec = read_raw(&path, DEVICE_TOKENS, (NS, "d1"));
    assert_eq!(rec["tokens"][0], fresh);
    assert!(hash_of(&rec["tokens"][1]).starts_with("$hmac-sha256$"));
    assert_eq!(rec["tokens"][1]["expires_at_ms"], 100);
}

#[test]
fn legacy_claim_and_api_tokens_verify_and_are_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let (claim_id, claim_token, api_id, api_token, boot_id) = {
        let r = open(&path);
        let (claim, claim_token) = r
            .create_claim(NS, "c", ProvisioningTemplate::default(), None, None, 0)
            .unwrap();
        let (api, api_token) = r
            .create_api_token("ci", None, Role::Operator, None, 0)
            .unwrap();
        let boot = r
            .create_api_token_with_secret("chosen-by-a-person", "boot", None, Role::Admin, None, 0)
            .unwrap();
        (claim.id, claim_token, api.id, api_token, boot.id)
    };
    let mut claim = read_raw(&path, CLAIMS, (NS, claim_id.as_str()));
    claim["hash"] = legacy_hash(&claim_token).into();
    write_raw(&path, CLAIMS, (NS, claim_id.as_str()), &claim);
    let mut api = read_raw(&path, API_TOKENS, api_id.as_str());
    api["hash"] = legacy_hash(&api_token).into();
    write_raw(&path, API_TOKENS, api_id.as_str(), &api);
    let boot_hash = hash_of(&read_raw(&path, API_TOKENS, boot_id.as_str())).to_string();
    {
        let r = open(&path);
        assert_eq!(
            r.authenticate_claim(format!("{claim_token}x").as_bytes(), 1)
                .unwrap(),
            ClaimAuth::Unknown
        );
        assert!(matches!(
            r.authenticate_claim(claim_token.as_bytes(), 1).unwrap(),
            ClaimAuth::Ok(_)
        ));
        let p = r
            .authenticate_api_token(api_token.as_bytes(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(p.role, Role::Operator);
        assert!(r
            .authenticate_api_token(b"chosen-by-a-person", 1)
            .unwrap()
            .is_some());
        assert!(r
            .authenticate_api_token(b"chosen-by-a-person", 2)
            .unwrap()
            .is_some());
        assert_eq!(
            r.authenticate_api_token(b"chosen-by-a-persoN", 2).unwrap(),
            None
        );
        assert_eq!(r.cache_len(), 3, "argon2 matches are cached");
    }
    assert!(hash_of(&read_raw(&path, CLAIMS, (NS, claim_id.as_str()))).starts_with("$hmac-sha256$"));
    assert!(hash_of(&read_raw(&path, API_TOKENS, api_id.as_str())).starts_with("$hmac-sha256$"));
    assert_eq!(
        hash_of(&read_raw(&path, API_TOKENS, boot_id.as_str())),
        boot_hash,
        "a chosen token keeps argon2"
    );
    let r = open(&path);
    assert!(matches!(
        r.authenticate_claim(claim_token.as_bytes(), 2).unwrap(),
        ClaimAuth::Ok(_)
    ));
    assert!(r
        .authenticate_api_token(api_token.as_bytes(), 2)
        .unwrap()
        .is_some());
    assert!(matches!(
        r.create_api_token_with_secret("short", "x", None, Role::Admin, None, 0),
        Err(RegistryError::Invalid { .. })
    ));
}
