//! End-to-end tests of the HTTP API over loopback: a real listener, the
//! real router and store, and a minimal HTTP/1.1 client. One test binary
//! (one link) with its modules under `http/`.

#[path = "http/harness.rs"]
mod harness;

#[path = "http/auth_limits.rs"]
mod auth_limits;
#[path = "http/commands.rs"]
mod commands;
#[path = "http/credentials.rs"]
mod credentials;
#[path = "http/devices.rs"]
mod devices;
#[path = "http/import.rs"]
mod import;
#[path = "http/ingest.rs"]
mod ingest;
#[path = "http/limits.rs"]
mod limits;
#[path = "http/openapi.rs"]
mod openapi;
#[path = "http/operators.rs"]
mod operators;
#[path = "http/presence.rs"]
mod presence;
#[path = "http/query.rs"]
mod query;
#[path = "http/rbac.rs"]
mod rbac;
#[path = "http/stream.rs"]
mod stream;
#[path = "http/tls.rs"]
mod tls;
#[path = "http/twins.rs"]
mod twins;
