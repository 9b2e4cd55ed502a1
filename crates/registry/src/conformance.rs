//! The behaviour every implementation of the registry's store traits
//! must have: [`run`] ([`DeviceStorage`] and [`OperatorStorage`]) and
//! [`run_audit`] ([`AuditStorage`]). A backend's tests call each with a
//! function that makes a store for a path (see `kv::conformance::Make`).
//! Compiled for this crate's tests and with the `conformance` feature.

use std::path::Path;

use kv::conformance::{run_cases, Case, Stores};
use serde_json::json;

use crate::{
    AuditFilter, AuditStorage, ClaimAuth, Credential, DeviceAuth, DeviceFilter, DevicePatch,
    DeviceStorage, NewAuditEntry, NewDevice, OperatorStorage, ProvisioningTemplate, RegistryError,
    Role,
};

/// The file name the suites give their stores.
const FILE: &str = "registry.redb";

/// The bound an audit store made for [`run_audit`] must have: it keeps
/// at most this many entries.
pub const AUDIT_BOUND: u64 = 5;

/// Runs every [`DeviceStorage`] and [`OperatorStorage`] case (one store
/// of devices, credentials and operators), each on a store of its own;
/// panics on the first difference.
pub fn run<S: DeviceStorage + OperatorStorage>(make: impl Fn(&Path) -> S) {
    let cases: &[(&str, Case<S>)] = &[
        ("device life cycle", device_life_cycle),
        ("listing and namespaces", listing_and_namespaces),
        ("device tokens", device_tokens),
        ("claims and provisioning", claims_and_provisioning),
        ("certificates", certificates),
        ("device durability", device_durability),
        ("users and sessions", users_and_sessions),
        ("API tokens", api_tokens),
        ("operator durability", operator_durability),
    ];
    run_cases("registry store", FILE, &make, cases);
}

/// Runs every [`AuditStorage`] case; `make` gives a store keeping at
/// most [`AUDIT_BOUND`] entries.
pub fn run_audit<S: AuditStorage>(make: impl Fn(&Path) -> S) {
    let cases: &[(&str, Case<S>)] = &[
        ("audit order and filters", audit_order_and_filters),
        ("audit bound", audit_bound),
        ("audit durability", audit_durability),
    ];
    run_cases("audit log", FILE, &make, cases);
}

fn is_ok(a: DeviceAuth) -> bool {
    matches!(a, DeviceAuth::Ok(_))
}

fn device_life_cycle<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let mut new = NewDevice::new("d1");
    new.device_type = Some("press".into());
    new.labels.insert("zone".into(), "a".into());
    let d = s.create_device("ns", new.clone(), 10).unwrap();
    assert_eq!((d.id.as_str(), d.namespace.as_str()), ("d1", "ns"));
    assert_eq!((d.device_type.as_str(), d.enabled), ("press", true));
    assert_eq!(s.get_device("ns", "d1").unwrap().as_ref(), Some(&d));
    assert!(matches!(
        s.create_device("ns", new, 11),
        Err(RegistryError::AlreadyExists { kind: "device", .. })
    ));
    let patch = DevicePatch {
        enabled: Some(false),
        firmware_version: Some("1.2".into()),
        ..DevicePatch::default()
    };
    let u = s.update_device("ns", "d1", patch.clone(), 20).unwrap();
    assert!(!u.enabled);
    assert_eq!(u.firmware_version.as_deref(), Some("1.2"));
    assert_eq!((u.created_at_ms, u.updated_at_ms), (10, 20));
    assert_eq!(s.get_device("ns", "d1").unwrap(), Some(u));
    assert!(matches!(
        s.update_device("ns", "nope", patch, 21),
        Err(RegistryError::NotFound { .. })
    ));
    assert!(matches!(
        s.create_device("ns", NewDevice::new("bad/id"), 1),
        Err(RegistryError::Invalid { .. })
    ));
    assert!(s.delete_device("ns", "d1").unwrap());
    assert!(!s.delete_device("ns", "d1").unwrap());
    assert_eq!(s.get_device("ns", "d1").unwrap(), None);
    assert_eq!(s.count_devices("ns").unwrap(), 0);
}

