//! rustls server configurations, with optional client-certificate
//! authentication checked against a revocation list.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::pem::{cert_chain_from_pem, parse_certificate};
use crate::{serial_hex, PkiError};

/// Tells whether a certificate serial ([`serial_hex`] spelling) is revoked.
/// Called during every client-certificate handshake, so it must be fast (an
/// in-memory set lookup, not a database query).
pub trait RevocationCheck: Send + Sync + std::fmt::Debug {
    fn is_revoked(&self, serial_hex: &str) -> bool;
}

/// Client-certificate authentication for a listener.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// One or more PEM CA certificates that client certificates must chain to.
    pub roots_pem: String,
    /// `true`: a client without a certificate is refused. `false`: it is
    /// accepted (and authenticates later, e.g. with a token), but a
    /// certificate that is presented must still be valid.
    pub required: bool,
    /// Consulted after the chain, validity period and EKU have been verified.
    pub revocation: Arc<dyn RevocationCheck>,
}

/// A rustls server configuration presenting `chain` (leaf first) and `key`.
///
/// With `client_auth`, client certificates are verified by webpki against its
/// roots (chain, validity period, EKU clientAuth) and then against its
/// revocation check: a revoked serial fails the handshake with
/// [`CertificateError::Revoked`]. `alpn` lists the ALPN protocols to offer
/// (empty for none). The ring provider is installed explicitly; no process
/// default is used or set.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: Option<ClientAuth>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let builder = match client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth, provider)?),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn client_verifier(
    auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, PkiError> {
    let mut roots = RootCertStore::empty();
    for (index, der) in cert_chain_from_pem(&auth.roots_pem, "client CA roots PEM")?
        .into_iter()
        .enumerate()
    {
        roots
            .add(der)
            .map_err(|e| PkiError::InvalidRoots(format!("certificate {}: {e}", index + 1)))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !auth.required {
        builder = builder.allow_unauthenticated();
    }
    let webpki = builder
        .build()
        .map_err(|e| PkiError::InvalidRoots(e.to_string()))?;
    Ok(Arc::new(RevocationAwareVerifier {
        webpki,
        revocation: auth.revocation,
    }))
}

/// webpki's verifier followed by the revocation check.
#[derive(Debug)]
struct RevocationAwareVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    revocation: Arc<dyn RevocationCheck>,
}

impl ClientCertVerifier for RevocationAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = parse_certificate(end_entity, "client certificate")
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let serial = serial_hex(cert.raw_serial());
        if self.revocation.is_revoked(&serial) {
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or("-");
            tracing::warn!("client certificate refused: serial {serial} (CN {cn}) is revoked");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.webpki.requires_raw_public_keys()
    }
}
