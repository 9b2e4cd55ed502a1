//! What the HTTP API asks of the fleet: twins, commands, presence.
//! Every call does store I/O (fsync on changes): call from a blocking
//! context.

use std::collections::BTreeMap;

use serde_json::Value;
use twin::{
    Command, FleetCounts, NewCommand, Presence, PresenceState, TwinQuery, TwinUpdate, UpdateError,
};

use crate::{lock, Fleet, NAMESPACE};

/// Why a fleet operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FleetError {
    #[error("{0}")]
    NotFound(String),
    /// The device is offline and the caller asked for no queueing.
    #[error("{0}")]
    Offline(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(String),
}

impl From<twin::TwinError> for FleetError {
    fn from(e: twin::TwinError) -> Self {
        match e {
            twin::TwinError::NotFound { .. } => FleetError::NotFound(e.to_string()),
            twin::TwinError::Invalid { .. } => FleetError::Invalid(e.to_string()),
            twin::TwinError::Conflict(_) => FleetError::Conflict(e.to_string()),
            other => FleetError::Storage(other.to_string()),
        }
    }
}

impl From<registry::RegistryError> for FleetError {
    fn from(e: registry::RegistryError) -> Self {
        FleetError::Storage(e.to_string())
    }
}

/// A device's presence with the live last-seen time.
#[derive(Debug, Clone)]
pub struct PresenceView {
    pub presence: Presence,
    pub connected: bool,
}

impl Fleet {
    fn device_exists(&self, device: &str) -> Result<registry::Device, FleetError> {
        self.registry
            .get_device(NAMESPACE, device)?
            .ok_or_else(|| FleetError::NotFound(format!("device {device:?} not found")))
    }

    /// The twin document (version 0 and empty when never written).
    pub fn twin_document(&self, device: &str, name: &str) -> Result<Value, FleetError> {
        self.device_exists(device)?;
        twin::validate_twin_name(name)?;
        let t = self
            .store
            .get_twin(NAMESPACE, device, name)?
            .unwrap_or_default();
        Ok(twin::document(&t))
    }

    /// The device's twins: (name, document); the classic twin is `""`.
    pub fn twins(&self, device: &str) -> Result<Vec<(String, Value)>, FleetError> {
        self.device_exists(device)?;
        Ok(self
            .store
            .list_twins(NAMESPACE, device)?
            .into_iter()
            .map(|(n, t)| (n, twin::document(&t)))
            .collect())
    }

    /// Merges `desired` (a JSON merge patch) into the twin, optionally only
    /// at `expected_version`; publishes the delta to the device and the
    /// documents event. Inner error: refused (409/413/400).
    pub fn update_desired(
        &self,
        device: &str,
        name: &str,
        desired: Value,
        expected_version: Option<u64>,
    ) -> Result<Result<Value, UpdateError>, FleetError> {
        self.device_exists(device)?;
        twin::validate_twin_name(name)?;
        let update = TwinUpdate {
            desired: Some(desired),
            reported: None,
            expected_version,
        };
        let (result, effects) =
            self.with_core(|core, now| core.update_twin(now, device, name, &update));
        self.apply(effects);
        match result {
            Some(Ok(t)) => Ok(Ok(twin::document(&t))),
            Some(Err(e)) => Ok(Err(e)),
            None => Err(FleetError::Storage("cannot store the twin".into())),
        }
    }

    /// Devices whose twin `name` matches `query` (e.g.
    /// `reported.firmware = "1.2.0"`), by id, paged.
    pub fn query_twins(
        &self,
        name: &str,
        query: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), FleetError> {
        let q = TwinQuery::parse(query).map_err(FleetError::Invalid)?;
        Ok(self.store.query_twins(NAMESPACE, name, &q, after, limit)?)
    }

