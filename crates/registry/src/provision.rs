//! Provisioning: a device presenting a valid claim creates itself.

use crate::claims::usable;
use crate::devices::{device_from, new_record, Device, NewDevice};
use crate::error::RegistryError;
use crate::glob::glob_match;
use crate::records::{ClaimRec, DeviceTokensRec};
use crate::registry::Registry;
use crate::store::{Reads, Writes};
use crate::validate;

/// The credential a provisioned device will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// Issue a device token (returned in [`Provisioned::token`]).
    Token,
    /// The caller signs a CSR and records the certificate; no token.
    Certificate,
}

/// A device created by [`Registry::provision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    pub device: Device,
    /// The device token (plaintext, shown once) for [`Credential::Token`].
    pub token: Option<String>,
}

/// Whether the claim's template lets it create `device_id`; the error says
/// which rule refused.
fn check_id(rec: &ClaimRec, device_id: &str, client_id: Option<&str>) -> Result<(), RegistryError> {
    if rec.template.bind_client_id {
        match client_id {
            Some(c) if c == device_id => {}
            Some(_) => {
                return Err(RegistryError::invalid(
                    "device_id",
                    "must be the client id the claim connected with (the claim binds them)",
                ))
            }
            None => {
                return Err(RegistryError::invalid(
                    "device_id",
                    "this claim provisions over MQTT only, as the client id it connects with",
                ))
            }
        }
    }
    if let Some(p) = &rec.template.id_pattern {
        if !glob_match(p, device_id) {
            return Err(RegistryError::invalid(
                "device_id",
                format!("does not match the claim's id pattern {p:?}"),
            ));
        }
    }
    if let Some(list) = &rec.template.allow_list {
        if !list.iter().any(|a| a == device_id) {
            return Err(RegistryError::invalid(
                "device_id",
                "is not in the claim's allow list",
            ));
        }
    }
    Ok(())
}

/// Everything about the claim and the id that can refuse a provisioning.
fn check(
    claim: Option<(String, ClaimRec)>,
    claim_id: &str,
    device_id: &str,
    client_id: Option<&str>,
    now_ms: u64,
) -> Result<(String, ClaimRec), RegistryError> {
    let (ns, rec) = claim.ok_or_else(|| RegistryError::not_found("claim", claim_id))?;
    usable(&rec, now_ms).map_err(|r| r.error(&rec.name))?;
    check_id(&rec, device_id, client_id)?;
    Ok((ns, rec))
}

/// The claim's namespace and record, if the claim may create `device_id`
/// at `now_ms` and no such device exists yet.
fn claim_for<R: Reads>(
    tx: &R,
    claim_id: &str,
    device_id: &str,
    client_id: Option<&str>,
    now_ms: u64,
) -> Result<(String, ClaimRec), RegistryError> {
    let claim = tx.find_claim(claim_id)?;
    let (ns, rec) = check(claim, claim_id, device_id, client_id, now_ms)?;
    if tx.device_exists(&ns, device_id)? {
        return Err(RegistryError::exists("device", device_id));
    }
    Ok((ns, rec))
}

impl Registry {
    /// Creates `device_id` through the claim `claim_id` (the id returned by
    /// [`Registry::authenticate_claim`]). In one write transaction: checks
    /// the claim again (revoked, expired, uses: `Conflict`), the id's
    /// syntax, the template's id pattern and allow list (`Invalid` on
    /// `device_id`, saying which rule refused), refuses an existing device
    /// (`AlreadyExists`), creates the device from the template with
    /// metadata `{"provisioned_by": <claim name>}`, counts the use, and for
    /// [`Credential::Token`] issues a device token.
    pub fn provision(
        &self,
        claim_id: &str,
        device_id: &str,
        credential: Credential,
        now_ms: u64,
    ) -> Result<Provisioned, RegistryError> {
        self.provision_as(claim_id, device_id, None, credential, now_ms)
    }

