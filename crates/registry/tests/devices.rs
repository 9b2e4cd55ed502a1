//! Devices through the public API: durability across reopen, listing with
//! filters and cursors (against a model), all-or-nothing import.

mod common;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use common::open;
use proptest::prelude::*;
use registry::{Device, DeviceFilter, DevicePatch, NewDevice, Registry, RegistryError};

const NS: &str = "default";

fn all_ids(r: &Registry, ns: &str, filter: &DeviceFilter, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = r
            .list_devices(ns, filter, &|_| true, after.as_deref(), limit)
            .unwrap();
        assert!(page.items.len() <= limit);
        ids.extend(page.items.iter().map(|d| d.id.clone()));
        match page.next {
            Some(n) => {
                assert_eq!(Some(&n), ids.last(), "cursor is the last id returned");
                after = Some(n);
            }
            None => break,
        }
    }
    ids
}

#[test]
fn crud_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.redb");
    let created: Device;
    {
        let r = open(&path);
        let mut nd = NewDevice::new("press-1");
        nd.name = Some("Press 1".into());
        nd.device_type = Some("press".into());
        nd.labels.insert("zone".into(), "b".into());
        nd.groups = vec!["line-2".into(), "hall".into(), "hall".into()];
        nd.metadata
            .insert("serial".into(), serde_json::json!("X-77"));
        created = r.create_device(NS, nd, 1_000).unwrap();
        assert_eq!(created.groups, vec!["hall", "line-2"]);
        r.create_device(NS, NewDevice::new("gone"), 1_000).unwrap();
        assert!(r.delete_device(NS, "gone").unwrap());
        r.update_device(
            NS,
            "press-1",
            DevicePatch {
                firmware_version: Some("2.0.1".into()),
                ..DevicePatch::default()
            },
            2_000,
        )
        .unwrap();
    }
    let r = open(&path);
    let d = r.get_device(NS, "press-1").unwrap().unwrap();
    assert_eq!(d.name, "Press 1");
    assert_eq!(d.device_type, "press");
    assert_eq!(d.labels, created.labels);
    assert_eq!(d.groups, created.groups);
    assert_eq!(d.metadata, created.metadata);
    assert_eq!(d.firmware_version.as_deref(), Some("2.0.1"));
    assert_eq!((d.created_at_ms, d.updated_at_ms), (1_000, 2_000));
    assert_eq!(r.get_device(NS, "gone").unwrap(), None);
    assert_eq!(r.count_devices(NS).unwrap(), 1);
}

