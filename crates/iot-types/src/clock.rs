//! The clock, passed in: the one wall-clock read of the platform's
//! libraries is [`SystemClock`]'s; everything else takes a [`Clock`] (or a
//! time argument) so that tests can fix time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::Timestamp;

/// Where a service gets "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// A clock shared between threads and services.
pub type SharedClock = Arc<dyn Clock>;

/// A closure returning Unix milliseconds is a clock (the binary's wiring
/// and many tests pass `Arc::new(|| ms)`).
impl<F: Fn() -> u64 + Send + Sync + ?Sized> Clock for F {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self())
    }
}

/// Any shared clock (`Arc<SystemClock>`, `Arc<ManualClock>`, an
/// `Arc<dyn Fn() -> u64 + Send + Sync>`) as a [`SharedClock`].
pub fn shared<C: Clock + ?Sized + 'static>(clock: Arc<C>) -> SharedClock {
    struct Shared<C: ?Sized>(Arc<C>);
    impl<C: Clock + ?Sized> Clock for Shared<C> {
        fn now(&self) -> Timestamp {
            self.0.now()
        }
    }
    Arc::new(Shared(clock))
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that moves only when told: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(AtomicU64::new(start.as_millis()))
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `d` (saturating).
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_when_told() {
        let c = ManualClock::new(Timestamp::from_millis(1000));
        assert_eq!(c.now(), Timestamp::from_millis(1000));
        c.advance(Duration::from_millis(250));
        assert_eq!(c.now(), Timestamp::from_millis(1250));
        c.set(Timestamp::MAX);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), Timestamp::MAX);
    }

    #[test]
    fn closures_and_shared_clocks() {
        let f = || 42u64;
        assert_eq!(f.now(), Timestamp::from_millis(42));
        let dynamic: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(|| 7);
        assert_eq!(shared(dynamic).now(), Timestamp::from_millis(7));
        let manual = Arc::new(ManualClock::new(Timestamp::from_millis(5)));
        let s = shared(manual.clone());
        manual.advance(Duration::from_millis(5));
        assert_eq!(s.now(), Timestamp::from_millis(10));
        // 2020-01-01 or later.
        assert!(SystemClock.now() > Timestamp::from_millis(1_577_836_800_000));
    }
}
