//! Figures for BENCHMARKS.md; meaningful in a release build:
//!
//! ```text
//! cargo test -j2 --release -p registry --test timing -- --nocapture --include-ignored
//! ```

use std::time::{Duration, Instant};

use registry::{DeviceAuth, NewDevice, Registry, RegistryConfig};

const NS: &str = "default";

fn per_call(total: Duration, n: u32) -> Duration {
    total / n
}

/// Default argon2 parameters: one verification (a wrong token is never
/// cached, so each call runs argon2 once) against a cached verification.
#[test]
fn argon2_verify_and_cache_hit_with_default_params() {
    let dir = tempfile::tempdir().unwrap();
    let r = Registry::open(&dir.path().join("registry.redb"), RegistryConfig::default()).unwrap();
    r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
    let token = r.issue_device_token(NS, "d1", 0, 0).unwrap();

    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        let a = r.authenticate_device(NS, "d1", b"mwd_wrong", 1).unwrap();
        assert_eq!(a, DeviceAuth::BadToken);
    }
    let verify = per_call(t.elapsed(), n);

    let t = Instant::now();
    assert!(matches!(
        r.authenticate_device(NS, "d1", token.as_bytes(), 1)
            .unwrap(),
        DeviceAuth::Ok(_)
    ));
    let first = t.elapsed();

    let n = 2_000;
    let t = Instant::now();
    for _ in 0..n {
        assert!(matches!(
            r.authenticate_device(NS, "d1", token.as_bytes(), 2)
                .unwrap(),
            DeviceAuth::Ok(_)
        ));
    }
    let cached = per_call(t.elapsed(), n);
    println!(
        "argon2id m=8192 KiB t=1 p=1: verify (wrong token) {verify:?}/call; \
         first right token {first:?}; cached {cached:?}/call"
    );
    assert!(cached < verify, "a cache hit must be cheaper than argon2");
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

/// Ten thousand argon2 hashes: about a minute on two cores, so not run by
/// default.
#[test]
#[ignore]
fn import_10k_with_tokens_default_params() {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get().min(4));
    println!(
        "import 10,000 devices with tokens ({threads} hashing threads): {:?}",
        import(true)
    );
}
