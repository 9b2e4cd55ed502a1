//! Millwright's certificate authority and TLS configuration.
//!
//! What it is:
//! - [`CertificateAuthority`]: a CA created on first start or supplied by the
//!   operator, which issues server certificates for the TLS listeners
//!   ([`CertificateAuthority::issue_server_cert`]), device certificates with a
//!   key generated here ([`CertificateAuthority::issue_device_cert`]), and
//!   device certificates for a device's own CSR
//!   ([`CertificateAuthority::sign_csr`]). Device certificates carry the
//!   device id as CN and as a `urn:millwright:device:<id>` URI SAN, EKU
//!   clientAuth, and a random 16-byte serial.
//! - [`server_config`]: a rustls `ServerConfig` (ring provider, installed
//!   explicitly) with optional client-certificate authentication, checked by
//!   webpki and then against a [`RevocationCheck`].
//! - [`peer_cert`]: the identity facts (CN, device id, serial, expiry) of a
//!   verified client certificate, and [`serial_hex`], the one spelling of a
//!   serial number used everywhere.
//!
//! What it is not: no sockets, no listeners, no clock reads (the current time
//! is passed in as Unix milliseconds; certificates start one hour before it
//! to tolerate clock skew), no storage of issued certificates or of the
//! revocation list (the registry owns those and answers
//! [`RevocationCheck`]). File I/O happens only in
//! [`CertificateAuthority::load_or_create`].
//!
//! Files: the CA directory holds `ca.pem` (the CA certificate, which clients
//! and devices trust) and `ca.key` (its PKCS#8 private key, created with mode
//! 0600). Both are created together when both are absent: ECDSA P-256, CN
//! "Millwright CA <8 hex digits>", valid 10 years, CA:TRUE with path length
//! 0, key usage keyCertSign + cRLSign. One without the other is an error.
//!
//! Code map: `ca.rs` (the CA and operator-supplied CAs), `store.rs` (its
//! files), `issue.rs` (server/device certificates, CSRs), `tls.rs` (server
//! configs, revocation), `peer.rs` (client certificate facts, serials),
//! `pem.rs` (PEM input), `pkcs8.rs` (SEC1/PKCS#1 keys), `validity.rs`,
//! `error.rs`.

mod ca;
mod error;
mod issue;
mod peer;
mod pem;
mod pkcs8;
mod store;
mod tls;
mod validity;

pub use ca::CertificateAuthority;
pub use error::PkiError;
pub use issue::{generate_csr, IssuedCert, DEVICE_URI_PREFIX};
pub use peer::{peer_cert, serial_hex, PeerCert};
pub use pem::{load_cert_chain, load_private_key};
pub use store::{CA_CERT_FILE, CA_KEY_FILE};
pub use tls::{server_config, ClientAuth, RevocationCheck};
