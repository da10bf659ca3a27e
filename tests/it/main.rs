//! Integration tests: a real PostgreSQL (the private one, or `DATABASE_URL`) and the simulator
//! over real HTTP. One binary keeps link time down. The test kit, shared with the benchmark, is
//! `tests/kit/`.

#[path = "../kit/mod.rs"]
mod kit;

mod access;
mod classification;
mod concurrency;
mod credentials;
mod daemon;
mod dashboard;
mod demo;
mod deploy;
mod device_state;
mod export_fill;
mod export_states;
mod faults;
mod fleet_days;
mod fleet_states;
mod history;
mod hostile;
mod hostile_bounds;
mod hostile_panic;
mod hostile_server;
mod hostile_text;
mod interval_packs;
mod interval_times;
mod listing;
mod migrations;
mod outage;
mod permissions;
mod planner;
mod planner_export;
mod quota;
mod read_replica;
mod references;
mod replicas;
mod report;
mod results;
mod retention;
mod scan_packs;
mod secrets;
mod serve;
mod shutdown;
mod simulator;
mod soak;
mod store_columns;
mod tenant_defaults;
mod tenant_locks;
mod terminal;
mod upgrade;
