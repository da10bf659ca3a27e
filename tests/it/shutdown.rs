//! Stopping mid-scan: SIGTERM drains and marks the run interrupted; SIGKILL leaves a run that the
//! next scan marks interrupted, keeping what it finished.
//!
//! `a_second_signal_exits_at_once` locks the running run's row in `kbwatch.scan_run`: holding it
//! is how the test keeps the drain from ending. Everything else reads the `reporting` views.

use std::time::Duration;

use chrono::Timelike as _;
use kbwatch::model::RunStatus;
use kbwatch::scan::ScanOptions;
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::kit::{Auth, Daemon, Kbwatch, Tenant, TestApp, reporting, slow_fleet, spawn_app};

/// A fleet slow enough (latency × devices / concurrency ≈ 10 s) to stop in the middle.
async fn slow_app(rescan_after: Duration) -> TestApp {
    let tenant = Tenant::default().unpaced().concurrency(4).rescan_after(rescan_after);
    spawn_app(slow_fleet(800, Duration::from_millis(50)), Auth::TokenFile, tenant).await
}

/// Waits until the process has stored `n` device scans.
async fn wait_for_devices(app: &TestApp, process: &Daemon, n: i64, timeout: Duration) {
    let what = format!("{n} devices stored");
    process
        .wait_for(&what, timeout, || async { reporting::device_scans(app.pool()).await >= n })
        .await;
}

/// Starts `kbwatch scan` and waits until it has stored some results.
async fn scan_until_some_stored(app: &TestApp) -> Daemon {
    let scan = Kbwatch::new(["scan"]).config(&app.config_file()).start();
    wait_for_devices(app, &scan, 100, Duration::from_secs(10)).await;
    scan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_finished_results_and_marks_the_run_interrupted() {
    let app = slow_app(Duration::ZERO).await;
    let scan = scan_until_some_stored(&app).await;
    scan.terminate();
    let status = scan.wait(Duration::from_secs(10)).await;
    assert!(!status.success(), "an interrupted `kbwatch scan` reports that it did not complete");
    let runs = reporting::scan_runs(app.pool()).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Interrupted.as_str());
    assert!(runs[0].finished_at.is_some());
    let stored = reporting::device_scans(app.pool()).await;
    assert!((100..800).contains(&stored), "{stored} devices stored");
    assert_eq!(
        i64::from(runs[0].devices_scanned),
        stored,
        "the run's counters match what was stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_next_scan_marks_the_run_interrupted_and_skips_finished_devices() {
    let app = slow_app(Duration::from_secs(3600)).await;
    let scan = scan_until_some_stored(&app).await;
    scan.kill().await;
    let stored = reporting::device_scans(app.pool()).await;
    let killed_run = reporting::scan_runs(app.pool()).await[0].scan_run_id;

    let summary = app
        .scan_with_options(app.client(), &ScanOptions::default(), &CancellationToken::new())
        .await;
    let killed = reporting::scan_run(app.pool(), killed_run).await;
    assert_eq!(killed.status, "interrupted");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.planned as i64, 800 - stored, "finished devices are not rescanned");
    assert_eq!(reporting::device_scans(app.pool()).await, 800);
}

/// Starts `kbwatch run` on a cron that ticks a few seconds from now and then a minute later: the
/// run under way is not cut short by the next tick (a 2-second cron made it end `partial`
/// whenever the machine was slow enough that the test saw 50 devices late).
fn daemon(app: &TestApp) -> Daemon {
    let second = (chrono::Utc::now() + chrono::Duration::seconds(4)).second();
    app.start_daemon(&format!("{second} * * * * *"))
}

/// Waits until 50 devices are stored: within the first tick's run, or the next one's a minute
/// later if the daemon started too late for the first.
async fn wait_for_a_run_under_way(app: &TestApp, daemon: &Daemon) {
    wait_for_devices(app, daemon, 50, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_drains_on_sigterm_mid_scan_and_exits_0() {
    let app = slow_app(Duration::ZERO).await;
    let daemon = daemon(&app);
    wait_for_a_run_under_way(&app, &daemon).await;
    daemon.terminate();
    let status = daemon.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "the daemon exits 0 after a drain: {status:?}");
    let runs = reporting::scan_runs(app.pool()).await;
    let last = runs.last().expect("a run was started");
    assert_eq!(last.status, RunStatus::Interrupted.as_str(), "{runs:?}");
    assert!(runs.iter().all(|r| r.finished_at.is_some()), "every run is closed: {runs:?}");
    let counted: i64 = runs.iter().map(|r| i64::from(r.devices_scanned)).sum();
    let stored = reporting::device_scans(app.pool()).await;
    assert_eq!(counted, stored, "the counters match what was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let app = slow_app(Duration::ZERO).await;
    let daemon = daemon(&app);
    wait_for_a_run_under_way(&app, &daemon).await;
    // Hold the running run's row: the drain's last writes wait on it, so the drain cannot end.
    let mut tx = app.pool().begin().await.unwrap();
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT scan_run_id FROM kbwatch.scan_run WHERE status = 'running' FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(held.len(), 1, "a scan is under way");
    daemon.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(daemon.exited().is_none(), "still draining after the first signal");
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait(Duration::from_secs(2)).await;
    assert_eq!(status.code(), Some(130), "{status:?}");
    tx.rollback().await.unwrap();
}
