//! Claims: provisioning credentials shared by many devices (zero-touch
//! provisioning). A claim token `mwc_...` is looked up by its token id (the
//! claim's id) in any namespace; its template shapes the devices it
//! creates (see `provision.rs`).

use std::collections::BTreeMap;

use crate::error::RegistryError;
use crate::records::{ClaimRec, TemplateRec};
use crate::registry::{Checked, Registry};
use crate::secret::{self, token_id};
use crate::store::{Reads, Writes};
use crate::validate;

/// What devices created through a claim look like, and which ids it may
/// create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisioningTemplate {
    /// Device type of created devices (default `"default"`).
    pub device_type: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    /// Glob the device id must match: `*` any run, `?` one character
    /// (e.g. `press-*`); see [`crate::glob_match`].
    pub id_pattern: Option<String>,
    /// If set, only these ids.
    pub allow_list: Option<Vec<String>>,
    /// The device id must be the MQTT client id the claim connected with
    /// (`$provision/{client id}/request`); provisioning over HTTP, which
    /// has no client id, is refused. With a serial-number `id_pattern`, a
    /// leaked claim then cannot squat ids meant for other units.
    pub bind_client_id: bool,
}

/// A provisioning credential (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub namespace: String,
    /// The token id of the claim token.
    pub id: String,
    pub name: String,
    pub template: ProvisioningTemplate,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at_ms: Option<u64>,
    pub revoked: bool,
    pub created_at_ms: u64,
}

/// The outcome of presenting a claim token.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once per authentication, never stored in bulk; boxing would only add an allocation"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAuth {
    Ok(Claim),
    /// No claim has this token.
    Unknown,
    Revoked,
    Expired,
    /// `uses` reached `max_uses`.
    Exhausted,
}

fn template_rec(t: ProvisioningTemplate) -> Result<TemplateRec, RegistryError> {
    if let Some(dt) = &t.device_type {
        validate::id("template.device_type", dt)?;
    }
    validate::labels(&t.labels).map_err(|e| prefix_field(e, "template."))?;
    let groups = validate::groups(t.groups).map_err(|e| prefix_field(e, "template."))?;
    if let Some(p) = &t.id_pattern {
        validate::id("template.id_pattern", &p.replace(['*', '?'], "x"))?;
    }
    if let Some(list) = &t.allow_list {
        for id in list {
            validate::id("template.allow_list", id)?;
        }
    }
    Ok(TemplateRec {
        device_type: t.device_type,
        labels: t.labels,
        groups,
        id_pattern: t.id_pattern,
        allow_list: t.allow_list,
        bind_client_id: t.bind_client_id,
    })
}

fn prefix_field(e: RegistryError, prefix: &str) -> RegistryError {
    match e {
        RegistryError::Invalid { field, message } => RegistryError::Invalid {
            field: format!("{prefix}{field}"),
            message,
        },
        other => other,
    }
}

pub(crate) fn claim_from(ns: &str, id: &str, rec: ClaimRec) -> Claim {
    Claim {
        namespace: ns.to_string(),
        id: id.to_string(),
        name: rec.name,
        template: ProvisioningTemplate {
            device_type: rec.template.device_type,
            labels: rec.template.labels,
            groups: rec.template.groups,
            id_pattern: rec.template.id_pattern,
            allow_list: rec.template.allow_list,
            bind_client_id: rec.template.bind_client_id,
        },
        max_uses: rec.max_uses,
        uses: rec.uses,
        expires_at_ms: rec.expires_at_ms,
        revoked: rec.revoked,
        created_at_ms: rec.created_at_ms,
    }
}

/// Why a claim cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Revoked,
    Expired,
    Exhausted,
}

impl Refusal {
    fn auth(self) -> ClaimAuth {
        match self {
            Refusal::Revoked => ClaimAuth::Revoked,
            Refusal::Expired => ClaimAuth::Expired,
            Refusal::Exhausted => ClaimAuth::Exhausted,
        }
    }

