//! The generator's check: the same history written day by day through kbwatch's own store (the
//! functions a scan calls, in its order: open the run, store the listing, mark the unlisted gone,
//! record the plan, write results in batches of 500 with the KBs each batch reports, close the
//! run), then every `reporting` view and every table kbwatch writes compared row for row with
//! what the generator wrote. What differs only because the write path stamps it with the clock is
//! set aside: a run's start and end are moved to the history's times (as the storage row
//! backdates its runs), and the KBs' `first_seen_at`/`last_seen_at`, which no view shows, are not
//! compared.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use kbwatch::model::{DeviceOutcome, DeviceResult, Machine, MissingKb, RunStatus};
use kbwatch::store::{ListedDevice, RunEnd, kbs_to_store};

use super::generate::{YearDb, first_tick, generate};
use crate::table::{Row, thousands};

/// Devices per upsert and per results batch, as a scan stores them.
const UPSERT_ROWS: usize = 1000;
const BATCH: usize = 500;
const RUNNER: &str = "bench-year:1";

/// Generates `days` days of `devices` devices in one database, replays them through the store in
/// another, and compares; panics at the first row that differs.
pub async fn check(devices: i32, days: i32) -> Row {
    let t0 = first_tick(days);
    let generated = YearDb::open().await;
    generate(&generated, devices, days, t0).await;
    let replayed = YearDb::open().await;
    replay(&replayed, devices, days, t0).await;
    let mut reads: Vec<String> = sqlx::query_scalar(
        "SELECT format('SELECT v::text FROM reporting.%I v', table_name)
         FROM information_schema.views WHERE table_schema = 'reporting' ORDER BY table_name",
    )
    .fetch_all(generated.pool())
    .await
    .expect("the views are listed");
    reads.extend(
        [
            "SELECT v::text FROM kbwatch.scan_run v",
            "SELECT v::text FROM kbwatch.device v",
            // Both pack every run once it has ended: nothing is left as rows.
            "SELECT count(*)::text FROM kbwatch.device_scan",
            "SELECT v::text FROM kbwatch.scan_pack v",
            "SELECT v::text FROM kbwatch.device_state v",
            "SELECT (tenant_id, kb_id, devices_remediated, median_days,
                     ARRAY(SELECT x FROM unnest(days) x ORDER BY x))::text
             FROM kbwatch.kb_fix",
            "SELECT v::text FROM kbwatch.missing_kb v",
            "SELECT v::text FROM kbwatch.interval_pack v",
            "SELECT (kb_id, name, url, products_names, cve_addressed, machine_missed_on)::text
             FROM kbwatch.kb",
        ]
        .map(String::from),
    );
    let mut rows = 0;
    for read in &reads {
        let (a, b) = (all(&generated, read).await, all(&replayed, read).await);
        if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
            panic!("{read}: the generator wrote\n  {x}\nwhere the write path stored\n  {y}");
        }
        assert_eq!(a.len(), b.len(), "{read}: generator rows vs write-path rows");
        assert!(!a.is_empty(), "{read}: no rows to compare");
        rows += a.len();
    }
    generated.close().await;
    replayed.close().await;
    Row::judged(
        &format!(
            "year generator vs kbwatch's write path, {days} days of {devices} devices: every \
             reporting view and written table"
        ),
        format!("{} rows of {} reads identical", thousands(rows as u64), reads.len()),
        "identical",
        true,
    )
}

