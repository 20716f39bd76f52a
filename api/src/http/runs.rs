//! `/api/v1`: JSON over HTTP with bearer tokens. The wire types live here,
//! converted from store records at the edge, so the store can change
//! without breaking clients.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::auth::{Reader, Writer};
use crate::http::{ApiError, AppState};
use crate::runs::control::Cancelled;
use crate::store::{RunRecord, RunStatus, StepStatus, StoreError};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StoreError::Ambiguous { .. } | StoreError::BadCursor(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            }
            other => ApiError::internal(other),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub event: String,
    pub branch: Option<String>,
    pub repo: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    pub pull_request: Option<u64>,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub steps: Vec<StepView>,
    /// `[step, needed step]` pairs: the DAG.
    pub edges: Vec<[String; 2]>,
    /// Problems around the run that did not fail it (e.g. status reporting).
    pub notes: Vec<String>,
    /// Whether the run's code is the repository's own: an untrusted run
    /// gets no registry logins and its images are never promoted.
    pub trusted: bool,
    /// Why it is (not) trusted.
    pub trust: String,
    /// Which runner ran it: a remote runner's name, `built-in` for the
    /// server's own; `None` before it started.
    pub runner: Option<String>,
    /// The runner labels its pipeline asks for (`runs_on:`), once read.
    pub runs_on: Option<Vec<String>>,
    /// Why a queued run has not started yet ("no online runner has label
    /// `large`", "all 3 matching runners busy").
    pub waiting: Option<String>,
    /// Where the time before the first step went: `queued` (accepted to
    /// claimed), `prepare` (the pipeline read, trust and secrets decided),
    /// `checkout`, `images`, `network+workspace`.
    pub phases: Vec<crate::store::Phase>,
}

#[derive(Debug, Serialize)]
pub struct StepView {
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub attempts: u32,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// What a build step pushed: `repository@sha256:...`.
    pub output: Option<String>,
    /// Download each at `/api/v1/runs/{id}/artifacts/{step}/{path}`.
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Debug, Serialize)]
pub struct ArtifactView {
    pub path: String,
    pub size: u64,
}

impl RunView {
    /// The run as the API shows it; `config` says how a run that has not
    /// started yet would be trusted.
    pub fn new(r: RunRecord, config: &crate::config::Config) -> RunView {
        let edges = r
            .steps
            .iter()
            .flat_map(|s| s.needs.iter().map(|n| [s.name.clone(), n.clone()]))
            .collect();
        let trust = crate::runs::trust::of_run(&r, config);
        let runner = match (&r.lease, r.status) {
            (Some(lease), _) => Some(lease.runner.clone()),
            (None, RunStatus::Queued) => None,
            (None, _) if r.source.is_some() && !r.steps.is_empty() => Some("built-in".into()),
            (None, _) => None,
        };
        RunView {
            runner,
            runs_on: r.runs_on.clone(),
            waiting: None,
            phases: r.phases.clone(),
            trusted: trust.trusted,
            trust: trust.why,
            duration_ms: r.finished_ms.map(|f| f.saturating_sub(r.created_ms)),
            repo: r.source.as_ref().map(|s| s.repo.clone()),
            git_ref: r.source.as_ref().map(|s| s.git_ref.clone()),
            sha: r.source.as_ref().map(|s| s.sha.clone()),
            pull_request: r.source.as_ref().and_then(|s| s.pull_request),
            steps: r
                .steps
                .into_iter()
                .map(|s| StepView {
                    duration_ms: s
                        .started_ms
                        .zip(s.finished_ms)
                        .map(|(a, b)| b.saturating_sub(a)),
                    output: s.output,
                    artifacts: s
                        .artifacts
                        .into_iter()
                        .map(|(path, size)| ArtifactView { path, size })
                        .collect(),
                    name: s.name,
                    status: s.status,
                    exit_code: s.exit_code,
                    attempts: s.attempts,
                    started_ms: s.started_ms,
                    finished_ms: s.finished_ms,
                })
                .collect(),
            edges,
            notes: r.notes,
            id: r.id,
            pipeline: r.pipeline,
            status: r.status,
            event: r.event,
            branch: r.branch,
            created_ms: r.created_ms,
            finished_ms: r.finished_ms,
            error: r.error,
        }
    }
}

