//! Each row of the response classification table (DESIGN §3), against the simulator.
//!
//! The error texts an operator reads are checked through `kit::internal` (the `reporting` views do
//! not show them); the raw entity kept for a device is read from `kbwatch.device`, where it lives.

use std::time::{Duration, Instant};

use kbwatch::model::RunStatus;
use kbwatch::sim::{DeviceFault, Faults, SimConfig};

use crate::kit::{Auth, Tenant, internal, reporting, spawn_app};

/// No quota in the way, eight requests in flight.
fn fast() -> Tenant {
    Tenant::default().unpaced().concurrency(8)
}

fn sim(devices: usize) -> SimConfig {
    SimConfig { devices, ..SimConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_the_scan_goes_on() {
    let app = spawn_app(sim(50), Auth::ClientSecret, fast()).await;
    let client = app.client();
    assert_eq!(app.scan_with(client.clone()).await.status, RunStatus::Completed);
    let tokens_before = app.sim.stats().token_requests;
    app.sim.expire_tokens();
    let second = app.scan_with(client).await;
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    assert_eq!(second.devices.ok, 50);
    let stats = app.sim.stats();
    assert!(stats.unauthorized >= 1, "a 401 was served");
    assert_eq!(stats.token_requests, tokens_before + 1, "exactly one new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_stops_the_tenant_at_once_with_the_api_message() {
    let message = "Missing application roles. API required roles: Software.Read.All";
    let faults = Faults { forbidden: Some(message.into()), ..Faults::default() };
    let app = spawn_app(SimConfig { faults, ..sim(500) }, Auth::TokenFile, fast()).await;
    let started = Instant::now();
    let summary = app.scan().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(summary.status, RunStatus::Failed);
    assert!(summary.error.as_deref().unwrap_or_default().contains(message), "{summary:?}");
    let run = reporting::scan_run(app.pool(), summary.scan_run_id).await;
    assert_eq!((run.status.as_str(), run.devices_scanned), ("failed", 0), "{run:?}");
    let stored = internal::run_error(app.pool(), summary.scan_run_id).await;
    assert!(stored.unwrap().contains(message));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermittent_404s_are_retried_and_an_unknown_device_ends_not_found() {
    let faults = Faults { not_found_rate: 0.2, ..Faults::default() };
    let app = spawn_app(SimConfig { faults, ..sim(200) }, Auth::TokenFile, fast()).await;
    let gone = app.sim.device_ids()[0].clone();
    app.sim.set_device_fault(&gone, Some(DeviceFault::AlwaysNotFound));
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed);
    let history = reporting::history_of(app.pool(), &gone).await;
    assert_eq!(history.iter().map(|s| s.outcome.as_str()).collect::<Vec<_>>(), ["not_found"]);
    assert!(summary.devices.ok >= 190, "retries recover intermittent 404s: {summary:?}");
    assert_eq!(summary.devices.ok + summary.devices.not_found, 200);
    assert!(app.sim.stats().kbs_requests > 200 + 2, "404s were retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_a_broken_device_fails_alone() {
    let faults = Faults { server_error_rate: 0.2, ..Faults::default() };
    // Eight attempts: a device fails by chance with probability 0.2^8, so only the broken ones fail.
    let app =
        spawn_app(SimConfig { faults, ..sim(200) }, Auth::TokenFile, fast().max_attempts(8)).await;
    let ids = app.sim.device_ids();
    app.sim.set_device_fault(&ids[1], Some(DeviceFault::ServerError));
    app.sim.set_device_fault(&ids[2], Some(DeviceFault::Malformed));
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.devices.failed, 2, "{summary:?}");
    assert_eq!(summary.devices.ok, 198);
    let (outcome, error) = internal::device_outcome(app.pool(), &ids[1]).await;
    assert_eq!(outcome, "failed");
    assert!(error.unwrap().contains("server error"));
    let (outcome, error) = internal::device_outcome(app.pool(), &ids[2]).await;
    assert_eq!(outcome, "failed");
    assert!(error.unwrap().contains("decode"), "malformed JSON is a decode failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_are_recorded_and_never_requested() {
    let app = spawn_app(sim(20), Auth::TokenFile, fast()).await;
    let hostile = [
        "../x",
        "2339ad14a01bd0299afb93dfa2550136057bff9",
        "2339ad14a01bd0299afb93dfa2550136057bff9/",
    ];
    for id in hostile {
        app.sim.push_raw_device(
            serde_json::json!({"id": id, "computerDnsName": "evil", "osPlatform": "Windows10"}),
        );
    }
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!((summary.listed, summary.rejected, summary.devices.ok), (23, 3, 20));
    let known: std::collections::HashSet<String> = app.sim.device_ids().into_iter().collect();
    let requested = app.sim.stats().kbs_requests_by_device;
    assert_eq!(requested.values().sum::<u64>(), 20);
    assert!(
        requested.keys().all(|id| known.contains(id)),
        "only valid ids were requested: {requested:?}"
    );
    // Recorded as listed, never scanned.
    let devices = reporting::devices(app.pool()).await;
    for id in hostile {
        let device = devices.iter().find(|d| d.machine_id == id).expect("the hostile id is listed");
        assert_eq!(device.computer_dns_name.as_deref(), Some("evil"));
        assert_eq!(device.last_scan_outcome, None, "{id} was never scanned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_device_entities_are_stored_safely() {
    let app = spawn_app(sim(10), Auth::TokenFile, fast()).await;
    let valid_unknown = "ab".repeat(20);
    app.sim.push_raw_device(serde_json::json!({
        "id": valid_unknown,
        "computerDnsName": "nul\u{0}byte\u{202e}txt.exe",
        "machineTags": [null, "ok", 5, {"a": 1}],
        "rbacGroupId": 1e300,
        "osBuild": 18446744073709551615u64,
        "lastSeen": "not a date",
        "vmMetadata": {"deep": [[[[["\u{0}"]]]]]},
    }));
    app.sim.push_raw_device(
        serde_json::json!({"id": "\u{202e}../../etc/passwd\u{0}", "osPlatform": null}),
    );
    app.sim.push_raw_device(serde_json::json!({"id": null}));
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!((summary.listed, summary.rejected), (13, 2));
    assert_eq!(summary.devices.not_found, 1, "the unknown valid id was asked for and is not found");
    let devices = reporting::devices(app.pool()).await;
    let device = devices.iter().find(|d| d.machine_id == valid_unknown).expect("stored");
    let name = device.computer_dns_name.as_deref();
    assert_eq!(name, Some("nul\u{fffd}byte\u{202e}txt.exe"), "NUL cannot live in text");
    assert_eq!(device.machine_tags.as_deref(), Some(&["ok".to_owned()][..]));
    // The raw entity is kbwatch's own record of what the API sent: no view shows it.
    let (raw, text): (serde_json::Value, String) =
        sqlx::query_as("SELECT raw, raw::text FROM kbwatch.device WHERE machine_id = $1")
            .bind(&valid_unknown)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(raw["rbacGroupId"], 1e300, "the raw entity keeps what was sent");
    assert!(text.contains(r#"[[[[["\u0000"]]]]]"#), "even a NUL escape: {text}");
}

#[tokio::test]
async fn two_spellings_of_one_id_are_one_device() {
    let app = spawn_app(sim(10), Auth::TokenFile, fast()).await;
    let lower = "cd".repeat(20);
    app.sim.push_raw_device(serde_json::json!({"id": lower, "computerDnsName": "first"}));
    app.sim.push_raw_device(
        serde_json::json!({"id": lower.to_ascii_uppercase(), "computerDnsName": "second"}),
    );
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.listed, 11, "the second spelling is the same device: {summary:?}");
    let devices = reporting::devices(app.pool()).await;
    let names: Vec<Option<&str>> = devices
        .iter()
        .filter(|d| d.machine_id.eq_ignore_ascii_case(&lower))
        .map(|d| d.computer_dns_name.as_deref())
        .collect();
    assert_eq!(names, [Some("first")], "one device, the first listing of it kept");
}