fn listing_and_namespaces<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    for (ns, id) in [
        ("a", "d3"),
        ("a", "d1"),
        ("a", "d2"),
        ("ab", "d0"),
        ("b", "d1"),
    ] {
        let mut new = NewDevice::new(id);
        new.groups = vec![if id == "d2" { "odd" } else { "even" }.into()];
        s.create_device(ns, new, 1).unwrap();
    }
    let all = DeviceFilter::default();
    let p = s.list_devices("a", &all, &|_| true, None, 2).unwrap();
    let ids: Vec<&str> = p.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["d1", "d2"]);
    assert_eq!(p.next.as_deref(), Some("d2"));
    let p = s.list_devices("a", &all, &|_| true, Some("d2"), 2).unwrap();
    let ids: Vec<&str> = p.items.iter().map(|d| d.id.as_str()).collect();
    assert_eq!((ids, p.next), (vec!["d3"], None));
    let even = DeviceFilter {
        group: Some("even".into()),
        ..DeviceFilter::default()
    };
    let p = s.list_devices("a", &even, &|_| true, None, 10).unwrap();
    assert_eq!(p.items.len(), 2);
    let p = s
        .list_devices("a", &all, &|d| d.id != "d1", None, 10)
        .unwrap();
    assert_eq!(p.items.len(), 2);
    assert_eq!(
        (
            s.count_devices("a").unwrap(),
            s.count_devices("ab").unwrap()
        ),
        (3, 1)
    );
    assert_eq!(s.count_devices("c").unwrap(), 0);
    assert_eq!(s.get_device("b", "d3").unwrap(), None);
    assert!(s.delete_device("b", "d1").unwrap());
    assert_eq!(s.count_devices("a").unwrap(), 3);
    // An import is all or nothing.
    let rows = vec![NewDevice::new("n1"), NewDevice::new("d1")];
    let report = s.import_devices("a", rows, true, 2).unwrap();
    assert_eq!(report.created, 0);
    assert_eq!(s.count_devices("a").unwrap(), 3);
    let rows = vec![NewDevice::new("n1"), NewDevice::new("n2")];
    let report = s.import_devices("a", rows, true, 2).unwrap();
    assert_eq!(report.created, 2);
    assert_eq!(report.tokens.len(), 2);
    let (id, token) = &report.tokens[0];
    assert!(is_ok(
        s.authenticate_device("a", id, token.as_bytes(), 3).unwrap()
    ));
}

fn device_tokens<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    assert!(matches!(
        s.issue_device_token("ns", "d", 0, 0),
        Err(RegistryError::NotFound { .. })
    ));
    s.create_device("ns", NewDevice::new("d"), 0).unwrap();
    let t1 = s.issue_device_token("ns", "d", 0, 0).unwrap();
    assert!(is_ok(
        s.authenticate_device("ns", "d", t1.as_bytes(), 1).unwrap()
    ));
    assert_eq!(
        s.authenticate_device("ns", "d", b"wrong", 1).unwrap(),
        DeviceAuth::BadToken
    );
    assert_eq!(
        s.authenticate_device("other", "d", t1.as_bytes(), 1)
            .unwrap(),
        DeviceAuth::UnknownDevice
    );
    // Rotation with a grace period of 100 ms at t = 10.
    let t2 = s.issue_device_token("ns", "d", 100, 10).unwrap();
    assert_eq!(s.device_token_count("ns", "d", 10).unwrap(), 2);
    assert!(is_ok(
        s.authenticate_device("ns", "d", t1.as_bytes(), 109)
            .unwrap()
    ));
    assert_eq!(
        s.authenticate_device("ns", "d", t1.as_bytes(), 110)
            .unwrap(),
        DeviceAuth::BadToken
    );
    assert_eq!(s.device_token_count("ns", "d", 110).unwrap(), 1);
    // A disabled device is told apart only with the right token.
    let off = DevicePatch {
        enabled: Some(false),
        ..DevicePatch::default()
    };
    s.update_device("ns", "d", off, 111).unwrap();
    assert_eq!(
        s.authenticate_device("ns", "d", t2.as_bytes(), 112)
            .unwrap(),
        DeviceAuth::Disabled
    );
    // Both stored tokens go (the expired one was still stored).
    assert_eq!(s.revoke_device_tokens("ns", "d").unwrap(), 2);
    assert_eq!(s.device_token_count("ns", "d", 113).unwrap(), 0);
    assert_eq!(
        s.authenticate_device("ns", "d", t2.as_bytes(), 113)
            .unwrap(),
        DeviceAuth::BadToken
    );
}