impl RunView {
    /// Adds why a queued run waits, as the executor last found it.
    pub fn waiting(mut self, dispatch: &crate::runs::dispatch::Dispatch) -> RunView {
        if self.status == RunStatus::Queued {
            self.waiting = dispatch.pending(&self.id);
        }
        self
    }
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    repo: Option<String>,
    status: Option<String>,
    branch: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RunsPage {
    runs: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next: Option<String>,
}

/// `GET /api/v1/runs`: newest first, filtered, paged by cursor.
pub async fn list_runs(
    State(state): State<AppState>,
    _: Reader,
    Query(q): Query<RunsQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let (runs, next) = state.store.page_runs(limit, q.cursor.as_deref(), |r| {
        q.repo.as_ref().is_none_or(|want| {
            r.source
                .as_ref()
                .is_some_and(|s| s.repo.eq_ignore_ascii_case(want))
        }) && q
            .status
            .as_ref()
            .is_none_or(|want| r.status.as_str() == want)
            && q.branch
                .as_ref()
                .is_none_or(|want| r.branch.as_ref() == Some(want))
    })?;
    Ok(Json(RunsPage {
        runs: runs
            .into_iter()
            .map(|r| RunView::new(r, &state.config).waiting(&state.dispatch))
            .collect(),
        next,
    }))
}

/// `GET /api/v1/runs/{id}`: one run (id or unique prefix) with steps and edges.
pub async fn get_run(
    State(state): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(
        RunView::new(state.store.find_run(&id)?, &state.config).waiting(&state.dispatch),
    ))
}

/// `POST /api/v1/runs/{id}/cancel` (write scope): a queued run is cancelled
/// at once; a running one has its containers stopped.
pub async fn cancel_run(
    State(state): State<AppState>,
    Writer(user): Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let run = state.store.find_run(&id)?;
    let reason = format!("cancelled by {}", user.user);
    let (store, control, run_id) = (state.store.clone(), state.control.clone(), run.id.clone());
    let outcome = tokio::task::spawn_blocking(move || control.cancel(&store, &run_id, &reason))
        .await
        .map_err(ApiError::internal)??;
    Ok(match outcome {
        Cancelled::Queued => (
            StatusCode::OK,
            Json(serde_json::json!({ "run": run.id, "status": "cancelled" })),
        ),
        Cancelled::Stopping => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "run": run.id, "status": "cancelling" })),
        ),
        Cancelled::AlreadyEnded(status) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_ended",
                format!("run {} already ended: {status}", run.id),
            ));
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct RerunQuery {
    #[serde(default)]
    failed: bool,
}

/// `POST /api/v1/runs/{id}/rerun[?failed=true]` (write): a new run of the
/// same commit; with `failed`, only the steps that did not succeed, and what
/// they need, run again.
pub async fn rerun(
    State(state): State<AppState>,
    _: Writer,
    Path(id): Path<String>,
    Query(q): Query<RerunQuery>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let old = state.store.find_run(&id)?;
    let Some(source) = old.source.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "run {} was a local run; rerun it with `slipway run`",
                old.id
            ),
        ));
    };
    if q.failed && old.status == RunStatus::Success {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_failed",
            format!("run {} succeeded: no failed steps to rerun", old.id),
        ));
    }
    let repo = source.repo.clone();
    let mut run = crate::runs::queued_run(&repo, &old.file, &old.event, old.branch.clone(), source);
    run.rerun = Some(crate::store::Rerun {
        of: old.id.clone(),
        failed_only: q.failed,
    });
    queue(&state, run).await
}

#[derive(Debug, Deserialize)]
pub struct TriggerBody {
    repo: String,
    /// A branch, a tag, or a full ref.
    r#ref: String,
}

