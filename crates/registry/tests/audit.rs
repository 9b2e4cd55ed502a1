//! The audit log through the public API.

mod common;

use std::path::Path;

use registry::{AuditFilter, NewAuditEntry, Registry, RegistryConfig};

fn open(path: &Path, max: u64) -> Registry {
    let config = RegistryConfig {
        audit_max_entries: max,
        ..common::config()
    };
    Registry::open(path, config).unwrap()
}

fn entry(i: u64) -> NewAuditEntry {
    NewAuditEntry {
        time_ms: 1_000 + i,
        actor: if i.is_multiple_of(3) {
            "ada"
        } else {
            "token:ci"
        }
        .into(),
        action: if i.is_multiple_of(2) {
            "device.create"
        } else {
            "device.delete"
        }
        .into(),
        target: format!("devices/d{i}"),
        source: "10.0.0.1:5000".into(),
        status: 201,
        details: serde_json::json!({ "i": i }),
    }
}

#[test]
fn append_query_trim_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    {
        let r = open(&path, 20);
        for i in 1..=30 {
            assert_eq!(r.append_audit(entry(i)).unwrap(), i);
        }
        assert_eq!(r.audit_len().unwrap(), 20);
    }
    let r = open(&path, 20);
    // Oldest ten trimmed; newest first; cursors walk without duplicates.
    let mut seqs = Vec::new();
    let mut before = None;
    loop {
        let page = r.query_audit(&AuditFilter::default(), before, 6).unwrap();
        seqs.extend(page.items.iter().map(|e| e.seq));
        match page.next {
            Some(n) => before = Some(n.parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seqs, (11..=30).rev().collect::<Vec<u64>>());

    let f = AuditFilter {
        actor: Some("ada".into()),
        action_prefix: Some("device.".into()),
        ..AuditFilter::default()
    };
    let got: Vec<u64> = r
        .query_audit(&f, None, 100)
        .unwrap()
        .items
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, [30, 27, 24, 21, 18, 15, 12]);

    let f = AuditFilter {
        target: Some("devices/d25".into()),
        ..AuditFilter::default()
    };
    let page = r.query_audit(&f, None, 100).unwrap();
    assert_eq!(page.items.len(), 1);
    let e = &page.items[0];
    assert_eq!(
        (e.time_ms, e.action.as_str(), e.status, e.source.as_str()),
        (1_025, "device.delete", 201, "10.0.0.1:5000")
    );
    assert_eq!(e.details, serde_json::json!({ "i": 25 }));

    // Sequence numbers continue after a restart and are never reused.
    assert_eq!(r.append_audit(entry(31)).unwrap(), 31);
    drop(r);
    // A lower bound at the next start trims on the next append.
    let r = open(&path, 5);
    assert_eq!(r.append_audit(entry(32)).unwrap(), 32);
    assert_eq!(r.audit_len().unwrap(), 5);
}
