//! CONNECT -> grant, against the device registry.
//!
//! In order:
//! 1. A verified client certificate (TLS listeners): its CN (or device SAN)
//!    names the device; a username, if sent, must be the same id. The
//!    certificate's chain, validity and revocation were checked in the
//!    handshake; here the device must exist and be enabled.
//!    A certificate whose CN is `$claim-<claim id>` is a claim certificate
//!    (a fleet's provisioning credential, like a claim token).
//! 2. A password starting with `mwc_`: a claim credential, which may only
//!    reach its own `$provision/{client id}/...` exchange.
//! 3. A username naming a registered device: the password is its token.
//! 4. Anything else (no username, or a username that is no device) is left
//!    to the broker's own rules: anonymous access only when
//!    `mqtt.allow_anonymous`, plain-broker users from the password file.

use std::sync::Arc;

use broker_net::{AuthDecision, AuthRequest, Authenticator};
use mqtt_proto::ReasonCode;
use registry::{ClaimAuth, DeviceAuth, DeviceStorage};

use crate::client_id::ClientIdPolicy;
use crate::policy::{claim_grant, Policy};
use iot_types::{device_topics, SharedClock};

use crate::NAMESPACE;

/// The platform's [`Authenticator`], over any device store (the embedded
/// one is `registry::Registry`).
pub struct RegistryAuthenticator {
    registry: Arc<dyn DeviceStorage>,
    policy: Arc<Policy>,
    clock: SharedClock,
    client_ids: ClientIdPolicy,
}

impl RegistryAuthenticator {
    pub fn new<C: iot_types::Clock + ?Sized + 'static>(
        registry: Arc<dyn DeviceStorage>,
        policy: Arc<Policy>,
        clock: Arc<C>,
    ) -> Self {
        RegistryAuthenticator {
            registry,
            policy,
            clock: iot_types::shared(clock),
            client_ids: ClientIdPolicy::default(),
        }
    }

    /// Which client ids devices may use (default: [`ClientIdPolicy::DeviceId`]).
    pub fn with_client_id_policy(mut self, policy: ClientIdPolicy) -> Self {
        self.client_ids = policy;
        self
    }

    /// The grant of an enabled device, if its client id is one it may use:
    /// allowed by the policy, and (when it is not the device id itself) not
    /// the id of another registered device.
    fn device_grant(&self, d: &registry::Device, req: &AuthRequest) -> AuthDecision {
        let cid = req.client_id.as_str();
        let reason = if !self.client_ids.allows(&d.id, cid) {
            Some("the client id policy does not allow it")
        } else if cid != d.id
            && !cid.is_empty()
            && self
                .registry
                .get_device(NAMESPACE, cid)
                .is_ok_and(|o| o.is_some())
        {
            Some("it is another device's id")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::warn!(peer = %req.peer, device = %d.id, client_id = cid, policy = self.client_ids.name(), reason, "client id refused");
            return AuthDecision::Refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        AuthDecision::Allow(Arc::new(self.policy.device_grant(d, cid)))
    }

    fn device(&self, id: &str, req: &AuthRequest) -> AuthDecision {
        match self.registry.get_device(NAMESPACE, id) {
            Ok(Some(d)) if d.enabled => self.device_grant(&d, req),
            Ok(Some(_)) => {
                tracing::info!(device = id, "device is disabled; refused");
                AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED)
            }
            Ok(None) => {
                tracing::info!(
                    device = id,
                    "certificate names no registered device; refused"
                );
                AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED)
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry lookup failed");
                AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
            }
        }
    }
}

impl RegistryAuthenticator {
    /// A claim certificate (CN `$claim-<claim id>`, issued by the CA for a
    /// claim): the claim must still be usable.
    fn claim_certificate(&self, claim_id: &str, req: &AuthRequest, now: u64) -> AuthDecision {
        let claim = match self.registry.get_claim(NAMESPACE, claim_id) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "registry lookup failed");
                return AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE);
            }
        };
        let why = match &claim {
            None => Some("unknown claim"),
            Some(c) if c.revoked => Some("claim revoked"),
            Some(c) if c.expires_at_ms.is_some_and(|e| e <= now) => Some("claim expired"),
            Some(c) if c.max_uses.is_some_and(|m| c.uses >= m) => Some("claim has no uses left"),
            Some(_) => None,
        };
        if let Some(why) = why {
            tracing::info!(peer = %req.peer, claim = claim_id, why, "claim certificate refused");
            return AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED);
        }
        let cid = &req.client_id;
        if !device_topics::is_level(cid) {
            return AuthDecision::Refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        AuthDecision::Allow(Arc::new(claim_grant(claim_id, cid)))
    }
}

impl Authenticator for RegistryAuthenticator {
    fn authenticate(&self, req: &AuthRequest) -> AuthDecision {
        let now = self.clock.now().as_millis();
        if let Some(cert) = &req.certificate {
            let Some(id) = cert.device_id() else {
                tracing::info!(peer = %req.peer, serial = %cert.serial_hex, "client certificate names no device; refused");
                return AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED);
            };
            if let Some(claim_id) = id.strip_prefix(crate::CLAIM_CERT_PREFIX) {
                return self.claim_certificate(claim_id, req, now);
            }
            if req
                .username
                .as_deref()
                .is_some_and(|u| !u.is_empty() && u != id)
            {
                tracing::info!(peer = %req.peer, device = id, username = ?req.username, "username differs from the certificate's device id; refused");
                return AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED);
            }
            return self.device(id, req);
        }
        let password = req.password.as_deref();
        if let Some(pw) = password.filter(|p| p.starts_with(b"mwc_")) {
            return match self.registry.authenticate_claim(pw, now) {
                Ok(ClaimAuth::Ok(claim)) => {
                    let cid = &req.client_id;
                    if !device_topics::is_level(cid) {
                        tracing::info!(peer = %req.peer, "claim credential needs a plain client id");
                        return AuthDecision::Refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
                    }
                    AuthDecision::Allow(Arc::new(claim_grant(&claim.id, cid)))
                }
                Ok(other) => {
                    tracing::info!(peer = %req.peer, verdict = ?other_name(&other), "claim credential refused");
                    AuthDecision::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registry lookup failed");
                    AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
                }
            };
        }
        let Some(user) = req.username.as_deref().filter(|u| !u.is_empty()) else {
            return AuthDecision::Default;
        };
        let Some(pw) = password else {
            // A registered device must prove itself.
            return match self.registry.get_device(NAMESPACE, user) {
                Ok(Some(_)) => AuthDecision::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
                _ => AuthDecision::Default,
            };
        };
        match self.registry.authenticate_device(NAMESPACE, user, pw, now) {
            Ok(DeviceAuth::Ok(d)) => self.device_grant(&d, req),
            Ok(DeviceAuth::UnknownDevice) => AuthDecision::Default,
            Ok(DeviceAuth::Disabled) => {
                tracing::info!(device = user, "device is disabled; refused");
                AuthDecision::Refuse(ReasonCode::NOT_AUTHORIZED)
            }
            Ok(DeviceAuth::BadToken) => AuthDecision::Refuse(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            Err(e) => {
                tracing::warn!(error = %e, "registry lookup failed");
                AuthDecision::Refuse(ReasonCode::SERVER_UNAVAILABLE)
            }
        }
    }
}

fn other_name(c: &ClaimAuth) -> &'static str {
    match c {
        ClaimAuth::Ok(_) => "ok",
        ClaimAuth::Unknown => "unknown",
        ClaimAuth::Revoked => "revoked",
        ClaimAuth::Expired => "expired",
        ClaimAuth::Exhausted => "exhausted",
    }
}
