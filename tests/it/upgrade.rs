//! A database built by the previous release's migrations, holding what that release wrote,
//! upgrades in place and keeps its history.
//!
//! The earlier release's rows are written into its tables directly (no code of this release can
//! write them), and the 0005 data migration is checked in `kbwatch.device_scan`; what the history
//! reads as afterwards is checked through the `reporting` views.

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound as _, TimeDelta, TimeZone as _, Utc};
use kbwatch::model::RunStatus;
use kbwatch::sim::{Sim, SimConfig, TruthKb};
use kbwatch::store::MIGRATOR;
use sqlx::PgPool;

use crate::kit::reporting::{self, triples};
use crate::kit::{Auth, Tenant, fresh_database, spawn_app_on};

/// The last migration of the previous landed release (stop 8 ended with 0003).
const EARLIER_RELEASE: i64 = 3;

/// What the earlier release wrote for one scan: a tenant `t1`, a completed run a week ago, a
/// device the simulator still lists (missing `kept` and a KB since installed) and one it no longer
/// lists. Returns the run's id and time.
async fn write_earlier_release(
    pool: &PgPool,
    listed: &str,
    kept: &TruthKb,
) -> (i64, DateTime<Utc>) {
    // Whole seconds: PostgreSQL keeps microseconds, the clock gives nanoseconds.
    let at = (Utc::now() - TimeDelta::days(7)).duration_trunc(TimeDelta::seconds(1)).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let tenant: i32 =
        sqlx::query_scalar("INSERT INTO kbwatch.tenant (name) VALUES ('t1') RETURNING tenant_id")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO kbwatch.scan_run (tenant_id, trigger, started_at, finished_at, status, \
         devices_listed, devices_planned, devices_ok, api_calls) \
         VALUES ($1, 'manual', $2, $2 + interval '1 minute', 'completed', 2, 2, 2, 3) \
         RETURNING scan_run_id",
    )
    .bind(tenant)
    .bind(at)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let gone = "0".repeat(40);
    let devices: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, computer_dns_name, \
         os_platform, last_seen, raw, first_listed_at, last_listed_at, last_listed_run_id, \
         last_scanned_at, last_scan_outcome, last_good_scan_run_id, last_good_scan_at, \
         last_seen_at_good_scan) \
         SELECT $1, id, true, 'old-' || id, 'Windows11', $3 - interval '1 hour', \
                jsonb_build_object('id', id), $3, $3, $4, $3, 'ok', $4, $3, $3 - interval '1 hour' \
         FROM unnest($2::text[]) AS id \
         RETURNING device_id",
    )
    .bind(tenant)
    .bind([listed, gone.as_str()])
    .bind(at)
    .bind(run)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let (kb_ids, cves) = ([kept.id.as_str(), "KB5000001"], [kept.cve_addressed as i32, 7]);
    let cve_total = cves.iter().map(|c| i64::from(*c)).sum::<i64>();
    // Every device scanned ok at the run, missing both KBs.
    let statements = [
        "INSERT INTO kbwatch.kb (kb_id, name, cve_addressed, first_seen_at, last_seen_at) \
         SELECT kb, kb, cve, $5, $5 FROM unnest($2::text[], $3::int4[]) AS k(kb, cve)",
        "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, \
         missing_kbs, cve_addressed_total) SELECT d, $4, $5, 'ok', 2, $6 FROM unnest($1::int8[]) d",
        "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, cve_addressed) \
         SELECT d, kb, $4, cve FROM unnest($1::int8[]) d, unnest($2::text[], $3::int4[]) k(kb, cve)",
    ];
    for statement in statements {
        sqlx::query(statement)
            .bind(&devices)
            .bind(kb_ids)
            .bind(cves)
            .bind(run)
            .bind(at)
            .bind(cve_total)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    (run, at)
}

#[tokio::test]
async fn a_database_of_the_earlier_release_upgrades_and_keeps_its_history() {
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let sim = SimConfig { devices: 30, seed: 9, now: Some(now), ..SimConfig::default() };
    // The same seed and clock give the same fleet: read it from a twin of the app's simulator.
    let (listed, kept) = {
        let twin = Sim::start(sim.clone()).await.unwrap();
        let truth = twin.truth();
        let (id, kbs) = truth.iter().find(|(_, kbs)| !kbs.is_empty()).expect("a device misses KBs");
        (id.clone(), kbs[0].clone())
    };

    let db_url = fresh_database().await;
    let old = sqlx::PgPool::connect(&db_url).await.unwrap();
    MIGRATOR.run_to(EARLIER_RELEASE, &old).await.expect("the earlier release's migrations apply");
    let (old_run, old_at) = write_earlier_release(&old, &listed, &kept).await;
    old.close().await;

    let app = spawn_app_on(db_url, sim, Auth::TokenFile, Tenant::default().unpaced()).await;
    let pool = app.store.pool();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(applied, MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>());
    // 0005 moved the device's lastSeen at its last good scan into that scan's row, 0011 into
    // the device's state; 0014 packed the old run's scans.
    let last_seen: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT good_last_seen FROM kbwatch.device_state WHERE good_scan_run_id = $1 LIMIT 1",
    )
    .bind(old_run)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(last_seen, Some(old_at - TimeDelta::hours(1)));
    let packed: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM kbwatch.packed_scan WHERE scan_run_id = $1),
                (SELECT count(*) FROM kbwatch.device_scan WHERE scan_run_id = $1)",
    )
    .bind(old_run)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(packed, (2, 0), "the old run's two scans are packed");

    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let truth = triples(&app.sim.truth());

    let runs: Vec<(i64, String, i32)> = reporting::scan_runs(pool)
        .await
        .into_iter()
        .filter(|r| r.tenant == "t1")
        .map(|r| (r.scan_run_id, r.status, r.devices_listed))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], (old_run, "completed".into(), 2));
    let new_run = runs[1].0;
    assert_eq!(runs[1], (new_run, "completed".into(), 30));

    // The old scan still reads as it was, for both devices (the unlisted one included).
    let old_snapshot = app.snapshot(old_run).await;
    let expected: BTreeSet<_> = [listed.clone(), "0".repeat(40)]
        .into_iter()
        .flat_map(|d| {
            [(d.clone(), kept.id.clone(), kept.cve_addressed), (d, "KB5000001".into(), 7)]
        })
        .collect();
    assert_eq!(old_snapshot, expected);
    // The new scan sees the fleet; the KB installed since is closed, the one still missing kept.
    assert_eq!(app.snapshot(new_run).await, truth);
    assert_eq!(app.current_missing().await, truth);
    let since = reporting::missing_since(pool, &listed, &kept.id).await;
    assert_eq!(since, old_at, "the interval the earlier release opened goes on");
    let history: Vec<(i64, String)> = reporting::history_of(pool, &listed)
        .await
        .into_iter()
        .map(|s| (s.scan_run_id, s.outcome))
        .collect();
    assert_eq!(history, [(old_run, "ok".into()), (new_run, "ok".into())]);
    let remediation = reporting::kb_remediation(pool).await;
    let fixed = remediation.iter().find(|k| k.tenant == "t1" && k.kb_id == "KB5000001").unwrap();
    let remediated = (fixed.devices_missing_now, fixed.devices_remediated);
    assert_eq!(remediated, (0, 1), "installed on the listed device; the other is gone");
    let devices: Vec<String> =
        reporting::devices(pool).await.into_iter().map(|d| d.machine_id).collect();
    assert_eq!(devices.len(), 30);
    assert!(devices.contains(&listed) && !devices.contains(&"0".repeat(40)));
}
