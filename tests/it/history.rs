//! A scanned fleet equals the simulator's truth, and its history stays exact as it changes.
//!
//! Two places use kbwatch's internal tables on purpose: counting the `kbwatch.missing_kb` rows a
//! scan wrote checks that only changes are stored (the storage layout, which no view shows), and
//! the `fleet_daily` test moves scans to fixed days by rewriting `kbwatch.device_scan.scanned_at`.

use std::collections::{BTreeMap, BTreeSet};

use kbwatch::model::RunStatus;
use kbwatch::sim::{Evolution, SimConfig};

use crate::kit::internal;
use crate::kit::reporting::{self, triples};
use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};

async fn app(devices: usize, seed: u64) -> TestApp {
    let tenant = Tenant::default().unpaced().concurrency(16);
    spawn_app(SimConfig { seed, ..fleet(devices) }, Auth::TokenFile, tenant).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stores_exactly_what_each_device_is_missing() {
    let app = app(2000, 7).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 2000);

    let truth = app.sim.truth();
    assert!(truth.values().any(|kbs| !kbs.is_empty()), "the fleet misses some KBs");
    assert_eq!(app.current_missing().await, triples(&truth));

    let history: BTreeMap<String, (i64, i64)> = reporting::device_history(app.pool())
        .await
        .into_iter()
        .filter(|s| s.scan_run_id == summary.scan_run_id && s.outcome == "ok")
        .map(|s| {
            (s.machine_id, (i64::from(s.missing_kbs.unwrap()), s.cve_addressed_total.unwrap()))
        })
        .collect();
    let expected: BTreeMap<String, (i64, i64)> = truth
        .iter()
        .map(|(m, kbs)| (m.clone(), (kbs.len() as i64, kbs.iter().map(|k| k.cve_addressed).sum())))
        .collect();
    assert_eq!(history, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_past_scans_stay_exact_and_only_changes_are_written() {
    let app = app(2000, 11).await;
    let truth1 = app.sim.truth();
    let scan1 = app.scan().await;
    assert_eq!(scan1.status, RunStatus::Completed);

    let change = app.sim.evolve(Evolution {
        install_updates: 0.2,
        new_monthly_kb: true,
        add_devices: 1,
        offboard_devices: 1,
        ..Evolution::default()
    });
    assert_eq!((change.devices_added.len(), change.devices_offboarded.len()), (1, 1));
    let truth2 = app.sim.truth();
    let scan2 = app.scan().await;
    assert_eq!(scan2.status, RunStatus::Completed);
    assert_eq!(scan2.devices.ok, 2000, "one device left, one came");

    let snapshot1 = app.snapshot(scan1.scan_run_id).await;
    assert_eq!(snapshot1, triples(&truth1), "scan 1 rebuilt from intervals");
    let snapshot2 = app.snapshot(scan2.scan_run_id).await;
    assert_eq!(snapshot2, triples(&truth2), "scan 2 rebuilt from intervals");
    assert_eq!(app.current_missing().await, triples(&truth2));

    // Changes: for devices listed at scan 2, every (KB, cve) that appeared or disappeared.
    let (t1, t2) = (triples(&truth1), triples(&truth2));
    let listed: BTreeSet<&String> = truth2.keys().collect();
    let changes =
        t1.symmetric_difference(&t2).filter(|(m, _, _)| listed.contains(m)).count() as i64;
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM kbwatch.missing_kb_interval
         WHERE opened_scan_run_id = $1 OR closed_scan_run_id = $1",
    )
    .bind(scan2.scan_run_id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(changes > 100, "the fleet changed ({changes})");
    assert_eq!(written, changes);

    // The offboarded device keeps its history and leaves the current listing.
    let listed_now: BTreeSet<String> =
        reporting::devices(app.pool()).await.into_iter().map(|d| d.machine_id).collect();
    let scanned: BTreeSet<String> =
        reporting::device_history(app.pool()).await.into_iter().map(|s| s.machine_id).collect();
    let gone: Vec<String> = scanned.difference(&listed_now).cloned().collect();
    assert_eq!(gone, change.devices_offboarded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_daily_counts_each_device_once_a_day_with_its_last_good_scan() {
    let app = app(300, 5).await;
    let total = |truth: &BTreeMap<String, Vec<kbwatch::sim::TruthKb>>| {
        truth.values().map(|kbs| kbs.len() as i64).sum::<i64>()
    };
    let before = total(&app.sim.truth());
    let scan1 = app.scan().await;
    app.sim.evolve(Evolution { install_updates: 0.3, ..Evolution::default() });
    let after = total(&app.sim.truth());
    let scan2 = app.scan().await;
    assert_ne!(before, after, "the fleet changed between the scans");

    // Both scans on one day (at fixed times, whatever the clock says), then on two days.
    place(app.pool(), scan1.scan_run_id, "2026-01-02T10:00:00Z").await;
    place(app.pool(), scan2.scan_run_id, "2026-01-02T11:00:00Z").await;
    let daily = || async {
        // The scans were moved into days kbwatch had rolled up: roll them up again.
        internal::redo_fleet_days(app.pool()).await;
        let days = reporting::fleet_daily(app.pool()).await;
        days.into_iter()
            .map(|d| (d.day.to_string(), d.devices_reporting, d.missing_kbs_total))
            .collect::<Vec<_>>()
    };
    assert_eq!(daily().await, vec![("2026-01-02".to_owned(), 300, after)]);
    place(app.pool(), scan1.scan_run_id, "2026-01-01T23:00:00Z").await;
    assert_eq!(
        daily().await,
        vec![("2026-01-01".to_owned(), 300, before), ("2026-01-02".to_owned(), 300, after)]
    );
}

/// Moves every scan of run `run` to `at`, whatever the clock said.
async fn place(pool: &sqlx::PgPool, run: i64, at: &str) {
    let mut conn = pool.acquire().await.unwrap();
    internal::unpack_scans(&mut conn).await;
    sqlx::query(
        "UPDATE kbwatch.device_scan SET scanned_at = $2::timestamptz WHERE scan_run_id = $1",
    )
    .bind(run)
    .bind(at)
    .execute(&mut *conn)
    .await
    .unwrap();
    internal::pack_scans(pool).await;
}
