//! What the registry's test files share.

use std::path::Path;

use registry::{Registry, RegistryConfig};

/// The default settings with cheap argon2 parameters.
pub fn config() -> RegistryConfig {
    RegistryConfig {
        argon2_memory_kib: 64,
        ..RegistryConfig::default()
    }
}

/// A registry at `path` with [`config`].
#[allow(dead_code, reason = "not every test file opens with the defaults")]
pub fn open(path: &Path) -> Registry {
    Registry::open(path, config()).unwrap()
}
