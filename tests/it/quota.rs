//! A server quota below the configured one: 429s are obeyed for the whole endpoint and counted.

use kbwatch::sim::{SimConfig, SimQuota};
use kbwatch::store::RunStatus;

use crate::helpers::{Auth, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stricter_server_quota_throttles_but_loses_nothing() {
    let quota = SimQuota { per_minute: 20, per_hour: 1000 };
    let config =
        "[tenant.quota]\nper_minute = 100\nper_hour = 1500\nconcurrency = 4\nmargin = \"0s\"\n";
    let app = spawn_app(
        SimConfig { devices: 30, quota: Some(quota), ..SimConfig::default() },
        Auth::TokenFile,
        config,
    )
    .await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 30, "every device stored");
    let stats = app.sim.stats();
    assert!(stats.throttled >= 1, "the server throttled");
    assert_eq!(summary.throttled, stats.throttled, "every 429 is counted in the run");
    assert_eq!(stats.retry_after_violations, 0, "no request before Retry-After passed");
    let (stored, calls): (i64, i64) = sqlx::query_as(
        "SELECT throttled, api_calls FROM reporting.scan_runs WHERE scan_run_id = $1",
    )
    .bind(summary.scan_run_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(stored as u64, stats.throttled);
    assert_eq!(calls as u64, stats.machines_requests + stats.kbs_requests);
}
