//! Devices: create, read, update, delete, list with filters and cursors.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::RegistryError;
use crate::records::{DeviceRec, DeviceTokensRec};
use crate::registry::Registry;
use crate::store::{Reads, Writes};
use crate::validate;

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub namespace: String,
    pub id: String,
    pub name: String,
    pub device_type: String,
    pub labels: BTreeMap<String, String>,
    /// Sorted, without duplicates.
    pub groups: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub enabled: bool,
    pub firmware_version: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// What a new device is made of; `None` fields take their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDevice {
    pub id: String,
    /// Defaults to the id.
    pub name: Option<String>,
    /// Defaults to `"default"`.
    pub device_type: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Defaults to true.
    pub enabled: Option<bool>,
}

impl NewDevice {
    /// A device with this id and every other field defaulted.
    pub fn new(id: impl Into<String>) -> NewDevice {
        NewDevice {
            id: id.into(),
            ..NewDevice::default()
        }
    }
}

/// A partial update: `Some` fields replace the stored ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub device_type: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub groups: Option<Vec<String>>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub enabled: Option<bool>,
    pub firmware_version: Option<String>,
}

/// Which devices a listing returns; every set condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub device_type: Option<String>,
    /// The device is a member of this group.
    pub group: Option<String>,
    /// Every (key, value) pair is among the device's labels.
    pub labels: Vec<(String, String)>,
    pub enabled: Option<bool>,
    pub id_prefix: Option<String>,
}

