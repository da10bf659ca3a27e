//! A scanned fleet equals the simulator's truth, and its history stays exact as it changes.

use std::collections::BTreeMap;

use kbwatch::model::RunStatus;
use kbwatch::sim::{Evolution, SimConfig};

use crate::helpers::{Auth, spawn_app, triples};

const QUOTA: &str = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 16\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stores_exactly_what_each_device_is_missing() {
    let app = spawn_app(
        SimConfig { devices: 2000, seed: 7, ..SimConfig::default() },
        Auth::TokenFile,
        QUOTA,
    )
    .await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 2000);

    let truth = app.sim.truth();
    assert!(truth.values().any(|kbs| !kbs.is_empty()), "the fleet misses some KBs");
    assert_eq!(app.current_missing().await, triples(&truth));

    let history: Vec<(String, Option<i32>, Option<i64>)> = sqlx::query_as(
        "SELECT machine_id, missing_kbs, cve_addressed_total FROM reporting.device_history
         WHERE scan_run_id = $1 AND outcome = 'ok'",
    )
    .bind(summary.scan_run_id)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let history: BTreeMap<String, (i64, i64)> =
        history.into_iter().map(|(m, n, c)| (m, (i64::from(n.unwrap()), c.unwrap()))).collect();
    let expected: BTreeMap<String, (i64, i64)> = truth
        .iter()
        .map(|(m, kbs)| (m.clone(), (kbs.len() as i64, kbs.iter().map(|k| k.cve_addressed).sum())))
        .collect();
    assert_eq!(history, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_past_scans_stay_exact_and_only_changes_are_written() {
    let app = spawn_app(
        SimConfig { devices: 2000, seed: 11, ..SimConfig::default() },
        Auth::TokenFile,
        QUOTA,
    )
    .await;
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

    assert_eq!(
        app.snapshot(scan1.scan_run_id).await,
        triples(&truth1),
        "scan 1 rebuilt from intervals"
    );
    assert_eq!(
        app.snapshot(scan2.scan_run_id).await,
        triples(&truth2),
        "scan 2 rebuilt from intervals"
    );
    assert_eq!(app.current_missing().await, triples(&truth2));

    // Changes: for devices listed at scan 2, every (KB, cve) that appeared or disappeared.
    let (t1, t2) = (triples(&truth1), triples(&truth2));
    let listed: std::collections::BTreeSet<&String> = truth2.keys().collect();
    let changes =
        t1.symmetric_difference(&t2).filter(|(m, _, _)| listed.contains(m)).count() as i64;
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM kbwatch.missing_kb WHERE opened_scan_run_id = $1 OR closed_scan_run_id = $1",
    )
    .bind(scan2.scan_run_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert!(changes > 100, "the fleet changed ({changes})");
    assert_eq!(written, changes);

    let gone: Vec<String> =
        sqlx::query_scalar("SELECT machine_id FROM kbwatch.device WHERE gone_at IS NOT NULL")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(gone, change.devices_offboarded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_daily_counts_each_device_once_a_day_with_its_last_good_scan() {
    let app = spawn_app(
        SimConfig { devices: 300, seed: 5, ..SimConfig::default() },
        Auth::TokenFile,
        QUOTA,
    )
    .await;
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
    let place =
        "UPDATE kbwatch.device_scan SET scanned_at = $2::timestamptz WHERE scan_run_id = $1";
    for (run, at) in
        [(scan1.scan_run_id, "2026-01-02T10:00:00Z"), (scan2.scan_run_id, "2026-01-02T11:00:00Z")]
    {
        sqlx::query(place).bind(run).bind(at).execute(app.store.pool()).await.unwrap();
    }
    let daily = || async {
        let rows: Vec<(chrono::NaiveDate, i64, Option<i64>)> = sqlx::query_as(
            "SELECT day, devices_reporting, missing_kbs_total FROM reporting.fleet_daily ORDER BY day",
        )
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        rows.into_iter().map(|(d, n, m)| (d.to_string(), n, m.unwrap_or(0))).collect::<Vec<_>>()
    };
    assert_eq!(daily().await, vec![("2026-01-02".to_owned(), 300, after)]);
    sqlx::query(place)
        .bind(scan1.scan_run_id)
        .bind("2026-01-01T23:00:00Z")
        .execute(app.store.pool())
        .await
        .unwrap();
    assert_eq!(
        daily().await,
        vec![("2026-01-01".to_owned(), 300, before), ("2026-01-02".to_owned(), 300, after)]
    );
}