fn claims_and_provisioning<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let template = ProvisioningTemplate {
        device_type: Some("press".into()),
        id_pattern: Some("press-*".into()),
        ..ProvisioningTemplate::default()
    };
    let (claim, token) = s
        .create_claim("ns", "line", template, Some(2), Some(1_000), 0)
        .unwrap();
    assert_eq!(s.get_claim("ns", &claim.id).unwrap().as_ref(), Some(&claim));
    assert_eq!(s.get_claim("other", &claim.id).unwrap(), None);
    let ClaimAuth::Ok(c) = s.authenticate_claim(token.as_bytes(), 1).unwrap() else {
        panic!("the claim token is accepted");
    };
    assert_eq!(c.id, claim.id);
    assert_eq!(
        s.authenticate_claim(b"mwc_wrong", 1).unwrap(),
        ClaimAuth::Unknown
    );
    let p = s
        .provision(&claim.id, "press-1", Credential::Token, 2)
        .unwrap();
    assert_eq!(p.device.device_type, "press");
    let device_token = p.token.expect("a token credential");
    assert!(is_ok(
        s.authenticate_device("ns", "press-1", device_token.as_bytes(), 3)
            .unwrap()
    ));
    assert!(matches!(
        s.provision(&claim.id, "pump-1", Credential::Token, 3),
        Err(RegistryError::Invalid { .. })
    ));
    assert!(matches!(
        s.provision(&claim.id, "press-1", Credential::Token, 3),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let p = s
        .provision_as(
            &claim.id,
            "press-2",
            Some("press-2"),
            Credential::Certificate,
            4,
        )
        .unwrap();
    assert_eq!(p.token, None);
    assert_eq!(
        s.authenticate_claim(token.as_bytes(), 5).unwrap(),
        ClaimAuth::Exhausted
    );
    assert!(matches!(
        s.provision(&claim.id, "press-3", Credential::Token, 5),
        Err(RegistryError::Conflict(_))
    ));
    assert_eq!(s.list_claims("ns").unwrap()[0].uses, 2);
    let (other, other_token) = s
        .create_claim(
            "ns",
            "other",
            ProvisioningTemplate::default(),
            None,
            None,
            0,
        )
        .unwrap();
    assert!(s.revoke_claim("ns", &other.id).unwrap());
    assert_eq!(
        s.authenticate_claim(other_token.as_bytes(), 6).unwrap(),
        ClaimAuth::Revoked
    );
    assert_eq!(s.list_claims("ns").unwrap().len(), 2);
    assert_eq!(s.count_devices("ns").unwrap(), 2);
}

fn certificates<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    assert!(matches!(
        s.record_certificate("ns", "d", "0a1b", 1_000, 0),
        Err(RegistryError::NotFound { .. })
    ));
    s.create_device("ns", NewDevice::new("d"), 0).unwrap();
    s.create_device("ns", NewDevice::new("e"), 0).unwrap();
    s.record_certificate("ns", "d", "0a1b", 1_000, 1).unwrap();
    s.record_certificate("ns", "d", "2c", 2_000, 2).unwrap();
    s.record_certificate("ns", "e", "3d", 2_000, 2).unwrap();
    assert!(matches!(
        s.record_certificate("ns", "e", "2c", 2_000, 3),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let mut serials: Vec<String> = s
        .list_certificates("ns", "d")
        .unwrap()
        .into_iter()
        .map(|c| c.serial_hex)
        .collect();
    serials.sort();
    assert_eq!(serials, ["2c", "a1b"]);
    assert!(!s.is_certificate_revoked("2c"));
    let r = s.revoke_certificate("2c", 5).unwrap().expect("a record");
    assert_eq!((r.device_id.as_str(), r.revoked_at_ms), ("d", Some(5)));
    assert!(s.is_certificate_revoked("2c"));
    assert!(s.revoked_serials().contains("2c"));
    // Deleting a device revokes its certificates.
    assert!(s.delete_device("ns", "e").unwrap());
    assert!(s.is_certificate_revoked("3d"));
    assert!(!s.is_certificate_revoked("a1b"));
}

fn device_durability<S: DeviceStorage>(stores: &Stores<'_, S>) {
    let (_dir, path) = stores.temp_path();
    let (d, token) = {
        let s = stores.open(&path);
        let d = s.create_device("ns", NewDevice::new("d"), 1).unwrap();
        let token = s.issue_device_token("ns", "d", 0, 1).unwrap();
        s.record_certificate("ns", "d", "ff", 1_000, 1).unwrap();
        s.revoke_certificate("ff", 2).unwrap();
        (d, token)
    };
    let s = stores.open(&path);
    assert_eq!(s.get_device("ns", "d").unwrap(), Some(d));
    assert_eq!(s.count_devices("ns").unwrap(), 1);
    assert!(is_ok(
        s.authenticate_device("ns", "d", token.as_bytes(), 3)
            .unwrap()
    ));
    assert!(s.is_certificate_revoked("ff"), "revocations load at open");
}

fn users_and_sessions<S: OperatorStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    let ada = s
        .create_user("ada", "correct horse", Role::Admin, 1)
        .unwrap();
    assert_eq!((ada.username.as_str(), ada.role), ("ada", Role::Admin));
    assert!(matches!(
        s.create_user("ada", "another password", Role::Viewer, 2),
        Err(RegistryError::AlreadyExists { .. })
    ));
    assert_eq!(s.get_user("ada").unwrap(), Some(ada));
    assert_eq!(s.get_user("nobody").unwrap(), None);
    let (session, p) = s
        .login("ada", b"correct horse", 1_000, 10)
        .unwrap()
        .expect("the right password logs in");
    assert_eq!((p.name.as_str(), p.role), ("ada", Role::Admin));
    assert_eq!(
        s.authenticate_api_token(session.as_bytes(), 11).unwrap(),
        Some(p)
    );
    assert_eq!(
        s.authenticate_api_token(session.as_bytes(), 1_010).unwrap(),
        None,
        "a session ends at its time to live"
    );
    assert_eq!(s.login("ada", b"wrong", 1_000, 12).unwrap(), None);
    assert_eq!(s.login("nobody", b"x", 1_000, 12).unwrap(), None);
    s.update_user("ada", Some(Role::Viewer), None, Some("battery staple"))
        .unwrap();
    assert_eq!(s.login("ada", b"correct horse", 1_000, 13).unwrap(), None);
    let (_, p) = s
        .login("ada", b"battery staple", 1_000, 13)
        .unwrap()
        .unwrap();
    assert_eq!(p.role, Role::Viewer);
    s.update_user("ada", None, Some(true), None).unwrap();
    assert_eq!(s.login("ada", b"battery staple", 1_000, 14).unwrap(), None);
    s.create_user("bob", "pw-of-bob", Role::Operator, 1)
        .unwrap();
    let names: Vec<String> = s
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["ada", "bob"]);
    assert!(s.delete_user("bob").unwrap());
    assert!(!s.delete_user("bob").unwrap());
}

