//! `cargo bench`: the measured targets of DESIGN §9, printed as one table.
//!
//! Every row starts the private PostgreSQL (or uses `DATABASE_URL`'s server) and the simulator over
//! real HTTP in this process. Rows are chosen by name:
//! `cargo bench -- quota throttled e2e memory storage tenants changes coverage` (all eight when none is named). With `KBWATCH_LOG` set (e.g. `info`), the scans log;
//! `cargo bench -- year` runs the year of 100,000 devices (issue 14; named only, it takes most of an
//! hour); `cargo bench -- export` reads the full vulnerability export of 100,000 devices (issue 15;
//! named only, about 15 minutes at the export's quota); with `KBWATCH_BENCH_KEEP` set, the databases are kept for a look with psql. `KBWATCH_BENCH_QUOTA_SECS` shortens the quota window while
//! developing (default 210 s).
//!
//! `cargo test --all-targets` also runs this program, without `--bench`: it then runs a smoke
//! version of the e2e, memory, storage, throttled, tenants, changes, coverage, export and year rows on small fleets, so that the
//! benchmark cannot rot, and checks that the year's generator writes what kbwatch writes.
//!
//! # Layout
//! `setup` starts what a row needs with the test kit (`tests/kit/`, shared with the integration
//! tests), `table` prints, `cpu` reads CPU times, and each row has its
//! module: `quota`, `throttled` (stray 429s, a server at half the quota), `throughput` (e2e), `memory` (a `kbwatch scan` process of its own), `storage`
//! (size and `fleet_daily`), `tenants` (one daemon, hundreds of tenants), `changes` (the planner
//! with the export's delta, beside today's), `coverage` (a fleet beyond a day of its quota, with
//! and without the export's fill), `year` (a generated year of history: reads and size),
//! `export` (the full export read into KB states, in a process of its own: this program again).

#[path = "../../tests/kit/mod.rs"]
mod kit;

mod changes;
mod coverage;
mod cpu;
mod export;
mod memory;
mod quota;
mod setup;
mod storage;
mod table;
mod tenants;
mod throttled;
mod throughput;
mod year;

use table::Row;

/// The rows, in the order of DESIGN §9.
const ROWS: [&str; 8] =
    ["quota", "throttled", "e2e", "memory", "storage", "tenants", "changes", "coverage"];
/// Rows run only when named.
const NAMED_ONLY: [&str; 2] = ["year", "export"];

fn main() {
    if let Some(config) = std::env::var_os(export::READER) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        return export::read_export(&config);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ROWS.contains(a) || NAMED_ONLY.contains(a))
        .collect();
    let selected: Vec<&str> = if named.is_empty() { ROWS.to_vec() } else { named.clone() };
    if std::env::var_os("KBWATCH_LOG").is_some() {
        // Logs of the scans, to see where a row's time goes.
        kbwatch::telemetry::init(Some(kbwatch::config::LogFormat::Text));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let rows = runtime
        .block_on(async { if full { run_full(&selected).await } else { run_smoke(&named).await } });
    if !full {
        println!("\nSmoke run on tiny fleets: these figures are not the measured targets.");
    }
    println!("\n{}", table::render(&rows));
}

async fn run_full(selected: &[&str]) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in selected {
        eprintln!("bench: {name} …");
        match *name {
            "quota" => rows.extend(quota::run(quota_window()).await),
            "throttled" => rows.extend(throttled::run(&throttled::FULL).await),
            "e2e" => rows.extend(throughput::run(10_000).await),
            "memory" => rows.extend(memory::run(10_000, 100_000).await),
            "storage" => rows.extend(storage::run(&storage::FULL).await),
            "tenants" => rows.extend(tenants::run(500, 200).await),
            "changes" => rows.extend(changes::run(&changes::FULL).await),
            "coverage" => rows.extend(coverage::run(&coverage::FULL).await),
            "year" => rows.extend(year::run(&year::full()).await),
            "export" => rows.extend(export::run(100_000).await),
            _ => unreachable!("only known rows are selected"),
        }
    }
    rows
}

/// Small fleets, a few seconds in a debug build: checks the benchmark still runs. Every row that
/// has a smoke version (but quota), or only those `named`.
async fn run_smoke(named: &[&str]) -> Vec<Row> {
    eprintln!("bench: smoke run (use `cargo bench` for the measured table)");
    let wanted = |row: &str| named.is_empty() || named.contains(&row);
    let mut rows = Vec::new();
    if wanted("e2e") {
        rows.extend(throughput::run(300).await);
    }
    if wanted("memory") {
        rows.extend(memory::run(100, 300).await);
    }
    if wanted("storage") {
        rows.extend(storage::run(&storage::Plan { devices: 200, days: 3, query_runs: 1 }).await);
    }
    if wanted("throttled") {
        let quota = kbwatch::sim::SimQuota { per_minute: 120, per_hour: 1800 };
        let window = std::time::Duration::from_secs(10);
        let plan = throttled::Plan { quota, devices: 120, stray: 2, window };
        rows.extend(throttled::run(&plan).await);
    }
    if wanted("tenants") {
        rows.extend(tenants::run(12, 20).await);
    }
    if wanted("changes") {
        rows.extend(changes::run(&changes::Plan { devices: 400, days: 3, budget: 60 }).await);
    }
    if wanted("coverage") {
        let plan = coverage::Plan { devices: 600, per_hour: 10, runs_a_day: 2 };
        rows.extend(coverage::run(&plan).await);
    }
    if wanted("export") {
        rows.extend(export::run(300).await);
    }
    if wanted("year") {
        // 65 days: three months of KBs, intervals closed across the generator's chunks.
        rows.push(year::check_generator(200, 65).await);
        let timeout = std::time::Duration::from_secs(30);
        rows.extend(year::run(&year::Plan { devices: 300, days: 65, timeout }).await);
    }
    rows
}

/// The quota row's window: `KBWATCH_BENCH_QUOTA_SECS` (shorter while developing), else 210 s.
fn quota_window() -> std::time::Duration {
    let secs = std::env::var("KBWATCH_BENCH_QUOTA_SECS").ok().and_then(|s| s.parse().ok());
    std::time::Duration::from_secs(secs.unwrap_or(210))
}
