//! The admin surface over HTTP, for operators and the CLI: truth, stats, evolve. Every route
//! requires the admin token the simulator made at start ([`super::Sim::admin_token`]), which no
//! API token opens.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::auth::bearer;
use super::state::Shared;
use super::tokens::same_secret;
use super::{ChangeSummary, Evolution, SimStats, TruthKb, read};

/// `GET /admin/truth`, `GET /admin/stats`, `POST /admin/evolve` (JSON [`Evolution`], missing fields default),
/// each with `Authorization: Bearer <admin token>`.
pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/truth", get(truth))
        .route("/admin/stats", get(stats))
        .route("/admin/evolve", post(evolve))
        .route_layer(middleware::from_fn_with_state(shared, require_admin_token))
}

async fn require_admin_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(token) if same_secret(token, &shared.admin_token) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer realm=\"kbwatch-sim-admin\"")],
            "the admin routes need Authorization: Bearer <admin token>, printed by kbwatch sim at start\n",
        )
            .into_response(),
    }
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
    Json(shared.evolve(&e))
}
