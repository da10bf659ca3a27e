//! A hostile API and token endpoint (issue: safe where it runs), their other origins: redirects are
//! not followed, neither for the API nor for the token endpoint, and an oversized token response is
//! refused. Bounds on what the API sends are in `hostile_bounds.rs`, a panicking scan in
//! `hostile_panic.rs`.
//!
//! The error a device failed with is read through `kit::internal` (no view shows it).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use kbwatch::model::RunStatus;
use serde_json::json;

use crate::hostile_server::{Hostile, MACHINE, app_against, app_with_authority};
use crate::kit::internal;

/// A 307 to `target`.
fn redirect(target: url::Url) -> (StatusCode, [(header::HeaderName, String); 1]) {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_getmissingkbs_stores_nothing_from_the_other_origin() {
    let kb_list = json!({ "value": [{ "id": "5031356", "name": "KB from elsewhere", "url": "u",
        "productsNames": ["w"], "cveAddressed": 9, "machineMissedOn": 1 }] });
    let elsewhere = Hostile::start(
        Router::new().fallback(get(move || async move { axum::Json(kb_list) })),
        None,
    )
    .await;
    let target = elsewhere.url.join(&format!("api/machines/{MACHINE}/getmissingkbs")).unwrap();
    let api = Hostile::listing_one_machine(move || async move { redirect(target) }).await;
    let app = app_against(&api).await;
    let summary = app.scan().await;

    assert!(
        elsewhere.received().is_empty(),
        "the other origin was called: {:?}",
        elsewhere.received()
    );
    assert_eq!(summary.devices.failed, 1, "{summary:?}");
    let (_, error) = internal::device_outcome(app.pool(), MACHINE).await;
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
        Router::new().fallback(post(move || async move { redirect(target) })),
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
