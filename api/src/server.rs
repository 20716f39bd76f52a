//! The HTTP server: forge webhooks (and, as issue 3 proceeds, the API).
//! `app()` builds the router without a socket, so tests drive it directly.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Config, Provider};
use crate::control::RunControl;
use crate::ids::{new_run_id, now_ms};
use crate::metrics::Metrics;
use crate::store::{Accepted, RunRecord, SourceRecord, Store};
use crate::webhook::{self, BuildRequest, Verdict, WebhookError};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// Wakes the executor when a run is queued.
    pub queued: Arc<Notify>,
    pub control: Arc<RunControl>,
    /// Run ids whose commit status should be reported.
    pub reports: tokio::sync::mpsc::Sender<String>,
    pub metrics: Arc<Metrics>,
    /// Ends open event streams when the server stops.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Runs' artifacts: `<artifacts_root>/<run id>/<step>/<path>`.
    pub artifacts_root: std::path::PathBuf,
    pub promoter: Arc<crate::promote::Promoter>,
    /// `None` when previews are off (no Docker or no listener).
    pub previews: Option<Arc<crate::preview::Previews>>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/hooks/{provider}", post(hook))
        .route("/api/v1/runs", get(crate::api_v1::list_runs))
        .route("/api/v1/runs/{id}", get(crate::api_v1::get_run))
        .route("/api/v1/runs/{id}/cancel", post(crate::api_v1::cancel_run))
        .route("/api/v1/runs/{id}/rerun", post(crate::api_v1::rerun))
        .route("/api/v1/trigger", post(crate::api_v1::trigger))
        .route("/api/v1/runs/{id}/logs/{step}", get(crate::api_v1::get_log))
        .route("/api/v1/runs/{id}/events", get(crate::sse::run_events))
        .route("/api/v1/events", get(crate::sse::all_events))
        .route("/api/v1/me", get(crate::api_me::me))
        .route("/api/v1/repos", get(crate::api_me::repos))
        .route(
            "/api/v1/repos/{owner}/{name}/environments",
            get(crate::api_promote::environments),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/promotions",
            post(crate::api_promote::request),
        )
        .route("/api/v1/promotions", get(crate::api_promote::list))
        .route("/api/v1/promotions/{id}", get(crate::api_promote::get))
        .route(
            "/api/v1/promotions/{id}/approve",
            post(crate::api_promote::approve),
        )
        .route(
            "/api/v1/promotions/{id}/reject",
            post(crate::api_promote::reject),
        )
        .route(
            "/api/v1/promotions/{id}/retry",
            post(crate::api_promote::retry),
        )
        .route("/api/v1/audit", get(crate::api_promote::audit))
        .route("/api/v1/audit/events", get(crate::sse::audit_events))
        .route("/api/v1/previews", get(crate::api_preview::list))
        .route("/api/v1/previews/events", get(crate::sse::preview_events))
        .route(
            "/api/v1/previews/{owner}/{name}/{number}",
            get(crate::api_preview::get).delete(crate::api_preview::delete),
        )
        .route(
            "/api/v1/runs/{id}/artifacts/{step}/{*path}",
            get(crate::api_v1::get_artifact),
        )
        .merge(crate::ui::routes())
        .with_state(state)
}

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

fn provider(name: &str) -> Option<Provider> {
    match name {
        "github" => Some(Provider::Github),
        "gitea" => Some(Provider::Gitea),
        "forgejo" => Some(Provider::Forgejo),
        "gitlab" => Some(Provider::Gitlab),
        _ => None,
    }
}

