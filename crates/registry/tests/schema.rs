//! The file's schema version: a newer one is refused with a clear error.

use registry::{Registry, RegistryConfig, RegistryError};

#[test]
fn newer_schema_version_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    drop(Registry::open(&path, RegistryConfig::default()).unwrap());

    // What a future binary would leave behind.
    kv::conformance::write_raw(&path, |tx| {
        tx.insert::<&str, u64>("meta", "schema_version", 2);
    });

    match Registry::open(&path, RegistryConfig::default()) {
        Err(RegistryError::Storage(m)) => {
            assert!(m.contains("schema version 2"), "{m}");
            assert!(m.contains("newer"), "{m}");
        }
        Err(other) => panic!("expected a storage error, got {other:?}"),
        Ok(_) => panic!("a newer schema must not open"),
    }
}

/// A data directory written by the code before `kv` (raw redb, records
/// serde structs with `v: 1` as their first field) opens, reads and goes
/// on where it stopped; a record this binary writes is byte for byte what
/// the old code wrote.
#[test]
fn a_file_written_before_kv_opens() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    use redb::{Database, ReadableTableMetadata, TableDefinition};
    use registry::{AuditFilter, NewAuditEntry, NewDevice, Role};

    type Pair = (&'static str, &'static str);
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
    const DEVICES: TableDefinition<Pair, &[u8]> = TableDefinition::new("devices");
    const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("device_counts");
    const CERTS: TableDefinition<Pair, &[u8]> = TableDefinition::new("certs");
    const DEVICE_CERTS: TableDefinition<(&str, &str, &str), ()> =
        TableDefinition::new("device_certs");
    const SERIALS: TableDefinition<&str, &str> = TableDefinition::new("cert_serials");
    const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked_serials");
    const CLAIMS: TableDefinition<Pair, &[u8]> = TableDefinition::new("claims");
    const CLAIM_INDEX: TableDefinition<&str, &str> = TableDefinition::new("claim_index");
    const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
    const API_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_tokens");
    const USER_TOKENS: TableDefinition<Pair, ()> = TableDefinition::new("user_tokens");
    const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

    let device = |name: &str| {
        format!(
            r#"{{"v":1,"name":"{name}","device_type":"press","labels":{{"zone":"a"}},"groups":["g"],"metadata":{{}},"enabled":true,"firmware_version":null,"created_at_ms":5,"updated_at_ms":5}}"#
        )
    };
    let params = Params::new(64, 1, 1, Some(32)).unwrap();
    let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
    let password = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    let user = format!(
        r#"{{"v":1,"role":"admin","disabled":false,"password_hash":"{password}","created_at_ms":1}}"#
    );
    let cert =
        br#"{"v":1,"device_id":"d1","issued_at_ms":2,"not_after_ms":9000,"revoked_at_ms":6}"#;
    let claim = br#"{"v":1,"name":"line","hash":"$hmac-sha256$v=1$x$y","template":{"device_type":"press","labels":{},"groups":[],"id_pattern":"press-*","allow_list":null},"max_uses":3,"uses":1,"expires_at_ms":null,"revoked":false,"created_at_ms":3}"#;
    let api_token = br#"{"v":1,"name":"ci","owner":"ada","role":"viewer","hash":"$hmac-sha256$v=1$x$y","created_at_ms":4,"expires_at_ms":null,"last4":"abcd","session":false}"#;
    let audit = |t: u64| {
        format!(
            r#"{{"v":1,"time_ms":{t},"actor":"ada","action":"device.create","target":"devices/d1","source":"127.0.0.1","status":201,"details":{{"t":{t}}}}}"#
        )
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("schema_version", 1).unwrap();
            meta.insert("audit_next_seq", 3).unwrap();
            let d1 = device("d1");
            let mut t = txn.open_table(DEVICES).unwrap();
            t.insert(("default", "d1"), d1.as_bytes()).unwrap();
            txn.open_table(COUNTS)
                .unwrap()
                .insert("default", 1)
                .unwrap();
            let mut t = txn.open_table(CERTS).unwrap();
            t.insert(("default", "ab"), cert.as_slice()).unwrap();
            let mut t = txn.open_table(DEVICE_CERTS).unwrap();
            t.insert(("default", "d1", "ab"), ()).unwrap();
            let mut t = txn.open_table(SERIALS).unwrap();
            t.insert("ab", "default").unwrap();
            txn.open_table(REVOKED).unwrap().insert("ab", 6).unwrap();
            let mut t = txn.open_table(CLAIMS).unwrap();
            t.insert(("default", "c1"), claim.as_slice()).unwrap();
            let mut t = txn.open_table(CLAIM_INDEX).unwrap();
            t.insert("c1", "default").unwrap();
            let mut t = txn.open_table(USERS).unwrap();
            t.insert("ada", user.as_bytes()).unwrap();
            let mut t = txn.open_table(API_TOKENS).unwrap();
            t.insert("t1", api_token.as_slice()).unwrap();
            let mut t = txn.open_table(USER_TOKENS).unwrap();
            t.insert(("ada", "t1"), ()).unwrap();
            let mut t = txn.open_table(AUDIT).unwrap();
            for seq in 1..=2 {
                t.insert(seq, audit(seq).as_bytes()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    let config = RegistryConfig {
        argon2_memory_kib: 64,
        ..RegistryConfig::default()
    };
    {
        let r = Registry::open(&path, config.clone()).unwrap();
        let d = r.get_device("default", "d1").unwrap().unwrap();
        assert_eq!(
            (d.device_type.as_str(), d.groups.as_slice()),
            ("press", &["g".to_string()][..])
        );
        assert_eq!(d.labels.get("zone").map(String::as_str), Some("a"));
        assert_eq!(r.count_devices("default").unwrap(), 1);
        let certs = r.list_certificates("default", "d1").unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].revoked_at_ms, Some(6));
        assert!(r.is_certificate_revoked("ab"), "revocations load at open");
        let c = r.get_claim("default", "c1").unwrap().unwrap();
        assert_eq!((c.uses, c.max_uses), (1, Some(3)));
        assert_eq!(c.template.id_pattern.as_deref(), Some("press-*"));
        assert!(!c.template.bind_client_id, "absent in old records");
        let (_, p) = r
            .login("ada", b"correct horse", 1_000, 10)
            .unwrap()
            .unwrap();
        assert_eq!(p.role, Role::Admin);
        let tokens = r.list_api_tokens().unwrap();
        assert!(tokens
            .iter()
            .any(|t| t.id == "t1" && t.owner.as_deref() == Some("ada")));
        let page = r.query_audit(&AuditFilter::default(), None, 10).unwrap();
        assert_eq!(page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(page.items[0].details, serde_json::json!({"t": 2}));
        let seq = r
            .append_audit(NewAuditEntry {
                time_ms: 3,
                actor: "ada".into(),
                action: "device.create".into(),
                target: "devices/d1".into(),
                source: "127.0.0.1".into(),
                status: 201,
                details: serde_json::json!({"t": 3}),
            })
            .unwrap();
        assert_eq!(seq, 3, "the sequence goes on from the old file's");
        // The same device written by this binary.
        let mut new = NewDevice::new("d2");
        new.device_type = Some("press".into());
        new.labels.insert("zone".into(), "a".into());
        new.groups = vec!["g".into()];
        r.create_device("default", new, 5).unwrap();
        assert_eq!(r.count_devices("default").unwrap(), 2);
        // Deleting the old device revokes and forgets its certificate.
        assert!(r.delete_device("default", "d1").unwrap());
        assert!(r.list_certificates("default", "d1").unwrap().is_empty());
    }
    let db = Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(DEVICES).unwrap();
    let d2 = t.get(("default", "d2")).unwrap().unwrap();
    assert_eq!(d2.value(), device("d2").as_bytes(), "the old record layout");
    let t = txn.open_table(AUDIT).unwrap();
    let a3 = t.get(3).unwrap().unwrap();
    assert_eq!(a3.value(), audit(3).as_bytes());
    assert_eq!(
        txn.open_table(META)
            .unwrap()
            .get("schema_version")
            .unwrap()
            .unwrap()
            .value(),
        1
    );
    assert_eq!(t.len().unwrap(), 3);
}
