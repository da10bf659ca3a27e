//! Many tenants in one daemon: scans run side by side, at most `schedule.max_concurrent_scans` at
//! once, and the others wait their turn.

use std::collections::BTreeSet;
use std::time::Duration;

use kbwatch::config::ScheduleConfig;
use kbwatch::schedule::ScheduledTenant;

use crate::kit::{Auth, Tenant, TestApp, reporting, slow_fleet, spawn_app, wait_for};

/// `n` tenants on the app's simulated API, `tenant-1`…: each its own rows, pacer and lock.
fn copies(app: &TestApp, n: usize) -> Vec<ScheduledTenant> {
    (1..=n)
        .map(|i| {
            let mut config = app.tenant().clone();
            config.name = format!("tenant-{i}");
            ScheduledTenant { config, client: app.client() }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_scans_no_more_tenants_at_once_than_configured() {
    let sim = slow_fleet(60, Duration::from_millis(20));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(4)).await;
    let tenants = copies(&app, 4);
    let schedule = ScheduleConfig {
        cron: "*/2 * * * * *".into(),
        drain_timeout: Duration::from_secs(10),
        max_concurrent_scans: 2,
    };
    let scheduler = app.start_scheduler_of(schedule, tenants);
    let completed = || async {
        let runs = reporting::scan_runs(app.pool()).await;
        runs.into_iter().filter(|r| r.status == "completed").map(|r| r.tenant).collect()
    };
    wait_for("a completed scan of every tenant", Duration::from_secs(30), || async {
        let tenants: BTreeSet<String> = completed().await;
        tenants.len() == 4
    })
    .await;
    scheduler.stop().await;
    // At no run's start were more than two runs (itself included) running.
    let runs = reporting::scan_runs(app.pool()).await;
    for run in &runs {
        let at_once = runs
            .iter()
            .filter(|r| {
                r.started_at <= run.started_at && r.finished_at.is_none_or(|f| f > run.started_at)
            })
            .count();
        assert!(at_once <= 2, "{at_once} scans at once when {}'s started: {runs:?}", run.tenant);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_turn_comes_after_the_next_tick_still_scans() {
    // Scans of about 1.3 s, one at a time, on a 2-second cron: the third tenant's turn comes
    // after the next tick has passed.
    let sim = slow_fleet(40, Duration::from_millis(60));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(2)).await;
    let tenants = copies(&app, 3);
    let schedule = ScheduleConfig {
        cron: "*/2 * * * * *".into(),
        drain_timeout: Duration::from_secs(10),
        max_concurrent_scans: 1,
    };
    let scheduler = app.start_scheduler_of(schedule, tenants);
    wait_for("a scan of every tenant that stored devices", Duration::from_secs(30), || async {
        let runs = reporting::scan_runs(app.pool()).await;
        let scanned: BTreeSet<String> =
            runs.into_iter().filter(|r| r.devices_scanned > 0).map(|r| r.tenant).collect();
        scanned.len() == 3
    })
    .await;
    scheduler.stop().await;
    let runs = reporting::scan_runs(app.pool()).await;
    let empty: Vec<_> =
        runs.iter().filter(|r| r.status == "partial" && r.devices_scanned == 0).collect();
    assert!(empty.is_empty(), "runs that started past their deadline: {empty:?}");
}