async fn all(db: &YearDb, read: &str) -> Vec<String> {
    let sql = format!("SELECT x FROM ({read}) s(x) ORDER BY 1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(db.pool()).await.expect("rows read")
}

/// One device of a day's listing, and when that day's scan requests it.
#[derive(sqlx::FromRow)]
struct Listed {
    d: i32,
    machine_id: String,
    computer_dns_name: String,
    os_platform: String,
    os_build: i64,
    health_status: String,
    onboarding_status: String,
    rbac_group_id: String,
    rbac_group_name: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    raw: String,
    scanned_at: DateTime<Utc>,
}

/// Each day of the history as one completed scan of kbwatch's store.
async fn replay(db: &YearDb, devices: i32, days: i32, t0: DateTime<Utc>) {
    let (store, pool) = (&db.store, db.pool());
    let api_calls = i64::from(devices + (devices + 9999) / 10000);
    let mut ids: HashMap<String, i64> = HashMap::new();
    for k in 0..days {
        let tick = t0 + chrono::Duration::days(i64::from(k));
        let run_id = store
            .start_run(db.tenant_id, "schedule", Some(tick), RUNNER)
            .await
            .expect("the run opens")
            .expect("a new tick");
        let listing: Vec<Listed> = sqlx::query_as(
            "SELECT l.*, bench_year.scanned_at($2, $3, l.d) AS scanned_at
             FROM bench_year.listing($1, $2, $3) l ORDER BY l.d",
        )
        .bind(devices)
        .bind(t0)
        .bind(k)
        .fetch_all(pool)
        .await
        .expect("the day's listing");
        let machines: Vec<Machine> = listing.iter().map(machine).collect();
        let listed: Vec<ListedDevice<'_>> = machines
            .iter()
            .map(|m| ListedDevice { machine_id: m.id.clone(), id_valid: true, machine: m })
            .collect();
        for slice in listed.chunks(UPSERT_ROWS) {
            let new = store
                .upsert_listed_devices(db.tenant_id, run_id, tick, slice)
                .await
                .expect("the listing is stored");
            ids.extend(new.into_iter().map(|p| (p.machine_id.as_str().to_owned(), p.device_id)));
        }
        store.mark_unlisted_gone(db.tenant_id, run_id, tick).await.expect("gone marked");
        store.set_run_plan(run_id, devices, devices, 0).await.expect("the plan is recorded");
        let mut missing = missing(db, devices, k).await;
        let results: Vec<DeviceResult> = listing
            .iter()
            .map(|l| DeviceResult {
                device_id: ids[&l.machine_id],
                scanned_at: l.scanned_at,
                last_seen: Some(l.last_seen),
                first_scan: k == 0,
                outcome: DeviceOutcome::Ok(missing.remove(&l.d).unwrap_or_default()),
            })
            .collect();
        let mut stored = HashSet::new();
        for batch in results.chunks(BATCH) {
            let kbs = kbs_to_store(batch, &stored);
            store.write_results(run_id, batch, &kbs, api_calls, 0).await.expect("results stored");
            stored.extend(kbs);
        }
        let end = RunEnd {
            status: RunStatus::Completed,
            api_calls,
            throttled: 0,
            effective_per_minute: 100,
            error: None,
        };
        assert!(store.finish_run(run_id, &end).await.expect("the run closes"), "the run was open");
        store.pack_scans(db.tenant_id).await.expect("the run's scans are packed");
        store.pack_intervals(db.tenant_id).await.expect("the run's intervals are packed");
        store.roll_up_kb_fixes().await.expect("the run's fixes are rolled up");
        sqlx::query(
            "UPDATE kbwatch.scan_run SET started_at = $2,
                 finished_at = bench_year.scanned_at($3, $4, $5) + interval '1 s'
             WHERE scan_run_id = $1",
        )
        .bind(run_id)
        .bind(tick)
        .bind(t0)
        .bind(k)
        .bind(devices)
        .execute(pool)
        .await
        .expect("the run is moved to the history's time");
    }
    // As the generator does: the history's days are rolled up once all of it is written.
    crate::kit::internal::redo_fleet_days(pool).await;
}

/// A KB the API reports missing on device `d`.
#[derive(sqlx::FromRow)]
struct Missing {
    d: i32,
    kb_id: String,
    name: String,
    url: String,
    products_names: Vec<String>,
    cve_addressed: i32,
    machine_missed_on: i64,
}

/// Day `k`'s missing KBs of each device, as the API would answer.
async fn missing(db: &YearDb, devices: i32, k: i32) -> BTreeMap<i32, Vec<MissingKb>> {
    let rows: Vec<Missing> = sqlx::query_as("SELECT * FROM bench_year.missing($1, $2)")
        .bind(devices)
        .bind(k)
        .fetch_all(db.pool())
        .await
        .expect("the day's missing KBs");
    let mut by_device: BTreeMap<i32, Vec<MissingKb>> = BTreeMap::new();
    for m in rows {
        by_device.entry(m.d).or_default().push(MissingKb {
            id: m.kb_id,
            name: Some(m.name),
            url: Some(m.url),
            products_names: Some(m.products_names),
            machine_missed_on: Some(m.machine_missed_on),
            cve_addressed: Some(m.cve_addressed),
        });
    }
    by_device
}

/// The listed entity as kbwatch's client maps it.
fn machine(l: &Listed) -> Machine {
    Machine {
        id: l.machine_id.clone(),
        computer_dns_name: Some(l.computer_dns_name.clone()),
        os_platform: Some(l.os_platform.clone()),
        os_version: None,
        os_build: Some(l.os_build),
        health_status: Some(l.health_status.clone()),
        onboarding_status: Some(l.onboarding_status.clone()),
        rbac_group_id: Some(l.rbac_group_id.clone()),
        rbac_group_name: Some(l.rbac_group_name.clone()),
        machine_tags: Vec::new(),
        first_seen: Some(l.first_seen),
        last_seen: Some(l.last_seen),
        is_potential_duplication: Some(false),
        merged_into_machine_id: None,
        raw: RawValue::from_string(l.raw.clone()).expect("the listing's entity is JSON"),
    }
}
