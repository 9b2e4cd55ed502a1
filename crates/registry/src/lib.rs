//! Millwright's identity store: devices, device tokens, claim
//! (provisioning) credentials and their templates, certificate records and
//! revocations, operator users, API tokens and login sessions, and the
//! audit log.
//!
//! # What it is and is not
//!
//! - One redb file. Every mutating call is one write transaction committed
//!   with redb's default durability (immediate, fsynced) before it returns:
//!   `Ok` means durable.
//! - Sans-io in the domain sense: no sockets, no environment, and it never
//!   reads the clock. Every method that needs the time takes `now_ms`
//!   (Unix milliseconds).
//! - Not the CA (that is `pki`) and not HTTP or MQTT: the API renders its
//!   own DTOs (the domain types here have no serde derives) and the broker
//!   calls [`Registry::authenticate_device`] and
//!   [`Registry::is_certificate_revoked`].
//! - Keys carry a namespace (tenant) from the start: devices, claims and
//!   certificate records are keyed by (namespace, id). Users and API
//!   tokens are global; claim ids and certificate serials are unique
//!   across namespaces.
//!
//! # Tokens
//!
//! Generated secrets are 32 random bytes (256 bits; `rand::rng()`, a
//! CSPRNG seeded from the OS) in base64url without padding, behind a
//! prefix: device tokens `mwd_…`, claim tokens `mwc_…`, API tokens
//! `mwa_…`, login session tokens `mws_…`. Verification accepts any byte
//! string (operators may choose their own bootstrap token). A device token
//! is found through the device (MQTT user name = device id, password =
//! token); a claim, API or session token through its *token id*,
//! `hex(sha256(token))[..32]`, which is also the claim's or token's public
//! id. Only hashes are stored.
//!
//! # Hashing: two stored forms
//!
//! **Generated tokens** (device, claim, API and session tokens) are stored
//! as `$hmac-sha256$v=1$<salt>$<mac>`: a 16-byte random salt and
//! HMAC-SHA256(key = salt, message = token), compared in constant time
//! (`subtle`). One verification costs about a microsecond and no heap.
//! A slow hash exists to make guessing a *low-entropy* secret from its
//! stolen hash expensive; a 256-bit random token cannot be guessed at any
//! hashing speed (2^255 tries on average), so argon2 bought nothing for
//! them and cost 8 MiB and milliseconds per check: a plant's devices all
//! reconnecting at once took the server to gigabytes. This is what large
//! API providers do for their tokens. Why a per-token salt rather than one
//! secret key per registry (a "pepper"): a key kept in the same file adds
//! nothing over a salt, a key kept elsewhere adds a file whose loss would
//! lock out the whole fleet, and either way the tokens' entropy is what
//! protects them (the registry already stores 128 bits of each claim and
//! API token's unsalted SHA-256 as its id). The salt makes every stored
//! hash distinct, so a re-issued credential never has the fingerprint of
//! the one it replaced.
//!
//! **Secrets people choose** (operator passwords, the bootstrap admin token
//! `auth.bootstrap_admin_token`) stay argon2id (v0x13, PHC string format,
//! 16-byte random salt, 32-byte output, parallelism 1) with
//! `RegistryConfig::argon2_memory_kib` (default 8192 KiB, at most 1 GiB)
//! and `argon2_iterations` (default 1). Verification reads the parameters
//! from the stored hash, so changing them affects new hashes only. At most
//! four argon2 runs happen at once in one registry (more callers wait),
//! and their working buffers are reused (at most 4 × 8 MiB with the
//! defaults): fresh pages cost more than the hash itself, and buffers
//! freed by many threads at once stayed resident. With the defaults one
//! verification takes about 3.2 ms in a release build on the 2-core
//! development machine; see `tests/timing.rs`.
//!
//! **Older data directories.** Each stored hash names its form, so a
//! registry written before the fast form keeps working: its argon2 token
//! hashes verify as before (through the cache), and a generated token that
//! matches one is re-stored in the fast form (a write without fsync:
//! losing it in a crash only means the next check runs argon2 again). A
//! binary older than the fast form refuses tokens stored in it (it logs
//! "stored password hash cannot be verified"): after a downgrade, re-issue
//! them.
//!
//! # The verification cache and its bound
//!
//! Only for argon2 hashes: after a successful argon2 verification the
//! registry remembers `sha256(kind | subject | secret)` → fingerprint of
//! the stored hash that matched, so an API client sending the bootstrap
//! token again (or a device whose legacy hash could not be upgraded) costs
//! one SHA-256 and one store read instead of an argon2 run. A fast-form
//! hash is verified directly: one HMAC costs less than the lookup. A hit
//! is re-checked against the store every time: the credential with that
//! fingerprint must still exist and be valid at `now_ms` (expiry, grace
//! period), the device or owner must still exist (and the owner be
//! enabled), and the owner's current role caps the token's. Rotation,
//! revocation, disabling, deletion and role changes therefore take effect
//! at the next call, with no invalidation step to forget (and would still
//! with a store shared by several nodes). The cache holds at most
//! `auth_cache_capacity` entries (default 100,000; 0 disables it); when
//! full it is cleared (about 100 bytes an entry: some 10 MB when full
//! with the default). [`Registry::cache_len`] reports its size.
//!
//! # Storage seam
//!
//! The file is a `kv::Db` (schema `registry`, version 1, recorded in its
//! `meta` table; a file with a newer version is refused with
//! [`RegistryError::Storage`]). Its tables and their typed record methods
//! are in `store.rs`, the only file that names a table; stored values are
//! private serde structs (`records.rs`) stored as `kv::Versioned` records
//! (`{"v":1,...}`, the same bytes the code before `kv` wrote).
//!
//! The stores are traits, so that another backend (PostgreSQL) is another
//! `impl`: [`DeviceStorage`] (devices, device tokens, claims and
//! provisioning, certificates) and [`OperatorStorage`] (operators,
//! sessions, API tokens), implemented by [`Registry`], and
//! [`AuditStorage`], implemented by [`AuditStore`] (the audit table of
//! the same file, [`Registry::audit`]). `conformance` (feature
//! `conformance`) holds the behaviour every implementation must have;
//! this crate's tests run it against the redb ones.
//!
//! # Certificate revocation
//!
//! Revoked serials are kept in memory (loaded at open, swapped on each
//! revocation) so that [`Registry::is_certificate_revoked`] does no I/O
//! inside a TLS handshake. With several processes sharing a store, each
//! sees only the revocations it made or loaded at open.

mod api_tokens;
mod audit;
mod cache;
mod certs;
mod claims;
mod config;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod devices;
mod error;
mod glob;
mod import;
mod provision;
mod records;
mod registry;
mod secret;
mod storage;
mod store;
mod tokens;
mod users;
mod validate;

pub use api_tokens::{ApiToken, Principal};
pub use audit::{AuditEntry, AuditFilter, AuditStore, NewAuditEntry};
pub use certs::CertRecord;
pub use claims::{Claim, ClaimAuth, ProvisioningTemplate};
pub use config::RegistryConfig;
pub use devices::{Device, DeviceFilter, DevicePatch, NewDevice, Page};
pub use error::RegistryError;
pub use glob::glob_match;
pub use import::{ImportReport, ImportRowError};
pub use provision::{Credential, Provisioned};
pub use registry::Registry;
pub use storage::{AuditStorage, DeviceStorage, OperatorStorage};
pub use tokens::DeviceAuth;
pub use users::{Role, User};
