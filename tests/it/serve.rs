//! `/metrics`, `/healthz` and `/readyz` over real HTTP, against real PostgreSQL and the simulator.
//!
//! The metrics test records into its own `PrometheusRecorder`, set as this thread's local recorder:
//! its `#[tokio::test]` runtime is single-threaded, so the scan's tasks record there, and the
//! other tests of the binary (which scan a tenant also named `t1`) cannot add to its counts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kbwatch::model::RunStatus;
use kbwatch::sim::{Faults, SimConfig};
use kbwatch::store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use reqwest::StatusCode;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::kit::{Auth, Tenant, fleet, fresh_database, reporting, spawn_app};

/// Serves `store` (and `metrics`) on a free port until the returned token is cancelled.
async fn start_server(
    store: Store,
    metrics: Option<PrometheusHandle>,
) -> (SocketAddr, CancellationToken) {
    start_server_with(store, metrics, Default::default()).await
}

/// [`start_server`] with the daemon's health.
pub async fn start_server_with(
    store: Store,
    metrics: Option<PrometheusHandle>,
    health: std::sync::Arc<kbwatch::scan::Health>,
) -> (SocketAddr, CancellationToken) {
    let listener = kbwatch::serve::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(kbwatch::serve::serve_on(listener, store, metrics, health, cancel.clone()));
    (addr, cancel)
}

pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// One sample of the exposition text: name, labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label is k=\"v\"");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("sample value is a number"))
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include all of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name && want.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test]
async fn metrics_after_a_scan_count_scans_devices_and_requests() {
    let recorder = kbwatch::metrics::builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    kbwatch::metrics::describe();

    // Server errors give the request counter statuses other than 200; retries absorb them.
    let faults = Faults { server_error_rate: 0.1, ..Faults::default() };
    let devices = 120;
    let sim = SimConfig { faults, ..fleet(devices) };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced()).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");

    let (addr, cancel) = start_server(app.store.clone(), Some(handle)).await;
    let (status, text) = get(addr, "/metrics").await;
    cancel.cancel();
    assert_eq!(status, StatusCode::OK);
    let s = samples(&text);
    let t1 = ("tenant", "t1");

    assert_eq!(sum(&s, "kbwatch_scans_total", &[t1, ("status", "completed")]), 1.0, "{text}");
    assert_eq!(sum(&s, "kbwatch_scans_total", &[]), 1.0, "{text}");
    assert_eq!(sum(&s, "kbwatch_scan_duration_seconds_count", &[t1]), 1.0, "{text}");
    assert_eq!(
        sum(&s, "kbwatch_devices_scanned_total", &[t1, ("outcome", "ok")]),
        devices as f64,
        "{text}"
    );
    assert_eq!(sum(&s, "kbwatch_devices_scanned_total", &[t1, ("outcome", "failed")]), 0.0);

    let sim = app.sim.stats();
    let machines = sum(&s, "kbwatch_api_requests_total", &[t1, ("endpoint", "machines")]);
    let kbs = sum(&s, "kbwatch_api_requests_total", &[t1, ("endpoint", "getmissingkbs")]);
    assert_eq!(machines, sim.machines_requests as f64, "{text}");
    assert_eq!(kbs, sim.kbs_requests as f64, "{text}");
    assert_eq!(machines + kbs, summary.api_calls as f64);
    let server_errors: f64 = ["500", "503"]
        .iter()
        .map(|code| sum(&s, "kbwatch_api_requests_total", &[t1, ("status", code)]))
        .sum();
    assert!(server_errors > 0.0, "the injected 5xx are counted by status: {text}");
    assert_eq!(sum(&s, "kbwatch_api_throttled_total", &[t1]), sim.throttled as f64);
    assert!(
        s.iter().any(|(n, l, _)| n == "kbwatch_pacer_wait_seconds_total"
            && l.get("endpoint").map(String::as_str) == Some("getmissingkbs")),
        "{text}"
    );

    let fleet = reporting::devices(app.pool()).await;
    let missing: i64 = fleet.iter().filter_map(|d| d.missing_kbs).map(i64::from).sum();
    let cve: i64 = fleet.iter().filter_map(|d| d.cve_addressed_total).sum();
    assert!(missing > 0);
    assert_eq!(sum(&s, "kbwatch_fleet_missing_kbs", &[t1]), missing as f64, "{text}");
    assert_eq!(sum(&s, "kbwatch_fleet_cve_addressed", &[t1]), cve as f64, "{text}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let last = sum(&s, "kbwatch_last_success_timestamp_seconds", &[t1]);
    assert!((now.as_secs_f64() - last).abs() < 120.0, "last success {last}, now {now:?}");

    // Bounded labels: no device id anywhere, and only the expected label names.
    let device_id = regex::Regex::new(r"(?i)[0-9a-f]{40}").unwrap();
    assert!(!device_id.is_match(&text), "a device id leaked into the metrics:\n{text}");
    for (name, labels, _) in &s {
        for key in labels.keys() {
            assert!(
                ["tenant", "status", "endpoint", "outcome", "kind", "version", "le"]
                    .contains(&key.as_str()),
                "unexpected label {key} on {name}"
            );
        }
    }
}

