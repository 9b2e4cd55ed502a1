//! Issuing end-entity certificates: server certificates for the TLS
//! listeners, device certificates with a key generated here, and device
//! certificates for a CSR (the device keeps its key).

use std::fmt;
use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::validity::Validity;
use crate::{serial_hex, CertificateAuthority, PkiError};

/// The URI SAN prefix that carries a device id: `urn:millwright:device:<id>`.
pub const DEVICE_URI_PREFIX: &str = "urn:millwright:device:";

/// RFC 5280's upper bound for a common name, which a device id becomes.
const MAX_DEVICE_ID_LEN: usize = 64;

/// Length of the random serial numbers of issued certificates.
const SERIAL_LEN: usize = 16;

/// A certificate just issued by the CA.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key generated for it (PKCS#8 PEM), or `None` when the
    /// certificate was issued for a CSR and the requester holds the key.
    pub key_pem: Option<String>,
    /// The serial number as [`serial_hex`] writes it.
    pub serial_hex: String,
    /// End of validity, Unix milliseconds.
    pub not_after_ms: u64,
    /// The subject common name (device id or first server name).
    pub subject_cn: String,
}

impl fmt::Debug for IssuedCert {
    /// Never shows the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("subject_cn", &self.subject_cn)
            .field("serial_hex", &self.serial_hex)
            .field("not_after_ms", &self.not_after_ms)
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[elided]"))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A server certificate for the TLS listeners. Each name that parses as
    /// an IP address becomes an IP SAN, every other one a DNS SAN; the CN is
    /// the first name. EKU serverAuth, a fresh ECDSA P-256 key, valid `days`
    /// from `now_ms` (minus an hour of slack).
    pub fn issue_server_cert(
        &self,
        names: &[String],
        days: u32,
        now_ms: u64,
    ) -> Result<IssuedCert, PkiError> {
        let Some(first) = names.first() else {
            return Err(PkiError::InvalidServerName {
                name: String::new(),
                reason: "a server certificate needs at least one name".into(),
            });
        };
        let sans = names
            .iter()
            .map(|name| server_san(name))
            .collect::<Result<Vec<_>, _>>()?;
        let validity = Validity::starting_at(now_ms, days)?;
        let mut params = leaf_params(first, validity, ExtendedKeyUsagePurpose::ServerAuth)?;
        params.subject_alt_names = sans;
        let key = generate_key("the server key")?;
        self.sign(&params, &key, Some(key.serialize_pem()), first, validity)
    }

    /// A device certificate with a key generated here: CN = `device_id`, URI
    /// SAN `urn:millwright:device:<device_id>`, EKU clientAuth, ECDSA P-256,
    /// random 16-byte serial, valid `days` from `now_ms`.
    pub fn issue_device_cert(
        &self,
        device_id: &str,
        days: u32,
        now_ms: u64,
    ) -> Result<IssuedCert, PkiError> {
        let validity = Validity::starting_at(now_ms, days)?;
        let params = device_params(device_id, validity)?;
        let key = generate_key("the device key")?;
        self.sign(
            &params,
            &key,
            Some(key.serialize_pem()),
            device_id,
            validity,
        )
    }

    /// A device certificate for a PEM CSR. Only the CSR's public key is used,
    /// after its signature has been verified (proof that the requester holds
    /// the private key); the subject, SANs and extensions it asks for are
    /// ignored and replaced by those of [`Self::issue_device_cert`].
    /// `key_pem` is `None` in the result.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        device_id: &str,
        days: u32,
        now_ms: u64,
    ) -> Result<IssuedCert, PkiError> {
        let validity = Validity::starting_at(now_ms, days)?;
        let params = device_params(device_id, validity)?;
        let public_key = csr_public_key(csr_pem)?;
        self.sign(&params, &public_key, None, device_id, validity)
    }

    fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
        key_pem: Option<String>,
        subject_cn: &str,
        validity: Validity,
    ) -> Result<IssuedCert, PkiError> {
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(signing_error("the certificate"))?;
        let serial = params
            .serial_number
            .as_ref()
            .map(|s| serial_hex(&s.to_bytes()))
            .unwrap_or_default();
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem,
            serial_hex: serial,
            not_after_ms: validity.not_after_ms(),
            subject_cn: subject_cn.to_owned(),
        })
    }
}

