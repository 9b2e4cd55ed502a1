//! In-memory TLS handshakes (no sockets) between a rustls client presenting a
//! device certificate and a server built by `pki::server_config`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pki::{
    load_cert_chain, load_private_key, peer_cert, server_config, CertificateAuthority, ClientAuth,
    IssuedCert, RevocationCheck,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, ConnectionCommon, RootCertStore,
    ServerConfig, ServerConnection,
};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A revocation list backed by a set, as the registry's would be.
#[derive(Debug, Default)]
struct RevokedSerials(Mutex<HashSet<String>>);

impl RevokedSerials {
    fn revoke(&self, serial_hex: &str) {
        self.0.lock().unwrap().insert(serial_hex.to_owned());
    }
}

impl RevocationCheck for RevokedSerials {
    fn is_revoked(&self, serial_hex: &str) -> bool {
        self.0.lock().unwrap().contains(serial_hex)
    }
}

struct Setup {
    ca: CertificateAuthority,
    revoked: Arc<RevokedSerials>,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path(), now_ms()).unwrap();
        Setup {
            ca,
            revoked: Arc::default(),
            _dir: dir,
        }
    }

    fn server(&self, required: bool) -> Arc<ServerConfig> {
        server_for(&self.ca, Some(self.client_auth(required)))
    }

    fn client_auth(&self, required: bool) -> ClientAuth {
        ClientAuth {
            roots_pem: self.ca.cert_pem().to_owned(),
            required,
            revocation: self.revoked.clone(),
        }
    }

    fn device(&self, id: &str) -> IssuedCert {
        self.ca.issue_device_cert(id, 30, now_ms()).unwrap()
    }
}

fn server_for(ca: &CertificateAuthority, client_auth: Option<ClientAuth>) -> Arc<ServerConfig> {
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let issued = ca.issue_server_cert(&names, 30, now_ms()).unwrap();
    let chain = load_cert_chain(&issued.cert_pem).unwrap();
    let key = load_private_key(issued.key_pem.as_deref().unwrap()).unwrap();
    server_config(chain, key, client_auth, &[]).unwrap()
}

fn client(
    trusted: &CertificateAuthority,
    device: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted.cert_der().to_vec()))
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let config = match device {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                load_cert_chain(cert_pem).unwrap(),
                load_private_key(key_pem).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

fn client_with(trusted: &CertificateAuthority, device: Option<&IssuedCert>) -> Arc<ClientConfig> {
    let device = device.map(|d| (d.cert_pem.as_str(), d.key_pem.as_deref().unwrap()));
    client(trusted, device, rustls::DEFAULT_VERSIONS)
}

#[derive(Debug)]
enum Failure {
    Server(rustls::Error),
    Client(rustls::Error),
}

/// Pumps TLS records between the two ends until both have finished the
/// handshake and have nothing left to send, or one of them fails.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<ServerConnection, Failure> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(client, name).unwrap();
    let mut server = ServerConnection::new(server).unwrap();
    for _ in 0..32 {
        let to_server = transfer(&mut client, &mut server).map_err(Failure::Server)?;
        let to_client = transfer(&mut server, &mut client).map_err(Failure::Client)?;
        if !to_server && !to_client {
            assert!(!client.is_handshaking() && !server.is_handshaking());
            return Ok(server);
        }
    }
    panic!("the handshake did not settle");
}

/// Moves every record `from` wants to send into `to`; `to`'s error if it
/// refuses them. Returns whether anything moved.
fn transfer<A, B>(
    from: &mut ConnectionCommon<A>,
    to: &mut ConnectionCommon<B>,
) -> Result<bool, rustls::Error> {
    let mut records = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut records).unwrap();
    }
    let mut unread = &records[..];
    while !unread.is_empty() {
        to.read_tls(&mut unread).unwrap();
        to.process_new_packets()?;
    }
    Ok(!records.is_empty())
}

fn refused_by_server(result: Result<ServerConnection, Failure>) -> rustls::Error {
    match result {
        Err(Failure::Server(e)) => e,
        Err(Failure::Client(e)) => panic!("the client failed first: {e}"),
        Ok(_) => panic!("the handshake succeeded"),
    }
}

#[test]
fn a_valid_device_certificate_is_accepted_and_identifies_the_device() {
    let setup = Setup::new();
    let device = setup.device("sensor-1");
    for required in [true, false] {
        let server = handshake(
            setup.server(required),
            client_with(&setup.ca, Some(&device)),
        )
        .unwrap();
        let certs = server.peer_certificates().unwrap();
        let peer = peer_cert(&certs[0]).unwrap();
        assert_eq!(peer.device_id(), Some("sensor-1"));
        assert_eq!(peer.san_device_id.as_deref(), Some("sensor-1"));
        assert_eq!(peer.serial_hex, device.serial_hex);
    }
}

