//! The test kit: what the integration tests (`tests/it`) and the benchmark (`benches/perf`) both
//! need, included by each with `#[path = "../kit/mod.rs"] mod kit;`.
//!
//! - [`db`]: a fresh database per test or benchmark row, in the private PostgreSQL of the target
//!   (or in `DATABASE_URL`'s server).
//! - [`config`]: a typed builder of kbwatch's configuration; it renders the TOML file the binary
//!   reads and loads it through the same loader.
//! - [`auth`]: how a tenant authenticates ([`Auth`]), and the `[tenant.auth]` table it becomes.
//! - [`app`]: [`TestApp`], a simulator, a fresh database and a configuration pointing at both.
//! - [`binary`]: the one way to run the `kbwatch` binary: to its end ([`Kbwatch::output`]) or as a
//!   [`Daemon`] handle that waits for a condition and is killed when dropped; [`wait_for`] polls.
//! - [`dashboard`]: the Grafana dashboard's SQL queries, with its macros expanded.
//! - [`reporting`]: typed reads of the `reporting` views, for assertions.
//! - [`internal`]: the few reads the views do not offer (error texts), named as such.
//! - [`dashboard`]: the Grafana dashboard's SQL, its macros expanded.
//! - [`streaming`]: a PostgreSQL primary and a hot standby of a test's own.

// Each target uses a part of the kit: what one of them leaves unused is not dead.
#![allow(dead_code)]

pub mod app;
pub mod auth;
pub mod binary;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod internal;
pub mod reporting;
pub mod streaming;

// What the tests use most, at the kit's root; the benchmark uses fewer of them.
#[allow(unused_imports)]
pub use {
    app::{TestApp, fleet, slow_fleet, spawn_app, spawn_app_on},
    auth::Auth,
    binary::{Daemon, Kbwatch, wait_for},
    config::{ConfigBuilder, Tenant},
    db::{fixture_store, fresh_database},
};
