//! Zero-touch provisioning through the public API.

mod common;

use common::open;
use registry::{ClaimAuth, Credential, DeviceAuth, NewDevice, ProvisioningTemplate, RegistryError};

fn claim_id(auth: ClaimAuth) -> String {
    match auth {
        ClaimAuth::Ok(c) => c.id,
        other => panic!("expected a usable claim, got {other:?}"),
    }
}

#[test]
fn claim_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let r = open(&path);
    let template = ProvisioningTemplate {
        device_type: Some("press".into()),
        groups: vec!["presses".into()],
        id_pattern: Some("press-*".into()),
        ..ProvisioningTemplate::default()
    };
    let (claim, token) = r
        .create_claim("plant-a", "press line", template, Some(2), Some(1_000), 0)
        .unwrap();

    // A device presents the claim token, then provisions itself.
    let id = claim_id(r.authenticate_claim(token.as_bytes(), 10).unwrap());
    assert_eq!(id, claim.id);
    let p = r.provision(&id, "press-1", Credential::Token, 10).unwrap();
    let device_token = p.token.unwrap();
    assert!(matches!(
        r.authenticate_device("plant-a", "press-1", device_token.as_bytes(), 11)
            .unwrap(),
        DeviceAuth::Ok(d) if d.device_type == "press" && d.groups == ["presses"]
    ));

    // Refusals: existing device, pattern.
    assert!(matches!(
        r.provision(&id, "press-1", Credential::Token, 12),
        Err(RegistryError::AlreadyExists { kind: "device", .. })
    ));
    assert!(matches!(
        r.provision(&id, "pump-1", Credential::Token, 12),
        Err(RegistryError::Invalid { field, message })
            if field == "device_id" && message.contains("pattern")
    ));
    // An id created by an operator meanwhile is refused too.
    r.create_device("plant-a", NewDevice::new("press-9"), 12)
        .unwrap();
    assert!(matches!(
        r.provision(&id, "press-9", Credential::Token, 12),
        Err(RegistryError::AlreadyExists { .. })
    ));

    // Second and last use.
    r.provision(&id, "press-2", Credential::Certificate, 13)
        .unwrap();
    assert_eq!(
        r.authenticate_claim(token.as_bytes(), 14).unwrap(),
        ClaimAuth::Exhausted
    );
    assert!(matches!(
        r.provision(&id, "press-3", Credential::Token, 14),
        Err(RegistryError::Conflict(_))
    ));
    let listed = r.list_claims("plant-a").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].uses, 2);

    // Durable across reopen.
    drop(r);
    let r = open(&path);
    assert_eq!(r.list_claims("plant-a").unwrap()[0].uses, 2);
    assert_eq!(r.count_devices("plant-a").unwrap(), 3);
}

#[test]
fn expiry_revocation_and_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    let template = ProvisioningTemplate {
        allow_list: Some(vec!["gw-1".into(), "gw-2".into()]),
        ..ProvisioningTemplate::default()
    };
    let (claim, token) = r
        .create_claim("default", "gateways", template, None, Some(100), 0)
        .unwrap();
    let id = claim_id(r.authenticate_claim(token.as_bytes(), 1).unwrap());
    assert!(matches!(
        r.provision(&id, "gw-3", Credential::Token, 1),
        Err(RegistryError::Invalid { message, .. }) if message.contains("allow list")
    ));
    r.provision(&id, "gw-1", Credential::Token, 1).unwrap();

    // Expired: the token is refused, and so is provisioning.
    assert_eq!(
        r.authenticate_claim(token.as_bytes(), 100).unwrap(),
        ClaimAuth::Expired
    );
    assert!(matches!(
        r.provision(&id, "gw-2", Credential::Token, 100),
        Err(RegistryError::Conflict(m)) if m.contains("expired")
    ));

    // Revoked: at once, although the token was verified (and cached).
    assert!(r.revoke_claim("default", &claim.id).unwrap());
    assert_eq!(
        r.authenticate_claim(token.as_bytes(), 2).unwrap(),
        ClaimAuth::Revoked
    );
    assert!(matches!(
        r.provision(&id, "gw-2", Credential::Token, 2),
        Err(RegistryError::Conflict(m)) if m.contains("revoked")
    ));

    // A wrong token learns nothing.
    assert_eq!(
        r.authenticate_claim(b"mwc_wrong", 2).unwrap(),
        ClaimAuth::Unknown
    );
}
