//! Faults mid-scan (DESIGN §10): each ends as the classification table says and the rest of the
//! scan goes on. Error texts are read through `kit::internal` (no view shows them).

use std::time::Duration;

use kbwatch::model::RunStatus;
use kbwatch::sim::{DeviceFault, Faults, SimConfig};

use crate::kit::{Auth, Tenant, internal, reporting, spawn_app, wait_for};

/// No quota in the way, four requests in flight.
fn fast() -> Tenant {
    Tenant::default().unpaced().concurrency(4)
}

fn sim(devices: usize, faults: Faults) -> SimConfig {
    SimConfig { devices, faults, ..SimConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_mid_scan_is_renewed_and_the_scan_goes_on() {
    let faults = Faults { latency: Duration::from_millis(20), ..Faults::default() };
    let app = spawn_app(sim(300, faults), Auth::ClientSecret, fast()).await;
    let (summary, ()) = tokio::join!(app.scan(), async {
        wait_for("50 devices stored", Duration::from_secs(60), || async {
            reporting::device_scans(app.pool()).await >= 50
        })
        .await;
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
    let app = spawn_app(sim(200, faults), Auth::TokenFile, fast().max_attempts(8)).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 200);
    assert!(summary.api_calls > 201, "drops were retried: {} calls", summary.api_calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_fails_that_device_only() {
    let tenant = fast().max_kbs_bytes(400);
    let app = spawn_app(sim(100, Faults::default()), Auth::TokenFile, tenant).await;
    let truth = app.sim.truth();
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed);
    assert!(summary.devices.failed > 0 && summary.devices.ok > 0, "{summary:?}");
    assert_eq!(summary.devices.ok + summary.devices.failed, 100);
    let errors = internal::device_errors(app.pool()).await;
    assert!(errors.iter().all(|e| e.contains("400-byte cap")), "{errors:?}");
    let devices = reporting::devices(app.pool()).await;
    for device in devices.iter().filter(|d| d.last_scan_outcome.as_deref() == Some("ok")) {
        let kbs = truth[&device.machine_id].len();
        assert!(
            kbs <= 1,
            "only small answers fit under 400 bytes: {} has {kbs}",
            device.machine_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_never_finishes_times_out_and_fails_that_device() {
    let tenant = fast().request_timeout(Duration::from_secs(1)).max_attempts(2);
    let app = spawn_app(sim(40, Faults::default()), Auth::TokenFile, tenant).await;
    let stuck = app.sim.device_ids()[3].clone();
    app.sim.set_device_fault(&stuck, Some(DeviceFault::Hang));
    let started = std::time::Instant::now();
    let summary = app.scan().await;
    assert!(started.elapsed() < Duration::from_secs(15), "the hung call was given up");
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!((summary.devices.ok, summary.devices.failed), (39, 1));
    let (outcome, error) = internal::device_outcome(app.pool(), &stuck).await;
    assert_eq!(outcome, "failed");
    assert!(error.unwrap_or_default().contains("transport"));
}