/// The API's OpenAPI document, kept beside the code and checked against the
/// router by a test.
pub const OPENAPI: &str = include_str!("../assets/openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

async fn metrics(State(state): State<AppState>) -> Result<String, ApiError> {
    let queued = state.store.queued().map_err(ApiError::internal)?.len();
    Ok(state.metrics.render(queued, state.control.running()))
}

/// `POST /hooks/{provider}`, counted by outcome.
async fn hook(
    state: State<AppState>,
    provider: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let metrics = state.metrics.clone();
    let result = accept_hook(state, provider, headers, body).await;
    metrics.webhook(match &result {
        Ok((outcome, _)) => outcome,
        Err(e) => e.code,
    });
    result.map(|(_, response)| response)
}

/// Verifies before anything is stored, then accepts the delivery durably
/// before answering 202. Returns the outcome's name for the metrics.
async fn accept_hook(
    State(state): State<AppState>,
    Path(provider_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(&'static str, Response), ApiError> {
    let provider = provider(&provider_name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            format!("no provider `{provider_name}` (github, gitea, forgejo, gitlab)"),
        )
    })?;
    let repo_name = match webhook::subject(provider, &body)? {
        webhook::Subject::Repository(name) => name,
        webhook::Subject::Organization(org) => {
            return organization_hook(&state, provider, &provider_name, &org, &headers, &body);
        }
    };
    let repo = state
        .config
        .repo(&repo_name)
        .filter(|r| r.provider == provider)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_repository",
                format!("repository `{repo_name}` is not configured for {provider_name}"),
            )
        })?;
    webhook::verify(provider, repo.webhook_secret.as_deref(), &headers, &body)?;
    let event = webhook::event_name(provider, &headers).ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", "missing event header")
    })?;
    let delivery = webhook::delivery_id(provider, &headers, &body);
    let build = match webhook::classify(provider, &event, &body)? {
        Verdict::Ping => {
            return Ok((
                "ping",
                (StatusCode::OK, Json(json!({ "status": "pong" }))).into_response(),
            ));
        }
        Verdict::Ignored(reason) => {
            info!(repo = %repo.name, %event, %reason, "webhook ignored");
            let answer = (
                StatusCode::OK,
                Json(json!({ "status": "ignored", "reason": reason })),
            );
            return Ok(("ignored", answer.into_response()));
        }
        Verdict::Closed { number } => {
            // Runs of the closed request are of no use any more.
            let reason = match &state.previews {
                Some(previews) => {
                    let (previews, repo_name) = (previews.clone(), repo.name.clone());
                    tokio::spawn(async move {
                        if let Err(e) = previews
                            .close(&repo_name, number, "the pull request was closed")
                            .await
                        {
                            warn!(repo = %repo_name, pr = number, error = %e, "cannot remove the preview");
                        }
                    });
                    format!(
                        "pull request #{number} closed: nothing to build; its preview is being removed"
                    )
                }
                None => format!("pull request #{number} closed: nothing to build"),
            };
            info!(repo = %repo.name, %event, %reason, "webhook: closed");
            let answer = (
                StatusCode::OK,
                Json(json!({ "status": "closed", "reason": reason })),
            );
            return Ok(("closed", answer.into_response()));
        }
        Verdict::Build(build) => build,
    };
    let run = queued_run(
        &repo.name,
        &repo.pipeline,
        &build.event,
        build.branch.clone(),
        source_of(&repo.name, &build, &delivery),
    );
    let store = state.store.clone();
    let key = format!("{provider_name}:{delivery}");
    let accepted = tokio::task::spawn_blocking(move || store.accept_delivery(&key, &run))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(match accepted {
        Accepted::New(run) => {
            info!(repo = %repo.name, %event, run_id = %run, "run queued");
            if state.config.cancel_superseded {
                let (store, control, repo_name, git_ref, newer) =
                    (state.store.clone(), state.control.clone(), repo.name.clone(), build.git_ref.clone(), run.clone());
                let superseded = tokio::task::spawn_blocking(move || control.supersede(&store, &repo_name, &git_ref, &newer))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
                if !superseded.is_empty() {
                    info!(run_id = %run, superseded = ?superseded, "older runs of the ref cancelled");
                }
            }
            // A full report queue only delays "pending"; the final report still comes.
            let _ = state.reports.try_send(run.clone());
            state.queued.notify_one();
            ("accepted", (StatusCode::ACCEPTED, Json(json!({ "status": "queued", "run": run }))).into_response())
        }
        Accepted::Duplicate(run) => (
            "duplicate",
            (
                StatusCode::OK,
                Json(json!({ "status": "duplicate", "run": run, "reason": format!("delivery `{delivery}` was accepted before, as run {run}") })),
            )
                .into_response(),
        ),
    })
}

