//! Login back-off: after a few failed logins from one address, or for one
//! username, further attempts are refused unchecked (429 with
//! `Retry-After`, no argon2 work) for a time that doubles at each failure
//! up to a cap. A success clears both. Time is passed in (Unix ms).
//!
//! Memory is bounded: each table holds at most [`TABLE_CAPACITY`] keys.
//! Keys quiet for longer than the cap after their back-off ended are
//! forgotten first; when the table is still full, the key whose last
//! failure is oldest goes.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

/// Keys kept per table (addresses, usernames).
pub(crate) const TABLE_CAPACITY: usize = 65_536;

/// When back-off starts and how it grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Failures allowed before back-off starts.
    pub after: u32,
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// The back-off after `failures` failures in a row.
    fn delay_ms(&self, failures: u32) -> u64 {
        if failures < self.after.max(1) {
            return 0;
        }
        let doublings = (failures - self.after.max(1)).min(63);
        self.base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    /// Refused until then.
    until_ms: u64,
    last_ms: u64,
}

#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Table<K> {
        Table {
            entries: HashMap::new(),
        }
    }

    /// Milliseconds `key` must still wait, or 0.
    fn wait_ms(&self, key: &K, now_ms: u64) -> u64 {
        self.entries
            .get(key)
            .map_or(0, |e| e.until_ms.saturating_sub(now_ms))
    }

    fn fail(&mut self, key: K, b: &Backoff, now_ms: u64) {
        let forget_after = b.max_ms;
        if !self.entries.contains_key(&key) && self.entries.len() >= TABLE_CAPACITY {
            self.entries
                .retain(|_, e| now_ms < e.until_ms.saturating_add(forget_after));
            if self.entries.len() >= TABLE_CAPACITY {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.last_ms)
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        let e = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            until_ms: 0,
            last_ms: now_ms,
        });
        // A key quiet for long enough starts afresh.
        if now_ms >= e.until_ms.saturating_add(forget_after) && e.failures > 0 {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_ms = now_ms;
        e.until_ms = now_ms.saturating_add(b.delay_ms(e.failures));
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The back-off tables of one server's logins.
#[derive(Debug)]
pub(crate) struct Throttle {
    backoff: Backoff,
    addresses: Mutex<Table<IpAddr>>,
    users: Mutex<Table<String>>,
}

impl Throttle {
    pub(crate) fn new(backoff: Backoff) -> Throttle {
        Throttle {
            backoff,
            addresses: Mutex::new(Table::new()),
            users: Mutex::new(Table::new()),
        }
    }

    // The locks guard plain maps and are never held across an `.await`;
    // a poisoned one still holds a usable map.
    fn addresses(&self) -> std::sync::MutexGuard<'_, Table<IpAddr>> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn users(&self) -> std::sync::MutexGuard<'_, Table<String>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds the address must still wait before a login is
    /// checked, or 0.
    pub(crate) fn address_wait_ms(&self, addr: Option<IpAddr>, now_ms: u64) -> u64 {
        addr.map_or(0, |a| self.addresses().wait_ms(&a, now_ms))
    }

    /// Milliseconds before a login from `addr` for `user` is checked, or 0.
    pub(crate) fn wait_ms(&self, addr: Option<IpAddr>, user: &str, now_ms: u64) -> u64 {
        let by_user = self.users().wait_ms(&user.to_string(), now_ms);
        self.address_wait_ms(addr, now_ms).max(by_user)
    }

    pub(crate) fn failed(&self, addr: Option<IpAddr>, user: &str, now_ms: u64) {
        if let Some(a) = addr {
            self.addresses().fail(a, &self.backoff, now_ms);
        }
        self.users().fail(user.to_string(), &self.backoff, now_ms);
    }

    pub(crate) fn succeeded(&self, addr: Option<IpAddr>, user: &str) {
        if let Some(a) = addr {
            self.addresses().clear(&a);
        }
        self.users().clear(&user.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        after: 3,
        base_ms: 1_000,
        max_ms: 8_000,
    };

    #[test]
    fn exponential_with_a_cap() {
        let d: Vec<u64> = (0..8).map(|n| B.delay_ms(n)).collect();
        assert_eq!(d, vec![0, 0, 0, 1_000, 2_000, 4_000, 8_000, 8_000]);
        assert_eq!(B.delay_ms(u32::MAX), 8_000);
    }

    #[test]
    fn address_and_user_back_off_and_success_clears() {
        let t = Throttle::new(B);
        let a: Option<IpAddr> = "10.0.0.1".parse().ok();
        let other: Option<IpAddr> = "10.0.0.2".parse().ok();
        for _ in 0..3 {
            assert_eq!(t.wait_ms(a, "alice", 0), 0);
            t.failed(a, "alice", 0);
        }
        assert_eq!(t.wait_ms(a, "alice", 0), 1_000);
        // The user backs off from any address; the address for any user.
        assert_eq!(t.wait_ms(other, "alice", 500), 500);
        assert_eq!(t.wait_ms(a, "bob", 0), 1_000);
        assert_eq!(t.wait_ms(other, "bob", 0), 0);
        t.failed(a, "alice", 1_000);
        assert_eq!(t.wait_ms(a, "alice", 1_000), 2_000);
        t.succeeded(a, "alice");
        assert_eq!(t.wait_ms(a, "alice", 1_000), 0);
        // Quiet long enough after the back-off: forgotten.
        for _ in 0..4 {
            t.failed(other, "carol", 0);
        }
        assert_eq!(t.wait_ms(other, "carol", 0), 2_000);
        t.failed(other, "carol", 2_000 + 8_000);
        assert_eq!(t.wait_ms(other, "carol", 10_000), 0, "counts afresh");
    }

    #[test]
    fn tables_are_bounded() {
        let mut t: Table<u32> = Table::new();
        for i in 0..(TABLE_CAPACITY as u32 + 10) {
            t.fail(i, &B, 0);
        }
        assert_eq!(t.len(), TABLE_CAPACITY);
    }
}
