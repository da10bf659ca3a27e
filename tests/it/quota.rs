//! A server quota below the configured one: 429s are obeyed for the whole endpoint, counted, and
//! the pacer adapts its rate so that they stop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kbwatch::sim::{SimConfig, SimQuota};
use kbwatch::store::RunStatus;

use crate::helpers::{Auth, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_enforcing_half_the_quota_throttles_less_as_the_pacer_adapts() {
    let quota = SimQuota { per_minute: 20, per_hour: 1000 };
    let config = "[tenant.quota]\nper_minute = 40\nper_hour = 1500\nconcurrency = 4\n";
    let app = spawn_app(
        SimConfig { devices: 45, quota: Some(quota), ..SimConfig::default() },
        Auth::TokenFile,
        config,
    )
    .await;

    // Sample the server's 429 count while the scan runs.
    let samples = Arc::new(Mutex::new(Vec::<(Duration, u64)>::new()));
    let started = Instant::now();
    let sampler = {
        let (samples, sim_stats) = (samples.clone(), app.sim.clone_stats_handle());
        tokio::spawn(async move {
            loop {
                samples.lock().unwrap().push((started.elapsed(), sim_stats().throttled));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let summary = app.scan().await;
    let elapsed = started.elapsed();
    sampler.abort();

    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 45, "every device stored");
    let stats = app.sim.stats();
    assert!(stats.throttled >= 1, "the server throttled");
    assert_eq!(summary.throttled, stats.throttled, "every 429 is counted in the run");
    assert_eq!(stats.retry_after_violations, 0, "no request before Retry-After passed");

    let at_half = {
        let samples = samples.lock().unwrap();
        samples.iter().take_while(|(t, _)| *t <= elapsed / 2).last().map_or(0, |s| s.1)
    };
    let first_half = at_half;
    let second_half = stats.throttled - at_half;
    assert!(
        second_half < first_half,
        "429s: {first_half} in the first half, {second_half} in the second"
    );

    let (stored, calls, rate): (i64, i64, Option<i32>) = sqlx::query_as(
        "SELECT r.throttled, r.api_calls, k.effective_per_minute
         FROM reporting.scan_runs r JOIN kbwatch.scan_run k USING (scan_run_id) WHERE scan_run_id = $1",
    )
    .bind(summary.scan_run_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(stored as u64, stats.throttled);
    assert_eq!(calls as u64, stats.machines_requests + stats.kbs_requests);
    // Lowered to the 20 a minute the server's message stated, then raised by a tenth of the
    // configured 40 for each quiet minute since.
    let rate = rate.expect("the run records its effective rate");
    assert!((20..40).contains(&rate), "effective rate {rate}");
}
