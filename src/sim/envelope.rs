//! The error envelope every API route answers with: `{"error":{"code","message","target"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    target: &str,
) -> Response {
    let body = json!({"error": {"code": code, "message": message, "target": target}});
    (status, axum::Json(body)).into_response()
}

/// A fresh id for the `target` of an error, as the API puts its correlation id there.
pub(crate) fn correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
