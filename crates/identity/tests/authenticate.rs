//! The registry authenticator's verdicts over a real registry (temp dir).

use std::sync::Arc;
use std::time::Duration;

use broker::AclAction;
use broker_net::{AuthDecision, AuthRequest, Authenticator, Listener};
use identity::{provision, Policy, ProvisionError, ProvisionRequest, RegistryAuthenticator};
use iot_types::{ManualClock, Timestamp};
use mqtt_proto::ReasonCode;
use registry::{NewDevice, ProvisioningTemplate, Registry, RegistryConfig};

const NOW: u64 = 1_700_000_000_000;

fn setup() -> (tempfile::TempDir, Arc<Registry>, RegistryAuthenticator) {
    let (dir, reg, auth, _clock) = setup_with_clock();
    (dir, reg, auth)
}

/// Also the authenticator's clock, which the test moves.
fn setup_with_clock() -> (
    tempfile::TempDir,
    Arc<Registry>,
    RegistryAuthenticator,
    Arc<ManualClock>,
) {
    let dir = tempfile::tempdir().unwrap();
    let reg =
        Arc::new(Registry::open(&dir.path().join("r.redb"), RegistryConfig::default()).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(NOW)));
    let auth = RegistryAuthenticator::new(reg.clone(), Arc::new(Policy::default()), clock.clone());
    (dir, reg, auth, clock)
}

fn req(client_id: &str, user: Option<&str>, password: Option<&[u8]>) -> AuthRequest {
    AuthRequest {
        client_id: client_id.into(),
        username: user.map(str::to_string),
        password: password.map(<[u8]>::to_vec),
        peer: "127.0.0.1:5000".parse().unwrap(),
        listener: Listener::Tcp,
        certificate: None,
    }
}