fn api_tokens<S: OperatorStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    s.create_user("bob", "pw-of-bob", Role::Viewer, 0).unwrap();
    let (owned, secret) = s
        .create_api_token("bob-admin", Some("bob"), Role::Admin, None, 1)
        .unwrap();
    let p = s
        .authenticate_api_token(secret.as_bytes(), 2)
        .unwrap()
        .unwrap();
    assert_eq!((p.name.as_str(), p.role), ("token:bob-admin", Role::Viewer));
    let (ci, ci_secret) = s
        .create_api_token("ci", None, Role::Operator, Some(100), 1)
        .unwrap();
    assert_eq!(ci.last4, ci_secret[ci_secret.len() - 4..]);
    assert!(s
        .authenticate_api_token(ci_secret.as_bytes(), 99)
        .unwrap()
        .is_some());
    assert_eq!(
        s.authenticate_api_token(ci_secret.as_bytes(), 100).unwrap(),
        None
    );
    assert_eq!(s.api_token_count().unwrap(), 2);
    let chosen = s
        .create_api_token_with_secret("chosen-secret", "boot", None, Role::Admin, None, 1)
        .unwrap();
    assert!(s
        .authenticate_api_token(b"chosen-secret", 2)
        .unwrap()
        .is_some());
    assert!(s.revoke_api_token(&chosen.id).unwrap());
    assert!(!s.revoke_api_token(&chosen.id).unwrap());
    assert_eq!(s.authenticate_api_token(b"chosen-secret", 3).unwrap(), None);
    // Deleting the owner deletes its tokens.
    assert!(s.delete_user("bob").unwrap());
    assert_eq!(
        s.authenticate_api_token(secret.as_bytes(), 4).unwrap(),
        None
    );
    let left = s.list_api_tokens().unwrap();
    assert!(
        matches!(left.as_slice(), [t] if t.id == ci.id && t.id != owned.id),
        "{left:?}"
    );
}

fn operator_durability<S: OperatorStorage>(stores: &Stores<'_, S>) {
    let (_dir, path) = stores.temp_path();
    let (session, token) = {
        let s = stores.open(&path);
        s.create_user("ada", "correct horse", Role::Admin, 0)
            .unwrap();
        let (session, _) = s.login("ada", b"correct horse", 1_000, 1).unwrap().unwrap();
        let (_, token) = s
            .create_api_token("ci", None, Role::Viewer, None, 1)
            .unwrap();
        (session, token)
    };
    let s = stores.open(&path);
    assert_eq!(s.list_users().unwrap().len(), 1);
    assert!(s
        .authenticate_api_token(session.as_bytes(), 2)
        .unwrap()
        .is_some());
    assert!(s
        .authenticate_api_token(token.as_bytes(), 2)
        .unwrap()
        .is_some());
}

