//! Bounds on what a hostile API sends: absurd `Retry-After` values neither panic nor stall a scan,
//! API text is cut before it is stored, and a KB list has a bound.
//!
//! The error texts stored with a device or a run are read through `kit::internal` (no view shows
//! them).

use std::time::Duration;

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use kbwatch::model::RunStatus;
use kbwatch::scan::{ScanOptions, ScanSummary};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::hostile_server::{Hostile, MACHINE, app_against};
use crate::kit::{TestApp, internal, reporting};

/// A scan with a deadline `after` from now.
async fn scan_until(app: &TestApp, after: Duration) -> ScanSummary {
    let deadline = Some(tokio::time::Instant::now() + after);
    let options = ScanOptions { deadline, ..ScanOptions::default() };
    let cancel = CancellationToken::new();
    let run = app.scan_with_options(app.client(), &options, &cancel);
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("the scan ends by its deadline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_retry_after_values_neither_panic_nor_stall_the_scan() {
    for retry_after in ["18446744073709551615", "1000000000"] {
        let throttle = move || async move {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, retry_after)], "{}")
        };
        // On getmissingkbs: the fan-out stops at the deadline.
        let api = Hostile::listing_one_machine(throttle).await;
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
        let run = reporting::scan_run(app.pool(), summary.scan_run_id).await;
        assert_eq!(run.status, "partial", "the run is closed, not left running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_text_is_cut_before_it_is_stored() {
    let message = json!({ "error": { "code": "x", "message": "m".repeat(3 << 20) } }).to_string();
    let api = Hostile::listing_one_machine(move || async move {
        (StatusCode::INTERNAL_SERVER_ERROR, message.clone())
    })
    .await;
    let app = app_against(&api).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let error = internal::device_outcome(app.pool(), MACHINE).await.1.unwrap_or_default();
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
    let stored = internal::run_error(app.pool(), summary.scan_run_id).await.unwrap_or_default();
    assert!(stored.contains("forbidden: ") && stored.contains("fff"), "{}", &stored[..60]);
    assert!(stored.len() < 4096, "scan_run.error holds {} bytes", stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kb_list_past_the_bound_fails_the_device() {
    // Every page holds 1,000 KBs and links to the next, for ever.
    let endless = |RawQuery(q): RawQuery, headers: HeaderMap| async move {
        let page: u32 = q.and_then(|q| q.strip_prefix("page=")?.parse().ok()).unwrap_or(0);
        let kbs: Vec<_> = (0..1000)
            .map(|i| json!({ "id": format!("{}", page * 1000 + i), "cveAddressed": 1 }))
            .collect();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let next = format!("http://{host}/api/machines/{MACHINE}/getmissingkbs?page={}", page + 1);
        axum::Json(json!({ "value": kbs, "@odata.nextLink": next }))
    };
    let api = Hostile::listing_one_machine(endless).await;
    let app = app_against(&api).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let error = internal::device_outcome(app.pool(), MACHINE).await.1.unwrap_or_default();
    assert!(error.contains("more than 10000 items"), "{error}");
    let pages = api.received().iter().filter(|r| r.path.ends_with("getmissingkbs")).count();
    assert!(pages <= 11, "{pages} pages requested");
}
