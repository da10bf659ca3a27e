//! Two daemons on one database and one tenant: each cron tick is scanned by exactly one of them,
//! and when the one scanning is killed the other takes the next tick.
//!
//! Which daemon ran a tick (`runner`) and which tick it was (`scheduled_for`) are kept in
//! `kbwatch.scan_run` only: `reporting.scan_runs` does not show them, so this test reads the table.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::kit::{Auth, Tenant, TestApp, slow_fleet, spawn_app, wait_for};

/// A run as the replicas see it.
#[derive(Debug, sqlx::FromRow)]
struct Run {
    scheduled_for: DateTime<Utc>,
    runner: String,
    status: String,
}

/// Every run, oldest first.
async fn runs(app: &TestApp) -> Vec<Run> {
    sqlx::query_as(
        "SELECT scheduled_for, runner, status FROM kbwatch.scan_run ORDER BY scan_run_id",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
}

fn each_tick_once(runs: &[Run]) {
    let ticks: HashSet<_> = runs.iter().map(|r| r.scheduled_for).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick was scanned twice: {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_ticks_and_the_survivor_takes_over() {
    let sim = slow_fleet(60, Duration::from_millis(20));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(4)).await;
    let daemons = [app.start_daemon("*/2 * * * * *"), app.start_daemon("*/2 * * * * *")];
    let pids: Vec<u32> = daemons.iter().map(|d| d.pid()).collect();

    wait_for("three completed runs", Duration::from_secs(30), || async {
        runs(&app).await.iter().filter(|r| r.status == "completed").count() >= 3
    })
    .await;
    let before = runs(&app).await;
    each_tick_once(&before);

    // Kill whichever daemon ran the latest scan; the other must take the following ticks.
    let last_runner = &before.last().unwrap().runner;
    let holder = pids
        .iter()
        .position(|p| last_runner.ends_with(&format!(":{p}")))
        .expect("runner is one of ours");
    daemons[holder].kill().await;
    let survivor = &daemons[1 - holder];
    let suffix = format!(":{}", survivor.pid());
    survivor
        .wait_for("a run by the survivor", Duration::from_secs(30), || async {
            runs(&app).await[before.len()..]
                .iter()
                .any(|r| r.status == "completed" && r.runner.ends_with(&suffix))
        })
        .await;
    each_tick_once(&runs(&app).await);

    survivor.terminate();
    let status = survivor.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
}
