//! Certificate records and revocations. The CA lives elsewhere (`pki`);
//! here only which serial belongs to which device, and which serials are
//! revoked. Serials are global (a CA never reuses one); records are keyed
//! by (namespace, serial).

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::RegistryError;
use crate::records::CertRec;
use crate::registry::Registry;
use crate::store::{Reads, Writes};
use crate::validate;

/// A certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    /// Lower-case hex without leading zeros.
    pub serial_hex: String,
    pub device_id: String,
    pub issued_at_ms: u64,
    pub not_after_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

fn record_from(serial: &str, rec: CertRec) -> CertRecord {
    CertRecord {
        serial_hex: serial.to_string(),
        device_id: rec.device_id,
        issued_at_ms: rec.issued_at_ms,
        not_after_ms: rec.not_after_ms,
        revoked_at_ms: rec.revoked_at_ms,
    }
}

impl Registry {
    /// Records that certificate `serial_hex` was issued to the device.
    /// `NotFound` if the device does not exist, `AlreadyExists` if the
    /// serial is recorded already. A serial revoked before (e.g. by
    /// [`Registry::revoke_certificate`] of an unknown serial) is recorded
    /// as revoked.
    pub fn record_certificate(
        &self,
        ns: &str,
        device_id: &str,
        serial_hex: &str,
        not_after_ms: u64,
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        let serial = validate::serial(serial_hex)?;
        let revoked_at_ms = self.is_certificate_revoked(&serial).then_some(now_ms);
        self.store.write(|tx| {
            if !tx.device_exists(ns, device_id)? {
                return Err(RegistryError::not_found("device", device_id));
            }
            if tx.serial_namespace(&serial)?.is_some() {
                return Err(RegistryError::exists("certificate", &serial));
            }
            let rec = CertRec {
                device_id: device_id.to_string(),
                issued_at_ms: now_ms,
                not_after_ms,
                revoked_at_ms,
            };
            tx.put_cert(ns, &serial, &rec)
        })
    }

    /// The device's certificate records, ordered by serial.
    pub fn list_certificates(
        &self,
        ns: &str,
        device_id: &str,
    ) -> Result<Vec<CertRecord>, RegistryError> {
        self.store.read(|tx| {
            let mut out = Vec::new();
            for serial in tx.device_cert_serials(ns, device_id)? {
                if let Some(rec) = tx.cert(ns, &serial)? {
                    out.push(record_from(&serial, rec));
                }
            }
            Ok(out)
        })
    }

    /// Revokes a certificate: durable, then visible to
    /// [`Registry::is_certificate_revoked`] before this returns. Returns
    /// the updated record, or `None` for a serial with no record (which is
    /// still remembered as revoked). Revoking twice keeps the first time.
    pub fn revoke_certificate(
        &self,
        serial_hex: &str,
        now_ms: u64,
    ) -> Result<Option<CertRecord>, RegistryError> {
        let serial = validate::serial(serial_hex)?;
        let record = self.store.write(|tx| -> Result<_, RegistryError> {
            tx.add_revoked(&serial, now_ms)?;
            let Some(ns) = tx.serial_namespace(&serial)? else {
                return Ok(None);
            };
            let Some(mut rec) = tx.cert(&ns, &serial)? else {
                return Ok(None);
            };
            if rec.revoked_at_ms.is_none() {
                rec.revoked_at_ms = Some(now_ms);
                tx.put_cert(&ns, &serial, &rec)?;
            }
            Ok(Some(record_from(&serial, rec)))
        })?;
        self.mark_revoked(std::slice::from_ref(&serial));
        tracing::info!(serial, known = record.is_some(), "certificate revoked");
        Ok(record)
    }

    /// Whether the serial is revoked. For TLS handshakes: reads an
    /// in-memory set (loaded at open, updated by every revocation), no I/O.
    /// The serial is compared after the same normalisation as on record
    /// (lower case, no leading zeros, `:` separators ignored); a malformed
    /// serial is reported as revoked.
    pub fn is_certificate_revoked(&self, serial_hex: &str) -> bool {
        let set = self.revoked_serials();
        if is_normal_serial(serial_hex) {
            return set.contains(serial_hex);
        }
        match validate::serial(serial_hex) {
            Ok(s) => set.contains(&s),
            Err(_) => true,
        }
    }

    /// A snapshot of the revoked serials (normalised hex); cheap to take,
    /// never changes (a revocation swaps in a new set).
    pub fn revoked_serials(&self) -> Arc<HashSet<String>> {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Already lower-case hex without a leading zero (no allocation needed).
fn is_normal_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && (s == "0" || !s.starts_with('0'))
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::NewDevice;
    use crate::registry::test_registry;

    #[test]
    fn record_list_revoke() {
        let (_dir, r) = test_registry();
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        r.record_certificate("default", "d", "0A0B", 1000, 5)
            .unwrap();
        r.record_certificate("default", "d", "01", 1000, 6).unwrap();
        let e = r
            .record_certificate("default", "d", "a0b", 1000, 7)
            .unwrap_err();
        assert_eq!(e, RegistryError::exists("certificate", "a0b"));
        assert!(matches!(
            r.record_certificate("default", "nope", "ff", 1000, 7),
            Err(RegistryError::NotFound { .. })
        ));
        let list = r.list_certificates("default", "d").unwrap();
        let serials: Vec<_> = list.iter().map(|c| c.serial_hex.as_str()).collect();
        assert_eq!(serials, ["1", "a0b"]);
        assert!(!r.is_certificate_revoked("a0b"));
        let rec = r.revoke_certificate("A0B", 9).unwrap().unwrap();
        assert_eq!(rec.revoked_at_ms, Some(9));
        assert!(r.is_certificate_revoked("a0b"));
        assert!(r.is_certificate_revoked("00:0A:0B"));
        let again = r.revoke_certificate("a0b", 20).unwrap().unwrap();
        assert_eq!(again.revoked_at_ms, Some(9));
        assert!(!r.is_certificate_revoked("1"));
        assert!(r.is_certificate_revoked("not hex"));
    }

    #[test]
    fn unknown_serial_is_remembered() {
        let (_dir, r) = test_registry();
        assert_eq!(r.revoke_certificate("beef", 1).unwrap(), None);
        assert!(r.is_certificate_revoked("beef"));
        assert!(r.revoked_serials().contains("beef"));
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        r.record_certificate("default", "d", "beef", 10, 2).unwrap();
        let list = r.list_certificates("default", "d").unwrap();
        assert_eq!(list[0].revoked_at_ms, Some(2));
    }

    #[test]
    fn deleting_the_device_revokes_its_certificates() {
        let (_dir, r) = test_registry();
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        r.record_certificate("default", "d", "c1", 10, 1).unwrap();
        assert!(r.delete_device("default", "d").unwrap());
        assert!(r.is_certificate_revoked("c1"));
        r.create_device("default", NewDevice::new("d"), 0).unwrap();
        assert!(r.list_certificates("default", "d").unwrap().is_empty());
        assert!(r.is_certificate_revoked("c1"));
    }
}
