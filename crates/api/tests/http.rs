//! End-to-end tests of the HTTP API over loopback: a real listener, the
//! real router and store, and a minimal HTTP/1.1 client. One test binary
//! (one link) with its modules under `http/`.

#[path = "http/harness.rs"]
mod harness;

#[path = "http/auth_limits.rs"]
mod auth_limits;
#[path = "http/ingest.rs"]
mod ingest;
#[path = "http/query.rs"]
mod query;
