//! The API's own limits against hostile load, and the counters of what
//! they refused.
//!
//! [`Limits`] is configuration (the binary fills it from the `[http]` and
//! `[auth]` settings); [`Guards`] is the state that enforces it, shared by
//! the router ([`crate::ApiState::guards`]) and the listeners
//! ([`crate::HttpServer`]): the connection table's counters, the login
//! back-off tables and the argon2 semaphore, the live-stream count. Every
//! refusal is counted here and reported by `GET /api/system` under `http`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::throttle::{Backoff, Throttle};

/// The API's limits; see `docs/configuration.md` for each setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most HTTP(S) connections open at once, both listeners together
    /// (`http.max_connections`). When full, the oldest connection that
    /// has no request in progress is closed to make room; when every
    /// connection has one, the new connection is closed at once.
    pub max_connections: usize,
    /// Longest a client may take to send a complete request head, counted
    /// from the connection's start or the end of the previous response
    /// (so also the keep-alive idle limit) (`http.header_timeout_secs`).
    pub header_timeout: Duration,
    /// Longest a connection may go with no byte moving while the server
    /// waits on the client: a request body arriving too slowly, or a
    /// response the client does not read (`http.idle_timeout_secs`).
    pub idle_timeout: Duration,
    /// Most live streams (`GET /api/stream`) at once (`http.max_streams`).
    pub max_streams: usize,
    /// Most MQTT filters one live stream may tap
    /// (`http.max_stream_filters`); a selection needs one filter per
    /// device and event kind (two for twins).
    pub max_stream_filters: usize,
    /// Logins checking a password (argon2) at once
    /// (`auth.login_concurrency`); the others wait.
    pub login_concurrency: usize,
    /// Longest a login waits for its turn before it is refused with 503
    /// (`auth.login_wait_ms`).
    pub login_wait: Duration,
    /// Failed logins of one address or one username before back-off
    /// starts (`auth.login_backoff_after`).
    pub login_backoff_after: u32,
    /// The first back-off, doubled at each further failure
    /// (`auth.login_backoff_base_ms`).
    pub login_backoff_base: Duration,
    /// The longest back-off (`auth.login_backoff_max_ms`).
    pub login_backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_streams: 256,
            max_stream_filters: 1000,
            login_concurrency: 2,
            login_wait: Duration::from_secs(5),
            login_backoff_after: 3,
            login_backoff_base: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(300),
        }
    }
}

/// Counters of the HTTP listeners and the API's guards, since start.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Connections open now (a gauge).
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Closed at once: the table was full and every connection had a
    /// request in progress.
    pub connections_refused: AtomicU64,
    /// Closed without a request in progress to make room for a new one.
    pub connections_evicted: AtomicU64,
    /// Closed for not sending a request head within the header timeout.
    pub header_timeouts: AtomicU64,
    /// Closed for moving no byte within the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// Requests refused with 401 on routes that are otherwise audited
    /// (login, provisioning, management); they are counted here instead
    /// of filling the audit log.
    pub unauthorized: AtomicU64,
    /// Logins refused with 401 (wrong username or password).
    pub login_failures: AtomicU64,
    /// Logins refused with 429 while their address or username backs off.
    pub login_throttled: AtomicU64,
    /// Logins refused with 503: no argon2 slot within `login_wait`.
    pub login_busy: AtomicU64,
    /// Live streams open now (a gauge).
    pub streams_open: AtomicU64,
    /// Live streams refused with 429: `max_streams` reached.
    pub streams_refused: AtomicU64,
    /// Live streams refused with 400: more than `max_stream_filters`.
    pub stream_filters_refused: AtomicU64,
}

/// The state that enforces [`Limits`]; one per server, shared by its
/// router and listeners.
#[derive(Debug)]
pub struct Guards {
    limits: Limits,
    counters: HttpCounters,
    /// Turns to run argon2 for a login.
    login_slots: Arc<Semaphore>,
    pub(crate) login_throttle: Throttle,
    streams: AtomicUsize,
}

impl Default for Guards {
    fn default() -> Self {
        Guards::new(Limits::default())
    }
}

