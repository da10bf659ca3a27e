//! The Entra-like token endpoint (client credentials) and the bearer-token check of every API request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use super::Shared;

/// Issued tokens and the tenant (path segment) each was issued for.
#[derive(Default)]
pub(crate) struct Tokens {
    issued: HashMap<String, (Instant, String)>,
}

impl Tokens {
    /// Forgets every issued token: each one answers 401 from now on.
    pub(crate) fn expire_all(&mut self) {
        self.issued.clear();
    }
}

/// Tenant name used in bodies for requests authenticated with the static token.
const STATIC_TENANT: &str = "kbwatch-sim-tenant";

/// The tenant the bearer token of `headers` was issued for, or `None` when it is missing, unknown or expired.
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if shared.static_token.as_deref() == Some(token) {
        return Some(STATIC_TENANT.to_string());
    }
    let tokens = super::lock(&shared.tokens);
    let (expires, tenant) = tokens.issued.get(token)?;
    (Instant::now() < *expires).then(|| tenant.clone())
}

/// The 401 body of the API for a missing or bad token.
pub(crate) fn unauthorized() -> Response {
    super::routes::error_response(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Authorization token is missing, invalid or expired",
        &uuid::Uuid::new_v4().to_string(),
    )
}

fn entra_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": uuid::Uuid::new_v4().to_string(),
        "correlation_id": uuid::Uuid::new_v4().to_string(),
    });
    (status, axum::Json(body)).into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token` with a client-credentials form: a client secret, or a client
/// assertion (workload identity, certificate) checked by [`super::identity`].
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.stats.count_token();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if form.get("client_id") != Some(&shared.client_id) {
        let id = form.get("client_id").map(String::as_str).unwrap_or("");
        let msg = format!("Application with identifier '{id}' was not found in the directory.");
        return entra_error(StatusCode::UNAUTHORIZED, "unauthorized_client", 700016, &msg);
    }
    if let Some(refusal) = refuse_client(&shared, &form) {
        return refusal;
    }
    let (token, lifetime) = issue(&shared, &tenant);
    let secs = lifetime.as_secs();
    let body =
        json!({"token_type":"Bearer","expires_in":secs,"ext_expires_in":secs,"access_token":token});
    (StatusCode::OK, axum::Json(body)).into_response()
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The client proves itself with its secret or with a client assertion; `Some` is the refusal.
fn refuse_client(shared: &Shared, form: &HashMap<String, String>) -> Option<Response> {
    if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            let msg = "The client_assertion_type is not supported.";
            return Some(entra_error(StatusCode::BAD_REQUEST, "invalid_request", 50027, msg));
        }
        let message = super::identity::check_assertion(shared, assertion).err()?;
        let (code, text) = message.split_once(": ").unwrap_or(("AADSTS0", message));
        let code = code.trim_start_matches("AADSTS").parse().unwrap_or(0);
        return Some(entra_error(StatusCode::UNAUTHORIZED, "invalid_client", code, text));
    }
    (form.get("client_secret") != Some(&shared.client_secret)).then(|| {
        entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        )
    })
}

/// A new random token for `tenant`, accepted for the configured lifetime.
pub(crate) fn issue(shared: &Shared, tenant: &str) -> (String, std::time::Duration) {
    let bytes: [u8; 32] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("sim.{token}");
    let lifetime = shared.token_lifetime;
    let expires = Instant::now() + lifetime;
    super::lock(&shared.tokens).issued.insert(token.clone(), (expires, tenant.to_owned()));
    (token, lifetime)
}
