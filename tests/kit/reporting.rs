//! Typed reads of the `reporting` views (migrations 0002 onwards), the database's contract: what
//! tests assert on, unless a test is about the internal tables themselves.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// (machine id, KB id, cveAddressed) of one missing KB.
pub type Triple = (String, String, i64);

/// A row of `reporting.scan_runs`: the library's own row type (read by column name, so it cannot
/// map a column wrongly).
pub use kbwatch::store::RunSummary as ScanRun;
/// A row of `reporting.fleet_daily` (its sums as integers), the same way.
pub use kbwatch::store::TrendRow as FleetDay;

/// A row of `reporting.device_history`: one device's scan.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeviceScan {
    pub tenant: String,
    pub machine_id: String,
    pub scan_run_id: i64,
    pub scanned_at: DateTime<Utc>,
    pub outcome: String,
    pub missing_kbs: Option<i32>,
    pub cve_addressed_total: Option<i64>,
    /// `getmissingkbs`, or `export` (migration 0016).
    pub source: String,
}

/// A row of `reporting.devices`: a device of the latest listing.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Device {
    pub tenant: String,
    pub machine_id: String,
    pub computer_dns_name: Option<String>,
    pub os_platform: Option<String>,
    pub machine_tags: Option<Vec<String>>,
    pub last_scanned_at: Option<DateTime<Utc>>,
    pub last_scan_outcome: Option<String>,
    pub missing_kbs: Option<i32>,
    pub cve_addressed_total: Option<i64>,
}

/// A row of `reporting.kb_remediation`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KbRemediation {
    pub tenant: String,
    pub kb_id: String,
    pub kb_name: Option<String>,
    pub devices_missing_now: i64,
    pub devices_remediated: i64,
    pub median_days_to_remediate: Option<f64>,
}

/// Every scan run, oldest first.
pub async fn scan_runs(pool: &PgPool) -> Vec<ScanRun> {
    sqlx::query_as("SELECT * FROM reporting.scan_runs ORDER BY scan_run_id")
        .fetch_all(pool)
        .await
        .expect("reporting.scan_runs reads")
}

pub async fn scan_run(pool: &PgPool, scan_run_id: i64) -> ScanRun {
    sqlx::query_as("SELECT * FROM reporting.scan_runs WHERE scan_run_id = $1")
        .bind(scan_run_id)
        .fetch_one(pool)
        .await
        .expect("the run is in reporting.scan_runs")
}

/// Every device scan, in run then machine order.
pub async fn device_history(pool: &PgPool) -> Vec<DeviceScan> {
    sqlx::query_as("SELECT * FROM reporting.device_history ORDER BY scan_run_id, machine_id")
        .fetch_all(pool)
        .await
        .expect("reporting.device_history reads")
}

/// How many device scans are stored, whatever their outcome.
pub async fn device_scans(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reporting.device_history")
        .fetch_one(pool)
        .await
        .expect("reporting.device_history counts")
}

/// The scans of one device, oldest first.
pub async fn history_of(pool: &PgPool, machine_id: &str) -> Vec<DeviceScan> {
    sqlx::query_as(
        "SELECT * FROM reporting.device_history WHERE machine_id = $1 ORDER BY scan_run_id",
    )
    .bind(machine_id)
    .fetch_all(pool)
    .await
    .expect("reporting.device_history reads")
}

/// The devices of the latest listing, in machine id order.
pub async fn devices(pool: &PgPool) -> Vec<Device> {
    sqlx::query_as(
        "SELECT tenant, machine_id, computer_dns_name, os_platform, machine_tags, last_scanned_at,
                last_scan_outcome, missing_kbs, cve_addressed_total
         FROM reporting.devices ORDER BY machine_id",
    )
    .fetch_all(pool)
    .await
    .expect("reporting.devices reads")
}

/// `reporting.current_missing_kbs` as triples.
pub async fn current_missing(pool: &PgPool) -> BTreeSet<Triple> {
    let rows: Vec<(String, String, Option<i32>)> = sqlx::query_as(
        "SELECT machine_id, kb_id, cve_addressed FROM reporting.current_missing_kbs",
    )
    .fetch_all(pool)
    .await
    .expect("reporting.current_missing_kbs reads");
    rows.into_iter().map(|(m, k, c)| (m, k, i64::from(c.unwrap_or(0)))).collect()
}

