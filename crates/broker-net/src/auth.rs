//! Authentication outside the core: the [`Authenticator`] a platform
//! plugs in (the device registry), and the guards around it (connection
//! rate per source address, back-off after repeated failures, connections
//! per principal). Each guard is a setting in [`crate::NetConfig`] and a
//! counter in [`crate::NetMetrics`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use broker::Grant;
use mqtt_proto::ReasonCode;

/// How a client reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    Tls,
    WebSocket,
    SecureWebSocket,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Tcp => "mqtt",
            Listener::Tls => "mqtts",
            Listener::WebSocket => "ws",
            Listener::SecureWebSocket => "wss",
        }
    }
}

/// Everything known about a connecting client when it is authenticated.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub peer: SocketAddr,
    pub listener: Listener,
    /// The verified client certificate (TLS listeners with client
    /// authentication): its chain, validity and revocation were checked
    /// during the handshake.
    pub certificate: Option<pki::PeerCert>,
}

/// The verdict on a connecting client.
#[derive(Debug, Clone)]
pub enum AuthDecision {
    /// Authenticated; confined to the grant's rules.
    Allow(Arc<Grant>),
    /// Refused with this CONNACK reason code (mapped to a v3.1.1 return
    /// code for 3.1.1 clients).
    Refuse(ReasonCode),
    /// Not ours to judge: the broker core's password and ACL files decide
    /// (anonymous clients when allowed, plain-broker users).
    Default,
}

/// Decides who may connect. Called once per CONNECT on tokio's blocking
/// pool (it may hash passwords), never with the core lock held.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, request: &AuthRequest) -> AuthDecision;
}

/// Most remembered source addresses / failure keys; when full, the table
/// is cleared (documented: a flood of distinct sources resets the guard
/// rather than growing memory).
const GUARD_TABLE_MAX: usize = 65_536;

/// Per-address connection rate and per-(address, username) failure
/// back-off, and live connections per principal. Times are Unix ms passed
/// in.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    inner: Mutex<GuardState>,
}

#[derive(Debug, Default)]
struct GuardState {
    /// Source address -> (window start ms, connections in the window).
    rate: HashMap<IpAddr, (u64, u32)>,
    /// (address, username) -> (consecutive failures, refused until ms).
    failures: HashMap<(IpAddr, String), (u32, u64)>,
    /// Principal -> live connections.
    principals: HashMap<String, usize>,
}

/// Limits the guard applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardLimits {
    pub conn_rate_per_ip: u32,
    pub failure_threshold: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub max_per_principal: usize,
}

impl Guard {
    fn lock(&self) -> std::sync::MutexGuard<'_, GuardState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a new connection from `ip` fits in its one-second window.
    pub fn admit(&self, ip: IpAddr, limits: &GuardLimits, now_ms: u64) -> bool {
        if limits.conn_rate_per_ip == 0 {
            return true;
        }
        let mut st = self.lock();
        if st.rate.len() >= GUARD_TABLE_MAX && !st.rate.contains_key(&ip) {
            st.rate
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < 1000);
            if st.rate.len() >= GUARD_TABLE_MAX {
                st.rate.clear();
            }
        }
        let e = st.rate.entry(ip).or_insert((now_ms, 0));
        if now_ms.saturating_sub(e.0) >= 1000 {
            *e = (now_ms, 0);
        }
        e.1 += 1;
        e.1 <= limits.conn_rate_per_ip
    }

    /// `Some(ms left)` while (ip, username) is backing off.
    pub fn backing_off(&self, ip: IpAddr, user: &str, now_ms: u64) -> Option<u64> {
        let st = self.lock();
        st.failures
            .get(&(ip, user.to_string()))
            .and_then(|(_, until)| (*until > now_ms).then(|| until - now_ms))
    }

    /// Records a failed authentication; after `failure_threshold`
    /// consecutive failures the pair backs off for base x 2^(n - threshold)
    /// ms, at most `backoff_max_ms`.
    pub fn failed(&self, ip: IpAddr, user: &str, limits: &GuardLimits, now_ms: u64) -> u32 {
        let mut st = self.lock();
        if st.failures.len() >= GUARD_TABLE_MAX {
            st.failures.retain(|_, (_, until)| *until > now_ms);
            if st.failures.len() >= GUARD_TABLE_MAX {
                st.failures.clear();
            }
        }
        let e = st.failures.entry((ip, user.to_string())).or_insert((0, 0));
        e.0 = e.0.saturating_add(1);
        if limits.failure_threshold > 0 && e.0 >= limits.failure_threshold {
            let exp = (e.0 - limits.failure_threshold).min(20);
            let wait = limits
                .backoff_base_ms
                .saturating_mul(1u64 << exp)
                .min(limits.backoff_max_ms);
            e.1 = now_ms + wait;
        }
        e.0
    }

    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let mut st = self.lock();
        if !st.failures.is_empty() {
            st.failures.remove(&(ip, user.to_string()));
        }
    }

    /// Counts a connection of `principal`; `false` (not counted) when it
    /// already has `max_per_principal` (0 = no limit).
    pub fn enter(&self, principal: &str, limits: &GuardLimits) -> bool {
        let mut st = self.lock();
        let n = st.principals.entry(principal.to_string()).or_insert(0);
        if limits.max_per_principal > 0 && *n >= limits.max_per_principal {
            return false;
        }
        *n += 1;
        true
    }

    pub fn connections_of(&self, principal: &str) -> usize {
        self.lock().principals.get(principal).copied().unwrap_or(0)
    }

    pub fn leave(&self, principal: &str) {
        let mut st = self.lock();
        if let Some(n) = st.principals.get_mut(principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.principals.remove(principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuardLimits {
        GuardLimits {
            conn_rate_per_ip: 3,
            failure_threshold: 2,
            backoff_base_ms: 100,
            backoff_max_ms: 1000,
            max_per_principal: 2,
        }
    }

    #[test]
    fn connection_rate_window() {
        let g = Guard::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let l = limits();
        assert!((0..3).all(|_| g.admit(ip, &l, 0)));
        assert!(!g.admit(ip, &l, 500));
        assert!(g.admit(other, &l, 500));
        assert!(g.admit(ip, &l, 1000));
    }

    #[test]
    fn exponential_backoff_after_failures() {
        let g = Guard::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let l = limits();
        g.failed(ip, "d1", &l, 0);
        assert_eq!(g.backing_off(ip, "d1", 0), None);
        g.failed(ip, "d1", &l, 0);
        assert_eq!(g.backing_off(ip, "d1", 0), Some(100));
        g.failed(ip, "d1", &l, 100);
        assert_eq!(g.backing_off(ip, "d1", 100), Some(200));
        for _ in 0..10 {
            g.failed(ip, "d1", &l, 1000);
        }
        assert_eq!(g.backing_off(ip, "d1", 1000), Some(1000));
        // Other users from the same address are not affected.
        assert_eq!(g.backing_off(ip, "d2", 1000), None);
        g.succeeded(ip, "d1");
        assert_eq!(g.backing_off(ip, "d1", 1000), None);
    }

    #[test]
    fn connections_per_principal() {
        let g = Guard::default();
        let l = limits();
        assert!(g.enter("d1", &l));
        assert!(g.enter("d1", &l));
        assert!(!g.enter("d1", &l));
        g.leave("d1");
        assert!(g.enter("d1", &l));
    }
}
