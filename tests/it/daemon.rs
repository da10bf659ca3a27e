//! The scheduler: a 2-second cron completes runs and never overlaps two scans of one tenant.

use std::time::Duration;

use crate::kit::{Auth, Tenant, TestApp, fleet, reporting, slow_fleet, spawn_app, wait_for};

async fn completed_runs(app: &TestApp) -> usize {
    let runs = reporting::scan_runs(app.pool()).await;
    runs.iter().filter(|r| r.status == "completed").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_cron_runs_scans_one_at_a_time() {
    // Slow responses make each scan last about as long as a tick, so overlap would show.
    let sim = slow_fleet(150, Duration::from_millis(40));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(4)).await;
    let scheduler = app.start_scheduler("*/2 * * * * *");
    wait_for("three finished runs", Duration::from_secs(20), || async {
        let runs = reporting::scan_runs(app.pool()).await;
        runs.iter().filter(|r| r.finished_at.is_some()).count() >= 3
    })
    .await;
    scheduler.stop().await;

    let runs = reporting::scan_runs(app.pool()).await;
    for pair in runs.windows(2) {
        let end = pair[0].finished_at.expect("an earlier run finished before the next started");
        assert!(end <= pair[1].started_at, "runs overlap: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_scans_on_its_cron_and_stops_on_sigterm() {
    let app = spawn_app(fleet(40), Auth::TokenFile, Tenant::default().unpaced()).await;
    let daemon = app.start_daemon("*/2 * * * * *");
    daemon
        .wait_for("two completed runs", Duration::from_secs(20), || async {
            completed_runs(&app).await >= 2
        })
        .await;
    daemon.terminate();
    let status = daemon.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status {status:?}");
    let runs = reporting::scan_runs(app.pool()).await;
    assert!(runs.iter().all(|r| r.status != "running"), "a run was left running: {runs:?}");
}
