//! Commit statuses on the forge: pending when a run is queued, its outcome
//! when it ends. Reporting is retried and never fails the run; when it gives
//! up, the failure is kept as a note on the run.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::StatusState;
use tracing::{debug, warn};

use crate::config::{Provider, Repo};
use crate::store::{RunStatus, Store};

/// The status context forges show next to the commit.
pub const CONTEXT: &str = "slipway";
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The commit status for a run status, and the description shown with it.
pub fn status_for(run_status: RunStatus, error: Option<&str>) -> (StatusState, String) {
    let note = |s: &str| match error {
        Some(e) => format!("{s}: {}", first_line(e)),
        None => s.to_string(),
    };
    match run_status {
        RunStatus::Queued => (StatusState::Pending, "queued".into()),
        RunStatus::Running => (StatusState::Pending, "running".into()),
        RunStatus::Success => (StatusState::Success, "passed".into()),
        // Not built at all is not a failure of the commit.
        RunStatus::Skipped => (StatusState::Success, note("skipped")),
        RunStatus::Failed => (StatusState::Failure, note("failed")),
        other @ (RunStatus::Error | RunStatus::Cancelled | RunStatus::Interrupted) => {
            (StatusState::Error, note(other.as_str()))
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    // GitHub rejects descriptions over 140 characters.
    line.chars().take(120).collect()
}

/// An API client for the repository's forge and its base URL; `None`
/// when no token is configured, or the forge does not speak GitHub's API
/// (GitLab: see [`gitlab_client`]).
pub fn forge_client(repo: &Repo) -> Result<Option<(Octocrab, String)>, String> {
    if repo.provider == Provider::Gitlab {
        return Ok(None);
    }
    client_for(repo, "https://api.github.com")
}

/// GitLab speaks its own API, but octocrab's HTTP client (base URL, bearer
/// token, which GitLab accepts for access tokens) serves for the one call
/// Slipway makes: setting a commit status.
fn gitlab_client(repo: &Repo) -> Result<Option<(Octocrab, String)>, String> {
    client_for(repo, "https://gitlab.com/api/v4")
}

fn client_for(repo: &Repo, default_base: &str) -> Result<Option<(Octocrab, String)>, String> {
    let Some(token) = &repo.api_token else {
        return Ok(None);
    };
    let base = repo.api_url.clone().unwrap_or_else(|| default_base.into());
    let client = Octocrab::builder()
        .base_uri(base.as_str())
        .and_then(|b| b.personal_token(token.clone()).build())
        .map_err(|e| format!("cannot set up the API client for {base}: {e}"))?;
    Ok(Some((client, base)))
}

/// GitLab's name for a run status's commit status.
pub fn gitlab_state(run_status: RunStatus) -> &'static str {
    match run_status {
        RunStatus::Queued => "pending",
        RunStatus::Running => "running",
        RunStatus::Success | RunStatus::Skipped => "success",
        RunStatus::Cancelled => "canceled",
        RunStatus::Failed | RunStatus::Error | RunStatus::Interrupted => "failed",
    }
}

/// Reports a run's status for its commit, if the repository has an API to
/// report to; returns an error message only when every attempt failed.
pub async fn report(
    repo: &Repo,
    sha: &str,
    run_status: RunStatus,
    error: Option<&str>,
    target_url: &str,
) -> Result<(), String> {
    let gitlab = repo.provider == Provider::Gitlab;
    let client = if gitlab {
        gitlab_client(repo)?
    } else {
        forge_client(repo)?
    };
    let Some((client, base)) = client else {
        return Ok(());
    };
    let Some((owner, name)) = repo.name.split_once('/') else {
        return Ok(());
    };
    let (state, description) = status_for(run_status, error);
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = if gitlab {
            let body = serde_json::json!({
                "state": gitlab_state(run_status),
                "name": CONTEXT,
                "description": description,
                "target_url": target_url,
            });
            // The project is named by its path, URL-encoded as one segment.
            let route = format!("/projects/{}/statuses/{sha}", repo.name.replace('/', "%2F"));
            match client._post(route, Some(&body)).await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let text = client.body_to_string(resp).await.unwrap_or_default();
                    Err(format!("{} ({status})", first_line(&text)))
                }
                Err(e) => Err(error_text(&e)),
            }
        } else {
            client
                .repos(owner, name)
                .create_status(sha.to_string(), state)
                .context(CONTEXT.to_string())
                .description(description.clone())
                .target(target_url.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| error_text(&e))
        };
        match sent {
            Ok(()) => {
                debug!(%sha, ?state, "commit status reported");
                return Ok(());
            }
            Err(e) => {
                last = e;
                warn!(%sha, attempt, error = %last, "reporting the commit status failed");
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(format!(
        "could not report status `{description}` for {sha} to {base} after {ATTEMPTS} attempts: {last}"
    ))
}

fn error_text(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            format!("{} ({})", source.message, source.status_code)
        }
        other => other.to_string(),
    }
}

