//! Faults mid-scan (DESIGN §10): each ends as the classification table says and the rest of the
//! scan goes on.

use std::time::Duration;

use kbwatch::model::RunStatus;
use kbwatch::sim::{DeviceFault, Faults, SimConfig};

use crate::helpers::{Auth, TestApp, spawn_app};

const FAST: &str = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM kbwatch.device_scan")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

async fn errors(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT error FROM kbwatch.device_scan WHERE outcome = 'failed'")
        .fetch_all(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_scan_is_renewed_and_the_scan_goes_on() {
    let faults = Faults { latency: Duration::from_millis(20), ..Faults::default() };
    let app = spawn_app(
        SimConfig { devices: 300, faults, ..SimConfig::default() },
        Auth::ClientSecret,
        FAST,
    )
    .await;
    let (summary, ()) = tokio::join!(app.scan(), async {
        while stored(&app).await < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.sim.expire_tokens();
    });
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 300);
    let stats = app.sim.stats();
    assert!(stats.unauthorized >= 1, "requests met the expired token");
    assert!(stats.token_requests >= 2, "a new token was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_retried() {
    let faults = Faults { drop_rate: 0.2, ..Faults::default() };
    let tenant = format!("max_attempts = 8\n{FAST}");
    let app = spawn_app(
        SimConfig { devices: 200, faults, ..SimConfig::default() },
        Auth::TokenFile,
        &tenant,
    )
    .await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 200);
    assert!(summary.api_calls > 201, "drops were retried: {} calls", summary.api_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_fails_that_device_only() {
    let tenant = format!("max_kbs_bytes = 400\n{FAST}");
    let app =
        spawn_app(SimConfig { devices: 100, ..SimConfig::default() }, Auth::TokenFile, &tenant)
            .await;
    let truth = app.sim.truth();
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed);
    assert!(summary.devices.failed > 0 && summary.devices.ok > 0, "{summary:?}");
    assert_eq!(summary.devices.ok + summary.devices.failed, 100);
    assert!(errors(&app).await.iter().all(|e| e.contains("400-byte cap")));
    let ok: Vec<String> = sqlx::query_scalar(
        "SELECT machine_id FROM reporting.devices WHERE last_scan_outcome = 'ok'",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert!(ok.iter().all(|m| truth[m].len() <= 1), "only small answers fit under 400 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_never_finishes_times_out_and_fails_that_device() {
    let tenant = format!("request_timeout = \"1s\"\nmax_attempts = 2\n{FAST}");
    let app =
        spawn_app(SimConfig { devices: 40, ..SimConfig::default() }, Auth::TokenFile, &tenant)
            .await;
    let stuck = app.sim.device_ids()[3].clone();
    app.sim.set_device_fault(&stuck, Some(DeviceFault::Hang));
    let started = std::time::Instant::now();
    let summary = app.scan().await;
    assert!(started.elapsed() < Duration::from_secs(15), "the hung call was given up");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!((summary.devices.ok, summary.devices.failed), (39, 1));
    let errors = errors(&app).await;
    assert!(errors[0].contains("transport"), "{errors:?}");
}
