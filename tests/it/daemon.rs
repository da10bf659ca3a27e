//! The scheduler: a 2-second cron completes runs and never overlaps two scans of one tenant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kbwatch::schedule::{self, ScheduledTenant};
use kbwatch::sim::{Faults, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Auth, spawn_app};

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
        "*/2 * * * * *",
        tenants,
        app.store.clone(),
        cancel.clone(),
        Duration::from_secs(10),
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
    let _ = Arc::strong_count(&app.client());
}
