//! Platform time: one type, one unit (milliseconds since the Unix epoch).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: milliseconds since the Unix epoch (UTC). The platform
/// never needs times before 1970, so it is unsigned; the time-series store
/// works in `i64` and gets [`Timestamp::as_millis_i64`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// A signed millisecond count; `None` before the epoch.
    pub fn from_millis_i64(ms: i64) -> Option<Timestamp> {
        u64::try_from(ms).ok().map(Timestamp)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// As the time-series store counts: `i64` milliseconds, saturating.
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// A wall-clock reading; times before the epoch become the epoch.
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        t.duration_since(UNIX_EPOCH)
            .map(|d| Timestamp(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .unwrap_or(Timestamp::EPOCH)
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// Later by `d` (whole milliseconds), saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(duration_ms(d)))
    }

    /// Earlier by `d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(duration_ms(d)))
    }

    /// How long after `earlier` this is; zero when it is not later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// How long after `earlier` this is; `None` when it is earlier.
    pub fn checked_duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_millis)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating, like [`Timestamp::saturating_add`].
    fn add(self, d: Duration) -> Timestamp {
        self.saturating_add(d)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturating, like [`Timestamp::saturating_sub`].
    fn sub(self, d: Duration) -> Timestamp {
        self.saturating_sub(d)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// The millisecond count, as the JSON documents carry it.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_conversions() {
        let t = Timestamp::from_millis(1_795_370_001_234);
        assert_eq!(t.as_millis(), 1_795_370_001_234);
        assert_eq!(t.as_secs(), 1_795_370_001);
        assert_eq!(Timestamp::from_secs(2).as_millis(), 2000);
        assert_eq!(Timestamp::from_secs(u64::MAX), Timestamp::MAX);
        assert_eq!(t.as_millis_i64(), 1_795_370_001_234);
        assert_eq!(Timestamp::MAX.as_millis_i64(), i64::MAX);
        assert_eq!(
            Timestamp::from_millis_i64(5),
            Some(Timestamp::from_millis(5))
        );
        assert_eq!(Timestamp::from_millis_i64(-1), None);
        assert_eq!(Timestamp::from_system_time(t.to_system_time()), t);
        assert_eq!(
            Timestamp::from_system_time(UNIX_EPOCH - Duration::from_secs(1)),
            Timestamp::EPOCH
        );
        assert_eq!(t.to_string(), "1795370001234");
        assert_eq!(format!("{t:?}"), "Timestamp(1795370001234ms)");
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_millis(1000);
        assert_eq!(t + Duration::from_millis(500), Timestamp::from_millis(1500));
        assert_eq!(t - Duration::from_secs(2), Timestamp::EPOCH);
        assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
        assert_eq!(
            Timestamp::from_millis(1500).saturating_duration_since(t),
            Duration::from_millis(500)
        );
        assert_eq!(t.saturating_duration_since(Timestamp::MAX), Duration::ZERO);
        assert_eq!(t.checked_duration_since(Timestamp::MAX), None);
        assert_eq!(
            t.checked_duration_since(Timestamp::EPOCH),
            Some(Duration::from_secs(1))
        );
    }
}
