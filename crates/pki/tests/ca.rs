//! The CA's files, operator-supplied CAs and CSR signing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use pki::{generate_csr, peer_cert, CertificateAuthority, PkiError, CA_CERT_FILE, CA_KEY_FILE};
use x509_parser::extensions::GeneralName;

const EC_CA_PEM: &str = include_str!("fixtures/ec-ca.pem");
const EC_CA_KEY: &str = include_str!("fixtures/ec-ca.key");
const RSA_CA_PEM: &str = include_str!("fixtures/rsa-ca.pem");
const RSA_CA_KEY: &str = include_str!("fixtures/rsa-ca.key");
const DEVICE_CSR: &str = include_str!("fixtures/device.csr");

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn der_of(pem: &str) -> Vec<u8> {
    pki::load_cert_chain(pem).unwrap().remove(0).to_vec()
}

#[test]
fn load_or_create_creates_a_private_key_and_then_reloads_the_same_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/pki");
    let created = CertificateAuthority::load_or_create(&dir, now_ms()).unwrap();

    let key_mode = fs::metadata(dir.join(CA_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(
        fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(),
        created.cert_pem()
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let loaded = CertificateAuthority::load_or_create(&dir, now_ms() + 1000).unwrap();
    assert_eq!(loaded.cert_pem(), created.cert_pem());
    assert_eq!(loaded.cert_der(), created.cert_der());
}

#[test]
fn the_created_ca_has_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let now = now_ms();
    let ca = CertificateAuthority::load_or_create(tmp.path(), now).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(cn.starts_with("Millwright CA "), "{cn}");
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let not_before = cert.validity().not_before.timestamp() as u64;
    let not_after = cert.validity().not_after.timestamp() as u64;
    assert_eq!(not_before, now / 1000 - 3600);
    assert_eq!(not_after, now / 1000 + 3650 * 86_400);
}

#[test]
fn one_file_without_the_other_is_an_error_naming_the_missing_file() {
    for (remove, keep) in [(CA_KEY_FILE, CA_CERT_FILE), (CA_CERT_FILE, CA_KEY_FILE)] {
        let tmp = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(tmp.path(), now_ms()).unwrap();
        fs::remove_file(tmp.path().join(remove)).unwrap();

        let err = CertificateAuthority::load_or_create(tmp.path(), now_ms()).unwrap_err();
        assert!(
            matches!(&err, PkiError::CaFileMissing { missing, .. } if missing.ends_with(remove)),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(&tmp.path().join(remove).display().to_string()),
            "{message}"
        );
        assert!(message.contains(keep), "{message}");
        // Nothing was replaced.
        assert!(!tmp.path().join(remove).exists());
    }
}

#[test]
fn a_corrupt_ca_file_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(tmp.path(), now_ms()).unwrap();
    let cert_path = tmp.path().join(CA_CERT_FILE);
    fs::write(&cert_path, "not a certificate").unwrap();
    let message = CertificateAuthority::load_or_create(tmp.path(), now_ms())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&cert_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("no CERTIFICATE block"), "{message}");

    let other = tempfile::tempdir().unwrap();
    CertificateAuthority::load_or_create(other.path(), now_ms()).unwrap();
    fs::copy(other.path().join(CA_CERT_FILE), &cert_path).unwrap();
    let err = CertificateAuthority::load_or_create(tmp.path(), now_ms()).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
}

#[test]
fn operator_cas_with_sec1_and_pkcs1_keys_are_accepted() {
    for (cert_pem, key_pem) in [(EC_CA_PEM, EC_CA_KEY), (RSA_CA_PEM, RSA_CA_KEY)] {
        let ca = CertificateAuthority::from_pem(cert_pem, key_pem).unwrap();
        assert_eq!(ca.cert_der(), der_of(cert_pem));
        let issued = ca.issue_device_cert("dev-1", 30, now_ms()).unwrap();
        let leaf = der_of(&issued.cert_pem);
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        let ca_der = der_of(cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        // The issuer name is reproduced byte for byte.
        assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
        leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
    }
}

#[test]
fn operator_cas_that_cannot_issue_are_refused() {
    let err = CertificateAuthority::from_pem(EC_CA_PEM, RSA_CA_KEY).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");

    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let device = ca.issue_device_cert("dev-1", 30, now_ms()).unwrap();
    let key = device.key_pem.as_deref().unwrap();
    let err = CertificateAuthority::from_pem(&device.cert_pem, key).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err}");

    let two = format!("{EC_CA_PEM}{RSA_CA_PEM}");
    let err = CertificateAuthority::from_pem(&two, EC_CA_KEY).unwrap_err();
    assert!(err.to_string().contains("exactly one"), "{err}");

    assert!(CertificateAuthority::from_pem("", EC_CA_KEY).is_err());
    assert!(CertificateAuthority::from_pem(EC_CA_PEM, "").is_err());
    assert!(CertificateAuthority::from_pem(
        EC_CA_PEM,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    .is_err());
}

#[test]
fn issued_certificates_carry_the_device_identity() {
    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let now = now_ms();
    let issued = ca.issue_device_cert("sensor-42", 7, now).unwrap();
    assert_eq!(issued.subject_cn, "sensor-42");
    assert_eq!(issued.serial_hex.len(), 32);
    assert_eq!(issued.not_after_ms, (now / 1000 + 7 * 86_400) * 1000);
    assert!(issued.key_pem.as_deref().unwrap().contains("PRIVATE KEY"));
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));

    let der = der_of(&issued.cert_pem);
    let peer = peer_cert(&der).unwrap();
    assert_eq!(peer.common_name.as_deref(), Some("sensor-42"));
    assert_eq!(peer.san_device_id.as_deref(), Some("sensor-42"));
    assert_eq!(peer.device_id(), Some("sensor-42"));
    assert_eq!(peer.serial_hex, issued.serial_hex);
    assert_eq!(peer.not_after_ms, issued.not_after_ms);

    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);

    let err = ca
        .issue_device_cert("no spaces allowed", 7, now)
        .unwrap_err();
    assert!(matches!(err, PkiError::InvalidDeviceId { .. }), "{err}");
    let err = ca.issue_device_cert("dev", 0, now).unwrap_err();
    assert!(matches!(err, PkiError::InvalidValidity(_)), "{err}");
}

