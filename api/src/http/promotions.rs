//! `/api/v1` for environments, promotions and the audit log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::http::auth::{Reader, Writer};
use crate::http::views::{AuditEntryView, EnvStateView, PromotionView, views};
use crate::http::{ApiError, AppState};
use crate::release::promote::{PromoteError, Promoter};
use crate::store::Promotion;

impl From<PromoteError> for ApiError {
    fn from(e: PromoteError) -> ApiError {
        match e {
            PromoteError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            PromoteError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            PromoteError::Refused(m) => ApiError::new(StatusCode::CONFLICT, "refused", m),
            e @ PromoteError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "busy", e.to_string()),
            PromoteError::Store(e) => ApiError::internal(e),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnvironmentView {
    name: String,
    image: String,
    tag: String,
    auto: bool,
    from: Option<String>,
    approvals: usize,
    approvers: Vec<String>,
    prevent_self_approval: bool,
    /// What it holds now.
    current: Option<EnvStateView>,
    /// Everything it held, newest first.
    history: Vec<EnvStateView>,
    /// The open promotion into it, if any.
    pending: Option<PromotionView>,
}

/// `GET /api/v1/repos/{owner}/{name}/environments`
pub async fn environments(
    State(state): State<AppState>,
    _: Reader,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Json<Vec<EnvironmentView>>, ApiError> {
    let repo_name = format!("{owner}/{name}");
    let repo = state.config.repo(&repo_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("repository `{repo_name}` is not configured"),
        )
    })?;
    let open: Vec<Promotion> = state
        .store
        .promotions()?
        .into_iter()
        .filter(|p| p.repo == repo.name && p.is_open())
        .collect();
    let mut out = Vec::new();
    for e in &repo.environments {
        let mut history = state.store.environment_history(&repo.name, &e.name)?;
        history.reverse();
        out.push(EnvironmentView {
            name: e.name.clone(),
            image: e.image.clone(),
            tag: e.tag.clone(),
            auto: e.auto,
            from: e.from.clone(),
            approvals: e.approvals,
            approvers: e.approvers.clone(),
            prevent_self_approval: e.prevent_self_approval,
            current: state
                .store
                .environment_state(&repo.name, &e.name)?
                .map(Into::into),
            history: views(history),
            pending: open
                .iter()
                .find(|p| p.environment == e.name)
                .cloned()
                .map(Into::into),
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub struct PromoteBody {
    to: String,
    digest: Option<String>,
}

/// `POST /api/v1/repos/{owner}/{name}/promotions` (write)
pub async fn request(
    State(state): State<AppState>,
    Writer(token): Writer,
    Path((owner, name)): Path<(String, String)>,
    Json(body): Json<PromoteBody>,
) -> Result<(StatusCode, Json<PromotionView>), ApiError> {
    let promoter = state.promoter.clone();
    let p = blocking(move || {
        promoter.request(
            &format!("{owner}/{name}"),
            &body.to,
            body.digest.as_deref(),
            &token.user,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(p.into())))
}

#[derive(Debug, Deserialize)]
pub struct PromotionsQuery {
    repo: Option<String>,
    status: Option<String>,
}

/// `GET /api/v1/promotions?repo=&status=`
pub async fn list(
    State(state): State<AppState>,
    _: Reader,
    Query(q): Query<PromotionsQuery>,
) -> Result<Json<Vec<PromotionView>>, ApiError> {
    Ok(Json(
        state
            .store
            .promotions()?
            .into_iter()
            .filter(|p| of_repo(q.repo.as_deref(), &p.repo))
            .filter(|p| q.status.as_ref().is_none_or(|s| s == p.status.as_str()))
            .map(PromotionView::from)
            .collect(),
    ))
}

/// `GET /api/v1/promotions/{id}`
pub async fn get(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<PromotionView>, ApiError> {
    state
        .store
        .promotion(&id)?
        .map(|p| Json(p.into()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no promotion `{id}`"),
            )
        })
}

#[derive(Debug, Default, Deserialize)]
pub struct DecisionBody {
    comment: Option<String>,
}

/// `POST /api/v1/promotions/{id}/approve` (write, and an approver of the
/// environment)
pub async fn approve(
    state: State<AppState>,
    writer: Writer,
    id: Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Json<PromotionView>, ApiError> {
    decide(state, writer, id, body, |p, id, user, comment| {
        p.approve(id, user, comment)
    })
    .await
}

/// `POST /api/v1/promotions/{id}/reject` (write, and an approver)
pub async fn reject(
    state: State<AppState>,
    writer: Writer,
    id: Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Result<Json<PromotionView>, ApiError> {
    decide(state, writer, id, body, |p, id, user, comment| {
        p.reject(id, user, comment)
    })
    .await
}

/// Approve or reject: promotion id, user, comment.
type Decide = fn(&Arc<Promoter>, &str, &str, Option<String>) -> Result<Promotion, PromoteError>;

/// An approver's decision, with its optional comment, made by the promoter.
async fn decide(
    State(state): State<AppState>,
    Writer(token): Writer,
    Path(id): Path<String>,
    body: Option<Json<DecisionBody>>,
    decision: Decide,
) -> Result<Json<PromotionView>, ApiError> {
    let comment = body.and_then(|b| b.0.comment);
    let promoter = state.promoter.clone();
    Ok(Json(
        blocking(move || decision(&promoter, &id, &token.user, comment))
            .await?
            .into(),
    ))
}

/// `POST /api/v1/promotions/{id}/retry` (write)
pub async fn retry(
    State(state): State<AppState>,
    Writer(token): Writer,
    Path(id): Path<String>,
) -> Result<Json<PromotionView>, ApiError> {
    let promoter = state.promoter.clone();
    Ok(Json(
        blocking(move || promoter.retry(&id, &token.user))
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    repo: Option<String>,
}

/// `GET /api/v1/audit?repo=`: append-only; no endpoint changes it.
pub async fn audit(
    State(state): State<AppState>,
    _: Reader,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntryView>>, ApiError> {
    Ok(Json(
        state
            .store
            .audit_log()?
            .into_iter()
            .filter(|a| of_repo(q.repo.as_deref(), &a.repo))
            .map(AuditEntryView::from)
            .collect(),
    ))
}

/// A `?repo=` filter: no filter keeps everything; names match as the
/// forge's do, whatever their case.
pub(crate) fn of_repo(wanted: Option<&str>, repo: &str) -> bool {
    wanted.is_none_or(|w| w.eq_ignore_ascii_case(repo))
}

/// Decisions are flushed to disk before they are answered: off the async
/// workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PromoteError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)??)
}