impl Guards {
    pub fn new(limits: Limits) -> Guards {
        Guards {
            login_slots: Arc::new(Semaphore::new(limits.login_concurrency.max(1))),
            login_throttle: Throttle::new(Backoff {
                after: limits.login_backoff_after,
                base_ms: duration_ms(limits.login_backoff_base),
                max_ms: duration_ms(limits.login_backoff_max),
            }),
            streams: AtomicUsize::new(0),
            counters: HttpCounters::default(),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn counters(&self) -> &HttpCounters {
        &self.counters
    }

    /// Waits (without a thread) for a turn to run argon2 for a login, at
    /// most `login_wait`; 503 with `Retry-After` when none comes. The
    /// permit moves into the blocking task, so a client that leaves does
    /// not free its turn before the hashing ends.
    pub(crate) async fn login_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let slots = self.login_slots.clone();
        match tokio::time::timeout(self.limits.login_wait, slots.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.counters.login_busy.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::Busy {
                    reason: "too many logins in progress; try again shortly".into(),
                    retry_after_secs: 1,
                })
            }
        }
    }

    /// A 429 for a login refused unchecked during back-off, counted.
    pub(crate) fn login_throttled(&self, wait_ms: u64) -> ApiError {
        self.counters
            .login_throttled
            .fetch_add(1, Ordering::Relaxed);
        let secs = wait_ms.div_ceil(1000).max(1);
        ApiError::TooManyRequests {
            reason: format!(
                "too many failed logins from this address or for this user; try again in {secs} s"
            ),
            retry_after_secs: secs,
        }
    }

    /// Takes one of the `max_streams` live-stream places, given back when
    /// the returned guard drops; 429 when none is free.
    pub(crate) fn stream_slot(self: &Arc<Self>) -> Result<StreamSlot, ApiError> {
        let max = self.limits.max_streams;
        let taken = self
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            self.counters
                .streams_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::TooManyRequests {
                reason: format!(
                    "at most {max} live streams at once (setting http.max_streams); try again later"
                ),
                retry_after_secs: 5,
            });
        }
        self.counters.streams_open.fetch_add(1, Ordering::Relaxed);
        Ok(StreamSlot {
            guards: self.clone(),
        })
    }

    /// The figures of `GET /api/system` under `http`.
    pub fn figures(&self) -> serde_json::Value {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "connections": {
                "open": n(&c.connections_open),
                "max": self.limits.max_connections,
                "accepted": n(&c.connections_accepted),
                "refused": n(&c.connections_refused),
                "evicted": n(&c.connections_evicted),
                "header_timeouts": n(&c.header_timeouts),
                "idle_timeouts": n(&c.idle_timeouts),
            },
            "unauthorized": n(&c.unauthorized),
            "login": {
                "failures": n(&c.login_failures),
                "throttled": n(&c.login_throttled),
                "busy": n(&c.login_busy),
            },
            "streams": {
                "open": n(&c.streams_open),
                "max": self.limits.max_streams,
                "refused": n(&c.streams_refused),
                "filters_refused": n(&c.stream_filters_refused),
            },
        })
    }
}

/// One live-stream place; given back on drop.
pub(crate) struct StreamSlot {
    guards: Arc<Guards>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.guards.streams.fetch_sub(1, Ordering::AcqRel);
        self.guards
            .counters
            .streams_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logins_beyond_the_argon2_slots_wait_then_get_503() {
        let g = Guards::new(Limits {
            login_concurrency: 2,
            login_wait: Duration::from_millis(50),
            ..Limits::default()
        });
        let a = g.login_slot().await.ok();
        let b = g.login_slot().await.ok();
        assert!(a.is_some() && b.is_some());
        let started = std::time::Instant::now();
        assert!(matches!(
            g.login_slot().await,
            Err(ApiError::Busy {
                retry_after_secs: 1,
                ..
            })
        ));
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(g.counters().login_busy.load(Ordering::Relaxed), 1);
        // A turn given back goes to the next login.
        drop(a);
        assert!(g.login_slot().await.is_ok());
    }

    #[test]
    fn stream_places_are_given_back() {
        let g = Arc::new(Guards::new(Limits {
            max_streams: 2,
            ..Limits::default()
        }));
        let a = g.stream_slot().ok();
        let b = g.stream_slot().ok();
        assert!(a.is_some() && b.is_some());
        assert!(matches!(
            g.stream_slot(),
            Err(ApiError::TooManyRequests { .. })
        ));
        drop(a);
        assert!(g.stream_slot().is_ok());
        assert_eq!(g.counters().streams_refused.load(Ordering::Relaxed), 1);
    }
}
