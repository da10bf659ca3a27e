//! Landed migrations never change: operators upgrade in place, and sqlx refuses to start on a
//! database that holds a migration whose checksum differs from the binary's. Their checksums are
//! pinned here, and a database built by the previous release's migrations upgrades and keeps its
//! history.

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound as _, TimeDelta, TimeZone as _, Utc};
use kbwatch::model::RunStatus;
use kbwatch::sim::{Sim, SimConfig, TruthKb};
use kbwatch::store::{MIGRATOR, Store};
use secrecy::SecretString;
use sqlx::PgPool;

use crate::helpers::{Auth, fresh_database, spawn_app_on, triples};

/// (version, description, SHA-384 of the file as sqlx computes it) of every migration that has
/// landed on main. Never change a row: restore the file instead. Add a row when a migration lands.
const LANDED: &[(i64, &str, &str)] = &[
    (
        1,
        "tables",
        "35a0120e3c14bc1d06ad29373e437a369fc371fcb081e15d1e0baf45115bddab01dfbf150714ad549f31a3dce3488c14",
    ),
    (
        2,
        "reporting",
        "a80020a58947cd6ca2c50f24366c77d0d489990a2454053ab409ba8badcc07d6f61b4a738f06875059b6b4d11745eb49",
    ),
    (
        3,
        "fleet daily one sort",
        "a5aa00ebefe8dd127d6429dc414940646d41b32a33d383f89581f78e2190cf3d2603af7150d5aae312ad6dfe54d167cf",
    ),
    (
        4,
        "references per statement",
        "bb5fb52616d055fb5b64d1da71261a30f5be1aaed0dced68590efa40dbc4a721c32f6bb99378392cb45fdb7538498363",
    ),
    (
        5,
        "scan state from device scan",
        "8df3e517bc882f15b9a0a3c8aa17a3b9da8f2cc79d2571276826da3d1f13d508dea68a6a9e5ae879db6223863093402d",
    ),
    (
        6,
        "raw as listed",
        "b55142abd5f7c7af3b8ed87235fe290311170012c6a230915e78c2eefa3fa627222ba518254cbb66388e111f5bc63472",
    ),
    (
        7,
        "storage for updates and appends",
        "164afae27ef1a1299ca978d7503b2bd5d5ab3084f6be8d43a7511507724dac7fa0dfc7088a815968cba2953b29d6de43",
    ),
];

/// The last migration of the previous landed release (stop 8 ended with 0003).
const EARLIER_RELEASE: i64 = 3;