#[test]
fn list_filters_and_walks_pages() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    for i in 0..50 {
        let mut nd = NewDevice::new(format!("dev-{i:03}"));
        nd.device_type = Some(if i % 2 == 0 { "press" } else { "pump" }.into());
        nd.labels.insert("zone".into(), format!("z{}", i % 3));
        if i % 5 == 0 {
            nd.groups.push("fives".into());
        }
        nd.enabled = Some(i % 7 != 0);
        r.create_device(NS, nd, 0).unwrap();
    }
    r.create_device("other", NewDevice::new("dev-000"), 0)
        .unwrap();

    let every = all_ids(&r, NS, &DeviceFilter::default(), 7);
    assert_eq!(every.len(), 50);
    assert!(
        every.windows(2).all(|w| w[0] < w[1]),
        "ordered, no duplicates"
    );

    let f = DeviceFilter {
        device_type: Some("press".into()),
        labels: vec![("zone".into(), "z0".into())],
        ..DeviceFilter::default()
    };
    let ids = all_ids(&r, NS, &f, 3);
    let want: Vec<String> = (0..50)
        .filter(|i| i % 2 == 0 && i % 3 == 0)
        .map(|i| format!("dev-{i:03}"))
        .collect();
    assert_eq!(ids, want);

    let f = DeviceFilter {
        group: Some("fives".into()),
        enabled: Some(false),
        ..DeviceFilter::default()
    };
    assert_eq!(all_ids(&r, NS, &f, 2), ["dev-000", "dev-035"]);

    let f = DeviceFilter {
        id_prefix: Some("dev-04".into()),
        ..DeviceFilter::default()
    };
    assert_eq!(all_ids(&r, NS, &f, 4).len(), 10);

    let page = r
        .list_devices(
            NS,
            &DeviceFilter::default(),
            &|d| d.id.ends_with('7'),
            None,
            100,
        )
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.next, None);
    assert_eq!(
        all_ids(&r, "other", &DeviceFilter::default(), 1),
        ["dev-000"]
    );
    assert!(all_ids(&r, "nobody", &DeviceFilter::default(), 1).is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Delete(u8),
    Disable(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..40).prop_map(Op::Create),
        1 => (0u8..40).prop_map(Op::Delete),
        1 => (0u8..40).prop_map(Op::Disable),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Create / delete / disable against a BTreeMap model; every listing
    /// (any page size, with and without a filter) walks exactly the model.
    #[test]
    fn listing_matches_a_model(ops in prop::collection::vec(op(), 1..40), limit in 1usize..6) {
        let dir = tempfile::tempdir().unwrap();
        let r = open(&dir.path().join("registry.redb"));
        let mut model: BTreeMap<String, bool> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Create(n) => {
                    let id = format!("d{n}");
                    let res = r.create_device(NS, NewDevice::new(id.clone()), 0);
                    match model.entry(id) {
                        Entry::Occupied(_) => {
                            let is_exists = matches!(res, Err(RegistryError::AlreadyExists { .. }));
                            prop_assert!(is_exists);
                        }
                        Entry::Vacant(v) => {
                            prop_assert!(res.is_ok());
                            v.insert(true);
                        }
                    }
                }
                Op::Delete(n) => {
                    let id = format!("d{n}");
                    prop_assert_eq!(r.delete_device(NS, &id).unwrap(), model.remove(&id).is_some());
                }
                Op::Disable(n) => {
                    let id = format!("d{n}");
                    let patch = DevicePatch { enabled: Some(false), ..DevicePatch::default() };
                    let res = r.update_device(NS, &id, patch, 1);
                    match model.get_mut(&id) {
                        Some(enabled) => { prop_assert!(res.is_ok()); *enabled = false; }
                        None => {
                            let is_not_found = matches!(res, Err(RegistryError::NotFound { .. }));
                            prop_assert!(is_not_found);
                        }
                    }
                }
            }
            prop_assert_eq!(r.count_devices(NS).unwrap(), model.len() as u64);
        }
        let want: Vec<String> = model.keys().cloned().collect();
        prop_assert_eq!(all_ids(&r, NS, &DeviceFilter::default(), limit), want);
        let enabled: Vec<String> = model.iter().filter(|(_, e)| **e).map(|(k, _)| k.clone()).collect();
        let f = DeviceFilter { enabled: Some(true), ..DeviceFilter::default() };
        prop_assert_eq!(all_ids(&r, NS, &f, limit), enabled);
        let ones: BTreeSet<String> = model.keys().filter(|k| k.starts_with("d1")).cloned().collect();
        let f = DeviceFilter { id_prefix: Some("d1".into()), ..DeviceFilter::default() };
        let got: BTreeSet<String> = all_ids(&r, NS, &f, limit).into_iter().collect();
        prop_assert_eq!(got, ones);
    }
}

#[test]
fn import_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    let mut rows: Vec<NewDevice> = (0..100)
        .map(|i| NewDevice::new(format!("imp-{i:03}")))
        .collect();
    rows[42].labels.insert("zone".into(), "x".repeat(300));
    let report = r.import_devices(NS, rows.clone(), false, 0).unwrap();
    assert_eq!(report.created, 0);
    assert_eq!(report.errors.len(), 1);
    let e = &report.errors[0];
    assert_eq!((e.index, e.id.as_str()), (42, "imp-042"));
    assert!(e.message.contains("labels.zone"), "{}", e.message);
    assert_eq!(r.count_devices(NS).unwrap(), 0);
    assert!(r
        .list_devices(NS, &DeviceFilter::default(), &|_| true, None, 10)
        .unwrap()
        .items
        .is_empty());

    rows[42].labels.clear();
    let report = r.import_devices(NS, rows, false, 0).unwrap();
    assert_eq!(report.created, 100);
    assert!(report.errors.is_empty() && report.tokens.is_empty());
    assert_eq!(r.count_devices(NS).unwrap(), 100);
}

#[test]
fn import_10k_devices_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(&dir.path().join("registry.redb"));
    let rows: Vec<NewDevice> = (0..10_000)
        .map(|i| {
            let mut nd = NewDevice::new(format!("sensor-{i:05}"));
            nd.labels.insert("site".into(), format!("s{}", i % 10));
            nd.groups.push(format!("batch-{}", i / 1000));
            nd
        })
        .collect();
    let t = std::time::Instant::now();
    let report = r.import_devices(NS, rows, false, 0).unwrap();
    let took = t.elapsed();
    assert_eq!(report.created, 10_000);
    println!("import of 10,000 devices without tokens: {took:?}");
    assert_eq!(r.count_devices(NS).unwrap(), 10_000);
    let t = std::time::Instant::now();
    let page = r
        .list_devices(NS, &DeviceFilter::default(), &|_| true, None, 100)
        .unwrap();
    println!("first page of 100 of 10,000 devices: {:?}", t.elapsed());
    assert_eq!(page.next.as_deref(), Some("sensor-00099"));
}
