//! The registry's stores as traits, so that another backend (PostgreSQL)
//! is another `impl`: [`DeviceStorage`] (devices, device tokens, claims
//! and provisioning, certificate records and revocations),
//! [`OperatorStorage`] (operators, login sessions, API tokens) and
//! [`AuditStorage`] (the audit log). [`Registry`] and [`AuditStore`]
//! (redb, over `kv`) are the embedded implementations; each trait is
//! declared from their methods (`kv::store_trait!`), which say what each
//! one means. `conformance::run` (feature `conformance`) is the behaviour
//! every implementation must have. The traits are object-safe.

use std::collections::HashSet;
use std::sync::Arc;

use crate::{
    ApiToken, AuditEntry, AuditFilter, AuditStore, CertRecord, Claim, ClaimAuth, Credential,
    Device, DeviceAuth, DeviceFilter, DevicePatch, ImportReport, NewAuditEntry, NewDevice, Page,
    Principal, Provisioned, ProvisioningTemplate, Registry, RegistryError, Role, User,
};

type Result<T> = std::result::Result<T, RegistryError>;

kv::store_trait! {
    /// A store of devices and their credentials; the methods mean what
    /// those of [`Registry`] say. Every mutating call is durable when it
    /// returns `Ok`.
    pub trait DeviceStorage for Registry {
        fn create_device(&self, ns: &str, new: NewDevice, now_ms: u64) -> Result<Device>;
        fn get_device(&self, ns: &str, id: &str) -> Result<Option<Device>>;
        fn update_device(&self, ns: &str, id: &str, patch: DevicePatch, now_ms: u64) -> Result<Device>;
        fn delete_device(&self, ns: &str, id: &str) -> Result<bool>;
        fn list_devices(&self, ns: &str, filter: &DeviceFilter, extra: &dyn Fn(&Device) -> bool, after: Option<&str>, limit: usize) -> Result<Page<Device>>;
        fn count_devices(&self, ns: &str) -> Result<u64>;
        fn import_devices(&self, ns: &str, rows: Vec<NewDevice>, issue_tokens: bool, now_ms: u64) -> Result<ImportReport>;
        fn issue_device_token(&self, ns: &str, device_id: &str, grace_ms: u64, now_ms: u64) -> Result<String>;
        fn revoke_device_tokens(&self, ns: &str, device_id: &str) -> Result<usize>;
        fn device_token_count(&self, ns: &str, device_id: &str, now_ms: u64) -> Result<usize>;
        fn authenticate_device(&self, ns: &str, device_id: &str, token: &[u8], now_ms: u64) -> Result<DeviceAuth>;
        fn create_claim(&self, ns: &str, name: &str, template: ProvisioningTemplate, max_uses: Option<u32>, expires_at_ms: Option<u64>, now_ms: u64) -> Result<(Claim, String)>;
        fn get_claim(&self, ns: &str, claim_id: &str) -> Result<Option<Claim>>;
        fn list_claims(&self, ns: &str) -> Result<Vec<Claim>>;
        fn revoke_claim(&self, ns: &str, claim_id: &str) -> Result<bool>;
        fn authenticate_claim(&self, token: &[u8], now_ms: u64) -> Result<ClaimAuth>;
        fn provision(&self, claim_id: &str, device_id: &str, credential: Credential, now_ms: u64) -> Result<Provisioned>;
        fn provision_as(&self, claim_id: &str, device_id: &str, client_id: Option<&str>, credential: Credential, now_ms: u64) -> Result<Provisioned>;
        fn record_certificate(&self, ns: &str, device_id: &str, serial_hex: &str, not_after_ms: u64, now_ms: u64) -> Result<()>;
        fn list_certificates(&self, ns: &str, device_id: &str) -> Result<Vec<CertRecord>>;
        fn revoke_certificate(&self, serial_hex: &str, now_ms: u64) -> Result<Option<CertRecord>>;
        fn is_certificate_revoked(&self, serial_hex: &str) -> bool;
        fn revoked_serials(&self) -> Arc<HashSet<String>>;
    }
}

kv::store_trait! {
    /// A store of operators, their login sessions and API tokens; the
    /// methods mean what those of [`Registry`] say. Every mutating call
    /// is durable when it returns `Ok`.
    pub trait OperatorStorage for Registry {
        fn create_user(&self, username: &str, password: &str, role: Role, now_ms: u64) -> Result<User>;
        fn get_user(&self, username: &str) -> Result<Option<User>>;
        fn list_users(&self) -> Result<Vec<User>>;
        fn update_user(&self, username: &str, role: Option<Role>, disabled: Option<bool>, password: Option<&str>) -> Result<User>;
        fn delete_user(&self, username: &str) -> Result<bool>;
        fn login(&self, username: &str, password: &[u8], ttl_ms: u64, now_ms: u64) -> Result<Option<(String, Principal)>>;
        fn create_api_token(&self, name: &str, owner: Option<&str>, role: Role, expires_at_ms: Option<u64>, now_ms: u64) -> Result<(ApiToken, String)>;
        fn create_api_token_with_secret(&self, token: &str, name: &str, owner: Option<&str>, role: Role, expires_at_ms: Option<u64>, now_ms: u64) -> Result<ApiToken>;
        fn api_token_count(&self) -> Result<usize>;
        fn list_api_tokens(&self) -> Result<Vec<ApiToken>>;
        fn revoke_api_token(&self, id: &str) -> Result<bool>;
        fn authenticate_api_token(&self, token: &[u8], now_ms: u64) -> Result<Option<Principal>>;
    }
}

kv::store_trait! {
    /// An audit log; the methods mean what those of [`AuditStore`] say.
    /// `append` is durable when it returns `Ok`.
    pub trait AuditStorage for AuditStore {
        fn append(&self, entry: NewAuditEntry) -> Result<u64>;
        fn query(&self, filter: &AuditFilter, before_seq: Option<u64>, limit: usize) -> Result<Page<AuditEntry>>;
        fn count(&self) -> Result<u64>;
    }
}
