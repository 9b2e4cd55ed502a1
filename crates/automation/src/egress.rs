//! Where a webhook may go, and the HTTP client that takes it there.
//!
//! A rule author chooses the webhook URL, so without a guard the platform
//! would POST wherever it is told: to its own API on 127.0.0.1, to a cloud
//! metadata service on 169.254.169.254, to any host of the private network
//! it runs in. The guard refuses destinations in loopback, link-local,
//! private, shared (CGNAT), multicast, documentation and other non-global
//! ranges unless `rules.webhook_allow_private` or
//! `rules.webhook_allowed_cidrs` allows them.
//!
//! The check is made on the *resolved* addresses, inside the client's
//! resolver: the connector connects only to the addresses the resolver
//! returned, so a name that resolves to 127.0.0.1 (or one that changes its
//! answer between a check and a connect, DNS rebinding) cannot slip
//! through. Proxies from the environment are not used (the resolver would
//! then check the proxy, not the destination) and redirects are not
//! followed (a 3xx is a failure): a public endpoint cannot bounce a call to
//! an internal one.
//!
//! HTTPS uses rustls with the ring provider and trusts the Mozilla (webpki)
//! roots, plus the certificates of `rules.webhook_ca_file` for endpoints
//! behind a private CA.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a
/// range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an address range (expected e.g. 10.0.0.0/8, fd00::/8 or 192.168.1.5)")]
pub struct CidrError {
    text: String,
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError {
            text: s.to_string(),
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(err()),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// is; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address, both ways).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical(self.addr), canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                // A mapped range (`::ffff:10.0.0.0/104`) counts 96 bits of
                // prefix before the IPv4 part.
                let prefix = if self.addr.is_ipv6() {
                    self.prefix.saturating_sub(96)
                } else {
                    self.prefix
                };
                let m = mask_v4(prefix);
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = mask_v6(self.prefix);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let m = mask_v4(prefix);
    u32::from(ip) & m == u32::from(Ipv4Addr::from(net)) & m
}

fn in_v6(ip: Ipv6Addr, net: u128, prefix: u8) -> bool {
    let m = mask_v6(prefix);
    u128::from(ip) & m == net & m
}

/// Whether an IPv4 address is outside the global unicast space: "this
/// network", private, shared (CGNAT), loopback, link-local, IETF protocol
/// assignments, documentation, benchmarking, multicast, reserved and
/// broadcast.
fn internal_v4(ip: Ipv4Addr) -> bool {
    const RANGES: &[([u8; 4], u8)] = &[
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([192, 88, 99, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];
    RANGES.iter().any(|&(net, p)| in_v4(ip, net, p))
}

/// Whether an address is one a webhook may not reach by default. IPv6
/// forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are
/// judged by that address.
pub fn is_internal(ip: IpAddr) -> bool {
    let v6 = match ip {
        IpAddr::V4(v4) => return internal_v4(v4),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // `::` and `::1`, then the deprecated IPv4-compatible `::a.b.c.d`.
    if bits >> 32 == 0 {
        return bits <= 1 || internal_v4(low32);
    }
    // NAT64 well-known prefix: judged by the IPv4 address it embeds.
    if in_v6(v6, 0x0064_ff9b << 96, 96) {
        return internal_v4(low32);
    }
    // 6to4: the IPv4 address is in bits 16..48.
    if in_v6(v6, 0x2002 << 112, 16) {
        return internal_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    // Local-use NAT64 (64:ff9b:1::/48), discard-only (100::/64),
    // unique local, link-local, multicast...: everything outside global
    // unicast (2000::/3).
    if !in_v6(v6, 0x2000 << 112, 3) {
        return true;
    }
    const RANGES: &[(u128, u8)] = &[
        (0x2001 << 112, 32),     // Teredo
        (0x2001_0010 << 96, 28), // ORCHID
        (0x2001_0020 << 96, 28), // ORCHIDv2
        (0x2001_0db8 << 96, 32), // documentation
        (0x3fff << 112, 20),     // documentation
    ];
    RANGES.iter().any(|&(net, p)| in_v6(v6, net, p))
}

/// Which destinations webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Any address at all (`rules.webhook_allow_private`).
    pub allow_private: bool,
    /// Internal ranges allowed nevertheless (`rules.webhook_allowed_cidrs`).
    pub allowed: Vec<Cidr>,
}

impl EgressPolicy {
    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_internal(ip) || self.allowed.iter().any(|c| c.contains(ip))
    }
}

/// Why a webhook call failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Every address the host resolved to is in a refused range.
    #[error(
        "destination {host} ({addrs}) is a loopback, link-local or private address; \
         refused (allow it with rules.webhook_allow_private or rules.webhook_allowed_cidrs)"
    )]
    Refused { host: String, addrs: String },
    /// The endpoint answered with a redirect, which is not followed.
    #[error("HTTP {status}: redirects are not followed (Location: {location})")]
    Redirect { status: u16, location: String },
    /// The endpoint answered with another non-2xx status.
    #[error("HTTP {0}")]
    Status(u16),
    /// Resolution, connection, TLS or I/O failed.
    #[error("{0}")]
    Transport(String),
    /// `rules.webhook_ca_file` cannot be used.
    #[error("rules.webhook_ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// The resolver of the webhook client: the system resolver, then only the
/// addresses the policy permits.
#[derive(Debug)]
struct GuardedResolver {
    inner: DefaultResolver,
    policy: Arc<EgressPolicy>,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = self.inner.resolve(uri, config, timeout)?;
        let mut kept = self.inner.empty();
        for addr in all.iter() {
            if self.policy.permits(addr.ip()) {
                kept.push(*addr);
            }
        }
        if kept.is_empty() {
            let addrs: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
            return Err(ureq::Error::Other(Box::new(WebhookError::Refused {
                host: uri.host().unwrap_or_default().to_string(),
                addrs: addrs.join(", "),
            })));
        }
        Ok(kept)
    }
}

