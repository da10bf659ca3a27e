//! The token endpoints (Entra client credentials, the App Service managed-identity endpoint) and
//! the bearer-token check of every API request. Client assertions are checked by `identity`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::envelope::{correlation_id, error_response};
use super::lock;
use super::state::Shared;

/// The `x-identity-header` value the managed-identity endpoint expects (`IDENTITY_HEADER`).
pub const IDENTITY_HEADER: &str = "kbwatch-sim-identity-header";

/// Tenant name used in bodies for requests authenticated with the static token.
const STATIC_TENANT: &str = "kbwatch-sim-tenant";

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The tenant the bearer token of `headers` was issued for, or `None` when it is missing, unknown or expired.
pub(crate) fn authorize(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    let token = bearer(headers)?;
    if shared.static_token.as_deref() == Some(token) {
        return Some(STATIC_TENANT.to_string());
    }
    lock(&shared.tokens).tenant_of(token)
}

/// The 401 body of the API for a missing or bad token.
pub(crate) fn unauthorized() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Authorization token is missing, invalid or expired",
        &correlation_id(),
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
/// assertion (workload identity, certificate) checked by `identity`.
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
        let message = lock(&shared.assertions).check(assertion).err()?;
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
fn issue(shared: &Shared, tenant: &str) -> (String, std::time::Duration) {
    let lifetime = shared.token_lifetime;
    (lock(&shared.tokens).issue(tenant, lifetime), lifetime)
}

/// `GET /msi/token?api-version=2019-08-01&resource=…` with `x-identity-header`: the App Service
/// managed-identity endpoint (`IDENTITY_ENDPOINT`).
pub(crate) async fn managed_identity(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    shared.stats.count_token();
    if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(IDENTITY_HEADER) {
        let body = json!({"statusCode": 401, "message": "Unauthorized: missing or wrong x-identity-header"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let Some(resource) = query.get("resource") else {
        let body = json!({"statusCode": 400, "message": "resource is required"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let (token, lifetime) = issue(&shared, "managed-identity");
    let expires_on = chrono::Utc::now().timestamp() + lifetime.as_secs() as i64;
    let body = json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": query.get("client_id").cloned().unwrap_or_else(|| shared.client_id.clone()),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
