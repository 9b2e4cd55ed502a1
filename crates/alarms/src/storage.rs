//! [`AlarmStorage`]: what the platform asks of an alarm store, so that
//! another backend (PostgreSQL) is another `impl`. [`crate::AlarmStore`]
//! (redb, over `kv`) is the embedded implementation; the trait is
//! declared from its methods (`kv::store_trait!`), which say what each
//! one means. `conformance::run` (feature `conformance`) is the
//! behaviour every implementation must have.

use serde_json::Value;

use crate::{Alarm, AlarmCounts, AlarmError, AlarmFilter, AlarmStore, Change, Severity};

type Result<T> = std::result::Result<T, AlarmError>;

kv::store_trait! {
    /// An alarm store; the methods mean what those of [`AlarmStore`] say.
    /// Every mutating call is durable when it returns `Ok`.
    pub trait AlarmStorage for AlarmStore {
        #[allow(clippy::too_many_arguments, reason = "one argument per alarm field")]
        fn raise(&self, ns: &str, device_id: &str, alarm_type: &str, severity: Severity, details: Value, rule: Option<&str>, now_ms: u64) -> Result<Change>;
        fn acknowledge(&self, ns: &str, id: &str, by: &str, now_ms: u64) -> Result<Change>;
        fn clear(&self, ns: &str, id: &str, by: &str, now_ms: u64) -> Result<Change>;
        fn clear_active(&self, ns: &str, device_id: &str, alarm_type: &str, by: &str, now_ms: u64) -> Result<Option<Change>>;
        fn active(&self, ns: &str, device_id: &str, alarm_type: &str) -> Result<Option<Alarm>>;
        fn get(&self, ns: &str, id: &str) -> Result<Option<Alarm>>;
        fn query(&self, ns: &str, filter: &AlarmFilter, after: Option<&str>, limit: usize) -> Result<(Vec<Alarm>, Option<String>)>;
        fn counts(&self, ns: &str) -> Result<AlarmCounts>;
        fn total(&self) -> Result<u64>;
        fn prune(&self, max_alarms: usize) -> Result<usize>;
        fn delete_device(&self, ns: &str, device_id: &str) -> Result<usize>;
    }
}
