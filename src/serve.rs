//! `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the database
//! answers and the migrations are applied).

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Option<PrometheusHandle>,
}

/// Serves until `cancel`; returns the bound address through `bound` for tests that use port 0.
pub async fn serve(
    listen: SocketAddr,
    store: Store,
    metrics: Option<PrometheusHandle>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding serve.listen {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, "Serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(store, metrics))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .context("serving metrics and health")
}

fn router(store: Store, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { store, metrics })
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.store.pending_migrations().await {
        Ok(0) => (StatusCode::OK, "ready\n".into()),
        Ok(n) => (StatusCode::SERVICE_UNAVAILABLE, format!("{n} migrations not applied\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e:#}\n")),
    }
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default()
}
