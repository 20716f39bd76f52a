//! The one error type of the HTTP layer, answered in the API's JSON shape
//! `{"error": {"code", "message"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use crate::forge::webhook::WebhookError;

/// An error answered in the API's JSON shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    pub code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// Logged in full, answered vaguely: internals are not the caller's business.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        warn!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response()
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::MissingSignature(_) | WebhookError::BadSignature => {
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
            }
            WebhookError::Malformed(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed", e.to_string())
            }
        }
    }
}
