//! The file's schema version: a newer one is refused with a clear error.

use registry::{Registry, RegistryConfig, RegistryError};

#[test]
fn newer_schema_version_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    drop(Registry::open(&path, RegistryConfig::default()).unwrap());

    // What a future binary would leave behind.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(meta).unwrap();
            t.insert("schema_version", 2).unwrap();
        }
        txn.commit().unwrap();
    }

    match Registry::open(&path, RegistryConfig::default()) {
        Err(RegistryError::Storage(m)) => {
            assert!(m.contains("schema version 2"), "{m}");
            assert!(m.contains("newer"), "{m}");
        }
        Err(other) => panic!("expected a storage error, got {other:?}"),
        Ok(_) => panic!("a newer schema must not open"),
    }
}
