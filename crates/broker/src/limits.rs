//! Per-connection publish rate limits: two token buckets (messages and
//! bytes), refilled from the time passed in.

use crate::auth::RateLimits;
use crate::Time;

/// Token buckets for one connection. Each holds at most one second's worth
/// of tokens, so a client may burst up to its per-second limit.
#[derive(Debug, Clone)]
pub(crate) struct RateBucket {
    limits: RateLimits,
    messages: f64,
    bytes: f64,
    last: Time,
}

impl RateBucket {
    /// A full bucket, or `None` when `limits` limit nothing.
    pub fn new(limits: RateLimits, now: Time) -> Option<RateBucket> {
        if limits.messages_per_sec == 0 && limits.bytes_per_sec == 0 {
            return None;
        }
        Some(RateBucket {
            limits,
            messages: f64::from(limits.messages_per_sec),
            bytes: f64::from(limits.bytes_per_sec),
            last: now,
        })
    }

    /// Takes one message of `len` bytes from the buckets; `false` (and
    /// nothing taken) when either is short.
    pub fn take(&mut self, len: usize, now: Time) -> bool {
        let elapsed = now.0.saturating_sub(self.last.0) as f64 / 1000.0;
        self.last = now;
        let m = f64::from(self.limits.messages_per_sec);
        let b = f64::from(self.limits.bytes_per_sec);
        self.messages = (self.messages + elapsed * m).min(m);
        self.bytes = (self.bytes + elapsed * b).min(b);
        let msg_ok = m == 0.0 || self.messages >= 1.0;
        let byte_ok = b == 0.0 || self.bytes >= len as f64;
        if !(msg_ok && byte_ok) {
            return false;
        }
        if m > 0.0 {
            self.messages -= 1.0;
        }
        if b > 0.0 {
            self.bytes -= len as f64;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_rate() {
        let limits = RateLimits {
            messages_per_sec: 10,
            bytes_per_sec: 0,
        };
        let mut b = RateBucket::new(limits, Time(0)).unwrap();
        let taken = (0..20).filter(|_| b.take(100, Time(0))).count();
        assert_eq!(taken, 10);
        // Half a second refills five.
        let taken = (0..20).filter(|_| b.take(100, Time(500))).count();
        assert_eq!(taken, 5);
        // A long pause refills no more than one second's worth.
        let taken = (0..20).filter(|_| b.take(100, Time(60_000))).count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn byte_rate() {
        let limits = RateLimits {
            messages_per_sec: 0,
            bytes_per_sec: 1000,
        };
        let mut b = RateBucket::new(limits, Time(0)).unwrap();
        assert!(b.take(600, Time(0)));
        assert!(!b.take(600, Time(0)));
        assert!(b.take(400, Time(0)));
        assert!(b.take(600, Time(600)));
        assert!(RateBucket::new(RateLimits::default(), Time(0)).is_none());
    }
}
