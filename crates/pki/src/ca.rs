//! The certificate authority: its certificate and signing key.

use std::collections::HashSet;
use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use crate::issue::{random_bytes, random_serial, signing_error};
use crate::pem::{cert_chain_from_pem, parse_certificate, private_key_from_pem};
use crate::pkcs8::key_pair;
use crate::validity::Validity;
use crate::PkiError;

/// Validity of a CA created by [`CertificateAuthority::load_or_create`].
const CA_VALIDITY_DAYS: u32 = 3650;

/// Millwright's certificate authority: the CA certificate (PEM and DER) and
/// its private key. It issues server and device certificates and signs CSRs.
///
/// `Send + Sync`: issuing only reads it, so it can be shared behind an `Arc`.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The CA's subject, key identifier method and signing key, as rcgen
    /// needs them to sign.
    pub(crate) issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// An operator-supplied CA: a PEM certificate (exactly one `CERTIFICATE`
    /// block, a CA with `basicConstraints CA:TRUE`) and its PEM private key
    /// (PKCS#8, SEC1 or PKCS#1; ECDSA P-256/P-384, RSA or Ed25519).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::from_pem_named(cert_pem, key_pem, "CA certificate", "CA private key")
    }

    /// [`Self::from_pem`] with `cert_what` / `key_what` naming the inputs in
    /// errors (for example the file they came from).
    pub(crate) fn from_pem_named(
        cert_pem: &str,
        key_pem: &str,
        cert_what: &str,
        key_what: &str,
    ) -> Result<Self, PkiError> {
        let invalid = |reason: String| PkiError::InvalidCertificate {
            what: cert_what.to_owned(),
            reason,
        };
        let mut chain = cert_chain_from_pem(cert_pem, cert_what)?;
        if chain.len() != 1 {
            return Err(invalid(format!(
                "expected exactly one CERTIFICATE block, found {}",
                chain.len()
            )));
        }
        let cert_der = chain.remove(0);
        let cert = parse_certificate(&cert_der, cert_what)?;
        check_is_ca(&cert).map_err(invalid)?;
        check_subject_reproducible(&cert).map_err(invalid)?;

        let key = key_pair(&private_key_from_pem(key_pem, key_what)?, key_what)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch {
                cert: cert_what.to_owned(),
                key: key_what.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| invalid(format!("cannot sign with it ({e})")))?;
        Ok(CertificateAuthority {
            cert_pem: single_pem_block(cert_pem),
            cert_der,
            issuer,
        })
    }

    /// A new self-signed CA: ECDSA P-256, CN "Millwright CA <8 hex digits>",
    /// valid 10 years from `now_ms` (minus an hour of slack), CA:TRUE with
    /// path length 0, key usage keyCertSign + cRLSign.
    pub(crate) fn generate(now_ms: u64) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(signing_error("the CA key"))?;
        let suffix: String = random_bytes::<4>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let validity = Validity::starting_at(now_ms, CA_VALIDITY_DAYS)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Millwright CA {suffix}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;

        let cert = params
            .self_signed(&key)
            .map_err(signing_error("the CA certificate"))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM form (what devices and clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA private key as PKCS#8 PEM, for saving it.
    pub(crate) fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }
}

impl fmt::Debug for CertificateAuthority {
    /// Shows the issuer but never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn check_is_ca(cert: &X509Certificate<'_>) -> Result<(), String> {
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| format!("unreadable basicConstraints ({e})"))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err("not a CA certificate (basicConstraints CA:TRUE missing)".into());
    }
    let key_usage = cert
        .key_usage()
        .map_err(|e| format!("unreadable keyUsage ({e})"))?;
    if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err("its keyUsage does not allow signing certificates (keyCertSign)".into());
    }
    Ok(())
}

/// rcgen re-encodes the CA subject as the issuer of every certificate it
/// signs, and clients match that issuer byte for byte. It can only do so for
/// subjects with one attribute per RDN and no repeated attribute type.
fn check_subject_reproducible(cert: &X509Certificate<'_>) -> Result<(), String> {
    let mut seen = HashSet::new();
    for rdn in cert.subject().iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(
                "its subject has an empty or multi-valued RDN, which is not supported \
                        for an issuing CA"
                    .into(),
            );
        };
        if !seen.insert(attribute.attr_type().to_id_string()) {
            return Err(format!(
                "its subject repeats attribute {}, which is not supported for an issuing CA",
                attribute.attr_type().to_id_string()
            ));
        }
    }
    Ok(())
}

/// The text of the first PEM block of `pem` (which has been checked to hold
/// exactly one certificate), so that `cert_pem()` carries no stray text.
fn single_pem_block(pem: &str) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let block = pem.find(BEGIN).and_then(|start| {
        let end = start + pem[start..].find(END)? + END.len();
        Some(&pem[start..end])
    });
    match block {
        Some(block) => format!("{}\n", block.replace("\r\n", "\n")),
        None => pem.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn the_ca_is_send_and_sync() {
        assert_send_sync::<CertificateAuthority>();
    }

    #[test]
    fn generated_ca_round_trips_through_pem() {
        let ca = CertificateAuthority::generate(1_700_000_000_000).unwrap();
        let again = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        assert_eq!(again.cert_der(), ca.cert_der());
        let debug = format!("{ca:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }

    #[test]
    fn single_pem_block_strips_surrounding_text() {
        let text = "Bag Attributes\r\n-----BEGIN CERTIFICATE-----\r\nAAAA\r\n-----END CERTIFICATE-----\r\ntrailer";
        assert_eq!(
            single_pem_block(text),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        );
    }
}
