//! A server quota below the configured one: 429s are obeyed for the whole endpoint, counted, and
//! the pacer takes the quota the server states, so that they stop.
//!
//! Nothing here depends on how fast the machine is: the assertions are on what the simulator
//! counted (429s, requests before a `Retry-After` passed) and what the run stored.
//!
//! The rate the run ended paced at (`effective_per_minute`) is kept in `kbwatch.scan_run` only; the
//! rest is read from `reporting.scan_runs`.

use kbwatch::model::RunStatus;
use kbwatch::sim::{SimConfig, SimQuota};

use crate::kit::{Auth, Tenant, fleet, reporting, spawn_app};

const CONCURRENCY: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_enforcing_half_the_quota_throttles_one_wave_then_never_again() {
    let quota = SimQuota { per_minute: 20, per_hour: 1000 };
    let tenant = Tenant::default().quota(40, 1500).concurrency(CONCURRENCY as u32);
    let app =
        spawn_app(SimConfig { quota: Some(quota), ..fleet(45) }, Auth::TokenFile, tenant).await;
    let summary = app.scan().await;

    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 45, "every device stored");
    let stats = app.sim.stats();
    assert!(stats.throttled >= 1, "the server throttled");
    // The first 429 pauses the endpoint and sets the stated 20 a minute: only the requests
    // already in flight can be answered 429 too, and none after.
    assert!(
        stats.throttled <= CONCURRENCY,
        "{} 429s: more than one wave of the {CONCURRENCY} requests in flight",
        stats.throttled
    );
    assert_eq!(summary.throttled, stats.throttled, "every 429 is counted in the run");
    assert_eq!(stats.retry_after_violations, 0, "no request before Retry-After passed");

    let run = reporting::scan_run(app.pool(), summary.scan_run_id).await;
    assert_eq!(run.throttled as u64, stats.throttled);
    assert_eq!(run.api_calls as u64, stats.machines_requests + stats.kbs_requests);
    let rate: Option<i32> = sqlx::query_scalar(
        "SELECT effective_per_minute FROM kbwatch.scan_run WHERE scan_run_id = $1",
    )
    .bind(summary.scan_run_id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    // The quota the server's message stated holds for an hour: the run ends paced at it.
    assert_eq!(rate, Some(20), "effective rate");
}
