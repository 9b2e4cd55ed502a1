//! Wiring of identities: the registry, the first admin token, the CA and
//! the TLS configurations.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use iot_types::Clock;
use settings::Settings;

/// Opens `<data-dir>/registry.redb`.
pub fn open_registry(
    data_dir: &Path,
    settings: &Settings,
) -> anyhow::Result<Arc<registry::Registry>> {
    let path = data_dir.join("registry.redb");
    let r = registry::Registry::open(&path, settings.auth.registry_config())
        .with_context(|| format!("cannot open the device registry {}", path.display()))?;
    Ok(Arc::new(r))
}

/// Creates the admin token of `auth.bootstrap_admin_token`, or at first
/// start (no API token yet) a new one, printed once; only its hash is kept.
pub fn bootstrap_admin(
    registry: &registry::Registry,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    let now = clock.now().as_millis();
    if let Some(token) = &settings.auth.bootstrap_admin_token {
        registry
            .create_api_token_with_secret(
                token,
                "bootstrap-admin",
                None,
                registry::Role::Admin,
                None,
                now,
            )
            .context("cannot create auth.bootstrap_admin_token")?;
        return Ok(());
    }
    if registry
        .api_token_count()
        .context("cannot read the API tokens")?
        == 0
    {
        let (_, token) = registry
            .create_api_token("admin", None, registry::Role::Admin, None, now)
            .context("cannot create the first admin token")?;
        println!("Created the first admin API token (shown once; only its hash is kept):\n  {token}\nUse it as `Authorization: Bearer <token>`; `millwright admin-token --data-dir DIR` makes another.");
    }
    Ok(())
}

/// The CA: operator-supplied (`tls.ca_cert_file` + `tls.ca_key_file`) or
/// the built-in one in `<data-dir>/ca/`.
pub fn load_ca(
    data_dir: &Path,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<Arc<pki::CertificateAuthority>> {
    let t = &settings.tls;
    let ca = match (&t.ca_cert_file, &t.ca_key_file) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read_to_string(c)
                .with_context(|| format!("tls.ca_cert_file: cannot read {}", c.display()))?;
            let key = std::fs::read_to_string(k)
                .with_context(|| format!("tls.ca_key_file: cannot read {}", k.display()))?;
            pki::CertificateAuthority::from_pem(&cert, &key)
                .context("tls.ca_cert_file / tls.ca_key_file")?
        }
        _ => {
            let dir = data_dir.join("ca");
            pki::CertificateAuthority::load_or_create(&dir, clock.now().as_millis())
                .with_context(|| format!("cannot load or create the CA in {}", dir.display()))?
        }
    };
    Ok(Arc::new(ca))
}

/// Revocation checks against the registry's in-memory set of revoked
/// serials (no I/O during handshakes).
#[derive(Clone)]
struct RegistryRevocation(Arc<dyn registry::DeviceStorage>);

impl std::fmt::Debug for RegistryRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryRevocation")
    }
}

impl pki::RevocationCheck for RegistryRevocation {
    fn is_revoked(&self, serial_hex: &str) -> bool {
        self.0.is_certificate_revoked(serial_hex)
    }
}

/// TLS configurations: MQTT (client certificates verified against the CA
/// and the revocation list; optional unless `tls.require_client_cert`) and
/// HTTPS (no client certificates).
pub struct TlsConfigs {
    pub mqtt: Arc<rustls::ServerConfig>,
    pub https: Arc<rustls::ServerConfig>,
}

pub fn tls_configs(
    settings: &Settings,
    ca: &pki::CertificateAuthority,
    registry: &Arc<registry::Registry>,
    clock: &dyn Clock,
) -> anyhow::Result<TlsConfigs> {
    let t = &settings.tls;
    let (chain_pem, key_pem) = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => (
            std::fs::read_to_string(c)
                .with_context(|| format!("tls.cert_file: cannot read {}", c.display()))?,
            std::fs::read_to_string(k)
                .with_context(|| format!("tls.key_file: cannot read {}", k.display()))?,
        ),
        _ => {
            // Issued afresh at every start (in memory): clients trust the
            // CA, so the server certificate never needs renewing by hand.
            let issued = ca
                .issue_server_cert(&t.hostnames, 397, clock.now().as_millis())
                .context("cannot issue the server certificate (tls.hostnames)")?;
            let key = issued
                .key_pem
                .ok_or_else(|| anyhow::anyhow!("the issued server certificate has no key"))?;
            (issued.cert_pem, key)
        }
    };
    let chain = || pki::load_cert_chain(&chain_pem).context("tls.cert_file");
    let key = || pki::load_private_key(&key_pem).context("tls.key_file");
    let client_auth = pki::ClientAuth {
        roots_pem: ca.cert_pem().to_string(),
        required: t.require_client_cert,
        revocation: Arc::new(RegistryRevocation(registry.clone())),
    };
    let mqtt = pki::server_config(chain()?, key()?, Some(client_auth), &[])
        .context("cannot build the MQTT TLS configuration")?;
    let https = pki::server_config(chain()?, key()?, None, &[b"http/1.1"])
        .context("cannot build the HTTPS configuration")?;
    Ok(TlsConfigs { mqtt, https })
}

/// The API's view of live MQTT sessions.
pub struct Live(pub broker_net::ServerHandle);

impl api::LiveSessions for Live {
    fn disconnect(&self, principal: &str, reason_code: u8) -> usize {
        self.0
            .disconnect_principal(principal, mqtt_proto::ReasonCode(reason_code))
    }

    fn is_connected(&self, principal: &str) -> bool {
        self.0.is_connected(principal)
    }
}
