//! Broker time from a monotonic clock anchored to the wall clock at start.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use broker::Time;

/// Never runs backwards within a process, yet means Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor_instant: Instant,
    anchor_ms: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let anchor_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            anchor_instant: Instant::now(),
            anchor_ms,
        }
    }

    pub fn now(&self) -> Time {
        Time(self.anchor_ms + self.anchor_instant.elapsed().as_millis() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
