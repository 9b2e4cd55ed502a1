//! Identity facts of a client certificate, read after the TLS handshake, and
//! the one serial-number spelling used everywhere.

use std::fmt::Write;

use x509_parser::extensions::GeneralName;

use crate::pem::parse_certificate;
use crate::{PkiError, DEVICE_URI_PREFIX};

/// What the broker needs to know about a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject common name, if any (and not empty).
    pub common_name: Option<String>,
    /// The id of a `urn:millwright:device:<id>` URI SAN, else the first DNS
    /// SAN.
    pub san_device_id: Option<String>,
    /// The serial number as [`serial_hex`] writes it.
    pub serial_hex: String,
    /// End of validity, Unix milliseconds (0 for dates before 1970).
    pub not_after_ms: u64,
}

impl PeerCert {
    /// The device this certificate speaks for: the CN if present, else the
    /// SAN device id.
    pub fn device_id(&self) -> Option<&str> {
        self.common_name
            .as_deref()
            .or(self.san_device_id.as_deref())
    }
}

/// Reads the identity facts of a DER certificate (as rustls's
/// `peer_certificates()` returns them). This does not verify anything: the
/// handshake did.
pub fn peer_cert(der: &[u8]) -> Result<PeerCert, PkiError> {
    const WHAT: &str = "peer certificate";
    let cert = parse_certificate(der, WHAT)?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_owned);

    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::InvalidCertificate {
            what: WHAT.into(),
            reason: format!("unreadable subjectAltName ({e})"),
        })?;
    let names = san.map(|ext| &ext.value.general_names[..]).unwrap_or(&[]);
    let from_uri = names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri
            .strip_prefix(DEVICE_URI_PREFIX)
            .filter(|id| !id.is_empty()),
        _ => None,
    });
    let from_dns = names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some(*dns),
        _ => None,
    });

    Ok(PeerCert {
        common_name,
        san_device_id: from_uri.or(from_dns).map(str::to_owned),
        serial_hex: serial_hex(cert.raw_serial()),
        not_after_ms: u64::try_from(cert.validity().not_after.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000),
    })
}

/// The serial spelling used everywhere (revocation lists, records, logs):
/// lowercase hex without separators, leading zero bytes stripped, so the DER
/// sign byte does not matter (`00 ab 01` -> `"ab01"`). A zero serial is `"00"`.
pub fn serial_hex(raw_serial_bytes: &[u8]) -> String {
    let significant = match raw_serial_bytes.iter().position(|b| *b != 0) {
        Some(start) => &raw_serial_bytes[start..],
        None => &[0u8][..],
    };
    let mut hex = String::with_capacity(2 * significant.len());
    for byte in significant {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_normalises() {
        assert_eq!(serial_hex(&[0x00, 0xab, 0x01]), "ab01");
        assert_eq!(serial_hex(&[0x00, 0x00, 0x0f]), "0f");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0xAB, 0xCD]), "abcd");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[]), "00");
    }

    #[test]
    fn peer_cert_on_garbage_is_an_error() {
        for garbage in [&b""[..], b"hello", b"\x30\x82\xff\xff", &[0u8; 64]] {
            let err = peer_cert(garbage).unwrap_err();
            assert!(err.to_string().contains("peer certificate"), "{err}");
        }
    }

    #[test]
    fn device_id_prefers_the_common_name() {
        let mut peer = PeerCert {
            common_name: Some("cn".into()),
            san_device_id: Some("san".into()),
            serial_hex: "01".into(),
            not_after_ms: 0,
        };
        assert_eq!(peer.device_id(), Some("cn"));
        peer.common_name = None;
        assert_eq!(peer.device_id(), Some("san"));
        peer.san_device_id = None;
        assert_eq!(peer.device_id(), None);
    }
}
