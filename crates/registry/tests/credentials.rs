//! Device tokens and certificates through the public API: rotation with a
//! grace period, revocation through the cache, disabled and deleted
//! devices, revoked serials across reopen.

mod common;

use common::open;
use registry::{DeviceAuth, DevicePatch, NewDevice, RegistryError};

const NS: &str = "default";

fn is_ok(a: DeviceAuth) -> bool {
    matches!(a, DeviceAuth::Ok(_))
}

#[test]
fn rotation_with_grace() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
    let t1 = r.issue_device_token(NS, "d1", 0, 1_000).unwrap();
    assert!(t1.starts_with("mwd_"));
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t1.as_bytes(), 1_001)
            .unwrap()
    ));

    // Rotate with one minute of grace at t = 10 s.
    let t2 = r.issue_device_token(NS, "d1", 60_000, 10_000).unwrap();
    assert_ne!(t1, t2);
    assert_eq!(r.device_token_count(NS, "d1", 10_000).unwrap(), 2);
    for now in [10_000, 69_999] {
        assert!(is_ok(
            r.authenticate_device(NS, "d1", t1.as_bytes(), now).unwrap()
        ));
        assert!(is_ok(
            r.authenticate_device(NS, "d1", t2.as_bytes(), now).unwrap()
        ));
    }
    // The old token was cached above; the grace end still applies.
    assert_eq!(
        r.authenticate_device(NS, "d1", t1.as_bytes(), 70_000)
            .unwrap(),
        DeviceAuth::BadToken
    );
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t2.as_bytes(), 70_000)
            .unwrap()
    ));
    assert_eq!(r.device_token_count(NS, "d1", 70_000).unwrap(), 1);

    // Three rotations in a row keep at most two tokens: t2 is dropped.
    let t3 = r.issue_device_token(NS, "d1", 60_000, 80_000).unwrap();
    let t4 = r.issue_device_token(NS, "d1", 60_000, 80_001).unwrap();
    assert_eq!(r.device_token_count(NS, "d1", 80_002).unwrap(), 2);
    assert_eq!(
        r.authenticate_device(NS, "d1", t2.as_bytes(), 80_002)
            .unwrap(),
        DeviceAuth::BadToken
    );
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t3.as_bytes(), 80_002)
            .unwrap()
    ));
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t4.as_bytes(), 80_002)
            .unwrap()
    ));

    // Rotation without grace: the previous token fails at once.
    let t5 = r.issue_device_token(NS, "d1", 0, 90_000).unwrap();
    assert_eq!(
        r.authenticate_device(NS, "d1", t4.as_bytes(), 90_000)
            .unwrap(),
        DeviceAuth::BadToken
    );
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t5.as_bytes(), 90_000)
            .unwrap()
    ));
}

#[test]
fn revocation_beats_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
    let t = r.issue_device_token(NS, "d1", 0, 0).unwrap();
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t.as_bytes(), 1).unwrap()
    ));
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t.as_bytes(), 2).unwrap()
    ));
    assert_eq!(r.cache_len(), 0, "generated tokens are not cached");
    assert_eq!(r.revoke_device_tokens(NS, "d1").unwrap(), 1);
    assert_eq!(
        r.authenticate_device(NS, "d1", t.as_bytes(), 3).unwrap(),
        DeviceAuth::BadToken
    );
    assert_eq!(r.device_token_count(NS, "d1", 3).unwrap(), 0);
}

#[test]
fn disabled_and_deleted_devices() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
    let t = r.issue_device_token(NS, "d1", 0, 0).unwrap();
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t.as_bytes(), 1).unwrap()
    ));
    let off = DevicePatch {
        enabled: Some(false),
        ..DevicePatch::default()
    };
    r.update_device(NS, "d1", off, 2).unwrap();
    assert_eq!(
        r.authenticate_device(NS, "d1", t.as_bytes(), 3).unwrap(),
        DeviceAuth::Disabled
    );
    assert_eq!(
        r.authenticate_device(NS, "d1", b"mwd_guess", 3).unwrap(),
        DeviceAuth::BadToken
    );
    let on = DevicePatch {
        enabled: Some(true),
        ..DevicePatch::default()
    };
    r.update_device(NS, "d1", on, 4).unwrap();
    assert!(is_ok(
        r.authenticate_device(NS, "d1", t.as_bytes(), 5).unwrap()
    ));

    // Deleted, then re-created with the same id: the old token is dead.
    assert!(r.delete_device(NS, "d1").unwrap());
    assert_eq!(
        r.authenticate_device(NS, "d1", t.as_bytes(), 6).unwrap(),
        DeviceAuth::UnknownDevice
    );
    r.create_device(NS, NewDevice::new("d1"), 7).unwrap();
    assert_eq!(
        r.authenticate_device(NS, "d1", t.as_bytes(), 8).unwrap(),
        DeviceAuth::BadToken
    );
    assert!(matches!(
        r.issue_device_token(NS, "ghost", 0, 0),
        Err(RegistryError::NotFound { kind: "device", .. })
    ));
}

#[test]
fn tokens_and_revocations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let token;
    {
        let r = open(&path);
        r.create_device(NS, NewDevice::new("d1"), 0).unwrap();
        r.create_device(NS, NewDevice::new("d2"), 0).unwrap();
        token = r.issue_device_token(NS, "d1", 0, 0).unwrap();
        r.record_certificate(NS, "d1", "01ab", 1_000_000, 1)
            .unwrap();
        r.record_certificate(NS, "d2", "02cd", 1_000_000, 1)
            .unwrap();
        r.record_certificate(NS, "d2", "03ef", 1_000_000, 1)
            .unwrap();
        r.revoke_certificate("1AB", 5).unwrap().unwrap();
        assert!(r.delete_device(NS, "d2").unwrap());
    }
    let r = open(&path);
    assert!(is_ok(
        r.authenticate_device(NS, "d1", token.as_bytes(), 1)
            .unwrap()
    ));
    assert!(r.is_certificate_revoked("1ab"));
    assert!(
        r.is_certificate_revoked("2cd"),
        "deleting d2 revoked its certificates"
    );
    assert!(r.is_certificate_revoked("3ef"));
    assert_eq!(r.revoked_serials().len(), 3);
    let certs = r.list_certificates(NS, "d1").unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial_hex, "1ab");
    assert_eq!(certs[0].revoked_at_ms, Some(5));
    assert!(r.list_certificates(NS, "d2").unwrap().is_empty());
}