    /// The refusal as an error naming the claim.
    pub(crate) fn error(self, name: &str) -> RegistryError {
        let why = match self {
            Refusal::Revoked => "is revoked",
            Refusal::Expired => "has expired",
            Refusal::Exhausted => "has no uses left",
        };
        RegistryError::Conflict(format!("claim {name:?} {why}"))
    }
}

/// Whether the claim may be used at `now_ms`, else the refusal.
pub(crate) fn usable(rec: &ClaimRec, now_ms: u64) -> Result<(), Refusal> {
    if rec.revoked {
        return Err(Refusal::Revoked);
    }
    if rec.expires_at_ms.is_some_and(|e| now_ms >= e) {
        return Err(Refusal::Expired);
    }
    if rec.max_uses.is_some_and(|m| rec.uses >= m) {
        return Err(Refusal::Exhausted);
    }
    Ok(())
}

impl Registry {
    /// Creates a claim and returns it with its token `mwc_...` (plaintext,
    /// shown once).
    pub fn create_claim(
        &self,
        ns: &str,
        name: &str,
        template: ProvisioningTemplate,
        max_uses: Option<u32>,
        expires_at_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<(Claim, String), RegistryError> {
        validate::id("namespace", ns)?;
        validate::text("name", name)?;
        let template = template_rec(template)?;
        if max_uses == Some(0) {
            return Err(RegistryError::invalid("max_uses", "must be at least 1"));
        }
        if expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(RegistryError::invalid("expires_at_ms", "is in the past"));
        }
        let token = secret::generate(secret::CLAIM_PREFIX);
        let id = token_id(token.as_bytes());
        let rec = ClaimRec {
            name: name.to_string(),
            hash: secret::hash_token(token.as_bytes())?,
            template,
            max_uses,
            uses: 0,
            expires_at_ms,
            revoked: false,
            created_at_ms: now_ms,
        };
        self.store.write(|tx| {
            if tx.claim_namespace(&id)?.is_some() {
                return Err(RegistryError::exists("claim", &id));
            }
            tx.put_claim(ns, &id, &rec)
        })?;
        tracing::info!(ns, claim = id, name, "claim created");
        Ok((claim_from(ns, &id, rec), token))
    }

    /// The claim, or `None`.
    pub fn get_claim(&self, ns: &str, claim_id: &str) -> Result<Option<Claim>, RegistryError> {
        let rec = self.store.read(|tx| tx.claim(ns, claim_id))?;
        Ok(rec.map(|r| claim_from(ns, claim_id, r)))
    }

    /// The claims of `ns` (revoked ones included), ordered by id.
    pub fn list_claims(&self, ns: &str) -> Result<Vec<Claim>, RegistryError> {
        let claims = self.store.read(|tx| tx.claims(ns))?;
        Ok(claims
            .into_iter()
            .map(|(id, rec)| claim_from(ns, &id, rec))
            .collect())
    }

    /// Marks the claim revoked (it stays listed); false if there is no such
    /// claim in `ns`.
    pub fn revoke_claim(&self, ns: &str, claim_id: &str) -> Result<bool, RegistryError> {
        self.store.write(|tx| {
            let Some(mut rec) = tx.claim(ns, claim_id)? else {
                return Ok(false);
            };
            if !rec.revoked {
                rec.revoked = true;
                tx.put_claim(ns, claim_id, &rec)?;
            }
            Ok(true)
        })
    }

    /// Checks a claim token (any namespace). The claim's state (revoked,
    /// expired, exhausted) is reported only for the right token.
    pub fn authenticate_claim(
        &self,
        token: &[u8],
        now_ms: u64,
    ) -> Result<ClaimAuth, RegistryError> {
        let id = token_id(token);
        let found = self.store.read(|tx| tx.find_claim(&id))?;
        let Some((ns, rec)) = found else {
            return Ok(ClaimAuth::Unknown);
        };
        match self.verify_stored("claim", &[], token, &rec.hash) {
            Checked::Refused => return Ok(ClaimAuth::Unknown),
            Checked::Matched => {}
            // Claim tokens are always generated: upgrade it.
            Checked::MatchedLegacy => self.upgrade_claim_token(&ns, &id, &rec.hash, token),
        }
        Ok(match usable(&rec, now_ms) {
            Ok(()) => ClaimAuth::Ok(claim_from(&ns, &id, rec)),
            Err(refusal) => refusal.auth(),
        })
    }
}

