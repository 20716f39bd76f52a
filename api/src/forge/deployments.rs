//! Deployments and pull request comments on the repository's forge: one
//! implementation for promotions (a deployment per environment) and
//! previews (a deployment to `preview/pr-<n>` and one comment per pull
//! request). Every call answers `Ok(None)` where the repository has no
//! forge API configured, so callers need not ask first.

use octocrab::models::repos::DeploymentStatusState;
use octocrab::models::{CommentId, DeploymentId};

use crate::config::Repo;
use crate::forge::status::forge_client;

/// A deployment to create.
pub struct NewDeployment {
    /// The commit deployed.
    pub sha: String,
    pub environment: String,
    pub description: String,
    /// Where users are (the last environment of a promotion chain).
    pub production: bool,
    /// Goes away by itself (a preview).
    pub transient: bool,
}

/// The state of a deployment, as the forge is told.
pub struct DeploymentState<'a> {
    pub state: DeploymentStatusState,
    /// At most 140 characters are kept (GitHub's limit).
    pub description: Option<&'a str>,
    /// Where the deployment can be seen (a preview's URL).
    pub url: Option<&'a str>,
    /// The environment's earlier deployments become inactive.
    pub supersede: bool,
}

fn owner_name(repo: &Repo) -> Option<(&str, &str)> {
    repo.name.split_once('/')
}

/// Creates the deployment; its id, `None` without a forge API.
pub async fn create(repo: &Repo, d: &NewDeployment) -> Result<Option<u64>, String> {
    let (Some((client, _)), Some((owner, name))) = (forge_client(repo)?, owner_name(repo)) else {
        return Ok(None);
    };
    let made = client
        .repos(owner, name)
        .deployments()
        .create(d.sha.clone())
        .environment(d.environment.clone())
        .auto_merge(false)
        .required_contexts(Vec::<String>::new())
        .transient_environment(d.transient)
        .production_environment(d.production)
        .description(d.description.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(made.id.0))
}

/// Sets a deployment's state.
pub async fn set_state(repo: &Repo, id: u64, s: &DeploymentState<'_>) -> Result<(), String> {
    let (Some((client, _)), Some((owner, name))) = (forge_client(repo)?, owner_name(repo)) else {
        return Ok(());
    };
    let repos = client.repos(owner, name);
    let deployments = repos.deployments();
    let statuses = deployments.statuses(DeploymentId(id));
    let mut status = statuses.create(s.state);
    if let Some(description) = s.description {
        status = status.description(description.chars().take(140).collect::<String>());
    }
    if let Some(url) = s.url {
        status = status.environment_url(url.to_string());
    }
    if s.supersede {
        status = status.auto_inactive(true);
    }
    status.send().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes the pull request's comment, or edits the one written before
/// (`existing`); with `create` false, only edits. Returns the comment's id.
pub async fn comment(
    repo: &Repo,
    pull_request: u64,
    existing: Option<u64>,
    body: String,
    create: bool,
) -> Result<Option<u64>, String> {
    let (Some((client, _)), Some((owner, name))) = (forge_client(repo)?, owner_name(repo)) else {
        return Ok(existing);
    };
    let issues = client.issues(owner, name);
    match existing {
        Some(id) => {
            issues
                .update_comment(CommentId(id), body)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(id))
        }
        None if create => {
            let made = issues
                .create_comment(pull_request, body)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(made.id.0))
        }
        None => Ok(None),
    }
}