// Single-threaded, so that the scans record into this test's own metrics recorder.
#[tokio::test]
async fn auth_failures_and_orphaned_runs_reach_the_metrics_the_alerts_read() {
    let recorder = kbwatch::metrics::builder().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let message = "Missing application roles. API required roles: Machine.Read.All";
    let faults = Faults { forbidden: Some(message.into()), ..Faults::default() };
    let app = spawn_app(
        SimConfig { devices: 5, faults, ..SimConfig::default() },
        Auth::TokenFile,
        Tenant::default(),
    )
    .await;
    // A run left `running` by a process that died.
    let tenant_id = app.store.ensure_tenant("t1").await.unwrap();
    sqlx::query(
        "INSERT INTO kbwatch.scan_run (tenant_id, trigger, runner) VALUES ($1, 'manual', 'gone:1')",
    )
    .bind(tenant_id)
    .execute(app.store.pool())
    .await
    .unwrap();
    // A token the API refuses, even after a refresh; then a good one, for an app without the role.
    let token = app.dir.path().join("token");
    std::fs::write(&token, "a-token-the-api-refuses").unwrap();
    assert_eq!(app.scan().await.status, RunStatus::Failed);
    std::fs::write(&token, crate::kit::auth::STATIC_TOKEN).unwrap();
    let summary = app.scan().await;
    assert!(summary.error.as_deref().unwrap_or_default().contains(message), "{summary:?}");

    let text = handle.render();
    let s = samples(&text);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    for kind in ["unauthorized", "forbidden"] {
        let at = sum(&s, "kbwatch_last_auth_failure_timestamp_seconds", &[("kind", kind)]);
        assert!((now.as_secs_f64() - at).abs() < 120.0, "{kind} at {at}, now {now:?}\n{text}");
    }
    assert_eq!(sum(&s, "kbwatch_scans_orphaned_total", &[("tenant", "t1")]), 1.0, "{text}");
    assert!(!text.contains("kbwatch_last_success_timestamp_seconds{"), "{text}");
}

#[tokio::test]
async fn health_and_readiness_follow_the_database() {
    let migrated = {
        let url = SecretString::from(fresh_database().await);
        let store = Store::connect(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        store
    };
    let unmigrated = Store::connect(&SecretString::from(fresh_database().await), 2).await.unwrap();
    let unreachable =
        Store::connect_lazy(&SecretString::from("postgres://kbwatch@127.0.0.1:1/kbwatch"), 2)
            .unwrap();

    let (addr, cancel) = start_server(migrated, None).await;
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(get(addr, "/metrics").await, (StatusCode::OK, String::new()));
    cancel.cancel();

    let (addr, cancel) = start_server(unmigrated, None).await;
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    cancel.cancel();

    let (addr, cancel) = start_server(unreachable, None).await;
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    let started = Instant::now();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5), "readyz took {:?}", started.elapsed());
    cancel.cancel();
}

#[tokio::test]
async fn readiness_names_no_database_detail() {
    // A server that answers at once with an error naming the database (it does not exist).
    let mut url = url::Url::parse(&fresh_database().await).unwrap();
    let missing = format!("kbwatch_missing_{}", uuid::Uuid::new_v4().simple());
    url.set_path(&missing);
    let store = Store::connect_lazy(&SecretString::from(url.to_string()), 2).unwrap();
    let error = format!("{:#}", store.pending_migrations().await.expect_err("no such database"));
    assert!(error.contains(&missing), "the cause names the database: {error}");

    let (addr, cancel) = start_server(store, None).await;
    let (status, body) = get(addr, "/readyz").await;
    cancel.cancel();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, "database unavailable\n");
}
