//! `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the database
//! answers and the migrations are applied).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Option<PrometheusHandle>,
}

/// How long `/readyz` waits for the database before it answers 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `listen` (port 0 picks a free port: see `local_addr`).
pub async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| format!("binding serve.listen {listen}"))
}

/// Binds `listen` and serves until `cancel`.
pub async fn serve(
    listen: SocketAddr,
    store: Store,
    metrics: Option<PrometheusHandle>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(bind(listen).await?, store, metrics, cancel).await
}

/// Serves on a bound listener until `cancel`.
pub async fn serve_on(
    listener: TcpListener,
    store: Store,
    metrics: Option<PrometheusHandle>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
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

/// What `/readyz` answers when the database cannot be asked. The cause (which can name hosts,
/// users and databases) goes to the log, never to whoever can reach the probe.
const DATABASE_UNAVAILABLE: &str = "database unavailable\n";

async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    // The pool would wait its whole acquire timeout for a database that is down.
    match tokio::time::timeout(READY_TIMEOUT, state.store.pending_migrations()).await {
        Ok(Ok(0)) => (StatusCode::OK, "ready\n".into()),
        Ok(Ok(n)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{n} migrations not applied\n")),
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "Not ready: the database cannot be asked");
            (StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE.into())
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_TIMEOUT, "Not ready: the database did not answer");
            (StatusCode::SERVICE_UNAVAILABLE, DATABASE_UNAVAILABLE.into())
        }
    }
}

async fn render_metrics(State(state): State<AppState>) -> String {
    state.metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default()
}
