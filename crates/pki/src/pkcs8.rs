//! Turning any supported private key into an rcgen signing key.
//!
//! rcgen on `ring` only reads PKCS#8, while operators often hold SEC1
//! (`EC PRIVATE KEY`, from `openssl ecparam -genkey`) or PKCS#1
//! (`RSA PRIVATE KEY`) files. Those are wrapped into PKCS#8 here: the wrapper
//! is a fixed DER structure around the unchanged key bytes.

use rcgen::KeyPair;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::PkiError;

/// DER of AlgorithmIdentifier parameters: id-ecPublicKey + named curve.
const EC_P256: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
];
const EC_P384: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, // secp384r1
];
const RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, // rsaEncryption
    0x05, 0x00, // NULL parameters
];

/// A signing key pair from a parsed private key; `what` names it in errors.
pub(crate) fn key_pair(key: &PrivateKeyDer<'_>, what: &str) -> Result<KeyPair, PkiError> {
    let (candidates, hint) = match key {
        PrivateKeyDer::Pkcs8(k) => (vec![k.secret_pkcs8_der().to_vec()], ""),
        PrivateKeyDer::Sec1(k) => (
            vec![
                wrap(EC_P256, k.secret_sec1_der()),
                wrap(EC_P384, k.secret_sec1_der()),
            ],
            " (a SEC1 key must be on P-256 or P-384 and include its public key)",
        ),
        PrivateKeyDer::Pkcs1(k) => (vec![wrap(RSA, k.secret_pkcs1_der())], ""),
        _ => (Vec::new(), ""),
    };
    candidates
        .into_iter()
        .find_map(|der| KeyPair::try_from(&PrivatePkcs8KeyDer::from(der)).ok())
        .ok_or_else(|| PkiError::InvalidKey {
            what: what.to_owned(),
            reason: format!("not a supported ECDSA P-256/P-384, RSA or Ed25519 key{hint}"),
        })
}

/// PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }
fn wrap(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(tlv(0x30, algorithm));
    body.extend(tlv(0x04, key));
    tlv(0x30, &body)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_uses_long_form_lengths_when_needed() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 0x02, 1, 2]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }

    #[test]
    fn garbage_keys_are_refused() {
        let sec1 = PrivateKeyDer::Sec1(vec![0x30, 0x00].into());
        let err = key_pair(&sec1, "test key").unwrap_err().to_string();
        assert!(err.contains("test key") && err.contains("SEC1"), "{err}");
        let pkcs1 = PrivateKeyDer::Pkcs1(vec![1, 2, 3].into());
        assert!(key_pair(&pkcs1, "test key").is_err());
    }
}
