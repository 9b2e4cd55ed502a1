//! Tunables of the registry.

/// Registry settings; the binary fills them from its settings tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Argon2id memory cost for newly hashed secrets, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes for newly hashed secrets.
    pub argon2_iterations: u32,
    /// Maximum entries of the verification cache (0 disables it).
    pub auth_cache_capacity: usize,
    /// Audit entries kept; older ones are trimmed on append (at least 1).
    pub audit_max_entries: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            argon2_memory_kib: 8192,
            argon2_iterations: 1,
            auth_cache_capacity: 100_000,
            audit_max_entries: 1_000_000,
        }
    }
}
