//! A hostile API and token endpoint (issue: safe where it runs): redirects are not followed,
//! absurd `Retry-After` values neither panic nor stall, API text is cut before it is stored, a
//! KB list has a bound, and a scan that panics is closed `failed`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use kbwatch::model::RunStatus;
use kbwatch::scan::{Progress, ScanOptions, scan_tenant};
use kbwatch::sim::SimConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Auth, TestApp, device_outcome, spawn_app};
use crate::hostile_server::Hostile;

const MACHINE: &str = "0123456789abcdef0123456789abcdef01234567";

/// `/api/machines` listing one Windows device.
async fn one_machine() -> axum::Json<serde_json::Value> {
    axum::Json(
        json!({ "value": [{ "id": MACHINE, "osPlatform": "Windows11", "computerDnsName": "pc" }] }),
    )
}

fn kb_list() -> serde_json::Value {
    json!({ "value": [{ "id": "5031356", "name": "KB from elsewhere", "url": "u", "productsNames": ["w"],
        "cveAddressed": 9, "machineMissedOn": 1 }] })
}

/// An app whose tenant calls `api` instead of the simulator.
async fn app_against(api: &Hostile) -> TestApp {
    let mut app = spawn_app(SimConfig::default(), Auth::TokenFile, "").await;
    app.config.tenants[0].api_base = api.url.clone();
    app
}

