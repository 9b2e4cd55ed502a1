//! Stored values, version 1. Each is a private serde struct stored with
//! `kv::Versioned`, a JSON object whose first field is `"v": 1`; keys
//! (namespace, id, serial, ...) live in the table key, not in the value. The public domain types have no serde
//! derives: this is an internal format, and the API renders its own DTOs.

use std::collections::BTreeMap;

use kv::Record;
use serde::{Deserialize, Serialize};

/// The value format version written by this binary.
pub(crate) const VALUE_VERSION: u32 = 1;

/// Each record type: its name in messages, at [`VALUE_VERSION`].
macro_rules! records {
    ($($t:ty => $kind:literal),* $(,)?) => {$(
        impl Record for $t {
            const KIND: &'static str = $kind;
            const VERSION: u32 = VALUE_VERSION;
        }
    )*};
}
records!(
    DeviceRec => "device",
    DeviceTokensRec => "device tokens",
    CertRec => "certificate",
    ClaimRec => "claim",
    UserRec => "user",
    ApiTokenRec => "API token",
    AuditRec => "audit entry",
);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceRec {
    pub name: String,
    pub device_type: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub enabled: bool,
    pub firmware_version: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One stored device token (its hash only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceTokenRec {
    /// Self-describing: `$hmac-sha256$v=1$...` (the fast form of
    /// generated tokens) or an argon2 PHC string `$argon2id$...` (written
    /// before the fast form existed). The same holds for the `hash` of
    /// claims and API tokens; `UserRec::password_hash` is always argon2.
    pub hash: String,
    pub created_at_ms: u64,
    /// Set when a newer token replaced this one with a grace period.
    pub expires_at_ms: Option<u64>,
}

impl DeviceTokenRec {
    pub(crate) fn valid_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// All tokens of one device, newest first (at most two).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DeviceTokensRec {
    pub tokens: Vec<DeviceTokenRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CertRec {
    pub device_id: String,
    pub issued_at_ms: u64,
    pub not_after_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TemplateRec {
    pub device_type: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub id_pattern: Option<String>,
    pub allow_list: Option<Vec<String>>,
    /// Absent in records written before it existed.
    #[serde(default)]
    pub bind_client_id: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClaimRec {
    pub name: String,
    pub hash: String,
    pub template: TemplateRec,
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub expires_at_ms: Option<u64>,
    pub revoked: bool,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserRec {
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    pub disabled: bool,
    pub password_hash: String,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ApiTokenRec {
    pub name: String,
    pub owner: Option<String>,
    pub role: String,
    pub hash: String,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub last4: String,
    pub session: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AuditRec {
    pub time_ms: u64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source: String,
    pub status: u16,
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use kv::Versioned;

    use super::*;
    use crate::error::RegistryError;

    #[test]
    fn round_trip_carries_version() {
        let rec = CertRec {
            device_id: "d".into(),
            issued_at_ms: 1,
            not_after_ms: 2,
            revoked_at_ms: None,
        };
        let bytes = Versioned::encode(&rec).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"v\":1,"), "{text}");
        let back: CertRec = Versioned::decode(&bytes).unwrap();
        assert_eq!(back.device_id, "d");
    }

    #[test]
    fn newer_or_corrupt_values_are_storage_errors() {
        let newer =
            br#"{"v":2,"device_id":"d","issued_at_ms":1,"not_after_ms":2,"revoked_at_ms":null}"#;
        let e = RegistryError::from(Versioned::<CertRec>::decode(newer).unwrap_err());
        assert!(matches!(e, RegistryError::Storage(m) if m.contains("version 2")));
        assert!(Versioned::<CertRec>::decode(b"{").is_err());
        assert!(Versioned::<CertRec>::decode(br#"{"v":1}"#).is_err());
    }
}