    /// Creates a command. Online devices get it at once; offline ones when
    /// they connect, unless `queue` is false (then [`FleetError::Offline`]
    /// and nothing is stored). With `wait`, the receiver yields the command
    /// once it is final (succeeded, failed, timed out, expired, cancelled).
    #[allow(clippy::type_complexity)]
    pub fn create_command(
        &self,
        device: &str,
        new: NewCommand,
        queue: bool,
        wait: bool,
    ) -> Result<(Command, Option<tokio::sync::oneshot::Receiver<Command>>), FleetError> {
        self.device_exists(device)?;
        let online = self.bus.is_connected(device);
        if !online && !queue {
            return Err(FleetError::Offline(format!("device {device:?} is offline")));
        }
        let c = self
            .store
            .create_command(NAMESPACE, device, new, self.now().as_millis())?;
        let rx = wait.then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            lock(&self.waiters)
                .entry(c.id.clone())
                .or_default()
                .push(tx);
            rx
        });
        if online {
            let effects = self.with_core(|core, now| core.send_command(now, &c));
            self.apply(effects);
        }
        let c = self
            .store
            .get_command(NAMESPACE, device, &c.id)?
            .unwrap_or(c);
        Ok((c, rx))
    }

    pub fn command(&self, device: &str, id: &str) -> Result<Command, FleetError> {
        self.store
            .get_command(NAMESPACE, device, id)?
            .ok_or_else(|| FleetError::NotFound(format!("command {id:?} of {device:?} not found")))
    }

    pub fn commands(
        &self,
        device: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Command>, Option<String>), FleetError> {
        self.device_exists(device)?;
        Ok(self.store.list_commands(NAMESPACE, device, after, limit)?)
    }

    /// Cancels a command not yet final (409 otherwise).
    pub fn cancel_command(&self, device: &str, id: &str) -> Result<Command, FleetError> {
        let now = self.now().as_millis();
        match self
            .store
            .update_command(NAMESPACE, device, id, &mut |c| c.cancel(now))?
        {
            Ok(c) => {
                self.finished(&c);
                Ok(c)
            }
            Err(e) => Err(FleetError::Conflict(e.to_string())),
        }
    }

    /// A device's presence, with the live last-seen time.
    pub fn presence(&self, device: &str) -> Result<PresenceView, FleetError> {
        self.device_exists(device)?;
        let mut p = self
            .store
            .get_presence(NAMESPACE, device)?
            .unwrap_or_default();
        if let Some(seen) = lock(&self.core).last_seen(device) {
            p.last_seen_ms = Some(p.last_seen_ms.unwrap_or(0).max(seen));
        }
        Ok(PresenceView {
            connected: self.bus.is_connected(device),
            presence: p,
        })
    }

    /// Fleet status counts grouped by `group_by`: `None` (one group
    /// `"all"`), `"type"`, `"group"` (a device counts in each of its
    /// groups) or `"label:<key>"` (devices without the label under `""`).
    pub fn counts(
        &self,
        group_by: Option<&str>,
    ) -> Result<BTreeMap<String, FleetCounts>, FleetError> {
        let states: std::collections::HashMap<String, PresenceState> = self
            .store
            .all_presence(NAMESPACE)?
            .into_iter()
            .map(|(d, p)| (d, p.state))
            .collect();
        let mut out: BTreeMap<String, FleetCounts> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.registry.list_devices(
                NAMESPACE,
                &registry::DeviceFilter::default(),
                &|_| true,
                after.as_deref(),
                1000,
            )?;
            for d in &page.items {
                let state = states
                    .get(&d.id)
                    .copied()
                    .unwrap_or(PresenceState::NeverConnected);
                let keys: Vec<String> = match group_by {
                    None => vec!["all".into()],
                    Some("type") => vec![d.device_type.clone()],
                    Some("group") => d.groups.clone(),
                    Some(g) => match g.strip_prefix("label:") {
                        Some(k) => vec![d.labels.get(k).cloned().unwrap_or_default()],
                        None => {
                            return Err(FleetError::Invalid(format!(
                                "group_by {g:?}: expected type, group or label:<key>"
                            )))
                        }
                    },
                };
                for k in keys {
                    out.entry(k).or_default().add(state, 1);
                }
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        Ok(out)
    }

    /// Forgets a deleted device's twins, commands and presence.
    pub fn forget(&self, device: &str) -> Result<(), FleetError> {
        self.store.delete_device(NAMESPACE, device)?;
        lock(&self.core).forget(device);
        Ok(())
    }
}