impl DeviceFilter {
    /// Whether `d` satisfies every set condition.
    pub fn matches(&self, d: &Device) -> bool {
        self.device_type
            .as_ref()
            .is_none_or(|t| *t == d.device_type)
            && self
                .group
                .as_ref()
                .is_none_or(|g| d.groups.binary_search(g).is_ok())
            && self
                .labels
                .iter()
                .all(|(k, v)| d.labels.get(k).is_some_and(|dv| dv == v))
            && self.enabled.is_none_or(|e| e == d.enabled)
            && self
                .id_prefix
                .as_ref()
                .is_none_or(|p| d.id.starts_with(p.as_str()))
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque cursor: pass it back as `after` (or `before_seq`) for the
    /// next page; `None` when there is nothing more.
    pub next: Option<String>,
}

pub(crate) fn device_from(ns: &str, id: &str, rec: DeviceRec) -> Device {
    Device {
        namespace: ns.to_string(),
        id: id.to_string(),
        name: rec.name,
        device_type: rec.device_type,
        labels: rec.labels,
        groups: rec.groups,
        metadata: rec.metadata,
        enabled: rec.enabled,
        firmware_version: rec.firmware_version,
        created_at_ms: rec.created_at_ms,
        updated_at_ms: rec.updated_at_ms,
    }
}

/// Validates `new` and builds its record (defaults applied).
pub(crate) fn new_record(
    new: NewDevice,
    now_ms: u64,
) -> Result<(String, DeviceRec), RegistryError> {
    validate::id("id", &new.id)?;
    let name = new.name.unwrap_or_else(|| new.id.clone());
    validate::text("name", &name)?;
    let device_type = new.device_type.unwrap_or_else(|| "default".to_string());
    validate::id("device_type", &device_type)?;
    validate::labels(&new.labels)?;
    let groups = validate::groups(new.groups)?;
    validate::metadata(&new.metadata)?;
    let rec = DeviceRec {
        name,
        device_type,
        labels: new.labels,
        groups,
        metadata: new.metadata,
        enabled: new.enabled.unwrap_or(true),
        firmware_version: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    Ok((new.id, rec))
}

fn apply_patch(rec: &mut DeviceRec, patch: DevicePatch) -> Result<(), RegistryError> {
    if let Some(name) = patch.name {
        validate::text("name", &name)?;
        rec.name = name;
    }
    if let Some(t) = patch.device_type {
        validate::id("device_type", &t)?;
        rec.device_type = t;
    }
    if let Some(labels) = patch.labels {
        validate::labels(&labels)?;
        rec.labels = labels;
    }
    if let Some(groups) = patch.groups {
        rec.groups = validate::groups(groups)?;
    }
    if let Some(m) = patch.metadata {
        validate::metadata(&m)?;
        rec.metadata = m;
    }
    if let Some(e) = patch.enabled {
        rec.enabled = e;
    }
    if let Some(fw) = patch.firmware_version {
        validate::text("firmware_version", &fw)?;
        rec.firmware_version = Some(fw);
    }
    Ok(())
}

impl Registry {
    /// Creates a device; `AlreadyExists` if the id is taken in `ns`.
    pub fn create_device(
        &self,
        ns: &str,
        new: NewDevice,
        now_ms: u64,
    ) -> Result<Device, RegistryError> {
        validate::id("namespace", ns)?;
        let (id, rec) = new_record(new, now_ms)?;
        self.store.write(|tx| {
            if tx.device_exists(ns, &id)? {
                return Err(RegistryError::exists("device", &id));
            }
            tx.put_device(ns, &id, &rec)
        })?;
        Ok(device_from(ns, &id, rec))
    }

    /// The device, or `None`.
    pub fn get_device(&self, ns: &str, id: &str) -> Result<Option<Device>, RegistryError> {
        let rec = self.store.read(|tx| tx.device(ns, id))?;
        Ok(rec.map(|r| device_from(ns, id, r)))
    }

    /// Applies `patch`; `NotFound` if the device does not exist.
    pub fn update_device(
        &self,
        ns: &str,
        id: &str,
        patch: DevicePatch,
        now_ms: u64,
    ) -> Result<Device, RegistryError> {
        let rec = self.store.write(|tx| -> Result<_, RegistryError> {
            let mut rec = tx
                .device(ns, id)?
                .ok_or_else(|| RegistryError::not_found("device", id))?;
            apply_patch(&mut rec, patch)?;
            rec.updated_at_ms = now_ms;
            tx.put_device(ns, id, &rec)?;
            Ok(rec)
        })?;
        Ok(device_from(ns, id, rec))
    }

    /// Deletes a device with its tokens and certificate records; its
    /// certificate serials stay revoked (recorded with revocation time 0
    /// when they were not revoked before: the call has no clock). Returns
    /// false if there was no such device.
    pub fn delete_device(&self, ns: &str, id: &str) -> Result<bool, RegistryError> {
        let (existed, serials) = self.store.write(|tx| -> Result<_, RegistryError> {
            if !tx.remove_device(ns, id)? {
                return Ok((false, Vec::new()));
            }
            tx.put_device_tokens(ns, id, &DeviceTokensRec::default())?;
            let serials = tx.device_cert_serials(ns, id)?;
            for serial in &serials {
                let revoked_at = tx.cert(ns, serial)?.and_then(|c| c.revoked_at_ms);
                tx.add_revoked(serial, revoked_at.unwrap_or(0))?;
                tx.remove_cert(ns, serial)?;
            }
            Ok((true, serials))
        })?;
        if !serials.is_empty() {
            self.mark_revoked(&serials);
        }
        if existed {
            tracing::debug!(ns, id, certificates = serials.len(), "device deleted");
        }
        Ok(existed)
    }

    /// Devices of `ns` in id order that match `filter` and `extra` (a
    /// predicate of the caller, e.g. on live connection state), starting
    /// after the cursor `after`, at most `limit` of them.
    pub fn list_devices(
        &self,
        ns: &str,
        filter: &DeviceFilter,
        extra: &dyn Fn(&Device) -> bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Device>, RegistryError> {
        if limit == 0 {
            return Err(RegistryError::invalid("limit", "must be at least 1"));
        }
        let prefix = filter.id_prefix.as_deref().unwrap_or("");
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ if !prefix.is_empty() => Bound::Included(prefix),
            _ => Bound::Unbounded,
        };
        let mut items: Vec<Device> = Vec::new();
        let mut more = false;
        self.store.read(|tx| {
            tx.scan_devices(ns, start, &mut |id, rec| {
                if !id.starts_with(prefix) {
                    // Ids with the prefix are one contiguous run.
                    return false;
                }
                let d = device_from(ns, id, rec);
                if filter.matches(&d) && extra(&d) {
                    if items.len() == limit {
                        more = true;
                        return false;
                    }
                    items.push(d);
                }
                true
            })
        })?;
        let next = if more {
            items.last().map(|d| d.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Number of devices in `ns` (kept as a counter, not counted).
    pub fn count_devices(&self, ns: &str) -> Result<u64, RegistryError> {
        self.store.read(|tx| tx.device_count(ns))
    }

    /// Adds `serials` to the in-memory revoked set (after they were
    /// committed).
    pub(crate) fn mark_revoked(&self, serials: &[String]) {
        let mut guard = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let mut set = (**guard).clone();
        set.extend(serials.iter().cloned());
        *guard = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::test_registry;

    #[test]
    fn create_applies_defaults_and_refuses_duplicates() {
        let (_dir, r) = test_registry();
        let d = r.create_device("default", NewDevice::new("p1"), 5).unwrap();
        assert_eq!(d.name, "p1");
        assert_eq!(d.device_type, "default");
        assert!(d.enabled);
        assert_eq!((d.created_at_ms, d.updated_at_ms), (5, 5));
        let e = r
            .create_device("default", NewDevice::new("p1"), 6)
            .unwrap_err();
        assert_eq!(e, RegistryError::exists("device", "p1"));
        // Another namespace is another key space.
        r.create_device("other", NewDevice::new("p1"), 6).unwrap();
        assert_eq!(r.count_devices("default").unwrap(), 1);
        assert_eq!(r.count_devices("other").unwrap(), 1);
    }

    #[test]
    fn invalid_fields_are_named() {
        let (_dir, r) = test_registry();
        let mut nd = NewDevice::new("p1");
        nd.labels.insert("zone".into(), "x".repeat(300));
        let Err(RegistryError::Invalid { field, .. }) = r.create_device("default", nd, 0) else {
            panic!("expected Invalid");
        };
        assert_eq!(field, "labels.zone");
        let Err(RegistryError::Invalid { field, .. }) =
            r.create_device("default", NewDevice::new("a/b"), 0)
        else {
            panic!("expected Invalid");
        };
        assert_eq!(field, "id");
        let Err(RegistryError::Invalid { field, .. }) =
            r.create_device("bad ns", NewDevice::new("a"), 0)
        else {
            panic!("expected Invalid");
        };
        assert_eq!(field, "namespace");
    }

    #[test]
    fn update_patches_only_given_fields() {
        let (_dir, r) = test_registry();
        let mut nd = NewDevice::new("p1");
        nd.groups = vec!["b".into(), "a".into()];
        r.create_device("default", nd, 1).unwrap();
        let d = r
            .update_device(
                "default",
                "p1",
                DevicePatch {
                    enabled: Some(false),
                    firmware_version: Some("1.2.3".into()),
                    ..DevicePatch::default()
                },
                9,
            )
            .unwrap();
        assert!(!d.enabled);
        assert_eq!(d.groups, vec!["a", "b"]);
        assert_eq!(d.firmware_version.as_deref(), Some("1.2.3"));
        assert_eq!((d.created_at_ms, d.updated_at_ms), (1, 9));
        assert_eq!(r.get_device("default", "p1").unwrap(), Some(d));
        let e = r
            .update_device("default", "nope", DevicePatch::default(), 9)
            .unwrap_err();
        assert_eq!(e, RegistryError::not_found("device", "nope"));
    }

    #[test]
    fn delete_reports_existence() {
        let (_dir, r) = test_registry();
        r.create_device("default", NewDevice::new("p1"), 1).unwrap();
        assert!(r.delete_device("default", "p1").unwrap());
        assert!(!r.delete_device("default", "p1").unwrap());
        assert_eq!(r.get_device("default", "p1").unwrap(), None);
        assert_eq!(r.count_devices("default").unwrap(), 0);
    }

    #[test]
    fn filter_matching() {
        let mut d = device_from(
            "default",
            "press-1",
            new_record(NewDevice::new("press-1"), 0).unwrap().1,
        );
        d.labels.insert("zone".into(), "a".into());
        d.groups = vec!["hall".into()];
        let mut f = DeviceFilter::default();
        assert!(f.matches(&d));
        f.labels.push(("zone".into(), "a".into()));
        f.group = Some("hall".into());
        f.id_prefix = Some("press-".into());
        f.enabled = Some(true);
        f.device_type = Some("default".into());
        assert!(f.matches(&d));
        f.labels.push(("line".into(), "1".into()));
        assert!(!f.matches(&d));
    }

    #[test]
    fn list_with_prefix_and_cursor() {
        let (_dir, r) = test_registry();
        for id in ["a1", "b1", "b2", "b3", "c1"] {
            r.create_device("default", NewDevice::new(id), 0).unwrap();
        }
        let f = DeviceFilter {
            id_prefix: Some("b".into()),
            ..DeviceFilter::default()
        };
        let p1 = r.list_devices("default", &f, &|_| true, None, 2).unwrap();
        let ids: Vec<_> = p1.items.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["b1", "b2"]);
        assert_eq!(p1.next.as_deref(), Some("b2"));
        let p2 = r
            .list_devices("default", &f, &|_| true, p1.next.as_deref(), 2)
            .unwrap();
        let ids: Vec<_> = p2.items.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["b3"]);
        assert_eq!(p2.next, None);
        // A cursor before the prefix starts at the prefix.
        let p = r
            .list_devices("default", &f, &|_| true, Some("a"), 10)
            .unwrap();
        assert_eq!(p.items.len(), 3);
        // The caller's predicate applies too.
        let p = r
            .list_devices("default", &f, &|d| d.id != "b2", None, 10)
            .unwrap();
        let ids: Vec<_> = p.items.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["b1", "b3"]);
        assert!(r.list_devices("default", &f, &|_| true, None, 0).is_err());
    }
}