fn audit_entry(t: u64, actor: &str, action: &str) -> NewAuditEntry {
    NewAuditEntry {
        time_ms: t,
        actor: actor.into(),
        action: action.into(),
        target: format!("devices/d{t}"),
        source: "10.0.0.1:5000".into(),
        status: 200,
        details: json!({ "t": t }),
    }
}

fn audit_order_and_filters<S: AuditStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    assert_eq!(s.count().unwrap(), 0);
    for t in 1..=4 {
        let action = if t % 2 == 0 {
            "device.create"
        } else {
            "user.login"
        };
        assert_eq!(s.append(audit_entry(t, "ada", action)).unwrap(), t);
    }
    let all = AuditFilter::default();
    let p = s.query(&all, None, 3).unwrap();
    let seqs: Vec<u64> = p.items.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [4, 3, 2]);
    assert_eq!(p.items[0].details, json!({"t": 4}));
    assert_eq!(p.items[0].target, "devices/d4");
    assert_eq!(p.next.as_deref(), Some("2"));
    let p = s.query(&all, Some(2), 3).unwrap();
    assert_eq!(p.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    assert_eq!(p.next, None);
    let devices = AuditFilter {
        action_prefix: Some("device.".into()),
        ..AuditFilter::default()
    };
    let p = s.query(&devices, None, 10).unwrap();
    assert_eq!(p.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 2]);
    let window = AuditFilter {
        since_ms: Some(2),
        until_ms: Some(4),
        ..AuditFilter::default()
    };
    let p = s.query(&window, None, 10).unwrap();
    assert_eq!(p.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
    let bob = AuditFilter {
        actor: Some("bob".into()),
        ..AuditFilter::default()
    };
    assert!(s.query(&bob, None, 10).unwrap().items.is_empty());
    assert!(matches!(
        s.query(&all, None, 0),
        Err(RegistryError::Invalid { .. })
    ));
}

fn audit_bound<S: AuditStorage>(stores: &Stores<'_, S>) {
    let (_dir, s) = stores.fresh();
    for t in 1..=AUDIT_BOUND + 3 {
        assert_eq!(s.append(audit_entry(t, "ada", "x")).unwrap(), t);
    }
    assert_eq!(s.count().unwrap(), AUDIT_BOUND);
    let p = s.query(&AuditFilter::default(), None, 100).unwrap();
    let seqs: Vec<u64> = p.items.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (4..=AUDIT_BOUND + 3).rev().collect();
    assert_eq!(seqs, want, "the oldest entries go first");
}

fn audit_durability<S: AuditStorage>(stores: &Stores<'_, S>) {
    let (_dir, path) = stores.temp_path();
    {
        let s = stores.open(&path);
        for t in 1..=AUDIT_BOUND + 1 {
            s.append(audit_entry(t, "ada", "x")).unwrap();
        }
    }
    let s = stores.open(&path);
    assert_eq!(s.count().unwrap(), AUDIT_BOUND);
    let next = s.append(audit_entry(99, "ada", "x")).unwrap();
    assert_eq!(next, AUDIT_BOUND + 2, "sequence numbers are never reused");
}

#[cfg(test)]
mod tests {
    use crate::{AuditStore, Registry, RegistryConfig};

    fn registry(path: &std::path::Path) -> Registry {
        let config = RegistryConfig {
            argon2_memory_kib: 64,
            ..RegistryConfig::default()
        };
        Registry::open(path, config).expect("open")
    }

    #[test]
    fn the_redb_registry_conforms() {
        super::run(registry);
    }

    #[test]
    fn the_redb_audit_log_conforms() {
        super::run_audit(|path| AuditStore::open(path, super::AUDIT_BOUND).expect("open"));
    }

    #[test]
    fn the_traits_are_object_safe() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(&dir.path().join("r.redb"));
        let devices: &dyn crate::DeviceStorage = &r;
        let operators: &dyn crate::OperatorStorage = &r;
        let audit: &dyn crate::AuditStorage = r.audit();
        assert_eq!(devices.count_devices("ns").unwrap(), 0);
        assert_eq!(operators.api_token_count().unwrap(), 0);
        assert_eq!(audit.count().unwrap(), 0);
    }
}
