//! `/api/v1/previews`: open previews; one; delete one (write).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::http::auth::{Reader, Writer};
use crate::http::views::{PreviewView, views};
use crate::http::{ApiError, AppState};

fn off() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "previews_off",
        "previews are off on this server (no Docker, or the preview listener could not bind)",
    )
}

/// `GET /api/v1/previews`
pub async fn list(
    State(state): State<AppState>,
    _: Reader,
) -> Result<Json<Vec<PreviewView>>, ApiError> {
    Ok(Json(views(state.store.previews()?)))
}

/// `GET /api/v1/previews/{owner}/{name}/{number}`
pub async fn get(
    State(state): State<AppState>,
    _: Reader,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Result<Json<PreviewView>, ApiError> {
    state
        .store
        .preview(&format!("{owner}/{name}"), number)?
        .map(|p| Json(p.into()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{owner}/{name} #{number} has no preview"),
            )
        })
}

/// `DELETE /api/v1/previews/{owner}/{name}/{number}` (write)
pub async fn delete(
    State(state): State<AppState>,
    Writer(token): Writer,
    Path((owner, name, number)): Path<(String, String, u64)>,
) -> Result<StatusCode, ApiError> {
    let previews = state.previews.clone().ok_or_else(off)?;
    let why = format!("removed by {}", token.user);
    match previews
        .close(&format!("{owner}/{name}"), number, &why)
        .await
    {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{owner}/{name} #{number} has no preview"),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}