/// A hook set on a whole organization: its `ping` names no repository.
/// Accepted when it is signed with the webhook secret of one of the
/// organization's configured repositories, and answered with the ones whose
/// secret it matched, so whoever set the hook sees what it will reach.
/// Other organization-wide events build nothing.
fn organization_hook(
    state: &AppState,
    provider: Provider,
    provider_name: &str,
    org: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'static str, Response), ApiError> {
    let prefix = format!("{}/", org.to_ascii_lowercase());
    let candidates: Vec<&crate::config::Repo> = state
        .config
        .repos
        .iter()
        .filter(|r| r.provider == provider && r.name.to_ascii_lowercase().starts_with(&prefix))
        .collect();
    if candidates.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_organization",
            format!("no repository of organization `{org}` is configured for {provider_name}"),
        ));
    }
    let mut first_error = None;
    let mut reached = Vec::new();
    for repo in &candidates {
        match webhook::verify(provider, repo.webhook_secret.as_deref(), headers, body) {
            Ok(()) => reached.push(repo.name.clone()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if reached.is_empty() {
        return Err(first_error.unwrap_or(WebhookError::BadSignature).into());
    }
    let event = webhook::event_name(provider, headers).unwrap_or_default();
    if event == "ping" {
        info!(organization = %org, repositories = ?reached, "organization webhook ping");
        let answer = Json(json!({
            "status": "pong",
            "organization": org,
            "repositories": reached,
        }));
        return Ok(("ping", (StatusCode::OK, answer).into_response()));
    }
    let reason = format!("organization event `{event}` names no repository: nothing to build");
    let answer = Json(json!({ "status": "ignored", "reason": reason }));
    Ok(("ignored", (StatusCode::OK, answer).into_response()))
}

/// A new queued run of a commit.
pub(crate) fn queued_run(
    repo: &str,
    pipeline_path: &str,
    event: &str,
    branch: Option<String>,
    source: SourceRecord,
) -> RunRecord {
    RunRecord {
        id: new_run_id(),
        pipeline: repo.to_string(),
        file: pipeline_path.to_string(),
        event: event.to_string(),
        branch,
        status: "queued".into(),
        created_ms: now_ms(),
        finished_ms: None,
        error: None,
        steps: Vec::new(),
        source: Some(source),
        notes: Vec::new(),
        rerun: None,
        deploy: None,
    }
}

fn source_of(repo: &str, build: &BuildRequest, delivery: &str) -> SourceRecord {
    SourceRecord {
        repo: repo.to_string(),
        git_ref: build.git_ref.clone(),
        sha: build.sha.clone(),
        tag: build.tag.clone(),
        pull_request: build.pull_request.as_ref().map(|p| p.number),
        pr_target_branch: build.pull_request.as_ref().map(|p| p.target_branch.clone()),
        from_fork: build.pull_request.as_ref().is_some_and(|p| p.from_fork),
        delivery: Some(delivery.to_string()),
        author: build.author.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const SECRET: &str = "webhook-secret";

    use crate::webhook::fixture;

    fn state() -> (AppState, std::path::PathBuf) {
        test_state("")
    }

    /// Two repositories; `extra` is appended to the config, so it may add
    /// to the second one (environments) or add tokens.
    pub(crate) fn test_state(extra: &str) -> (AppState, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("slipway-srv-{}", new_run_id()));
        let config = Config::parse(
            "test.toml",
            &(["Codertocat/Hello-World", "Octocoders/Hello-World"]
                .map(|name| format!("[[repos]]\nname = \"{name}\"\nprovider = \"github\"\nclone_url = \"file:///nowhere\"\nwebhook_secret = \"{SECRET}\"\n"))
                .concat()
                + extra),
        )
        .unwrap();
        let config = Arc::new(config);
        let store = Store::open(&dir).unwrap();
        let state = AppState {
            promoter: crate::promote::Promoter::new(config.clone(), store.clone(), Arc::default()),
            config,
            store,
            queued: Arc::new(Notify::new()),
            control: Arc::default(),
            reports: tokio::sync::mpsc::channel(16).0,
            metrics: Arc::default(),
            shutdown: Default::default(),
            artifacts_root: std::env::temp_dir().join("slipway-no-artifacts"),
            previews: None,
        };
        (state, dir)
    }

    async fn send(
        state: &AppState,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post("/hooks/github")
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery);
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        let resp = app(state.clone())
            .oneshot(req.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn signed(body: &[u8]) -> Option<String> {
        Some(webhook::sign_github(SECRET, body))
    }

    #[tokio::test]
    async fn a_signed_push_queues_one_run_even_when_redelivered() {
        let (state, dir) = state();
        let body = fixture("push.branch-created.json");
        let (status, json) = send(&state, "push", "d-1", &body, signed(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{json}");
        let run_id = json["run"].as_str().unwrap().to_string();
        let run = state.store.get_run(&run_id).unwrap().unwrap();
        assert_eq!(run.status, "queued");
        let source = run.source.unwrap();
        assert_eq!(
            (source.repo.as_str(), source.sha.as_str()),
            (
                "Codertocat/Hello-World",
                "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
            )
        );
        let (status, json) = send(&state, "push", "d-1", &body, signed(&body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["status"], "duplicate");
        assert_eq!(json["run"], run_id.as_str());
        assert_eq!(state.store.list_runs(10).unwrap().len(), 1);
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn bad_or_missing_signatures_store_nothing() {
        let (state, dir) = state();
        let body = fixture("push.branch-created.json");
        let (status, json) = send(
            &state,
            "push",
            "d-2",
            &body,
            Some(webhook::sign_github("wrong", &body)),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(json["error"]["code"], "bad_signature");
        let (status, _) = send(&state, "push", "d-3", &body, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(state.store.list_runs(10).unwrap().is_empty());
        assert!(state.store.queued().unwrap().is_empty());
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_organization_ping_is_answered_with_the_repositories_it_reaches() {
        let (state, dir) = state();
        let ping = fixture("ping.organization.json");
        let (status, json) = send(&state, "ping", "o-1", &ping, signed(&ping)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["status"], "pong");
        assert_eq!(json["organization"], "Octocoders");
        assert_eq!(json["repositories"], json!(["Octocoders/Hello-World"]));
        let (status, json) = send(
            &state,
            "ping",
            "o-2",
            &ping,
            Some(webhook::sign_github("wrong", &ping)),
        )
        .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("bad_signature"))
        );
        let (status, json) = send(&state, "organization", "o-3", &ping, signed(&ping)).await;
        assert_eq!(
            (status, json["status"].as_str()),
            (StatusCode::OK, Some("ignored"))
        );
        let elsewhere = String::from_utf8(ping)
            .unwrap()
            .replace("\"login\": \"Octocoders\"", "\"login\": \"Nobody\"");
        let (status, json) = send(
            &state,
            "ping",
            "o-4",
            elsewhere.as_bytes(),
            signed(elsewhere.as_bytes()),
        )
        .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_organization"))
        );
        assert!(state.store.list_runs(10).unwrap().is_empty());
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn ping_unknown_repos_garbage_and_closed_pull_requests() {
        let (state, dir) = state();
        let ping = fixture("ping.json");
        assert_eq!(
            send(&state, "ping", "p", &ping, signed(&ping)).await.0,
            StatusCode::OK
        );
        let other = String::from_utf8(fixture("push.branch-created.json"))
            .unwrap()
            .replace("Codertocat/Hello-World", "someone/else");
        let (status, json) = send(
            &state,
            "push",
            "x",
            other.as_bytes(),
            signed(other.as_bytes()),
        )
        .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_repository"))
        );
        let (status, json) = send(&state, "push", "y", b"{not json", signed(b"{not json")).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("malformed"))
        );
        let closed = fixture("pull_request.closed.json");
        let (status, json) = send(&state, "pull_request", "z", &closed, signed(&closed)).await;
        assert_eq!(
            (status, json["status"].as_str()),
            (StatusCode::OK, Some("closed"))
        );
        assert_eq!(json["reason"], "pull request #2 closed: nothing to build");
        let deleted = String::from_utf8(fixture("push.branch-created.json"))
            .unwrap()
            .replace("\"deleted\": false", "\"deleted\": true");
        let (status, json) = send(
            &state,
            "push",
            "w",
            deleted.as_bytes(),
            signed(deleted.as_bytes()),
        )
        .await;
        assert_eq!(
            (status, json["status"].as_str()),
            (StatusCode::OK, Some("ignored")),
            "{json}"
        );
        assert!(state.store.list_runs(10).unwrap().is_empty());
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn metrics_count_webhook_outcomes_and_the_queue() {
        let (state, dir) = state();
        let body = fixture("push.branch-created.json");
        send(&state, "push", "m-1", &body, signed(&body)).await;
        send(&state, "push", "m-1", &body, signed(&body)).await;
        send(&state, "push", "m-2", &body, None).await;
        let resp = app(state.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        for line in [
            "slipway_webhooks_total{outcome=\"accepted\"} 1",
            "slipway_webhooks_total{outcome=\"duplicate\"} 1",
            "slipway_webhooks_total{outcome=\"bad_signature\"} 1",
            "slipway_queue_depth 1",
            "slipway_runs_running 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every documented path and method is routed (an unrouted one answers
    /// axum's bare 404 or 405), so the document cannot drift from the router.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let (state, dir) = state();
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10);
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                let uri = path
                    .replace("{provider}", "github")
                    .replace("{id}", "abc")
                    .replace("{step}", "build");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let resp = app(state.clone()).oneshot(req).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == StatusCode::NOT_FOUND && body.is_empty());
                assert!(
                    !unrouted,
                    "{method} {path} is documented but not routed ({status})"
                );
            }
        }
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
