//! `POST /hooks/{provider}`: a forge's webhook, verified before anything
//! is stored, becomes a durably queued run before it is answered 202.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{info, warn};

use crate::config::Provider;
use crate::forge::webhook::{self, BuildRequest, Verdict, WebhookError};
use crate::http::{ApiError, AppState};
use crate::runs::{Submit, Submitted};
use crate::store::SourceRecord;

fn provider(name: &str) -> Option<Provider> {
    match name {
        "github" => Some(Provider::Github),
        "gitea" => Some(Provider::Gitea),
        "forgejo" => Some(Provider::Forgejo),
        "gitlab" => Some(Provider::Gitlab),
        _ => None,
    }
}

/// `POST /hooks/{provider}`, counted by outcome.
pub(super) async fn hook(
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
    // An unknown repository is answered as a bad signature is, so the
    // answers tell nobody which repositories this server builds; the log
    // tells its operator.
    let repo = state
        .config
        .repo(&repo_name)
        .filter(|r| r.provider == provider)
        .ok_or_else(|| {
            info!(repo = %repo_name, provider = %provider_name, "webhook for a repository not configured here");
            ApiError::from(WebhookError::BadSignature)
        })?;
    webhook::verify(provider, &repo.webhook_secret, &headers, &body)?;
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
    let run = crate::runs::queued_run(
        &repo.name,
        &repo.pipeline,
        &build.event,
        build.branch.clone(),
        source_of(&repo.name, &build, &delivery),
    );
    let how = Submit {
        delivery: Some(format!("{provider_name}:{delivery}")),
        supersede: true,
        report: true,
    };
    let submitted = state
        .queue
        .submit_async(run, how)
        .await
        .map_err(ApiError::internal)?;
    Ok(match submitted {
        Submitted::Queued { run, superseded } => {
            info!(repo = %repo.name, %event, run_id = %run, "run queued");
            if !superseded.is_empty() {
                info!(run_id = %run, superseded = ?superseded, "older runs of the ref cancelled");
            }
            let answer = Json(json!({ "status": "queued", "run": run }));
            ("accepted", (StatusCode::ACCEPTED, answer).into_response())
        }
        Submitted::Duplicate(run) => {
            let reason = format!("delivery `{delivery}` was accepted before, as run {run}");
            let answer = Json(json!({ "status": "duplicate", "run": run, "reason": reason }));
            ("duplicate", (StatusCode::OK, answer).into_response())
        }
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
        info!(organization = %org, provider = %provider_name, "webhook for an organization with no repository here");
        return Err(WebhookError::BadSignature.into());
    }
    let mut first_error = None;
    let mut reached = Vec::new();
    for repo in &candidates {
        match webhook::verify(provider, &repo.webhook_secret, headers, body) {
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

fn source_of(repo: &str, build: &BuildRequest, delivery: &str) -> SourceRecord {
    SourceRecord {
        repo: repo.to_string(),
        git_ref: build.git_ref.clone(),
        sha: build.sha.clone(),
        tag: build.tag.clone(),
        pull_request: build.pull_request.as_ref().map(|p| p.number),
        pr_target_branch: build.pull_request.as_ref().map(|p| p.target_branch.clone()),
        from_fork: build.pull_request.as_ref().is_some_and(|p| p.from_fork),
        head_repo: build
            .pull_request
            .as_ref()
            .and_then(|p| p.head_repo.clone()),
        delivery: Some(delivery.to_string()),
        author: build.author.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::app;
    use crate::http::tests::{SECRET, test_state};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::forge::webhook::fixture;

    fn state() -> (AppState, std::path::PathBuf) {
        test_state("")
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
        assert_eq!(run.status.as_str(), "queued");
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

    /// Issue 14's host command execution, at the door: a signed push whose
    /// `after` is a git option is answered 400 and nothing is queued.
    #[tokio::test]
    async fn a_signed_push_with_an_option_for_a_commit_id_is_refused() {
        let (state, dir) = state();
        let body = String::from_utf8(fixture("push.branch-created.json"))
            .unwrap()
            .replace(
                "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                "--upload-pack=touch pwned; git-upload-pack",
            );
        let (status, json) = send(
            &state,
            "push",
            "evil-1",
            body.as_bytes(),
            signed(body.as_bytes()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("is not a commit id")),
            "{json}"
        );
        assert!(state.store.list_runs(10).unwrap().is_empty());
        assert!(state.store.queued().unwrap().is_empty());
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
            (StatusCode::UNAUTHORIZED, Some("bad_signature"))
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
            (StatusCode::UNAUTHORIZED, Some("bad_signature"))
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
}
