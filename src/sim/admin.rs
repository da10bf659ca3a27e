//! The admin surface over HTTP, for operators and the CLI: truth, stats, evolve. Loopback tool: no auth.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{ChangeSummary, Evolution, Shared, SimStats, TruthKb, read, write};

/// `GET /admin/truth`, `GET /admin/stats`, `POST /admin/evolve` (JSON [`Evolution`], missing fields default).
/// These routes need no token: the simulator is a loopback test tool, never an internet-facing service.
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/truth", get(truth))
        .route("/admin/stats", get(stats))
        .route("/admin/evolve", post(evolve))
}

async fn truth(
    State(shared): State<Arc<Shared>>,
) -> Json<std::collections::BTreeMap<String, Vec<TruthKb>>> {
    Json(read(&shared.fleet).truth())
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<SimStats> {
    Json(shared.stats.snapshot())
}

async fn evolve(
    State(shared): State<Arc<Shared>>,
    Json(e): Json<Evolution>,
) -> Json<ChangeSummary> {
    Json(write(&shared.fleet).evolve(&e))
}
