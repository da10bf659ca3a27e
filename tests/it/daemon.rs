//! The scheduler: a 2-second cron completes runs and never overlaps two scans of one tenant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kbwatch::config::ScheduleConfig;
use kbwatch::schedule::{self, ScheduledTenant};
use kbwatch::sim::{Faults, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Auth, spawn_app, write_private};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_cron_runs_scans_one_at_a_time() {
    // Slow responses make each scan last about as long as a tick, so overlap would show.
    let faults = Faults { latency: Duration::from_millis(40), ..Faults::default() };
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";
    let app = spawn_app(
        SimConfig { devices: 150, faults, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;
    let tenants = vec![ScheduledTenant { config: app.tenant().clone(), client: app.client() }];
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(schedule::run(
        ScheduleConfig {
            cron: "*/2 * * * * *".into(),
            drain_timeout: Duration::from_secs(10),
            ..ScheduleConfig::default()
        },
        tenants,
        app.store.clone(),
        Default::default(),
        cancel.clone(),
    ));
    let mut finished = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        finished = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM kbwatch.scan_run WHERE finished_at IS NOT NULL",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        if finished >= 3 {
            break;
        }
    }
    cancel.cancel();
    daemon.await.unwrap().expect("scheduler stops cleanly");
    assert!(finished >= 2, "only {finished} runs finished");

    let runs: Vec<(DateTime<Utc>, Option<DateTime<Utc>>, String)> = sqlx::query_as(
        "SELECT started_at, finished_at, status FROM kbwatch.scan_run ORDER BY started_at",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    for pair in runs.windows(2) {
        let end = pair[0].1.expect("an earlier run finished before the next started");
        assert!(end <= pair[1].0, "runs overlap: {pair:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_scans_on_its_cron_and_stops_on_sigterm() {
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\n";
    let app =
        spawn_app(SimConfig { devices: 40, ..SimConfig::default() }, Auth::TokenFile, quota).await;
    let config = app.dir.path().join("kbwatch.toml");
    let text = format!(
        "[schedule]\ncron = \"*/2 * * * * *\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\n\n{}",
        app.config_toml
    );
    write_private(&config, &text);
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kbwatch run starts");
    let mut completed = 0;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        completed = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM reporting.scan_runs WHERE status = 'completed'",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        if completed >= 2 {
            break;
        }
    }
    assert!(completed >= 2, "only {completed} completed runs");
    let pid = nix::unistd::Pid::from_raw(daemon.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), daemon.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM kbwatch.scan_run WHERE status = 'running'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(running, 0, "no run is left running after a clean stop");
}
