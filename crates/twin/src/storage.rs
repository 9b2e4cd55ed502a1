//! [`DeviceStateStorage`]: what the platform asks of the store of twins,
//! commands and presence, so that another backend (PostgreSQL) is
//! another `impl`. [`crate::DeviceStateStore`] (redb, over `kv`) is the
//! embedded implementation; `conformance::run` (feature `conformance`)
//! is the behaviour every implementation must have. The trait is
//! object-safe: callbacks are `&mut dyn FnMut`.

use crate::{
    Command, DeviceStateStore, FleetCounts, NewCommand, Presence, TransitionError, Twin, TwinError,
    TwinLimits, TwinQuery, TwinUpdate, UpdateError,
};

type Result<T> = std::result::Result<T, TwinError>;

/// A store of twins, commands and presence; the methods mean what those
/// of [`DeviceStateStore`] say. Every mutating call is durable when it
/// returns `Ok`.
pub trait DeviceStateStorage: Send + Sync {
    fn get_twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<Twin>>;
    fn list_twins(&self, ns: &str, device: &str) -> Result<Vec<(String, Twin)>>;
    #[allow(
        clippy::too_many_arguments,
        reason = "as DeviceStateStore::update_twin"
    )]
    fn update_twin(
        &self,
        ns: &str,
        device: &str,
        name: &str,
        update: &TwinUpdate,
        limits: &TwinLimits,
        now_ms: u64,
    ) -> Result<std::result::Result<(Twin, Twin), UpdateError>>;
    fn delete_twin(&self, ns: &str, device: &str, name: &str) -> Result<bool>;
    fn delete_twins(&self, ns: &str, device: &str) -> Result<()>;
    fn query_twins(
        &self,
        ns: &str,
        name: &str,
        query: &TwinQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)>;
    fn create_command(
        &self,
        ns: &str,
        device: &str,
        new: NewCommand,
        now_ms: u64,
    ) -> Result<Command>;
    fn get_command(&self, ns: &str, device: &str, id: &str) -> Result<Option<Command>>;
    fn list_commands(
        &self,
        ns: &str,
        device: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Command>, Option<String>)>;
    fn pending_commands(&self, ns: &str, device: &str) -> Result<Vec<Command>>;
    fn update_command(
        &self,
        ns: &str,
        device: &str,
        id: &str,
        f: &mut dyn FnMut(&mut Command) -> std::result::Result<(), TransitionError>,
    ) -> Result<std::result::Result<Command, TransitionError>>;
    fn expire_commands(&self, now_ms: u64) -> Result<Vec<Command>>;
    fn prune_commands(&self, now_ms: u64, keep_ms: u64) -> Result<usize>;
    fn delete_commands(&self, ns: &str, device: &str) -> Result<()>;
    fn get_presence(&self, ns: &str, device: &str) -> Result<Option<Presence>>;
    fn update_presence(
        &self,
        ns: &str,
        device: &str,
        f: &mut dyn FnMut(&mut Presence) -> bool,
    ) -> Result<(Presence, bool)>;
    fn all_presence(&self, ns: &str) -> Result<Vec<(String, Presence)>>;
    fn fleet_counts(&self, ns: &str) -> Result<FleetCounts>;
    fn reset_presence(&self, now_ms: u64) -> Result<Vec<(String, String)>>;
    fn delete_presence(&self, ns: &str, device: &str) -> Result<()>;
    fn delete_device(&self, ns: &str, device: &str) -> Result<()>;
}

impl DeviceStateStorage for DeviceStateStore {
    fn get_twin(&self, ns: &str, device: &str, name: &str) -> Result<Option<Twin>> {
        DeviceStateStore::get_twin(self, ns, device, name)
    }
    fn list_twins(&self, ns: &str, device: &str) -> Result<Vec<(String, Twin)>> {
        DeviceStateStore::list_twins(self, ns, device)
    }
    fn update_twin(
        &self,
        ns: &str,
        device: &str,
        name: &str,
        update: &TwinUpdate,
        limits: &TwinLimits,
        now_ms: u64,
    ) -> Result<std::result::Result<(Twin, Twin), UpdateError>> {
        DeviceStateStore::update_twin(self, ns, device, name, update, limits, now_ms)
    }
    fn delete_twin(&self, ns: &str, device: &str, name: &str) -> Result<bool> {
        DeviceStateStore::delete_twin(self, ns, device, name)
    }
    fn delete_twins(&self, ns: &str, device: &str) -> Result<()> {
        DeviceStateStore::delete_twins(self, ns, device)
    }
    fn query_twins(
        &self,
        ns: &str,
        name: &str,
        query: &TwinQuery,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>)> {
        DeviceStateStore::query_twins(self, ns, name, query, after, limit)
    }
    fn create_command(
        &self,
        ns: &str,
        device: &str,
        new: NewCommand,
        now_ms: u64,
    ) -> Result<Command> {
        DeviceStateStore::create_command(self, ns, device, new, now_ms)
    }
    fn get_command(&self, ns: &str, device: &str, id: &str) -> Result<Option<Command>> {
        DeviceStateStore::get_command(self, ns, device, id)
    }
    fn list_commands(
        &self,
        ns: &str,
        device: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Command>, Option<String>)> {
        DeviceStateStore::list_commands(self, ns, device, after, limit)
    }
    fn pending_commands(&self, ns: &str, device: &str) -> Result<Vec<Command>> {
        DeviceStateStore::pending_commands(self, ns, device)
    }
    fn update_command(
        &self,
        ns: &str,
        device: &str,
        id: &str,
        f: &mut dyn FnMut(&mut Command) -> std::result::Result<(), TransitionError>,
    ) -> Result<std::result::Result<Command, TransitionError>> {
        DeviceStateStore::update_command(self, ns, device, id, f)
    }
    fn expire_commands(&self, now_ms: u64) -> Result<Vec<Command>> {
        DeviceStateStore::expire_commands(self, now_ms)
    }
    fn prune_commands(&self, now_ms: u64, keep_ms: u64) -> Result<usize> {
        DeviceStateStore::prune_commands(self, now_ms, keep_ms)
    }
    fn delete_commands(&self, ns: &str, device: &str) -> Result<()> {
        DeviceStateStore::delete_commands(self, ns, device)
    }
    fn get_presence(&self, ns: &str, device: &str) -> Result<Option<Presence>> {
        DeviceStateStore::get_presence(self, ns, device)
    }
    fn update_presence(
        &self,
        ns: &str,
        device: &str,
        f: &mut dyn FnMut(&mut Presence) -> bool,
    ) -> Result<(Presence, bool)> {
        DeviceStateStore::update_presence(self, ns, device, f)
    }
    fn all_presence(&self, ns: &str) -> Result<Vec<(String, Presence)>> {
        DeviceStateStore::all_presence(self, ns)
    }
    fn fleet_counts(&self, ns: &str) -> Result<FleetCounts> {
        DeviceStateStore::fleet_counts(self, ns)
    }
    fn reset_presence(&self, now_ms: u64) -> Result<Vec<(String, String)>> {
        DeviceStateStore::reset_presence(self, now_ms)
    }
    fn delete_presence(&self, ns: &str, device: &str) -> Result<()> {
        DeviceStateStore::delete_presence(self, ns, device)
    }
    fn delete_device(&self, ns: &str, device: &str) -> Result<()> {
        DeviceStateStore::delete_device(self, ns, device)
    }
}