/// The HTTP client of webhooks: guarded resolver, no proxy, no redirects,
/// rustls (ring) with webpki roots and the optional CA file.
#[derive(Debug)]
pub struct WebhookClient {
    agent: ureq::Agent,
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, WebhookError> {
    let err = |reason: String| WebhookError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| err(e.to_string()))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => return Err(err("expected only certificates".into())),
        }
    }
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

impl WebhookClient {
    /// A client for these settings; fails if the CA file cannot be read.
    pub fn new(
        timeout: Duration,
        policy: EgressPolicy,
        ca_file: Option<&Path>,
    ) -> Result<WebhookClient, WebhookError> {
        let roots = match ca_file {
            None => RootCerts::WebPki,
            Some(path) => {
                let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                certs.extend(read_ca_file(path)?);
                RootCerts::Specific(Arc::new(certs))
            }
        };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        let resolver = GuardedResolver {
            inner: DefaultResolver::default(),
            policy: Arc::new(policy),
        };
        Ok(WebhookClient {
            agent: ureq::Agent::with_parts(config, DefaultConnector::default(), resolver),
        })
    }

    /// POSTs `body` (JSON) to `url` with extra headers; success is a 2xx.
    pub fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), WebhookError> {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send(body) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) if resp.status().is_redirection() => Err(WebhookError::Redirect {
                status: resp.status().as_u16(),
                // Kept with the queued call as its last error: bounded.
                location: resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("none")
                    .chars()
                    .take(256)
                    .collect(),
            }),
            Ok(resp) => Err(WebhookError::Status(resp.status().as_u16())),
            Err(ureq::Error::Other(e)) => match e.downcast::<WebhookError>() {
                Ok(ours) => Err(*ours),
                Err(other) => Err(WebhookError::Transport(other.to_string())),
            },
            Err(e) => Err(WebhookError::Transport(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn internal_v4_ranges() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_internal(ip(a)), "{a} should be internal");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.1.1",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.1.1",
            "192.169.0.1",
            "223.255.255.255",
        ] {
            assert!(!is_internal(ip(a)), "{a} should be public");
        }
    }

    #[test]
    fn internal_v6_ranges() {
        for a in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "2001::1",
            "64:ff9b:1::1",
            "fbff::1",
            "fe00::1",
            "3fff::1",
            "2001:20::1",
        ] {
            assert!(is_internal(ip(a)), "{a} should be internal");
        }
        for a in [
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_internal(ip(a)), "{a} should be public");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        // Mapped (::ffff:a.b.c.d): what a dual-stack socket shows.
        assert!(is_internal(ip("::ffff:127.0.0.1")));
        assert!(is_internal(ip("::ffff:10.1.2.3")));
        assert!(is_internal(ip("::ffff:169.254.169.254")));
        assert!(!is_internal(ip("::ffff:8.8.8.8")));
        // Compatible (::a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
        assert!(is_internal(ip("::127.0.0.1")));
        assert!(is_internal(ip("64:ff9b::a00:1")));
        assert!(!is_internal(ip("64:ff9b::808:808")));
        assert!(is_internal(ip("2002:7f00:1::1")));
        assert!(is_internal(ip("2002:c0a8:101::1")));
        assert!(!is_internal(ip("2002:808:808::1")));
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(c.contains(ip("10.1.200.3")));
        assert!(c.contains(ip("::ffff:10.1.0.9")));
        assert!(!c.contains(ip("10.2.0.1")));
        let one: Cidr = "127.0.0.1".parse().expect("address");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().expect("cidr");
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fc00::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let mapped: Cidr = "::ffff:192.168.0.0/112".parse().expect("cidr");
        assert!(mapped.contains(ip("192.168.3.4")));
        assert!(!mapped.contains(ip("192.169.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("127.0.0.1")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com/8", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        assert_eq!(c.to_string(), "10.1.0.0/16");
    }

    #[test]
    fn policy_allows_by_setting_or_range() {
        let strict = EgressPolicy::default();
        assert!(!strict.permits(ip("127.0.0.1")));
        assert!(!strict.permits(ip("::1")));
        assert!(!strict.permits(ip("::ffff:127.0.0.1")));
        assert!(strict.permits(ip("93.184.216.34")));
        let open = EgressPolicy {
            allow_private: true,
            allowed: Vec::new(),
        };
        assert!(open.permits(ip("127.0.0.1")));
        let ranged = EgressPolicy {
            allow_private: false,
            allowed: vec!["192.168.10.0/24".parse().expect("cidr")],
        };
        assert!(ranged.permits(ip("192.168.10.20")));
        assert!(ranged.permits(ip("::ffff:192.168.10.20")));
        assert!(!ranged.permits(ip("192.168.11.20")));
        assert!(!ranged.permits(ip("127.0.0.1")));
    }
}