fn file_name(version: i64, description: &str) -> String {
    format!("migrations/{version:04}_{}.sql", description.replace(' ', "_"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn landed_migrations_keep_their_checksums() {
    for m in MIGRATOR.iter() {
        let file = file_name(m.version, &m.description);
        let checksum = hex(&m.checksum);
        let Some((_, description, pinned)) = LANDED.iter().find(|(v, ..)| *v == m.version) else {
            panic!(
                "{file} is not pinned. Once it has landed on main it must never change: add \
                 ({}, {:?}, {checksum:?}) to LANDED in tests/it/migrations.rs",
                m.version, m.description
            );
        };
        assert_eq!(
            (m.description.as_ref(), checksum.as_str()),
            (*description, *pinned),
            "{file} changed after it landed: databases that applied it hold its old checksum, and \
             kbwatch would refuse to start on them. Restore the file as it was (git checkout of the \
             commit that landed it) and put the change in a new migration."
        );
    }
    for (version, description, _) in LANDED {
        assert!(
            MIGRATOR.iter().any(|m| m.version == *version),
            "{} landed but is no longer embedded: databases that applied it would refuse to start. \
             Restore it.",
            file_name(*version, description)
        );
    }
}

/// A database that applied a migration whose file then changed: `migrate` (and so `kbwatch run`
/// and `kbwatch migrate`) names the version and says what to do.
#[tokio::test]
async fn an_edited_migration_is_refused_with_a_message_that_says_what_to_do() {
    let store = Store::connect(&SecretString::from(fresh_database().await), 2).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = sha384('edited') WHERE version = 4")
        .execute(store.pool())
        .await
        .unwrap();
    let error =
        format!("{:#}", store.migrate().await.expect_err("the edited migration is refused"));
    assert!(error.contains("migration 4"), "{error}");
    assert!(error.contains("0004_references_per_statement.sql"), "{error}");
    assert!(error.contains("release"), "the message says what to do: {error}");
}

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
    let mut devices = Vec::new();
    for id in [listed, gone.as_str()] {
        let device: i64 = sqlx::query_scalar(
            "INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, computer_dns_name, \
             os_platform, last_seen, raw, first_listed_at, last_listed_at, last_listed_run_id, \
             last_scanned_at, last_scan_outcome, last_good_scan_run_id, last_good_scan_at, \
             last_seen_at_good_scan) \
             VALUES ($1, $2, true, 'old-' || $2, 'Windows11', $3 - interval '1 hour', \
                     jsonb_build_object('id', $2::text), $3, $3, $4, $3, 'ok', $4, $3, \
                     $3 - interval '1 hour') \
             RETURNING device_id",
        )
        .bind(tenant)
        .bind(id)
        .bind(at)
        .bind(run)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        devices.push(device);
    }
    let kbs = [(kept.id.as_str(), kept.cve_addressed as i32), ("KB5000001", 7)];
    for (kb, cve) in kbs {
        sqlx::query(
            "INSERT INTO kbwatch.kb (kb_id, name, cve_addressed, first_seen_at, last_seen_at) \
             VALUES ($1, $1, $2, $3, $3)",
        )
        .bind(kb)
        .bind(cve)
        .bind(at)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let cve_total = kbs.iter().map(|(_, c)| i64::from(*c)).sum::<i64>();
    for device in &devices {
        sqlx::query(
            "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, \
             missing_kbs, cve_addressed_total) VALUES ($1, $2, $3, 'ok', 2, $4)",
        )
        .bind(device)
        .bind(run)
        .bind(at)
        .bind(cve_total)
        .execute(&mut *tx)
        .await
        .unwrap();
        for (kb, cve) in kbs {
            sqlx::query(
                "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, cve_addressed) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(device)
            .bind(kb)
            .bind(run)
            .bind(cve)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
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

    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\n";
    let app = spawn_app_on(db_url, sim, Auth::TokenFile, quota).await;
    let pool = app.store.pool();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(applied, MIGRATOR.iter().map(|m| m.version).collect::<Vec<_>>());
    // 0005 moved the device's lastSeen at its last good scan into that scan's row.
    let last_seen: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT last_seen FROM kbwatch.device_scan WHERE scan_run_id = $1 LIMIT 1",
    )
    .bind(old_run)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(last_seen, Some(old_at - TimeDelta::hours(1)));

    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let truth = triples(&app.sim.truth());

    let runs: Vec<(i64, String, i32)> = sqlx::query_as(
        "SELECT scan_run_id, status, devices_listed FROM reporting.scan_runs \
         WHERE tenant = 't1' ORDER BY scan_run_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
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
    let since: DateTime<Utc> = sqlx::query_scalar(
        "SELECT missing_since FROM reporting.current_missing_kbs WHERE machine_id = $1 AND kb_id = $2",
    )
    .bind(&listed)
    .bind(&kept.id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(since, old_at, "the interval the earlier release opened goes on");
    let history: Vec<(i64, String)> = sqlx::query_as(
        "SELECT scan_run_id, outcome FROM reporting.device_history WHERE machine_id = $1 \
         ORDER BY scan_run_id",
    )
    .bind(&listed)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(history, [(old_run, "ok".into()), (new_run, "ok".into())]);
    let remediated: (i64, i64) = sqlx::query_as(
        "SELECT devices_missing_now, devices_remediated FROM reporting.kb_remediation \
         WHERE tenant = 't1' AND kb_id = 'KB5000001'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(remediated, (0, 1), "installed on the listed device; the other is gone");
    let devices: Vec<String> = sqlx::query_scalar("SELECT machine_id FROM reporting.devices")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(devices.len(), 30);
    assert!(devices.contains(&listed) && !devices.contains(&"0".repeat(40)));
}
