//! Stopping mid-scan: SIGTERM drains and marks the run interrupted; SIGKILL leaves a run that the
//! next scan marks interrupted, keeping what it finished.

use std::time::Duration;

use chrono::Timelike as _;

use kbwatch::model::RunStatus;
use kbwatch::sim::{Faults, SimConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::{Auth, TestApp, spawn_app, write_private};

/// A fleet slow enough (latency × devices / concurrency ≈ 10 s) to stop in the middle.
async fn slow_app(rescan_after: &str) -> TestApp {
    let faults = Faults { latency: Duration::from_millis(50), ..Faults::default() };
    let tenant = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";
    let app = spawn_app(
        SimConfig { devices: 800, faults, ..SimConfig::default() },
        Auth::TokenFile,
        tenant,
    )
    .await;
    let config = app.dir.path().join("kbwatch.toml");
    write_private(
        &config,
        &app.config_toml
            .replace("rescan_after = \"0s\"", &format!("rescan_after = \"{rescan_after}\"")),
    );
    app
}

async fn scanned_devices(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM kbwatch.device_scan")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

/// Starts `kbwatch scan` and waits until it has stored some results.
async fn scan_until_some_stored(app: &TestApp) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["scan", "--config"])
        .arg(app.dir.path().join("kbwatch.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kbwatch scan starts");
    for _ in 0..200 {
        if scanned_devices(app).await >= 100 {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the scan stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_finished_results_and_marks_the_run_interrupted() {
    let app = slow_app("0s").await;
    let mut child = scan_until_some_stored(&app).await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops quickly")
        .unwrap();
    assert!(!status.success(), "an interrupted `kbwatch scan` reports that it did not complete");
    let (status, ok, finished): (String, i32, bool) =
        sqlx::query_as("SELECT status, devices_ok, finished_at IS NOT NULL FROM kbwatch.scan_run")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(status, RunStatus::Interrupted.as_str());
    assert!(finished);
    let stored = scanned_devices(&app).await;
    assert!((100..800).contains(&stored), "{stored} devices stored");
    assert_eq!(i64::from(ok), stored, "the run's counters match what was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_next_scan_marks_the_run_interrupted_and_skips_finished_devices() {
    let app = slow_app("1h").await;
    let mut child = scan_until_some_stored(&app).await;
    child.kill().await.unwrap();
    let stored = scanned_devices(&app).await;
    let killed_run: i64 = sqlx::query_scalar("SELECT scan_run_id FROM kbwatch.scan_run")
        .fetch_one(app.store.pool())
        .await
        .unwrap();

    let mut tenant = app.tenant().clone();
    tenant.rescan_after = Duration::from_secs(3600);
    let client =
        std::sync::Arc::new(kbwatch::defender::client_for(&tenant, &app.config.tls).unwrap());
    let summary = kbwatch::scan::scan_tenant(
        &app.store,
        &tenant,
        client,
        &kbwatch::scan::ScanOptions::default(),
        Default::default(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    let status: String =
        sqlx::query_scalar("SELECT status FROM kbwatch.scan_run WHERE scan_run_id = $1")
            .bind(killed_run)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(status, "interrupted");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.planned as i64, 800 - stored, "finished devices are not rescanned");
    assert_eq!(scanned_devices(&app).await, 800);
}

/// Starts `kbwatch run` with the app's config on a cron that ticks a few seconds from now and
/// then a minute later: the run under way is not cut short by the next tick (a 2-second cron made
/// it end `partial` whenever the machine was slow enough that the test saw 50 devices late).
fn daemon(app: &TestApp) -> tokio::process::Child {
    let config = app.dir.path().join("kbwatch-run.toml");
    let second = (chrono::Utc::now() + chrono::Duration::seconds(4)).second();
    let text = format!(
        "[schedule]\ncron = \"{second} * * * * *\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\n\n{}",
        std::fs::read_to_string(app.dir.path().join("kbwatch.toml")).unwrap()
    );
    write_private(&config, &text);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kbwatch run starts")
}

/// Waits until `n` devices are stored: within the first tick's run, or the next one's a minute
/// later if the daemon started too late for the first.
async fn wait_for_devices(app: &TestApp, n: i64) {
    for _ in 0..1800 {
        if scanned_devices(app).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon stored fewer than {n} devices in 90 s");
}

fn signal(child: &tokio::process::Child, sig: Signal) {
    kill(Pid::from_raw(child.id().expect("running") as i32), sig).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_drains_on_sigterm_mid_scan_and_exits_0() {
    let app = slow_app("0s").await;
    let mut child = daemon(&app);
    wait_for_devices(&app, 50).await;
    signal(&child, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("drains within the deadline")
        .unwrap();
    assert!(status.success(), "the daemon exits 0 after a drain: {status:?}");
    let runs: Vec<(String, i32, bool)> = sqlx::query_as(
        "SELECT status, devices_ok, finished_at IS NOT NULL FROM kbwatch.scan_run ORDER BY scan_run_id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let last = runs.last().expect("a run was started");
    assert_eq!(last.0, RunStatus::Interrupted.as_str(), "{runs:?}");
    assert!(runs.iter().all(|r| r.2), "every run is closed: {runs:?}");
    let counted: i64 = runs.iter().map(|r| i64::from(r.1)).sum();
    assert_eq!(counted, scanned_devices(&app).await, "the counters match what was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let app = slow_app("0s").await;
    let mut child = daemon(&app);
    wait_for_devices(&app, 50).await;
    // Hold the running run's row: the drain's last writes wait on it, so the drain cannot end.
    let mut tx = app.store.pool().begin().await.unwrap();
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT scan_run_id FROM kbwatch.scan_run WHERE status = 'running' FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(held.len(), 1, "a scan is under way");
    signal(&child, Signal::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(child.try_wait().unwrap().is_none(), "still draining after the first signal");
    signal(&child, Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .expect("the second signal exits at once")
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    tx.rollback().await.unwrap();
}
