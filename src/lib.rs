//! kbwatch keeps a faithful, compact history of the Windows security updates (KBs) that each device of a
//! Microsoft Defender for Endpoint fleet is missing.
//!
//! # Layout
//! Data flows one way: [`schedule`] → [`scan`] (which calls [`defender`] through [`pacer`]) → a bounded
//! channel of device results → [`store`]. Nothing in `defender` knows SQL; nothing in `store` knows HTTP.
//!
//! Imports go one way too, from the top floor down, never back up and never in a circle (DESIGN.md §2;
//! `scripts/import-graph.py` checks it, file by file):
//! - top: [`cli`] (and `main.rs`);
//! - 5: [`schedule`], [`serve`];
//! - 4: [`scan`];
//! - 3: [`store`], [`defender`] (only `defender` uses `pacer`; neither uses the other);
//! - 2: [`pacer`], [`metrics`] (a leaf: it takes names, labels and numbers), [`telemetry`];
//! - 1: [`config`], [`model`] (the pipeline's own types).
//!
//! [`sim`] and [`embedded_pg`] stand beside the floors: they use `config` and `model` at most, and only
//! `cli`, the tests and the benchmarks use them.

/// Command-line subcommands: the edge where config, database and scans are wired together.
pub mod cli;
/// TOML + env configuration, validated with every problem reported at once.
pub mod config;
/// The typed Defender for Endpoint API client: auth, paging, error classification.
pub mod defender;
/// The private PostgreSQL started when no database URL is configured.
pub mod embedded_pg;
/// Prometheus metrics: names, bounded labels, the recorder and its upkeep.
pub mod metrics;
/// The pipeline's own types (machine ids, listed machines, missing KBs, the export's KB changes
/// and KB states, planned devices, device results, run status and counters): the bottom floor, so `defender` and `store` share them
/// without knowing each other.
pub mod model;
/// Sliding-window quotas per tenant and endpoint, concurrency cap, tenant-wide pause on 429.
pub mod pacer;
/// One scan of one tenant: list, plan, fan out, hand results to the store.
pub mod scan;
/// Cron ticks that start scans, never two of one tenant at once.
pub mod schedule;
/// `/metrics`, `/healthz`, `/readyz`.
pub mod serve;
/// The simulated Defender API, for tests, the demo and benchmarks.
pub mod sim;
/// The only code that speaks SQL: migrations, batched writes, run bookkeeping, tenant locks,
/// retention.
pub mod store;
/// Tracing subscriber set-up.
pub mod telemetry;
