//! Many tenants in one daemon: scans run side by side, at most `schedule.max_concurrent_scans` at
//! once, and the others wait their turn.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kbwatch::config::ScheduleConfig;
use kbwatch::schedule::{self, ScheduledTenant};
use kbwatch::sim::{Faults, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Auth, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_scans_no_more_tenants_at_once_than_configured() {
    let faults = Faults { latency: Duration::from_millis(20), ..Faults::default() };
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";
    let app = spawn_app(
        SimConfig { devices: 60, faults, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;
    // Four tenants on one simulated API: each its own rows, pacer and lock.
    let tenants: Vec<ScheduledTenant> = (1..=4)
        .map(|n| {
            let mut config = app.tenant().clone();
            config.name = format!("tenant-{n}");
            ScheduledTenant { config, client: app.client() }
        })
        .collect();
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(schedule::run(
        ScheduleConfig {
            cron: "*/2 * * * * *".into(),
            drain_timeout: Duration::from_secs(10),
            max_concurrent_scans: 2,
        },
        tenants,
        app.store.clone(),
        Default::default(),
        cancel.clone(),
    ));
    let runs = || async {
        sqlx::query_as::<_, (String, DateTime<Utc>, Option<DateTime<Utc>>, String)>(
            "SELECT tenant, started_at, finished_at, status FROM reporting.scan_runs
             ORDER BY started_at",
        )
        .fetch_all(app.store.pool())
        .await
        .unwrap()
    };
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = runs().await;
        let tenants_done: std::collections::BTreeSet<&str> =
            done.iter().filter(|r| r.3 == "completed").map(|r| r.0.as_str()).collect();
        if tenants_done.len() == 4 {
            break;
        }
    }
    cancel.cancel();
    daemon.await.unwrap().expect("scheduler stops cleanly");
    let done = runs().await;
    let completed: std::collections::BTreeSet<&str> =
        done.iter().filter(|r| r.3 == "completed").map(|r| r.0.as_str()).collect();
    assert_eq!(completed.len(), 4, "every tenant completed a scan: {done:?}");
    // At no run's start were more than two runs (itself included) running.
    for (tenant, start, _, _) in &done {
        let at_once =
            done.iter().filter(|(_, s, f, _)| s <= start && f.is_none_or(|f| f > *start)).count();
        assert!(at_once <= 2, "{at_once} scans at once when {tenant}'s started: {done:?}");
    }
}
