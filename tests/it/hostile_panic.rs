//! A bug inside a scan: a scan that panics is closed `failed`, counted in the metrics, reported by
//! the liveness probe, and frees its tenant for the next scan.
//!
//! The error stored with the run is read through `kit::internal` (no view shows it).

use std::sync::Arc;

use kbwatch::model::RunStatus;
use kbwatch::scan::{Progress, ScanOptions, scan_tenant};
use tokio_util::sync::CancellationToken;

use crate::kit::{Auth, Tenant, fleet, internal, reporting, spawn_app};

/// A token source that panics: a bug inside a scan.
struct Panicking;

#[async_trait::async_trait]
impl kbwatch::defender::TokenSource for Panicking {
    async fn token(&self) -> Result<secrecy::SecretString, kbwatch::defender::ApiError> {
        panic!("a bug in the token source")
    }
    async fn refresh(&self) -> Result<secrecy::SecretString, kbwatch::defender::ApiError> {
        panic!("a bug in the token source")
    }
}

// Single-threaded, so that the scan records into this test's own metrics recorder.
#[tokio::test]
async fn a_panicking_scan_is_closed_failed_and_frees_the_tenant() {
    let recorder = kbwatch::metrics::builder().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let app = spawn_app(fleet(5), Auth::TokenFile, Tenant::default()).await;
    let tenant = app.tenant();
    let http = kbwatch::defender::build_http_client(&app.config.tls, &tenant.http).unwrap();
    let pacer = Arc::new(kbwatch::pacer::Pacer::new(tenant.name.as_str(), &tenant.quota));
    let broken = kbwatch::defender::Client::new(
        http,
        tenant.api_base.clone(),
        Arc::new(Panicking),
        pacer,
        kbwatch::defender::ClientOptions::default(),
    );
    let error = scan_tenant(
        &app.store,
        tenant,
        Arc::new(broken),
        &ScanOptions::default(),
        Arc::new(Progress::default()),
        &CancellationToken::new(),
    )
    .await
    .expect_err("the panic is reported as an error");
    assert!(format!("{error:#}").contains("panicked: a bug in the token source"), "{error:#}");
    let rendered = metrics.render();
    assert!(rendered.contains("kbwatch_scan_panics_total{tenant=\"t1\"} 1"), "{rendered}");
    assert!(
        rendered.contains("kbwatch_scans_total{tenant=\"t1\",status=\"failed\"} 1"),
        "{rendered}"
    );

    // The daemon notes it, and its liveness probe says so.
    let health = Arc::new(kbwatch::scan::Health::default());
    health.record(&anyhow::anyhow!("an ordinary failure"));
    assert_eq!(health.panicked_scans(), 0);
    health.record(&error);
    assert_eq!(health.panicked_scans(), 1);
    let (addr, cancel) =
        crate::serve::start_server_with(app.store.clone(), None, health.clone()).await;
    let (status, body) = crate::serve::get(addr, "/healthz").await;
    assert_eq!(status, axum::http::StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("1 scans panicked"), "{body}");
    cancel.cancel();

    let runs = reporting::scan_runs(app.pool()).await;
    let run = runs.last().expect("the run was recorded");
    assert_eq!(run.status, "failed");
    let stored = internal::run_error(app.pool(), run.scan_run_id).await;
    assert!(stored.unwrap_or_default().contains("internal error"));

    // The tenant's lock was released: the next scan runs.
    let next = app.scan().await;
    assert_eq!(next.status, RunStatus::Completed, "{next:?}");
}
