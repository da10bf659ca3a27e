//! `/metrics` (Prometheus text), `/healthz` (the process answers and no scan panicked) and
//! `/readyz` (the database answers and the migrations are applied).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::scan::Health;
use crate::store::Store;

#[derive(Clone)]
struct AppState {
    store: Store,
    metrics: Option<PrometheusHandle>,
    health: Arc<Health>,
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
    health: Arc<Health>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    serve_on(bind(listen).await?, store, metrics, health, cancel).await
}

/// Serves on a bound listener until `cancel`.
pub async fn serve_on(
    listener: TcpListener,
    store: Store,
    metrics: Option<PrometheusHandle>,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "Serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(AppState { store, metrics, health }))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .context("serving metrics and health")
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// Alive unless a scan panicked: a bug whose state a restart clears, so the probe asks for one.
async fn healthz(State(state): State<AppState>) -> (StatusCode, String) {
    match state.health.panicked_scans() {
        0 => (StatusCode::OK, "ok\n".into()),
        n => (StatusCode::INTERNAL_SERVER_ERROR, format!("{n} scans panicked; see the log\n")),
    }
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
