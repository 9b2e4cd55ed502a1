//! [`DeviceStateStorage`]: what the platform asks of the store of twins,
//! commands and presence, so that another backend (PostgreSQL) is
//! another `impl`. [`crate::DeviceStateStore`] (redb, over `kv`) is the
//! embedded implementation; the trait is declared from its methods
//! (`kv::store_trait!`), which say what each one means.
//! `conformance::run` (feature `conformance`) is the behaviour every
//! implementation must have. The trait is object-safe: callbacks are
//! `&mut dyn FnMut`.

use crate::{
    Command, DeviceStateStore, FleetCounts, NewCommand, Presence, TransitionError, Twin, TwinError,
    TwinLimits, TwinQuery, TwinUpdate, UpdateError,
};

type Result<T> = std::result::Result<T, TwinError>;
/// What a command update callback returns.
type Transition = std::result::Result<(), TransitionError>;

kv::store_trait! {
    /// A store of twins, commands and presence; the methods mean what
    /// those of [`DeviceStateStore`] say. Every mutating call is durable
    /// when it returns `Ok`.
    pub trait DeviceStateStorage for DeviceStateStore {
        fn get_twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<Twin>>;
        fn list_twins(&self, ns: &str, device: &str) -> Result<Vec<(String, Twin)>>;
        fn update_twin(&self, ns: &str, device: &str, name: &str, update: &TwinUpdate, limits: &TwinLimits, now_ms: u64) -> Result<std::result::Result<(Twin, Twin), UpdateError>>;
        fn delete_twin(&self, ns: &str, device: &str, name: &str) -> Result<bool>;
        fn delete_twins(&self, ns: &str, device: &str) -> Result<()>;
        fn query_twins(&self, ns: &str, name: &str, query: &TwinQuery, after: Option<&str>, limit: usize) -> Result<(Vec<String>, Option<String>)>;
        fn create_command(&self, ns: &str, device: &str, new: NewCommand, now_ms: u64) -> Result<Command>;
        fn get_command(&self, ns: &str, device: &str, id: &str) -> Result<Option<Command>>;
        fn list_commands(&self, ns: &str, device: &str, after: Option<&str>, limit: usize) -> Result<(Vec<Command>, Option<String>)>;
        fn pending_commands(&self, ns: &str, device: &str) -> Result<Vec<Command>>;
        fn update_command(&self, ns: &str, device: &str, id: &str, f: &mut dyn FnMut(&mut Command) -> Transition) -> Result<std::result::Result<Command, TransitionError>>;
        fn expire_commands(&self, now_ms: u64) -> Result<Vec<Command>>;
        fn prune_commands(&self, now_ms: u64, keep_ms: u64) -> Result<usize>;
        fn delete_commands(&self, ns: &str, device: &str) -> Result<()>;
        fn get_presence(&self, ns: &str, device: &str) -> Result<Option<Presence>>;
        fn update_presence(&self, ns: &str, device: &str, f: &mut dyn FnMut(&mut Presence) -> bool) -> Result<(Presence, bool)>;
        fn all_presence(&self, ns: &str) -> Result<Vec<(String, Presence)>>;
        fn fleet_counts(&self, ns: &str) -> Result<FleetCounts>;
        fn reset_presence(&self, now_ms: u64) -> Result<Vec<(String, String)>>;
        fn delete_presence(&self, ns: &str, device: &str) -> Result<()>;
        fn delete_device(&self, ns: &str, device: &str) -> Result<()>;
    }
}