fn refused(d: AuthDecision) -> ReasonCode {
    match d {
        AuthDecision::Refuse(c) => c,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn device_tokens() {
    let (_d, reg, auth) = setup();
    reg.create_device("default", NewDevice::new("d1"), NOW)
        .unwrap();
    let token = reg.issue_device_token("default", "d1", 0, NOW).unwrap();
    match auth.authenticate(&req("d1", Some("d1"), Some(token.as_bytes()))) {
        AuthDecision::Allow(g) => {
            assert_eq!(g.principal, "d1");
            assert!(g.allows("devices/d1/telemetry", AclAction::Write));
            assert!(!g.allows("devices/d2/telemetry", AclAction::Write));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(auth.authenticate(&req("d1", Some("d1"), Some(b"wrong")))),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // A registered device without a password must prove itself.
    assert_eq!(
        refused(auth.authenticate(&req("d1", Some("d1"), None))),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // No username, or no such device: the broker's own rules decide.
    assert!(matches!(
        auth.authenticate(&req("x", None, None)),
        AuthDecision::Default
    ));
    assert!(matches!(
        auth.authenticate(&req("x", Some("alice"), Some(b"pw"))),
        AuthDecision::Default
    ));
    // Disabled.
    reg.update_device(
        "default",
        "d1",
        registry::DevicePatch {
            enabled: Some(false),
            ..Default::default()
        },
        NOW,
    )
    .unwrap();
    assert_eq!(
        refused(auth.authenticate(&req("d1", Some("d1"), Some(token.as_bytes())))),
        ReasonCode::NOT_AUTHORIZED
    );
}

#[test]
fn certificates_name_the_device() {
    let (_d, reg, auth) = setup();
    reg.create_device("default", NewDevice::new("d1"), NOW)
        .unwrap();
    let cert = |cn: &str| pki::PeerCert {
        common_name: Some(cn.into()),
        san_device_id: None,
        serial_hex: "ab".into(),
        not_after_ms: NOW + 1000,
    };
    let mut r = req("d1", None, None);
    r.certificate = Some(cert("d1"));
    assert!(matches!(auth.authenticate(&r), AuthDecision::Allow(g) if g.principal == "d1"));
    r.username = Some("d2".into());
    assert_eq!(refused(auth.authenticate(&r)), ReasonCode::NOT_AUTHORIZED);
    let mut r = req("c", None, None);
    r.certificate = Some(cert("unknown"));
    assert_eq!(refused(auth.authenticate(&r)), ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn claims_reach_only_their_exchange_and_provision() {
    let (_d, reg, auth) = setup();
    let template = ProvisioningTemplate {
        device_type: Some("press".into()),
        id_pattern: Some("press-*".into()),
        ..Default::default()
    };
    let (claim, token) = reg
        .create_claim("default", "factory", template, Some(1), None, NOW)
        .unwrap();
    let grant = match auth.authenticate(&req("serial-9", Some("any"), Some(token.as_bytes()))) {
        AuthDecision::Allow(g) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(grant.principal, format!("claim:{}", claim.id));
    assert!(grant.allows("$provision/serial-9/request", AclAction::Write));
    assert!(grant.allows("$provision/serial-9/accepted", AclAction::Read));
    assert!(!grant.allows("devices/serial-9/telemetry", AclAction::Write));
    assert_eq!(
        refused(auth.authenticate(&req("a/b", Some("any"), Some(token.as_bytes())))),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );

    let refused_id = provision(
        &*reg,
        None,
        &claim.id,
        ProvisionRequest {
            device_id: Some("pump-1".into()),
            csr: None,
        },
        Some("serial-9"),
        30,
        NOW,
    );
    assert!(
        matches!(refused_id, Err(ProvisionError::Refused(_))),
        "{refused_id:?}"
    );
    let reply = provision(
        &*reg,
        None,
        &claim.id,
        ProvisionRequest {
            device_id: Some("press-1".into()),
            csr: None,
        },
        Some("serial-9"),
        30,
        NOW,
    )
    .unwrap();
    assert_eq!(reply.device_id, "press-1");
    let device_token = reply.token.unwrap();
    assert!(matches!(
        auth.authenticate(&req(
            "press-1",
            Some("press-1"),
            Some(device_token.as_bytes())
        )),
        AuthDecision::Allow(_)
    ));
    assert_eq!(
        reg.get_device("default", "press-1")
            .unwrap()
            .unwrap()
            .device_type,
        "press"
    );
    // One use only: the claim is spent.
    assert_eq!(
        refused(auth.authenticate(&req("serial-10", Some("any"), Some(token.as_bytes())))),
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[test]
fn devices_use_their_own_client_ids() {
    let (_d, reg, auth) = setup();
    reg.create_device("default", NewDevice::new("d1"), NOW)
        .unwrap();
    let token = reg.issue_device_token("default", "d1", 0, NOW).unwrap();
    reg.create_device("default", NewDevice::new("d1-b"), NOW)
        .unwrap();
    let with = |cid: &str| req(cid, Some("d1"), Some(token.as_bytes()));
    for ok in ["d1", "d1-ota", "d1/shadow"] {
        assert!(
            matches!(auth.authenticate(&with(ok)), AuthDecision::Allow(g) if g.principal == "d1"),
            "{ok}"
        );
    }
    // Somebody else's id, an id outside the policy, another device's id.
    for bad in ["d2", "mosq-123", "d10", "", "d1-b"] {
        assert_eq!(
            refused(auth.authenticate(&with(bad))),
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            "{bad:?}"
        );
    }
}

#[test]
fn claims_expire_by_the_authenticators_clock() {
    let (_d, reg, auth, clock) = setup_with_clock();
    let (claim, token) = reg
        .create_claim(
            "default",
            "factory",
            ProvisioningTemplate::default(),
            None,
            Some(NOW + 60_000),
            NOW,
        )
        .unwrap();
    let by_token = || auth.authenticate(&req("serial-1", Some("any"), Some(token.as_bytes())));
    let mut by_cert = req("serial-1", None, None);
    by_cert.certificate = Some(pki::PeerCert {
        common_name: Some(identity::claim_cert_subject(&claim.id)),
        san_device_id: None,
        serial_hex: "cd".into(),
        not_after_ms: NOW + 3_600_000,
    });
    assert!(matches!(by_token(), AuthDecision::Allow(_)));
    assert!(matches!(
        auth.authenticate(&by_cert),
        AuthDecision::Allow(_)
    ));
    // A minute later by the clock it was given (not the wall clock).
    clock.advance(Duration::from_secs(60));
    assert_eq!(refused(by_token()), ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(
        refused(auth.authenticate(&by_cert)),
        ReasonCode::NOT_AUTHORIZED
    );
}
