//! The running server as the platform services' [`broker::bus::Bus`].

use broker::bus::Bus;
use broker::{StoredMessage, Time};

use crate::ServerHandle;

impl Bus for ServerHandle {
    fn publish(&self, message: StoredMessage) {
        ServerHandle::publish(self, message)
    }

    fn is_connected(&self, principal: &str) -> bool {
        ServerHandle::is_connected(self, principal)
    }

    fn activity(&self) -> Vec<(String, Time)> {
        ServerHandle::activity(self)
            .into_iter()
            .map(|(p, t)| (p, Time(t)))
            .collect()
    }

    fn set_dynamic_taps(&self, filters: Vec<String>) {
        ServerHandle::set_dynamic_taps(self, filters)
    }
}
