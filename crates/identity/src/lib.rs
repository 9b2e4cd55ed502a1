//! `identity`: how the platform's identities reach the broker.
//!
//! What it is: the [`RegistryAuthenticator`] that turns a CONNECT (device
//! token, client certificate, or claim credential) into a
//! [`broker::Grant`] confining the client; the device ACL [`Policy`]
//! (the default `devices/{id}/#` tree plus extra rules per device type or
//! group, and per-type rate limits); and the provisioning exchange
//! ([`provision`]) used over MQTT (`$provision/{client id}/request`, see
//! [`serve_provisioning`]) and HTTP.
//!
//! What it is not: a store (that is `registry`), a CA (that is `pki`), or a
//! server. It reads the clock only through the [`iot_types::Clock`] it is
//! given.

mod authenticator;
mod client_id;
mod policy;
mod provisioning;

pub use authenticator::RegistryAuthenticator;
pub use client_id::ClientIdPolicy;
pub use policy::{AclRule, Policy, PolicyError};
pub use provisioning::{
    provision, serve_provisioning, ProvisionError, ProvisionReply, ProvisionRequest, PROVISION_TAP,
};

/// A claim certificate's subject is this prefix and the claim id (`$` can
/// never start a device id, so it cannot name a device).
pub const CLAIM_CERT_PREFIX: &str = "$claim-";

/// The subject (CN) of a claim certificate for `claim_id`.
pub fn claim_cert_subject(claim_id: &str) -> String {
    format!("{CLAIM_CERT_PREFIX}{claim_id}")
}

/// The namespace (tenant) every identity lives in for now.
pub const NAMESPACE: &str = iot_types::DEFAULT_NAMESPACE;
