//! Stopping mid-scan: SIGTERM drains and marks the run interrupted; SIGKILL leaves a run that the
//! next scan marks interrupted, keeping what it finished.

use std::time::Duration;

use kbwatch::sim::{Faults, SimConfig};
use kbwatch::store::RunStatus;
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
