//! Reading certificates and private keys from PEM text.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;

use crate::PkiError;

/// Reads every `CERTIFICATE` block of `pem`, in order (leaf first for a
/// server chain). Other blocks are ignored; no certificate at all, or one that
/// is not X.509, is an error.
pub fn load_cert_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    cert_chain_from_pem(pem, "certificate chain PEM")
}

/// Reads the first private key of `pem`: PKCS#8 (`PRIVATE KEY`), SEC1
/// (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`). Encrypted keys are not
/// supported.
pub fn load_private_key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    private_key_from_pem(pem, "private key PEM")
}

/// [`load_cert_chain`] with `what` naming the input in errors.
pub(crate) fn cert_chain_from_pem(
    pem: &str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let invalid = |reason: String| PkiError::InvalidCertificate {
        what: what.to_owned(),
        reason,
    };
    let mut chain = Vec::new();
    for (index, item) in rustls_pemfile::certs(&mut pem.as_bytes()).enumerate() {
        let der = item.map_err(|e| invalid(format!("certificate {}: {e}", index + 1)))?;
        parse_certificate(&der, what)
            .map_err(|e| invalid(format!("certificate {}: {e}", index + 1)))?;
        chain.push(der);
    }
    if chain.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(chain)
}

/// [`load_private_key`] with `what` naming the input in errors.
pub(crate) fn private_key_from_pem(
    pem: &str,
    what: &str,
) -> Result<PrivateKeyDer<'static>, PkiError> {
    let invalid = |reason: String| PkiError::InvalidKey {
        what: what.to_owned(),
        reason,
    };
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) if pem.contains("ENCRYPTED PRIVATE KEY") => Err(invalid(
            "the key is encrypted; decrypt it first (openssl pkcs8 -nocrypt)".into(),
        )),
        Ok(None) => Err(invalid(
            "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found".into(),
        )),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_certificate<'a>(
    der: &'a [u8],
    what: &str,
) -> Result<X509Certificate<'a>, PkiError> {
    let invalid = |reason: String| PkiError::InvalidCertificate {
        what: what.to_owned(),
        reason,
    };
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(invalid(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        ))),
        Err(e) => Err(invalid(format!("not a DER X.509 certificate ({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_garbage_pem_is_an_error_not_a_panic() {
        assert!(load_cert_chain("").is_err());
        assert!(load_cert_chain("hello").is_err());
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = load_cert_chain(bad).unwrap_err().to_string();
        assert!(err.contains("certificate 1"), "{err}");
        assert!(load_private_key("").is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = load_private_key(encrypted).unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
    }

    #[test]
    fn parse_certificate_refuses_garbage() {
        assert!(parse_certificate(b"\x30\x03\x02\x01\x01", "test").is_err());
        assert!(parse_certificate(&[], "test").is_err());
    }
}