/// `POST /api/v1/trigger` (write) `{"repo": "acme/web", "ref": "main"}`: a
/// manual run of what the ref points at now.
pub async fn trigger(
    State(state): State<AppState>,
    _: Writer,
    Json(body): Json<TriggerBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let repo = state.config.repo(&body.repo).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_repository",
            format!("repository `{}` is not configured", body.repo),
        )
    })?;
    if !slipway_runner::git::is_ref_name(&body.r#ref) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_ref",
            format!(
                "`{}` is not a branch, tag or ref name",
                body.r#ref.escape_debug()
            ),
        ));
    }
    let (git_ref, sha) = slipway_runner::git::resolve_ref(&repo.remote(), &body.r#ref)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_ref",
                e.to_string(),
            )
        })?;
    // A manual run is trusted, so it builds only the repository's own
    // branches and tags: `refs/pull/<n>/head` (GitHub, Gitea) or
    // `refs/merge-requests/<n>/head` (GitLab) can be a fork's code, which
    // runs only through its pull request's webhook, with that trust.
    if !(git_ref.starts_with("refs/heads/") || git_ref.starts_with("refs/tags/")) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_ref",
            format!(
                "`{git_ref}` is not a branch or tag of {}: a manual run builds only those (a pull request is built from its webhook)",
                repo.name
            ),
        ));
    }
    let source = crate::store::SourceRecord {
        repo: repo.name.clone(),
        tag: git_ref.strip_prefix("refs/tags/").map(String::from),
        git_ref: git_ref.clone(),
        sha,
        pull_request: None,
        pr_target_branch: None,
        from_fork: false,
        head_repo: None,
        delivery: None,
        // A manual run builds what a ref points at; its commits' authors
        // are not known here.
        author: None,
    };
    let branch = git_ref.strip_prefix("refs/heads/").map(String::from);
    let run = crate::runs::queued_run(&repo.name, &repo.pipeline, "manual", branch, source);
    queue(&state, run).await
}

async fn queue(
    state: &AppState,
    run: RunRecord,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let how = crate::runs::Submit {
        report: true,
        ..Default::default()
    };
    let id = match state.queue.submit_async(run, how).await? {
        crate::runs::Submitted::Queued { run, .. } | crate::runs::Submitted::Duplicate(run) => run,
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "queued", "run": id })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    offset: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct LogChunk {
    step: String,
    offset: usize,
    /// Ask for this offset next to get only what was added since.
    next_offset: usize,
    /// True once the step has ended: nothing more will be added.
    complete: bool,
    text: String,
}

/// `GET /api/v1/runs/{id}/logs/{step}?offset=N`
pub async fn get_log(
    State(state): State<AppState>,
    _: Reader,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Json<LogChunk>, ApiError> {
    let run = state.store.find_run(&id)?;
    let Some(record) = run.steps.iter().find(|s| s.name == step) else {
        let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "run {} has no step `{step}` (steps: {})",
                run.id,
                names.join(", ")
            ),
        ));
    };
    let complete = record.status.is_ended();
    let offset = q.offset.unwrap_or(0);
    let (text, next_offset) = state.store.read_log_from(&run.id, &step, offset)?;
    Ok(Json(LogChunk {
        step,
        offset,
        next_offset,
        complete,
        text,
    }))
}