/// A CSR (PEM) and its private key (PKCS#8 PEM) for `device_id`: ECDSA
/// P-256, CN = `device_id`. For tests and the CLI; a real device makes its
/// own.
pub fn generate_csr(device_id: &str) -> Result<(String, String), PkiError> {
    check_device_id(device_id)?;
    let key = generate_key("the CSR key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, device_id);
    let csr = params
        .serialize_request(&key)
        .map_err(signing_error("the CSR"))?;
    let csr_pem = csr.pem().map_err(signing_error("the CSR"))?;
    Ok((csr_pem, key.serialize_pem()))
}

/// The verified public key of a PEM CSR.
///
/// The CSR is read with x509-parser directly rather than with rcgen's
/// `CertificateSigningRequestParams`, which refuses CSRs carrying any
/// extension request it does not model; we discard those requests anyway.
fn csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, PkiError> {
    let der = rustls_pemfile::csr(&mut csr_pem.as_bytes())
        .map_err(|e| PkiError::InvalidCsr(format!("unreadable PEM ({e})")))?
        .ok_or_else(|| PkiError::InvalidCsr("no CERTIFICATE REQUEST block found".into()))?;
    let csr = match X509CertificationRequest::from_der(&der) {
        Ok(([], csr)) => csr,
        Ok((rest, _)) => {
            return Err(PkiError::InvalidCsr(format!(
                "{} trailing bytes after the request",
                rest.len()
            )))
        }
        Err(e) => return Err(PkiError::InvalidCsr(format!("not a PKCS#10 request ({e})"))),
    };
    csr.verify_signature().map_err(|e| {
        PkiError::InvalidCsr(format!("its signature does not verify with its key ({e})"))
    })?;
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::InvalidCsr(format!("unsupported public key type ({e})")))
}

/// Subject, URI SAN and EKU of a device certificate.
fn device_params(device_id: &str, validity: Validity) -> Result<CertificateParams, PkiError> {
    check_device_id(device_id)?;
    let uri = Ia5String::try_from(format!("{DEVICE_URI_PREFIX}{device_id}")).map_err(|_| {
        PkiError::InvalidDeviceId {
            id: device_id.to_owned(),
            reason: "it cannot be written as a URI",
        }
    })?;
    let mut params = leaf_params(device_id, validity, ExtendedKeyUsagePurpose::ClientAuth)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    Ok(params)
}

/// The common part of server and device certificates.
fn leaf_params(
    common_name: &str,
    validity: Validity,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.serial_number = Some(random_serial()?);
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Device ids become the CN (at most 64 characters) and part of a URI, so
/// they are limited to 1..=64 printable ASCII characters without spaces.
fn check_device_id(device_id: &str) -> Result<(), PkiError> {
    let reason = if device_id.is_empty() {
        "it is empty"
    } else if device_id.len() > MAX_DEVICE_ID_LEN {
        "it is longer than 64 characters"
    } else if !device_id.bytes().all(|b| b.is_ascii_graphic()) {
        "it must be printable ASCII without spaces"
    } else {
        return Ok(());
    };
    Err(PkiError::InvalidDeviceId {
        id: device_id.to_owned(),
        reason,
    })
}

fn server_san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    if !valid {
        return Err(PkiError::InvalidServerName {
            name: name.to_owned(),
            reason: "not an IP address, and not a DNS name (letters, digits, '-', '.', '_', '*')"
                .into(),
        });
    }
    let dns = Ia5String::try_from(name).map_err(|e| PkiError::InvalidServerName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(SanType::DnsName(dns))
}

fn generate_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(signing_error(what))
}

/// A random positive serial of exactly [`SERIAL_LEN`] bytes: the top bit is
/// cleared (positive) and the next one set (no leading zero byte to strip).
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = random_bytes::<SERIAL_LEN>()?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Random bytes from ring's system generator (through rustls, which already
/// depends on it).
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut bytes = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    Ok(bytes)
}

pub(crate) fn signing_error(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |e| PkiError::Signing {
        what,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_sixteen_positive_bytes() {
        for _ in 0..64 {
            let serial = random_serial().unwrap().to_bytes();
            assert_eq!(serial.len(), SERIAL_LEN);
            assert_eq!(serial[0] & 0xc0, 0x40);
            assert_eq!(serial_hex(&serial).len(), 2 * SERIAL_LEN);
        }
    }

    #[test]
    fn device_ids_are_checked() {
        assert!(check_device_id("sensor-01").is_ok());
        assert!(check_device_id(&"a".repeat(64)).is_ok());
        for bad in ["", "has space", "tab\t", "é", &"a".repeat(65)] {
            assert!(
                matches!(check_device_id(bad), Err(PkiError::InvalidDeviceId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_names_become_ip_or_dns_sans() {
        assert!(matches!(server_san("127.0.0.1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(server_san("::1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(
            server_san("mqtt.example.com"),
            Ok(SanType::DnsName(_))
        ));
        assert!(server_san("").is_err());
        assert!(server_san("bad name").is_err());
    }
}
