//! Row 6: one `kbwatch run` daemon with hundreds of tenants on a database that admits 100
//! connections, as a default PostgreSQL does.
//!
//! Every tenant is a copy of the bench tenant on one simulator (its own rows, pacer and lock), with
//! a cron that ticks once a few seconds after the daemon starts (then a day later). The row waits
//! until every tenant's run of that tick has ended, polling `pg_stat_activity` for the daemon's
//! connections and `/proc/PID/status` for its high-water resident set size.

use std::time::{Duration, Instant};

use chrono::{Timelike as _, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::kit::Kbwatch;
use crate::setup::{Setup, finish, start};
use crate::table::{Row, mb, thousands};

/// What a default PostgreSQL admits (`max_connections = 100`): the bench database's limit.
const DATABASE_CONNECTIONS: u32 = 100;
/// kbwatch's pool (`database.max_connections`, its default).
const POOL: u32 = 8;
/// Connections beside the pool: the tenant-lock connection.
const BESIDE_POOL: u32 = 1;

pub async fn run(tenants: usize, devices: usize) -> Vec<Row> {
    let app =
        start(Setup { devices, server_quota: None, client_quota: None, concurrency: 4 }).await;
    // The bench's own pool is closed: only the daemon's connections are named `kbwatch`.
    app.store.pool().close().await;
    let options: PgConnectOptions = app.db_url.parse().expect("a database URL");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.application_name("kbwatch-bench"))
        .await
        .expect("the bench database connects");
    let database: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {database} CONNECTION LIMIT {DATABASE_CONNECTIONS}"
    )))
    .execute(&pool)
    .await
    .expect("the bench database's connection limit is set");
    // A daily tick, the first a few seconds after the daemon has loaded its tenants.
    let tick = Utc::now() + chrono::Duration::seconds(5 + tenants as i64 / 20);
    let cron = format!("{} {} {} * * *", tick.second(), tick.minute(), tick.hour());
    let settings = app
        .settings
        .clone()
        .copies_of_first_tenant(tenants)
        .max_connections(POOL)
        .cron(cron)
        .serve_on_free_port();
    let config = app.write_config("kbwatch-tenants.toml", &settings);
    let daemon = Kbwatch::new(["run"]).config(&config).env("KBWATCH_LOG", "warn").start();
    let started = Instant::now();
    let (mut connections, mut high_water, mut ended) = (0i64, 0u64, 0i64);
    while ended < tenants as i64 && started.elapsed() < Duration::from_secs(1800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        connections = connections.max(daemon_connections(&pool, &database).await);
        high_water = high_water.max(vm_hwm(daemon.pid()).unwrap_or(0));
        ended = runs_ended(&pool, "status <> 'running'").await;
    }
    let completed = runs_ended(&pool, "status = 'completed'").await;
    let last_end: f64 = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM max(finished_at) - min(scheduled_for)), 0)::float8
         FROM kbwatch.scan_run",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    daemon.terminate();
    daemon.wait(Duration::from_secs(60)).await;
    pool.close().await;
    finish(app).await;
    let bound = i64::from(POOL + BESIDE_POOL);
    let fleet =
        format!("{} tenants × {} devices", thousands(tenants as u64), thousands(devices as u64));
    vec![
        Row::judged(
            &format!("one daemon, {fleet}, 100-connection database: runs completed at the tick"),
            format!("{completed}/{tenants} in {last_end:.0} s"),
            "all",
            completed == tenants as i64,
        ),
        Row::judged(
            "  kbwatch's peak connections",
            connections.to_string(),
            &format!("≤ {bound} (pool {POOL} + lock {BESIDE_POOL})"),
            connections <= bound,
        ),
        Row::context("  peak memory of the daemon (high-water RSS)", mb(high_water)),
    ]
}

/// The daemon's connections to the bench database now.
async fn daemon_connections(pool: &PgPool, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'kbwatch'",
    )
    .bind(database)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Runs of the tick (every run is one) matching `filter`.
async fn runs_ended(pool: &PgPool, filter: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM kbwatch.scan_run WHERE scheduled_for IS NOT NULL AND {filter}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// `VmHWM` of process `pid`, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
}