impl Registry {
    /// Replaces the stored argon2 hash `old` of a claim with the fast form
    /// of `token` (which matched it). Best effort, like the device token
    /// upgrade.
    fn upgrade_claim_token(&self, ns: &str, id: &str, old: &str, token: &[u8]) {
        let upgraded = secret::hash_token(token).and_then(|new| {
            self.store.write_unsynced(|tx| {
                let Some(mut rec) = tx.claim(ns, id)? else {
                    return Ok(false);
                };
                if rec.hash != old {
                    return Ok(false);
                }
                rec.hash = new;
                tx.put_claim(ns, id, &rec)?;
                Ok(true)
            })
        });
        match upgraded {
            Ok(true) => tracing::debug!(ns, claim = id, "claim token hash upgraded to hmac-sha256"),
            Ok(false) => {}
            Err(e) => tracing::warn!(ns, claim = id, error = %e, "claim token hash upgrade failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;

    #[test]
    fn lifecycle() {
        let (_dir, r) = test_registry();
        let (c, token) = r
            .create_claim(
                "default",
                "line 1",
                ProvisioningTemplate::default(),
                Some(2),
                Some(100),
                0,
            )
            .unwrap();
        assert!(token.starts_with("mwc_"));
        assert_eq!(c.id, token_id(token.as_bytes()));
        assert!(matches!(
            r.authenticate_claim(token.as_bytes(), 1).unwrap(),
            ClaimAuth::Ok(_)
        ));
        assert_eq!(
            r.authenticate_claim(token.as_bytes(), 100).unwrap(),
            ClaimAuth::Expired
        );
        assert_eq!(
            r.authenticate_claim(b"mwc_nope", 1).unwrap(),
            ClaimAuth::Unknown
        );
        assert_eq!(r.list_claims("default").unwrap(), vec![c.clone()]);
        assert!(r.list_claims("other").unwrap().is_empty());
        assert!(r.revoke_claim("default", &c.id).unwrap());
        assert!(!r.revoke_claim("other", &c.id).unwrap());
        assert_eq!(
            r.authenticate_claim(token.as_bytes(), 1).unwrap(),
            ClaimAuth::Revoked
        );
        assert!(r.get_claim("default", &c.id).unwrap().unwrap().revoked);
    }

    #[test]
    fn template_is_validated() {
        let (_dir, r) = test_registry();
        let bad = |t: ProvisioningTemplate| match r.create_claim("default", "c", t, None, None, 0) {
            Err(RegistryError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let mut t = ProvisioningTemplate {
            id_pattern: Some("press/*".into()),
            ..Default::default()
        };
        assert_eq!(bad(t.clone()), "template.id_pattern");
        t.id_pattern = Some("press-*".into());
        t.labels.insert("bad key".into(), "v".into());
        assert_eq!(bad(t.clone()), "template.labels.bad key");
        t.labels.clear();
        t.allow_list = Some(vec!["a#".into()]);
        assert_eq!(bad(t), "template.allow_list");
        assert!(matches!(
            r.create_claim(
                "default",
                "c",
                ProvisioningTemplate::default(),
                Some(0),
                None,
                0
            ),
            Err(RegistryError::Invalid { .. })
        ));
    }

    #[test]
    fn usable_order() {
        let mut rec = ClaimRec {
            name: "c".into(),
            hash: String::new(),
            template: template_rec(ProvisioningTemplate::default()).unwrap(),
            max_uses: Some(1),
            uses: 1,
            expires_at_ms: Some(10),
            revoked: true,
            created_at_ms: 0,
        };
        assert_eq!(usable(&rec, 20), Err(Refusal::Revoked));
        rec.revoked = false;
        assert_eq!(usable(&rec, 20), Err(Refusal::Expired));
        assert_eq!(usable(&rec, 5), Err(Refusal::Exhausted));
        rec.uses = 0;
        assert_eq!(usable(&rec, 5), Ok(()));
    }
}