/// `GET /api/v1/runs/{id}/artifacts/{step}/{path}`: the file's bytes.
pub async fn get_artifact(
    State(state): State<AppState>,
    _: Reader,
    Path((id, step, path)): Path<(String, String, String)>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let run = state.store.find_run(&id)?;
    // Only what the run recorded is served: no path reaches outside it.
    let known = run
        .steps
        .iter()
        .find(|s| s.name == step)
        .is_some_and(|s| s.artifacts.iter().any(|(p, _)| *p == path));
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("run {} has no artifact `{path}` from step `{step}`", run.id),
        ));
    }
    let file = state.artifacts_root.join(&run.id).join(&step).join(&path);
    // Streamed from disk, never read whole: artifacts can be large.
    let opened = tokio::fs::File::open(&file).await;
    let length = match &opened {
        Ok(f) => f.metadata().await.ok().map(|m| m.len()),
        Err(_) => None,
    };
    let file = opened.map_err(|e| {
        ApiError::new(
            StatusCode::GONE,
            "gone",
            format!(
                "artifact `{path}` of run {} is no longer stored: {e}",
                run.id
            ),
        )
    })?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response();
    if let Some(n) = length {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_LENGTH, n.into());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::http::{AppState, app};
    use crate::store::{SourceRecord, StepRecord, Store};

    use super::*;

    const READER: &str = "reader-token-0123456789";

    fn state() -> (AppState, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("slipway-api-{}", crate::ids::new_run_id()));
        let config = Config::parse(
            "t.toml",
            &format!("[[tokens]]\nuser = \"rita\"\ntoken = \"{READER}\"\nscope = \"read\"\n"),
        )
        .unwrap();
        let store = Store::open(&dir).unwrap();
        for (i, (repo, status)) in [
            ("acme/web", RunStatus::Success),
            ("acme/api", RunStatus::Failed),
            ("acme/web", RunStatus::Failed),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .put_run(&RunRecord {
                    created_ms: 1000 + i as u64,
                    finished_ms: Some(2000 + i as u64),
                    steps: vec![
                        StepRecord {
                            status: StepStatus::Success,
                            exit_code: Some(0),
                            attempts: 1,
                            started_ms: Some(1100),
                            finished_ms: Some(1300),
                            ..StepRecord::pending("build", &[])
                        },
                        StepRecord {
                            status: if status == RunStatus::Success {
                                StepStatus::Success
                            } else {
                                StepStatus::Failed
                            },
                            exit_code: Some(1),
                            attempts: 1,
                            started_ms: Some(1300),
                            finished_ms: Some(1900),
                            ..StepRecord::pending("test", &["build".into()])
                        },
                    ],
                    source: Some(SourceRecord {
                        repo: repo.into(),
                        git_ref: "refs/heads/main".into(),
                        sha: format!("{i}{i}{i}"),
                        tag: None,
                        pull_request: None,
                        pr_target_branch: None,
                        from_fork: false,
                        head_repo: None,
                        delivery: None,
                        author: None,
                    }),
                    ..RunRecord::new(
                        &format!("{i}abc{i}"),
                        "p",
                        ".slipway.yml",
                        "push",
                        Some("main".into()),
                        status,
                    )
                })
                .unwrap();
        }
        store
            .append_log("0abc0", "build", "line one\nline two\n")
            .unwrap();
        let config = Arc::new(config);
        (AppState::for_tests(config, store), dir)
    }

    async fn get(
        state: &AppState,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = app(state.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_api_needs_a_known_token() {
        let (state, dir) = state();
        let (status, json) = get(&state, "/api/v1/runs", None).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        assert_eq!(
            get(&state, "/api/v1/runs", Some("wrong-token-0123456789"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn runs_list_filters_and_pages() {
        let (state, dir) = state();
        let (status, json) = get(&state, "/api/v1/runs?repo=acme/web&limit=1", Some(READER)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["runs"][0]["id"], "2abc2");
        let next = json["next"].as_str().unwrap().to_string();
        let (_, json) = get(
            &state,
            &format!("/api/v1/runs?repo=acme/web&limit=1&cursor={next}"),
            Some(READER),
        )
        .await;
        assert_eq!(json["runs"][0]["id"], "0abc0");
        let (_, json) = get(&state, "/api/v1/runs?status=failed", Some(READER)).await;
        let ids: Vec<&str> = json["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["2abc2", "1abc1"]);
        assert!(json["next"].is_null());
        let (status, json) = get(&state, "/api/v1/runs?cursor=nope", Some(READER)).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_request"))
        );
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn one_run_with_steps_edges_and_logs_from_an_offset() {
        let (state, dir) = state();
        let (status, run) = get(&state, "/api/v1/runs/0ab", Some(READER)).await;
        assert_eq!(status, StatusCode::OK, "{run}");
        assert_eq!(run["repo"], "acme/web");
        assert_eq!(run["duration_ms"], 1000);
        assert_eq!(run["edges"], serde_json::json!([["test", "build"]]));
        assert_eq!(run["steps"][1]["duration_ms"], 600);
        let (_, log) = get(&state, "/api/v1/runs/0abc0/logs/build", Some(READER)).await;
        assert_eq!(
            (
                log["text"].as_str(),
                log["next_offset"].as_u64(),
                log["complete"].as_bool()
            ),
            (Some("line one\nline two\n"), Some(18), Some(true))
        );
        let (_, log) = get(
            &state,
            "/api/v1/runs/0abc0/logs/build?offset=9",
            Some(READER),
        )
        .await;
        assert_eq!(log["text"], "line two\n");
        let (status, json) = get(&state, "/api/v1/runs/0abc0/logs/deploy", Some(READER)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            json["error"]["message"],
            "run 0abc0 has no step `deploy` (steps: build, test)"
        );
        assert_eq!(
            get(&state, "/api/v1/runs/ffff", Some(READER)).await.0,
            StatusCode::NOT_FOUND
        );
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
