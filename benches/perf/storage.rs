//! Rows 4 and 5: database size after one scan and after 30 simulated days of a changing fleet,
//! beside a naive full-snapshot table; then the time of `reporting.fleet_daily` over that history.

use std::time::{Duration, Instant};

use kbwatch::model::RunStatus;
use kbwatch::sim::Evolution;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use kbwatch::scan::ScanOptions;

use crate::setup::{Setup, finish, start};
use crate::table::{Row, mb, thousands};

/// The fleet and its history.
pub struct Plan {
    pub devices: usize,
    pub days: u32,
    /// `fleet_daily` is timed this many times; the median is reported.
    pub query_runs: usize,
}

pub const FULL: Plan = Plan { devices: 10_000, days: 30, query_runs: 7 };

/// One simulated day: 2 % of the missing (device, KB) pairs are fixed, 0.1 % of the devices are
/// added and as many offboarded (and every active device's `lastSeen` moves).
fn day_of_change(plan: &Plan) -> Evolution {
    let churn = plan.devices / 1000;
    Evolution {
        install_updates: 0.02,
        add_devices: churn,
        offboard_devices: churn,
        ..Evolution::default()
    }
}

pub async fn run(plan: &Plan) -> Vec<Row> {
    let bench = start(Setup {
        devices: plan.devices,
        server_quota: None,
        client_quota: None,
        concurrency: 8,
    })
    .await;
    let pool = bench.store.pool().clone();
    create_naive_table(&pool).await;
    let client = bench.client();
    let (mut first, mut change_share) = (None, 0.0);
    for day in 0..plan.days {
        if day > 0 {
            let pairs: usize = bench.sim.truth().values().map(Vec::len).sum();
            let change = bench.sim.evolve(day_of_change(plan));
            change_share += (change.kbs_fixed + change.kbs_added) as f64 / pairs.max(1) as f64;
        }
        let options = ScanOptions::default();
        let summary =
            bench.scan_with_options(client.clone(), &options, &CancellationToken::new()).await;
        assert_eq!(summary.status, RunStatus::Completed, "day {day}: {summary:?}");
        // 30 scans run now look like 30 daily scans.
        crate::kit::internal::backdate_run(&pool, summary.scan_run_id, plan.days - 1 - day).await;
        append_naive(&pool, summary.scan_run_id).await;
        // A day passes between two scans: autovacuum has run by the next one.
        vacuum(&pool).await;
        if day == 0 {
            first = Some(sizes(&pool).await);
        }
    }
    let first = first.expect("at least one day");
    let last = sizes(&pool).await;
    let daily_change = change_share / f64::from(plan.days.saturating_sub(1).max(1));
    let query = time_fleet_daily(&pool, plan.query_runs).await;
    finish(bench).await;
    rows(plan, first, last, daily_change, query)
}

/// Bytes of kbwatch's tables (with indexes and TOAST) and of the naive table.
#[derive(Clone, Copy)]
struct Sizes {
    kbwatch: u64,
    naive: u64,
}

async fn sizes(pool: &PgPool) -> Sizes {
    Sizes {
        kbwatch: schema_bytes(pool, "kbwatch").await,
        naive: schema_bytes(pool, "bench_naive").await,
    }
}

/// Bytes of a schema's tables with their indexes and TOAST.
pub async fn schema_bytes(pool: &PgPool, schema: &str) -> u64 {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .expect("table sizes are readable");
    bytes as u64
}

/// The comparison: one row per device × KB × scan, as a store of full snapshots keeps them.
async fn create_naive_table(pool: &PgPool) {
    sqlx::raw_sql(
        "CREATE SCHEMA bench_naive;
         CREATE TABLE bench_naive.snapshot (
             scan_run_id bigint NOT NULL, machine_id text NOT NULL, scanned_at timestamptz NOT NULL,
             kb_id text NOT NULL, cve_addressed integer,
             PRIMARY KEY (scan_run_id, machine_id, kb_id))",
    )
    .execute(pool)
    .await
    .expect("the naive table is created");
}

async fn append_naive(pool: &PgPool, run_id: i64) {
    sqlx::query(
        "INSERT INTO bench_naive.snapshot
         SELECT scan_run_id, machine_id, scanned_at, kb_id, cve_addressed
         FROM reporting.missing_kb_snapshots WHERE scan_run_id = $1",
    )
    .bind(run_id)
    .execute(pool)
    .await
    .expect("the naive snapshot is copied");
}

async fn vacuum(pool: &PgPool) {
    sqlx::query("VACUUM (ANALYZE)").execute(pool).await.expect("VACUUM runs");
}

/// Median wall time of `SELECT * FROM reporting.fleet_daily`, all rows fetched, after one warm-up.
async fn time_fleet_daily(pool: &PgPool, runs: usize) -> (Duration, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..=runs {
        let started = Instant::now();
        rows = sqlx::query("SELECT * FROM reporting.fleet_daily")
            .fetch_all(pool)
            .await
            .expect("fleet_daily answers")
            .len();
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    (times[times.len() / 2], rows)
}

fn rows(
    plan: &Plan,
    first: Sizes,
    last: Sizes,
    daily_change: f64,
    query: (Duration, usize),
) -> Vec<Row> {
    let ratio = last.kbwatch as f64 / first.kbwatch.max(1) as f64;
    let naive_ratio = last.naive as f64 / first.naive.max(1) as f64;
    let days = plan.days;
    vec![
        Row::judged(
            &format!(
                "database size, {days} daily scans of {} devices vs the first (kbwatch schema, after VACUUM)",
                thousands(plan.devices as u64)
            ),
            format!(
                "{ratio:.2}× ({} → {}; {:.1} % of KB pairs changed a day)",
                mb(first.kbwatch),
                mb(last.kbwatch),
                daily_change * 100.0
            ),
            "≤ 3×",
            ratio <= 3.0,
        ),
        Row::context(
            "  the same for a naive full-snapshot table (device × KB × scan)",
            format!("{naive_ratio:.2}× ({} → {})", mb(first.naive), mb(last.naive)),
        ),
        Row::judged(
            &format!(
                "SELECT * FROM reporting.fleet_daily over that history (median of {})",
                plan.query_runs
            ),
            format!("{:.0} ms ({} rows)", query.0.as_secs_f64() * 1000.0, query.1),
            "< 500 ms",
            query.0 < Duration::from_millis(500),
        ),
    ]
}