/// `missing_since` of one open (machine, KB) pair of `reporting.current_missing_kbs`.
pub async fn missing_since(pool: &PgPool, machine_id: &str, kb_id: &str) -> DateTime<Utc> {
    sqlx::query_scalar(
        "SELECT missing_since FROM reporting.current_missing_kbs WHERE machine_id = $1 AND kb_id = $2",
    )
    .bind(machine_id)
    .bind(kb_id)
    .fetch_one(pool)
    .await
    .expect("the KB is missing now, since a known scan")
}

/// `reporting.missing_kb_snapshots` of one scan as triples.
pub async fn snapshot(pool: &PgPool, scan_run_id: i64) -> BTreeSet<Triple> {
    let rows: Vec<(String, String, Option<i32>)> = sqlx::query_as(
        "SELECT machine_id, kb_id, cve_addressed FROM reporting.missing_kb_snapshots
         WHERE scan_run_id = $1",
    )
    .bind(scan_run_id)
    .fetch_all(pool)
    .await
    .expect("reporting.missing_kb_snapshots reads");
    rows.into_iter().map(|(m, k, c)| (m, k, i64::from(c.unwrap_or(0)))).collect()
}

/// Every day of `reporting.fleet_daily`, oldest first.
pub async fn fleet_daily(pool: &PgPool) -> Vec<FleetDay> {
    sqlx::query_as(
        "SELECT tenant, day, devices_reporting, devices_missing_any,
                coalesce(missing_kbs_total, 0)::int8 AS missing_kbs_total,
                coalesce(cve_addressed_total, 0)::int8 AS cve_addressed_total
         FROM reporting.fleet_daily ORDER BY tenant, day",
    )
    .fetch_all(pool)
    .await
    .expect("reporting.fleet_daily reads")
}

/// Every KB of `reporting.kb_remediation`.
pub async fn kb_remediation(pool: &PgPool) -> Vec<KbRemediation> {
    sqlx::query_as("SELECT * FROM reporting.kb_remediation ORDER BY tenant, kb_id")
        .fetch_all(pool)
        .await
        .expect("reporting.kb_remediation reads")
}

/// The columns of `reporting.VIEW`, in their order.
pub async fn view_columns(pool: &PgPool, view: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = 'reporting' AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(view)
    .fetch_all(pool)
    .await
    .expect("the view's columns read")
}

/// The simulator's truth as triples, to compare with the views.
pub fn triples(truth: &BTreeMap<String, Vec<kbwatch::sim::TruthKb>>) -> BTreeSet<Triple> {
    truth
        .iter()
        .flat_map(|(m, kbs)| kbs.iter().map(move |k| (m.clone(), k.id.clone(), k.cve_addressed)))
        .collect()
}

/// Asserts that `reporting.{view}` has `rows` rows, equal to those of `before` (the definition it
/// replaced, as a query over the same tables) in `before`'s columns: the views are a contract, and
/// columns appended since are not compared. The view reads the scans as they are stored, packed
/// or not; `before` reads them all as `device_scan` rows, as every definition before migration
/// 0014 did (unpacked in a transaction rolled back after). `when` names the state.
pub async fn assert_view_as_before(pool: &PgPool, view: &str, before: &str, rows: i64, when: &str) {
    let mut tx = pool.begin().await.expect("a transaction");
    let copy =
        format!("CREATE TEMP TABLE view_rows ON COMMIT DROP AS SELECT * FROM reporting.{view}");
    sqlx::query(sqlx::AssertSqlSafe(copy)).execute(&mut *tx).await.expect("the view is copied");
    crate::kit::internal::unpack_scans(&mut tx).await;
    let copy = format!("CREATE TEMP TABLE before_rows ON COMMIT DROP AS {before}");
    sqlx::query(sqlx::AssertSqlSafe(copy)).execute(&mut *tx).await.expect("`before` runs");
    let columns: String = sqlx::query_scalar(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = 'pg_temp.before_rows'::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("`before`'s columns");
    let sql = format!(
        "SELECT (SELECT count(*) FROM view_rows),
                (SELECT count(*) FROM (
                    (SELECT {columns} FROM view_rows EXCEPT ALL SELECT * FROM before_rows)
                    UNION ALL
                    (SELECT * FROM before_rows EXCEPT ALL SELECT {columns} FROM view_rows)) differ)"
    );
    let (n, differ): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *tx)
        .await
        .expect("the rows compare");
    tx.rollback().await.expect("the scans stay packed");
    assert_eq!((n, differ), (rows, 0), "{view}, {when}: rows, and rows that differ");
}
