//! The `year` rows (issue 14): a year of daily history of 100,000 devices, then the reads a
//! dashboard makes over it and the size of the `kbwatch` schema.
//!
//! The history is not scanned through the simulator (36.5 million device scans would take days):
//! a generator writes it straight into kbwatch's current tables, set-based in SQL
//! (`year/history.sql`), a month per statement. It writes exactly what kbwatch writes for that
//! history: the smoke run replays a small history day by day through kbwatch's own store and
//! compares every `reporting` view and every written table row for row (`year/replay.rs`).
//!
//! The history, per device: one scan a day (one completed scheduled run a day for the tenant, one
//! `ok` device_scan row per device with its counts, `lastSeen` moving every day); three KBs a
//! month, each installed within 2 to 40 days (intervals opened and closed by scan run ids, packed
//! once closed); a minimal entity in `raw`; the KBs in `kb`.
//!
//! `KBWATCH_BENCH_YEAR_DEVICES` and `KBWATCH_BENCH_YEAR_DAYS` change the full size (100,000 ×
//! 365), e.g. to 90 days on a slow machine; `KBWATCH_BENCH_KEEP` keeps the database.

mod generate;
mod replay;
mod timing;

use std::time::Duration;

use generate::{Generated, TENANT, YearDb, first_tick};

use crate::table::{Row, mb, thousands};

/// The history and how long a read may run before it is stopped.
pub struct Plan {
    pub devices: i32,
    pub days: i32,
    pub timeout: Duration,
}

/// The size of the targets: a year of 100,000 devices.
const YEAR_SCANS: f64 = 100_000.0 * 365.0;
/// The size target for that year, and the growth allowed over the first day.
const MAX_BYTES: f64 = 1.5e9;
const MAX_GROWTH: f64 = 4.0;

/// 100,000 devices × 365 days, unless the environment says otherwise.
pub fn full() -> Plan {
    let var = |name: &str, default: i32| {
        std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    Plan {
        devices: var("KBWATCH_BENCH_YEAR_DEVICES", 100_000),
        days: var("KBWATCH_BENCH_YEAR_DAYS", 365),
        timeout: Duration::from_secs(120),
    }
}

/// Generates the history, then times the reads.
pub async fn run(plan: &Plan) -> Vec<Row> {
    let db = YearDb::open().await;
    let t0 = first_tick(plan.days);
    let generated = generate::generate(&db, plan.devices, plan.days, t0).await;
    let mut rows = history_rows(plan, &generated);
    let (machine_id, last_run, early_run): (String, i64, i64) = sqlx::query_as(
        "SELECT bench_year.machine_id($1), (SELECT max(scan_run_id) FROM kbwatch.scan_run),
                (SELECT scan_run_id FROM kbwatch.scan_run ORDER BY scan_run_id OFFSET $2 LIMIT 1)",
    )
    .bind(plan.devices / 2 + 1)
    .bind(i64::from(plan.days / 4))
    .fetch_one(db.pool())
    .await
    .expect("a device and two runs");
    rows.push(Row::context(
        &format!("reads over those {} days (wrapped to compute every column)", plan.days),
        format!("statement timeout {} s", plan.timeout.as_secs()),
    ));
    for read in timing::reads(db.pool(), TENANT, &machine_id, last_run, early_run).await {
        eprintln!("bench: year: {}", read.what);
        let timed = timing::time(db.pool(), &read, plan.timeout).await;
        rows.push(timing::row(&read, &timed));
    }
    db.close().await;
    rows
}

/// The smoke run's check that the generator writes what kbwatch writes.
pub async fn check_generator(devices: i32, days: i32) -> Row {
    replay::check(devices, days).await
}

fn history_rows(plan: &Plan, g: &Generated) -> Vec<Row> {
    let scans = f64::from(plan.devices) * f64::from(plan.days);
    let per_scan = g.bytes as f64 / scans;
    let growth = g.bytes as f64 / g.first_day_bytes.max(1) as f64;
    let secs = g.elapsed.as_secs_f64();
    let projected = per_scan * YEAR_SCANS;
    let size = if scans == YEAR_SCANS {
        format!("{} ({per_scan:.0} bytes per device-scan)", mb(g.bytes))
    } else {
        format!(
            "{} ({per_scan:.0} bytes per device-scan; a year of 100,000: {})",
            mb(g.bytes),
            mb(projected as u64)
        )
    };
    let (devices, days) = (thousands(plan.devices as u64), plan.days);
    vec![
        Row::context(
            &format!(
                "year: {days} daily scans of {devices} devices generated set-based in SQL \
                 (writes what kbwatch writes: checked against its write path in the smoke run)"
            ),
            format!(
                "{secs:.0} s ({:.0} device-scans/s; {} device scans, {} intervals)",
                scans / secs.max(1e-9),
                thousands(g.device_scans as u64),
                thousands(g.intervals as u64)
            ),
        ),
        Row::judged(
            "  kbwatch schema after them (tables, indexes, TOAST; after VACUUM)",
            size,
            "≤ 1.5 GB for a year of 100,000",
            projected <= MAX_BYTES,
        ),
        Row::judged(
            "  the same vs after the first day",
            format!("{growth:.1}× ({} → {})", mb(g.first_day_bytes), mb(g.bytes)),
            "≤ 4×",
            growth <= MAX_GROWTH,
        ),
    ]
}