#[test]
fn tls12_clients_are_verified_the_same_way() {
    let setup = Setup::new();
    let device = setup.device("old-gateway");
    let config = client(
        &setup.ca,
        Some((&device.cert_pem, device.key_pem.as_deref().unwrap())),
        &[&rustls::version::TLS12],
    );
    let server = handshake(setup.server(true), config.clone()).unwrap();
    assert_eq!(
        peer_cert(&server.peer_certificates().unwrap()[0])
            .unwrap()
            .device_id(),
        Some("old-gateway")
    );
    setup.revoked.revoke(&device.serial_hex);
    let err = refused_by_server(handshake(setup.server(true), config));
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let setup = Setup::new();
    let other = Setup::new();
    let stranger = other.device("stranger");
    for required in [true, false] {
        let err = refused_by_server(handshake(
            setup.server(required),
            client_with(&setup.ca, Some(&stranger)),
        ));
        assert_eq!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            "required={required}"
        );
    }
}

#[test]
fn an_expired_certificate_is_refused() {
    let setup = Setup::new();
    let expired = setup
        .ca
        .issue_device_cert("sleepy", 1, now_ms() - 30 * DAY_MS)
        .unwrap();
    for required in [true, false] {
        let err = refused_by_server(handshake(
            setup.server(required),
            client_with(&setup.ca, Some(&expired)),
        ));
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{err:?}"
        );
    }
}

#[test]
fn a_revoked_serial_is_refused_and_others_are_not() {
    let setup = Setup::new();
    let revoked = setup.device("stolen");
    let fine = setup.device("honest");
    setup.revoked.revoke(&revoked.serial_hex);

    let err = refused_by_server(handshake(
        setup.server(true),
        client_with(&setup.ca, Some(&revoked)),
    ));
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
    handshake(setup.server(true), client_with(&setup.ca, Some(&fine))).unwrap();

    // Revocation is consulted on every handshake: no restart needed.
    setup.revoked.revoke(&fine.serial_hex);
    let err = refused_by_server(handshake(
        setup.server(false),
        client_with(&setup.ca, Some(&fine)),
    ));
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Revoked)
    );
}

#[test]
fn no_client_certificate_is_accepted_only_when_not_required() {
    let setup = Setup::new();
    let server = handshake(setup.server(false), client_with(&setup.ca, None)).unwrap();
    assert!(server.peer_certificates().is_none());

    let err = refused_by_server(handshake(setup.server(true), client_with(&setup.ca, None)));
    assert_eq!(err, rustls::Error::NoCertificatesPresented);
}

#[test]
fn without_client_auth_no_certificate_is_requested() {
    let setup = Setup::new();
    let device = setup.device("sensor-1");
    let server = handshake(
        server_for(&setup.ca, None),
        client_with(&setup.ca, Some(&device)),
    )
    .unwrap();
    assert!(server.peer_certificates().is_none());
}

#[test]
fn csr_signed_and_operator_ca_certificates_authenticate() {
    let ca = CertificateAuthority::from_pem(
        include_str!("fixtures/ec-ca.pem"),
        include_str!("fixtures/ec-ca.key"),
    )
    .unwrap();
    let issued = ca
        .sign_csr(
            include_str!("fixtures/device.csr"),
            "csr-device",
            30,
            now_ms(),
        )
        .unwrap();
    let revoked = Arc::new(RevokedSerials::default());
    let auth = ClientAuth {
        roots_pem: ca.cert_pem().to_owned(),
        required: true,
        revocation: revoked,
    };
    let config = client(
        &ca,
        Some((&issued.cert_pem, include_str!("fixtures/device.key"))),
        rustls::DEFAULT_VERSIONS,
    );
    let server = handshake(server_for(&ca, Some(auth)), config).unwrap();
    let peer = peer_cert(&server.peer_certificates().unwrap()[0]).unwrap();
    assert_eq!(peer.device_id(), Some("csr-device"));
}

#[test]
fn server_config_sets_alpn_and_checks_its_inputs() {
    let setup = Setup::new();
    let issued = setup
        .ca
        .issue_server_cert(&["localhost".into()], 30, now_ms())
        .unwrap();
    let chain = load_cert_chain(&issued.cert_pem).unwrap();
    let key = load_private_key(issued.key_pem.as_deref().unwrap()).unwrap();

    let config = server_config(chain.clone(), key.clone_key(), None, &[b"mqtt", b"h2"]).unwrap();
    assert_eq!(
        config.alpn_protocols,
        vec![b"mqtt".to_vec(), b"h2".to_vec()]
    );
    let config = server_config(chain.clone(), key.clone_key(), None, &[]).unwrap();
    assert!(config.alpn_protocols.is_empty());

    // A key that does not belong to the certificate.
    let other = setup.device("x");
    let wrong_key = load_private_key(other.key_pem.as_deref().unwrap()).unwrap();
    assert!(server_config(chain.clone(), wrong_key, None, &[]).is_err());

    // Unusable client roots.
    let mut auth = setup.client_auth(true);
    auth.roots_pem = "no roots here".into();
    let err = server_config(chain, key, Some(auth), &[]).unwrap_err();
    assert!(err.to_string().contains("client CA roots"), "{err}");
}