/// An app whose `client_secret` credential asks `authority` (served with `tls`) for tokens.
async fn app_with_authority(authority: &Hostile, tls: &kbwatch::sim::TestTls) -> TestApp {
    let mut app = spawn_app(SimConfig::default(), Auth::ClientSecret, "").await;
    let ca = app.dir.path().join("hostile-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    app.config.tls.ca_file = Some(ca);
    app.config.tenants[0].auth.authority = authority.url.clone();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_getmissingkbs_stores_nothing_from_the_other_origin() {
    let elsewhere =
        Hostile::start(Router::new().fallback(get(|| async { axum::Json(kb_list()) })), None).await;
    let target = elsewhere.url.join(&format!("api/machines/{MACHINE}/getmissingkbs")).unwrap();
    let api = Hostile::start(
        Router::new().route("/api/machines", get(one_machine)).route(
            "/api/machines/{id}/getmissingkbs",
            get(move || async move {
                (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target.to_string())])
            }),
        ),
        None,
    )
    .await;
    let app = app_against(&api).await;
    let summary = app.scan().await;

    assert!(
        elsewhere.received().is_empty(),
        "the other origin was called: {:?}",
        elsewhere.received()
    );
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let (_, error) = device_outcome(&app, MACHINE).await;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("redirected (307) to") && error.contains(elsewhere.url.as_str()),
        "{error}"
    );
    assert!(app.current_missing().await.is_empty(), "no KB from the other origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_redirect_never_sends_the_secret_to_the_second_origin() {
    let tls = kbwatch::sim::generate_test_tls().unwrap();
    let second = Hostile::start(Router::new().fallback(post(|| async { "{}" })), Some(&tls)).await;
    let target = second.url.clone();
    let first = Hostile::start(
        Router::new().fallback(post(move || async move {
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target.to_string())])
        })),
        Some(&tls),
    )
    .await;
    let summary = app_with_authority(&first, &tls).await.scan().await;

    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    let error = summary.error.unwrap_or_default();
    assert!(error.contains("redirected (307)"), "{error}");
    assert!(
        first.received().iter().any(|r| r.body.contains("client_secret=")),
        "the first origin was asked"
    );
    assert!(second.received().is_empty(), "the secret went on: {:?}", second.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_token_response_is_refused() {
    let tls = kbwatch::sim::generate_test_tls().unwrap();
    let token =
        Hostile::start(Router::new().fallback(post(|| async { "x".repeat(4 << 20) })), Some(&tls))
            .await;
    let summary = app_with_authority(&token, &tls).await.scan().await;

    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    let error = summary.error.unwrap_or_default();
    assert!(error.contains("token response over"), "{error}");
    assert!(error.len() < 4096, "{} bytes of error", error.len());
}

/// A scan with a deadline `after` from now.
async fn scan_until(app: &TestApp, after: Duration) -> kbwatch::scan::ScanSummary {
    let options = ScanOptions {
        deadline: Some(tokio::time::Instant::now() + after),
        ..ScanOptions::default()
    };
    let cancel = CancellationToken::new();
    let run = scan_tenant(
        &app.store,
        app.tenant(),
        app.client(),
        &options,
        Arc::new(Progress::default()),
        &cancel,
    );
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the scan ends by its deadline")
        .expect("the scan runs")
        .expect("the tenant is free")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_retry_after_values_neither_panic_nor_stall_the_scan() {
    for retry_after in ["18446744073709551615", "1000000000"] {
        let throttle = move || async move {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after)], "{}")
        };
        // On getmissingkbs: the fan-out stops at the deadline.
        let api = Hostile::start(
            Router::new()
                .route("/api/machines", get(one_machine))
                .route("/api/machines/{id}/getmissingkbs", get(throttle)),
            None,
        )
        .await;
        let app = app_against(&api).await;
        let summary = scan_until(&app, Duration::from_secs(3)).await;
        assert_eq!(summary.status, RunStatus::Partial, "{retry_after}: {summary:?}");
        assert!(summary.elapsed < Duration::from_secs(30), "{:?}", summary.elapsed);

        // On the listing: it honours the deadline too.
        let list = Hostile::start(Router::new().route("/api/machines", get(throttle)), None).await;
        let app = app_against(&list).await;
        let summary = scan_until(&app, Duration::from_secs(3)).await;
        assert_eq!(summary.status, RunStatus::Partial, "{retry_after}: {summary:?}");
        let error = summary.error.unwrap_or_default();
        assert!(error.contains("during the device listing"), "{error}");
        let status: String =
            sqlx::query_scalar("SELECT status FROM reporting.scan_runs WHERE scan_run_id = $1")
                .bind(summary.scan_run_id)
                .fetch_one(app.store.pool())
                .await
                .unwrap();
        assert_eq!(status, "partial", "the run is closed, not left running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_text_is_cut_before_it_is_stored() {
    let huge = "m".repeat(3 << 20);
    let message = json!({ "error": { "code": "x", "message": huge } }).to_string();
    let kbs_body = message;
    let api = Hostile::start(
        Router::new().route("/api/machines", get(one_machine)).route(
            "/api/machines/{id}/getmissingkbs",
            get(move || async move { (StatusCode::INTERNAL_SERVER_ERROR, kbs_body.clone()) }),
        ),
        None,
    )
    .await;
    let app = app_against(&api).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let error = device_outcome(&app, MACHINE).await.1.unwrap_or_default();
    assert!(error.starts_with("server error 500: ") && error.contains("mmm"), "{}", &error[..60]);
    assert!(error.len() < 4096, "device_scan.error holds {} bytes", error.len());

    let forbidden = Hostile::start(
        Router::new().route(
            "/api/machines",
            get(move || async move {
                let envelope = json!({ "error": { "message": "f".repeat(2 << 20) } });
                (StatusCode::FORBIDDEN, envelope.to_string())
            }),
        ),
        None,
    )
    .await;
    let app = app_against(&forbidden).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Failed);
    let stored: String =
        sqlx::query_scalar("SELECT error FROM kbwatch.scan_run WHERE scan_run_id = $1")
            .bind(summary.scan_run_id)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(stored.contains("forbidden: ") && stored.contains("fff"), "{}", &stored[..60]);
    assert!(stored.len() < 4096, "scan_run.error holds {} bytes", stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kb_list_past_the_bound_fails_the_device() {
    // Every page holds 1,000 KBs and links to the next, for ever.
    let api = Hostile::start(
        Router::new().route("/api/machines", get(one_machine)).route(
            "/api/machines/{id}/getmissingkbs",
            get(|RawQuery(q): RawQuery, headers: axum::http::HeaderMap| async move {
                let page: u32 = q.and_then(|q| q.strip_prefix("page=")?.parse().ok()).unwrap_or(0);
                let kbs: Vec<_> = (0..1000)
                    .map(|i| json!({ "id": format!("{}", page * 1000 + i), "cveAddressed": 1 }))
                    .collect();
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                let next =
                    format!("http://{host}/api/machines/{MACHINE}/getmissingkbs?page={}", page + 1);
                axum::Json(json!({ "value": kbs, "@odata.nextLink": next }))
            }),
        ),
        None,
    )
    .await;
    let app = app_against(&api).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let error = device_outcome(&app, MACHINE).await.1.unwrap_or_default();
    assert!(error.contains("more than 10000 items"), "{error}");
    let pages = api.received().iter().filter(|r| r.path.ends_with("getmissingkbs")).count();
    assert!(pages <= 11, "{pages} pages requested");
}

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
    let app =
        spawn_app(SimConfig { devices: 5, ..SimConfig::default() }, Auth::TokenFile, "").await;
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

    let (status, stored): (String, Option<String>) = sqlx::query_as(
        "SELECT status, error FROM kbwatch.scan_run ORDER BY scan_run_id DESC LIMIT 1",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(status, "failed");
    assert!(stored.unwrap_or_default().contains("internal error"));

    // The tenant's lock was released: the next scan runs.
    let next = app.scan().await;
    assert_eq!(next.status, RunStatus::Completed, "{next:?}");
}
