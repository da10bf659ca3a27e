//! Two daemons on one database and one tenant: each cron tick is scanned by exactly one of them,
//! and when the one scanning is killed the other takes the next tick.

use std::time::Duration;

use kbwatch::sim::{Faults, SimConfig};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::helpers::{Auth, TestApp, spawn_app, write_private};

fn daemon(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["run", "--config"])
        .arg(app.dir.path().join("kbwatch.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kbwatch run starts")
}

/// (scheduled_for, runner, status) of every run, oldest first.
async fn runs(app: &TestApp) -> Vec<(chrono::DateTime<chrono::Utc>, String, String)> {
    sqlx::query_as(
        "SELECT scheduled_for, runner, status FROM kbwatch.scan_run ORDER BY scan_run_id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap()
}

async fn wait_for(
    app: &TestApp,
    what: &str,
    done: impl Fn(&[(chrono::DateTime<chrono::Utc>, String, String)]) -> bool,
) {
    for _ in 0..120 {
        if done(&runs(app).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}: {:?}", runs(app).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_ticks_and_the_survivor_takes_over() {
    let faults = Faults { latency: Duration::from_millis(20), ..Faults::default() };
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";
    let app = spawn_app(
        SimConfig { devices: 60, faults, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;
    let text = format!(
        "[schedule]\ncron = \"*/2 * * * * *\"\n\n[serve]\nlisten = \"127.0.0.1:0\"\n\n{}",
        app.config_toml
    );
    write_private(&app.dir.path().join("kbwatch.toml"), &text);
    let mut daemons = [daemon(&app), daemon(&app)];
    let pids: Vec<u32> = daemons.iter().map(|d| d.id().unwrap()).collect();

    wait_for(&app, "three completed runs", |r| {
        r.iter().filter(|(_, _, s)| s == "completed").count() >= 3
    })
    .await;
    let before = runs(&app).await;
    let ticks: std::collections::HashSet<_> = before.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(ticks.len(), before.len(), "a tick was scanned twice: {before:?}");

    // Kill whichever daemon ran the latest scan; the other must take the following ticks.
    let last_runner = before.last().unwrap().1.clone();
    let holder = pids
        .iter()
        .position(|p| last_runner.ends_with(&format!(":{p}")))
        .expect("runner is one of ours");
    daemons[holder].kill().await.unwrap();
    let survivor = pids[1 - holder];
    let seen = before.len();
    wait_for(&app, "a run by the survivor", |r| {
        r[seen..]
            .iter()
            .any(|(_, runner, s)| s == "completed" && runner.ends_with(&format!(":{survivor}")))
    })
    .await;
    let after = runs(&app).await;
    let ticks: std::collections::HashSet<_> = after.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(ticks.len(), after.len(), "a tick was scanned twice: {after:?}");

    kill(Pid::from_raw(survivor as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), daemons[1 - holder].wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
