//! Broker time: milliseconds since the Unix epoch, passed in by the caller.
//!
//! Wall-clock milliseconds (rather than `Instant`) because deadlines such as
//! message expiry and session expiry are persisted and must mean the same
//! thing after a restart. The network layer derives it from a monotonic
//! clock anchored at start-up, so it never runs backwards within a process.

use std::ops::{Add, Sub};

/// A point in time in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// `secs` seconds later, saturating.
    pub fn plus_secs(self, secs: u64) -> Time {
        Time(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// `ms` milliseconds later, saturating.
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Whole seconds from `self` until `later`, rounded up, 0 if past.
    pub fn secs_until(self, later: Time) -> u64 {
        later.0.saturating_sub(self.0).div_ceil(1000)
    }
}

impl Add<u64> for Time {
    type Output = Time;
    fn add(self, ms: u64) -> Time {
        self.plus_ms(ms)
    }
}

impl Sub<Time> for Time {
    type Output = u64;
    fn sub(self, other: Time) -> u64 {
        self.0.saturating_sub(other.0)
    }
}