/// Reports a stored run's current status; a failure becomes a note on the run.
pub async fn report_run(store: &Store, repo: &Repo, run_id: &str, public_url: &str) {
    let Ok(Some(run)) = store.get_run(run_id) else {
        return;
    };
    let Some(source) = &run.source else { return };
    let target = format!(
        "{}/api/v1/runs/{}",
        public_url.trim_end_matches('/'),
        run.id
    );
    if let Err(message) = report(repo, &source.sha, run.status, run.error.as_deref(), &target).await
    {
        let _ = store.update_run(run_id, |r| r.notes.push(message));
        let _ = store.flush();
    }
}

/// Starts the reporter: it takes run ids and reports each run's status *as
/// stored when the id is taken*, one at a time. Whatever the order of
/// "queued" and "finished" requests, the last report shows the final state.
pub fn spawn_reporter(
    store: Store,
    config: std::sync::Arc<crate::config::Config>,
) -> tokio::sync::mpsc::Sender<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    tokio::spawn(async move {
        while let Some(run_id) = rx.recv().await {
            let Ok(Some(run)) = store.get_run(&run_id) else {
                continue;
            };
            let Some(repo) = run
                .source
                .as_ref()
                .and_then(|s| config.repo(&s.repo))
                .cloned()
            else {
                continue;
            };
            report_run(&store, &repo, &run_id, &config.public_url).await;
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// GitLab has no octocrab model: the status goes out as GitLab's own
    /// call, to a fake GitLab on loopback that fails the first attempt.
    #[tokio::test]
    async fn gitlab_statuses_are_set_through_gitlabs_api_with_retries() {
        type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .fallback(
                |axum::extract::State(seen): axum::extract::State<Seen>,
                 uri: axum::http::Uri,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let mut s = seen.lock().unwrap();
                    s.push((
                        uri.path().to_string(),
                        headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                        serde_json::from_slice(&body).unwrap_or_default(),
                    ));
                    if s.len() == 1 {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy")
                    } else {
                        (axum::http::StatusCode::CREATED, "{}")
                    }
                },
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let config = crate::config::Config::parse(
            "t.toml",
            &format!(
                "[[repos]]\nname = \"acme/web\"\nprovider = \"gitlab\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n\
                 api_url = \"http://{addr}/api/v4\"\napi_token = \"glpat-test\"\n"
            ),
        )
        .unwrap();
        report(
            &config.repos[0],
            "abc123",
            RunStatus::Success,
            None,
            "http://ci/api/v1/runs/r1",
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "one retry after the 500: {seen:?}");
        let (path, auth, body) = &seen[1];
        assert_eq!(path, "/api/v4/projects/acme%2Fweb/statuses/abc123");
        assert_eq!(auth, "Bearer glpat-test");
        assert_eq!(body["state"], "success");
        assert_eq!(body["name"], "slipway");
        assert_eq!(body["target_url"], "http://ci/api/v1/runs/r1");
        assert_eq!(gitlab_state(RunStatus::Cancelled), "canceled");
        assert_eq!(gitlab_state(RunStatus::Interrupted), "failed");
        assert_eq!(gitlab_state(RunStatus::Queued), "pending");
    }

    #[test]
    fn run_statuses_map_to_commit_statuses() {
        assert_eq!(
            status_for(RunStatus::Queued, None),
            (StatusState::Pending, "queued".into())
        );
        assert_eq!(
            status_for(RunStatus::Success, None),
            (StatusState::Success, "passed".into())
        );
        assert_eq!(
            status_for(RunStatus::Failed, None),
            (StatusState::Failure, "failed".into())
        );
        assert_eq!(
            status_for(RunStatus::Error, Some("p.yml:1:1: error: x\nmore")),
            (StatusState::Error, "error: p.yml:1:1: error: x".into())
        );
        assert_eq!(
            status_for(RunStatus::Skipped, Some("`on:` does not include pushes")).0,
            StatusState::Success
        );
        assert_eq!(
            status_for(RunStatus::Cancelled, Some("superseded by run abc")).1,
            "cancelled: superseded by run abc"
        );
    }
}