    /// [`Registry::provision`] by a client that connected over MQTT with
    /// `client_id` (checked against a template's `bind_client_id`; `None`:
    /// no MQTT client, as over HTTP).
    pub fn provision_as(
        &self,
        claim_id: &str,
        device_id: &str,
        client_id: Option<&str>,
        credential: Credential,
        now_ms: u64,
    ) -> Result<Provisioned, RegistryError> {
        validate::id("device_id", device_id)?;
        // Checked before the (slow) token hash, and again in the write.
        self.store
            .read(|tx| claim_for(tx, claim_id, device_id, client_id, now_ms))?;
        let token = match credential {
            Credential::Token => Some(self.new_device_token(now_ms)?),
            Credential::Certificate => None,
        };
        let device = self.store.write(|tx| -> Result<_, RegistryError> {
            let (ns, mut claim) = claim_for(tx, claim_id, device_id, client_id, now_ms)?;
            let mut metadata = serde_json::Map::new();
            metadata.insert(
                "provisioned_by".to_string(),
                serde_json::Value::String(claim.name.clone()),
            );
            let new = NewDevice {
                id: device_id.to_string(),
                device_type: claim.template.device_type.clone(),
                labels: claim.template.labels.clone(),
                groups: claim.template.groups.clone(),
                metadata,
                ..NewDevice::default()
            };
            let (id, rec) = new_record(new, now_ms)?;
            tx.put_device(&ns, &id, &rec)?;
            if let Some((_, stored)) = &token {
                let creds = DeviceTokensRec {
                    tokens: vec![stored.clone()],
                };
                tx.put_device_tokens(&ns, &id, &creds)?;
            }
            claim.uses = claim.uses.saturating_add(1);
            tx.put_claim(&ns, claim_id, &claim)?;
            Ok(device_from(&ns, &id, rec))
        })?;
        tracing::info!(
            ns = device.namespace,
            device_id,
            claim_id,
            "device provisioned"
        );
        Ok(Provisioned {
            device,
            token: token.map(|(plain, _)| plain),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{ClaimAuth, ProvisioningTemplate};
    use crate::registry::test_registry;
    use crate::DeviceAuth;

    /// `field: message` of an `Invalid` error; panics on another.
    fn invalid(e: RegistryError) -> String {
        match e {
            RegistryError::Invalid { field, message } => format!("{field}: {message}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn provision_from_template() {
        let (_dir, r) = test_registry();
        let mut t = ProvisioningTemplate {
            device_type: Some("press".into()),
            groups: vec!["hall-b".into()],
            id_pattern: Some("press-*".into()),
            ..Default::default()
        };
        t.labels.insert("zone".into(), "b".into());
        let (c, _token) = r
            .create_claim("plant", "presses", t, Some(5), None, 0)
            .unwrap();
        let p = r
            .provision(&c.id, "press-1", Credential::Token, 10)
            .unwrap();
        assert_eq!(p.device.namespace, "plant");
        assert_eq!(p.device.device_type, "press");
        assert_eq!(p.device.groups, vec!["hall-b"]);
        assert_eq!(p.device.labels.get("zone").map(String::as_str), Some("b"));
        assert_eq!(p.device.metadata["provisioned_by"], "presses");
        let token = p.token.unwrap();
        assert!(matches!(
            r.authenticate_device("plant", "press-1", token.as_bytes(), 11)
                .unwrap(),
            DeviceAuth::Ok(_)
        ));
        let p = r
            .provision(&c.id, "press-2", Credential::Certificate, 10)
            .unwrap();
        assert_eq!(p.token, None);
        assert_eq!(r.get_claim("plant", &c.id).unwrap().unwrap().uses, 2);
    }

    #[test]
    fn refusals_name_the_rule() {
        let (_dir, r) = test_registry();
        let t = ProvisioningTemplate {
            id_pattern: Some("press-*".into()),
            allow_list: Some(vec!["press-1".into(), "pump-1".into()]),
            ..Default::default()
        };
        let (c, token) = r.create_claim("default", "c", t, Some(1), None, 0).unwrap();
        let e = r
            .provision(&c.id, "pump-1", Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).contains("id pattern"));
        let e = r
            .provision(&c.id, "press-2", Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).contains("allow list"));
        let e = r
            .provision(&c.id, "press/1", Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).starts_with("device_id: "));
        assert!(matches!(
            r.provision("nope", "press-1", Credential::Token, 1),
            Err(RegistryError::NotFound { kind: "claim", .. })
        ));
        r.provision(&c.id, "press-1", Credential::Token, 1).unwrap();
        assert!(matches!(
            r.provision(&c.id, "press-1", Credential::Token, 1),
            Err(RegistryError::Conflict(m)) if m.contains("no uses left")
        ));
        assert_eq!(
            r.authenticate_claim(token.as_bytes(), 2).unwrap(),
            ClaimAuth::Exhausted
        );
    }

    #[test]
    fn a_bound_claim_creates_only_the_client_id_it_connected_with() {
        let (_dir, r) = test_registry();
        let t = ProvisioningTemplate {
            id_pattern: Some("SN-????".into()),
            bind_client_id: true,
            ..Default::default()
        };
        let (c, _token) = r
            .create_claim("default", "line-3", t, None, None, 0)
            .unwrap();
        // Another unit's serial, requested by a client connected as SN-0001.
        let e = r
            .provision_as(&c.id, "SN-0002", Some("SN-0001"), Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).contains("client id the claim connected with"));
        // Over HTTP (no client id): refused.
        let e = r
            .provision(&c.id, "SN-0001", Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).contains("over MQTT only"));
        // The pattern still holds for the client id itself.
        let e = r
            .provision_as(&c.id, "press-1", Some("press-1"), Credential::Token, 1)
            .unwrap_err();
        assert!(invalid(e).contains("id pattern"));
        let p = r
            .provision_as(&c.id, "SN-0001", Some("SN-0001"), Credential::Token, 1)
            .unwrap();
        assert_eq!(p.device.id, "SN-0001");
        // The flag survives the store.
        assert!(
            r.get_claim("default", &c.id)
                .unwrap()
                .unwrap()
                .template
                .bind_client_id
        );
    }
}
