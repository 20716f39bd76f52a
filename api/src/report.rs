//! Commit statuses on the forge: pending when a run is queued, its outcome
//! when it ends. Reporting is retried and never fails the run; when it gives
//! up, the failure is kept as a note on the run.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::StatusState;
use tracing::{debug, warn};

use crate::config::{Provider, Repo};
use crate::store::Store;

/// The status context forges show next to the commit.
pub const CONTEXT: &str = "slipway";
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The commit status for a run status, and the description shown with it.
pub fn status_for(run_status: &str, error: Option<&str>) -> (StatusState, String) {
    let note = |s: &str| match error {
        Some(e) => format!("{s}: {}", first_line(e)),
        None => s.to_string(),
    };
    match run_status {
        "queued" => (StatusState::Pending, "queued".into()),
        "running" => (StatusState::Pending, "running".into()),
        "success" => (StatusState::Success, "passed".into()),
        // Not built at all is not a failure of the commit.
        "skipped" => (StatusState::Success, note("skipped")),
        "failed" => (StatusState::Failure, note("failed")),
        other => (StatusState::Error, note(other)),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    // GitHub rejects descriptions over 140 characters.
    line.chars().take(120).collect()
}

/// Reports a run's status for its commit, if the repository has an API to
/// report to; returns an error message only when every attempt failed.
/// An API client for the repository's forge and its base URL; `None`
/// when no token is configured, or the forge does not speak GitHub's API
/// (GitLab).
pub fn forge_client(repo: &Repo) -> Result<Option<(Octocrab, String)>, String> {
    let Some(token) = &repo.api_token else {
        return Ok(None);
    };
    if repo.provider == Provider::Gitlab {
        return Ok(None);
    }
    let base = repo
        .api_url
        .clone()
        .unwrap_or_else(|| "https://api.github.com".into());
    let client = Octocrab::builder()
        .base_uri(base.as_str())
        .and_then(|b| b.personal_token(token.clone()).build())
        .map_err(|e| format!("cannot set up the API client for {base}: {e}"))?;
    Ok(Some((client, base)))
}

pub async fn report(
    repo: &Repo,
    sha: &str,
    run_status: &str,
    error: Option<&str>,
    target_url: &str,
) -> Result<(), String> {
    let Some((client, base)) = forge_client(repo)? else {
        return Ok(());
    };
    let Some((owner, name)) = repo.name.split_once('/') else {
        return Ok(());
    };
    let (state, description) = status_for(run_status, error);
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .repos(owner, name)
            .create_status(sha.to_string(), state)
            .context(CONTEXT.to_string())
            .description(description.clone())
            .target(target_url.to_string())
            .send()
            .await;
        match sent {
            Ok(_) => {
                debug!(%sha, ?state, "commit status reported");
                return Ok(());
            }
            Err(e) => {
                last = error_text(&e);
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
    if let Err(message) = report(
        repo,
        &source.sha,
        &run.status,
        run.error.as_deref(),
        &target,
    )
    .await
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

    #[test]
    fn run_statuses_map_to_commit_statuses() {
        assert_eq!(
            status_for("queued", None),
            (StatusState::Pending, "queued".into())
        );
        assert_eq!(
            status_for("success", None),
            (StatusState::Success, "passed".into())
        );
        assert_eq!(
            status_for("failed", None),
            (StatusState::Failure, "failed".into())
        );
        assert_eq!(
            status_for("error", Some("p.yml:1:1: error: x\nmore")),
            (StatusState::Error, "error: p.yml:1:1: error: x".into())
        );
        assert_eq!(
            status_for("skipped", Some("`on:` does not include pushes")).0,
            StatusState::Success
        );
        assert_eq!(
            status_for("cancelled", Some("superseded by run abc")).1,
            "cancelled: superseded by run abc"
        );
    }
}