#[test]
fn server_certificates_have_dns_and_ip_sans() {
    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let names = [
        "mqtt.example.com".to_owned(),
        "10.0.0.5".to_owned(),
        "::1".to_owned(),
    ];
    let issued = ca.issue_server_cert(&names, 90, now_ms()).unwrap();
    assert_eq!(issued.subject_cn, "mqtt.example.com");
    let der = der_of(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(matches!(sans[0], GeneralName::DNSName("mqtt.example.com")));
    assert!(matches!(sans[1], GeneralName::IPAddress(&[10, 0, 0, 5])));
    assert!(matches!(sans[2], GeneralName::IPAddress(ip) if ip.len() == 16));
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    assert!(ca.issue_server_cert(&[], 90, now_ms()).is_err());
    assert!(ca
        .issue_server_cert(&["bad name".into()], 90, now_ms())
        .is_err());
}

#[test]
fn sign_csr_replaces_whatever_the_csr_asked_for() {
    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let issued = ca.sign_csr(DEVICE_CSR, "device-7", 30, now_ms()).unwrap();
    assert_eq!(issued.key_pem, None);
    assert_eq!(issued.subject_cn, "device-7");

    let der = der_of(&issued.cert_pem);
    let peer = peer_cert(&der).unwrap();
    assert_eq!(peer.common_name.as_deref(), Some("device-7"));
    assert_eq!(peer.san_device_id.as_deref(), Some("device-7"));
    assert_eq!(peer.serial_hex, issued.serial_hex);

    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(sans.len(), 1, "{sans:?}");
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(cert
        .extensions()
        .iter()
        .all(|ext| ext.oid.to_id_string() != "1.2.3.4"));

    // The certificate carries the CSR's key.
    let csr_der = pem_body(DEVICE_CSR);
    let (_, csr) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&csr_der).unwrap();
    assert_eq!(
        cert.public_key().raw,
        csr.certification_request_info.subject_pki.raw
    );
}

#[test]
fn generated_csrs_are_signed_with_the_requested_device_id() {
    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let (csr_pem, key_pem) = generate_csr("someone-else").unwrap();
    assert!(csr_pem.contains("CERTIFICATE REQUEST"));
    assert!(key_pem.contains("PRIVATE KEY"));
    let issued = ca.sign_csr(&csr_pem, "device-8", 30, now_ms()).unwrap();
    let peer = peer_cert(&der_of(&issued.cert_pem)).unwrap();
    assert_eq!(peer.device_id(), Some("device-8"));
    assert_eq!(peer.common_name.as_deref(), Some("device-8"));
}

#[test]
fn bad_csrs_are_errors_not_panics() {
    let ca = CertificateAuthority::from_pem(EC_CA_PEM, EC_CA_KEY).unwrap();
    let garbage = [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
        EC_CA_PEM,
    ];
    for text in garbage {
        let err = ca.sign_csr(text, "device-9", 30, now_ms()).unwrap_err();
        assert!(matches!(err, PkiError::InvalidCsr(_)), "{text:?}: {err}");
    }

    // A CSR whose signature does not match its content.
    let mut der = pem_body(DEVICE_CSR);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem_encode("CERTIFICATE REQUEST", &der);
    let err = ca
        .sign_csr(&tampered, "device-9", 30, now_ms())
        .unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");

    let (csr_pem, _) = generate_csr("ok").unwrap();
    assert!(ca.sign_csr(&csr_pem, "", 30, now_ms()).is_err());
    assert!(generate_csr("").is_err());
}

/// Decodes the base64 body of a one-block PEM text (test helper).
fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let mut body = String::new();
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                body.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                body.push('=');
            }
        }
    }
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
