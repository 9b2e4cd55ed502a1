//! Figures for BENCHMARKS.md; meaningful in a release build:
//!
//! ```text
//! cargo test -j2 --release -p registry --test timing -- --nocapture --test-threads=1
//! ```

use std::time::{Duration, Instant};

use registry::{DeviceAuth, NewDevice, Registry, RegistryConfig, Role};

const NS: &str = "default";

fn per_call(total: Duration, n: u32) -> Duration {
    total / n
}

/// A device token (the fast form) against an operator password (argon2
/// with the default parameters, checked at each login).
#[test]
fn token_verify_against_password_verify_with_default_params() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(&dir.path().join("registry.redb"), RegistryConfig::default()).unwrap();
    r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
    let token = r.issue_device_token(NS, "d1", 0, 0).unwrap();
    r.create_user("ada", "correct horse", Role::Admin, 0)
        .unwrap();

    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        assert_eq!(r.login("ada", b"wrong horse", 1000, 1).unwrap(), None);
    }
    let argon2 = per_call(t.elapsed(), n);

    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        assert!(matches!(
            r.authenticate_device(NS, "d1", token.as_bytes(), 2)
                .unwrap(),
            DeviceAuth::Ok(_)
        ));
    }
    let right = per_call(t.elapsed(), n);
    let t = Instant::now();
    for _ in 0..n {
        let a = r.authenticate_device(NS, "d1", b"mwd_wrong", 1).unwrap();
        assert_eq!(a, DeviceAuth::BadToken);
    }
    let wrong = per_call(t.elapsed(), n);
    println!(
        "device token (hmac-sha256, store read included): right {right:?}/call, \
         wrong {wrong:?}/call; password login check (argon2id m=8192 KiB t=1 p=1) \
         {argon2:?}/call"
    );
    assert!(right < argon2, "a token check must be cheaper than argon2");
}

fn import(with_tokens: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(&dir.path().join("registry.redb"), RegistryConfig::default()).unwrap();
    let rows: Vec<NewDevice> = (0..10_000)
        .map(|i| {
            let mut nd = NewDevice::new(format!("sensor-{i:05}"));
            nd.labels.insert("site".into(), format!("s{}", i % 10));
            nd
        })
        .collect();
    let t = Instant::now();
    let report = r.import_devices(NS, rows, with_tokens, 0).unwrap();
    let took = t.elapsed();
    assert_eq!(report.created, 10_000);
    assert_eq!(report.tokens.len(), if with_tokens { 10_000 } else { 0 });
    if with_tokens {
        let (id, token) = &report.tokens[9_999];
        assert!(matches!(
            r.authenticate_device(NS, id, token.as_bytes(), 1).unwrap(),
            DeviceAuth::Ok(_)
        ));
    }
    took
}

#[test]
fn import_10k_without_tokens_default_params() {
    println!("import 10,000 devices without tokens: {:?}", import(false));
}

#[test]
fn import_10k_with_tokens_default_params() {
    println!("import 10,000 devices with tokens: {:?}", import(true));
}
