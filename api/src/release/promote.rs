//! Promotions: the exact digest a green run built moves from environment
//! to environment, each move gated by the environment's policy from the
//! server config. Every decision is one store transaction with its audit
//! entry; the copy is done by digest with oci-client, then the pipeline's
//! deploy steps for the environment run as a run of their own.

use std::sync::Arc;
use std::time::Duration;

use slipway_runner::registry::Copier;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use octocrab::models::repos::DeploymentStatusState;

use crate::config::{Config, Environment, Repo};
use crate::forge::deployments;
use crate::ids::{new_run_id, now_ms};
use crate::store::{
    Deploy, EnvState, Promotion, PromotionStatus, Refused, RunRecord, RunStatus, Store, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// Refused by policy or state (the reason says which).
    #[error("{0}")]
    Refused(String),
    #[error("promotion {0} of this environment is still open; approve, reject or wait for it")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Promoter {
    pub config: Arc<Config>,
    pub store: Store,
    /// Where deploy runs go.
    pub queue: crate::runs::Queue,
    pub shutdown: CancellationToken,
}

fn refused(r: Refused, id: &str) -> PromoteError {
    match r {
        Refused::Busy(other) => PromoteError::Busy(other),
        Refused::No(why) => PromoteError::Refused(why),
        Refused::NotFound => PromoteError::NotFound(format!("no promotion `{id}`")),
    }
}

/// `repository@sha256:...` -> `sha256:...`
fn digest_of(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, d)| d)
}

/// A green run on the default branch lands in the `auto` environment.
impl crate::runs::RunFollower for Promoter {
    fn run_finished(self: Arc<Self>, run: &RunRecord, _: Option<&slipway_engine::Pipeline>) {
        self.after_run(run);
    }
}

impl Promoter {
    pub fn new(config: Arc<Config>, store: Store, queue: crate::runs::Queue) -> Arc<Promoter> {
        Arc::new(Promoter {
            config,
            store,
            queue,
            shutdown: CancellationToken::new(),
        })
    }

    fn repo(&self, name: &str) -> Result<&Repo, PromoteError> {
        self.config
            .repo(name)
            .ok_or_else(|| PromoteError::NotFound(format!("repository `{name}` is not configured")))
    }

    fn environment<'a>(&self, repo: &'a Repo, name: &str) -> Result<&'a Environment, PromoteError> {
        repo.environment(name).ok_or_else(|| {
            let names: Vec<&str> = repo.environments.iter().map(|e| e.name.as_str()).collect();
            PromoteError::NotFound(format!(
                "`{}` has no environment `{name}` (environments: {})",
                repo.name,
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// The run of `repo` whose build step pushed `digest`.
    fn building_run(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<(RunRecord, String)>, StoreError> {
        for run in self.store.list_runs(usize::MAX)? {
            if run.source.as_ref().is_none_or(|s| s.repo != repo) || run.deploy.is_some() {
                continue;
            }
            if let Some(image) = run
                .steps
                .iter()
                .filter_map(|s| s.output.as_deref())
                .find(|o| digest_of(o) == Some(digest))
            {
                return Ok(Some((run.clone(), image.to_string())));
            }
        }
        Ok(None)
    }

    /// A request to move `digest` (default: what the `from` environment
    /// holds) into `env`. Starts at once when the environment needs no
    /// approval.
    pub fn request(
        self: &Arc<Self>,
        repo_name: &str,
        env_name: &str,
        digest: Option<&str>,
        user: &str,
    ) -> Result<Promotion, PromoteError> {
        let repo = self.repo(repo_name)?;
        let env = self.environment(repo, env_name)?;
        // Where the bytes come from: the `from` environment's repository,
        // or (for an environment fed by builds) where the build pushed them.
        let (digest, from_image) = match &env.from {
            Some(from) => {
                let from_env = self.environment(repo, from)?;
                let held = self.store.environment_state(&repo.name, from)?;
                let digest = match (digest, &held) {
                    (Some(d), _) => d.to_string(),
                    (None, Some(h)) => h.digest.clone(),
                    (None, None) => {
                        return Err(PromoteError::Refused(format!(
                            "`{from}` holds no image yet, so there is nothing to promote to `{env_name}`"
                        )));
                    }
                };
                let reached = self
                    .store
                    .environment_history(&repo.name, from)?
                    .iter()
                    .any(|h| h.digest == digest);
                if !reached {
                    return Err(PromoteError::Refused(format!(
                        "{digest} never reached `{from}`; only digests that did can be promoted to `{env_name}`"
                    )));
                }
                (digest, Some(from_env.image.clone()))
            }
            None => {
                let digest = digest.ok_or_else(|| {
                    PromoteError::Refused(format!(
                        "name the digest to promote to `{env_name}` (--digest sha256:...)"
                    ))
                })?;
                (digest.to_string(), None)
            }
        };
        let Some((built, pushed)) = self.building_run(&repo.name, &digest)? else {
            return Err(PromoteError::Refused(format!(
                "no run of `{}` built {digest}",
                repo.name
            )));
        };
        if built.status != RunStatus::Success {
            return Err(PromoteError::Refused(format!(
                "run {} that built {digest} did not succeed ({})",
                built.id, built.status
            )));
        }
        // A pull request's image is for its preview: what reaches an
        // environment is built from the repository's own branches and tags.
        if let Some(pr) = built.source.as_ref().and_then(|s| s.pull_request) {
            return Err(PromoteError::Refused(format!(
                "run {} that built {digest} is of pull request #{pr}; only builds of branches and tags are promoted",
                built.id
            )));
        }
        let source = match from_image {
            Some(image) => format!("{image}@{digest}"),
            None => pushed,
        };
        let (run, sha, author) = (
            Some(built.id.clone()),
            built.source.as_ref().map(|s| s.sha.clone()),
            built.source.as_ref().and_then(|s| s.author.clone()),
        );
        let now = now_ms();
        let promotion = Promotion {
            id: format!("p{}", new_run_id()),
            repo: repo.name.clone(),
            environment: env.name.clone(),
            from: env.from.clone(),
            digest,
            source,
            run,
            sha,
            author,
            requested_by: user.into(),
            created_ms: now,
            expires_ms: now + env.expires_after.as_millis() as u64,
            status: if env.approvals == 0 {
                PromotionStatus::Approved
            } else {
                PromotionStatus::Pending
            },
            approvals: Vec::new(),
            rejection: None,
            error: None,
            finished_ms: None,
            attempts: 0,
        };
        self.store
            .create_promotion(&promotion)?
            .map_err(|r| refused(r, &promotion.id))?;
        info!(promotion = %promotion.id, env = env_name, digest = %promotion.digest, "promotion requested");
        if promotion.status == PromotionStatus::Approved {
            self.start(&promotion.id);
        }
        Ok(promotion)
    }

    /// An approver's yes. The approval that completes the count starts the
    /// promotion; any later one is refused, so it starts exactly once.
    pub fn approve(
        self: &Arc<Self>,
        id: &str,
        user: &str,
        comment: Option<String>,
    ) -> Result<Promotion, PromoteError> {
        let (env, _) = self.gate(id, user)?;
        let changed = self
            .store
            .change_promotion(id, |p| {
                if p.status != PromotionStatus::Pending {
                    return Err(format!("promotion {} is {}, not pending", p.id, p.status));
                }
                if now_ms() > p.expires_ms {
                    return Err(format!("promotion {} has expired", p.id));
                }
                if env.prevent_self_approval
                    && (p.requested_by == user || p.author.as_deref() == Some(user))
                {
                    return Err(format!(
                        "{user} requested promotion {} (or wrote its commit) and `{}` forbids approving one's own",
                        p.id, env.name
                    ));
                }
                if p.approvals.iter().any(|a| a.user == user) {
                    return Err(format!("{user} already approved promotion {}", p.id));
                }
                p.approvals.push(crate::store::Decision {
                    user: user.into(),
                    comment: comment.clone(),
                    at_ms: now_ms(),
                });
                if p.approvals.len() >= env.approvals {
                    p.status = PromotionStatus::Approved;
                }
                Ok((user.into(), "approved".into(), comment.clone()))
            })?
            .map_err(|r| refused(r, id))?;
        if changed.status == PromotionStatus::Approved {
            self.start(id);
        }
        Ok(changed)
    }

    /// An approver's no: the request is closed.
    pub fn reject(
        &self,
        id: &str,
        user: &str,
        comment: Option<String>,
    ) -> Result<Promotion, PromoteError> {
        self.gate(id, user)?;
        self.store
            .change_promotion(id, |p| {
                if p.status != PromotionStatus::Pending {
                    return Err(format!("promotion {} is {}, not pending", p.id, p.status));
                }
                p.status = PromotionStatus::Rejected;
                p.rejection = Some(crate::store::Decision {
                    user: user.into(),
                    comment: comment.clone(),
                    at_ms: now_ms(),
                });
                p.finished_ms = Some(now_ms());
                Ok((user.into(), "rejected".into(), comment.clone()))
            })?
            .map_err(|r| refused(r, id))
    }

    /// A failed promotion, tried again (its approvals stand).
    pub fn retry(self: &Arc<Self>, id: &str, user: &str) -> Result<Promotion, PromoteError> {
        let changed = self
            .store
            .change_promotion(id, |p| {
                if p.status != PromotionStatus::Failed {
                    return Err(format!(
                        "promotion {} is {}; only failed ones are retried",
                        p.id, p.status
                    ));
                }
                p.status = PromotionStatus::Approved;
                p.error = None;
                p.finished_ms = None;
                Ok((user.into(), "retried".into(), None))
            })?
            .map_err(|r| refused(r, id))?;
        self.start(id);
        Ok(changed)
    }

    /// The environment of promotion `id`, if `user` approves for it.
    fn gate(&self, id: &str, user: &str) -> Result<(Environment, Promotion), PromoteError> {
        let p = self
            .store
            .promotion(id)?
            .ok_or_else(|| PromoteError::NotFound(format!("no promotion `{id}`")))?;
        let repo = self.repo(&p.repo)?;
        let env = self.environment(repo, &p.environment)?.clone();
        if !env.approvers.iter().any(|a| a == user) {
            return Err(PromoteError::Forbidden(format!(
                "{user} is not an approver of `{}` (approvers: {})",
                env.name,
                env.approvers.join(", ")
            )));
        }
        Ok((env, p))
    }

    fn start(self: &Arc<Self>, id: &str) {
        let this = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.execute(&id).await {
                warn!(promotion = %id, error = %e, "promotion could not be recorded");
            }
        });
    }

    fn fail(&self, id: &str, why: String) -> Result<(), StoreError> {
        warn!(promotion = id, error = %why, "promotion failed");
        self.store
            .change_promotion(id, |p| {
                p.status = PromotionStatus::Failed;
                p.error = Some(why.clone());
                p.finished_ms = Some(now_ms());
                Ok(("slipway".into(), "failed".into(), Some(why.clone())))
            })?
            .ok();
        Ok(())
    }

    /// Copies the digest to the environment's tag, runs the deploy steps,
    /// and records the environment's new digest; on any failure the
    /// environment keeps (and its tag points back at) what it had.
    async fn execute(&self, id: &str) -> Result<(), StoreError> {
        let Ok(p) = self.store.change_promotion(id, |p| {
            if p.status != PromotionStatus::Approved {
                return Err(format!("promotion {} is {}", p.id, p.status));
            }
            p.status = PromotionStatus::Promoting;
            p.attempts += 1;
            Ok(("slipway".into(), "promoting".into(), None))
        })?
        else {
            return Ok(());
        };
        let Some((repo, env)) = self.config.repo(&p.repo).and_then(|r| {
            r.environment(&p.environment)
                .map(|e| (r.clone(), e.clone()))
        }) else {
            return self.fail(id, "the environment is no longer configured".into());
        };
        let deployment = Deployment::start(&repo, &env, &p).await;
        let copier = Copier::new(self.config.registries.clone(), Vec::new());
        let target = env.reference();
        let previous = self.store.environment_state(&repo.name, &env.name)?;
        if let Err(e) = copier.copy(&p.source, &target).await {
            let why = format!("copying {} to {target} failed: {e}", p.source);
            deployment.end(&repo, false, &why).await;
            return self.fail(id, why);
        }
        let image = format!("{}@{}", env.image, p.digest);
        if let Err(why) = self.deploy(&repo, &env, &p, &image).await {
            // The tag moved; put it back where the environment still is.
            if let Some(prev) = &previous
                && let Err(e) = copier.copy(&prev.image, &target).await
            {
                warn!(promotion = id, error = %e, "cannot move the tag back");
            }
            deployment.end(&repo, false, &why).await;
            return self.fail(id, why);
        }
        let state = EnvState {
            digest: p.digest.clone(),
            image,
            run: p.run.clone(),
            sha: p.sha.clone(),
            promotion: p.id.clone(),
            promoted_ms: now_ms(),
        };
        self.store.complete_promotion(id, &state)?.ok();
        deployment
            .end(&repo, true, &format!("{} is in {}", p.digest, env.name))
            .await;
        info!(promotion = id, env = %env.name, "promoted");
        Ok(())
    }

    /// Runs the deploy steps for the environment as a run of their own
    /// and waits for it.
    async fn deploy(
        &self,
        repo: &Repo,
        env: &Environment,
        p: &Promotion,
        image: &str,
    ) -> Result<(), String> {
        let Some(built) = p
            .run
            .as_ref()
            .and_then(|r| self.store.get_run(r).ok().flatten())
        else {
            return Err("the run that built the image is gone".into());
        };
        let Some(source) = built.source.clone() else {
            return Err("the run that built the image has no commit".into());
        };
        let mut run = crate::runs::queued_run(
            &repo.name,
            &repo.pipeline,
            "promotion",
            built.branch.clone(),
            source,
        );
        run.deploy = Some(Deploy {
            environment: env.name.clone(),
            image: image.into(),
            promotion: p.id.clone(),
        });
        let run_id = run.id.clone();
        let mut live = self.store.subscribe();
        self.queue
            .submit(&run, &crate::runs::Submit::default())
            .map_err(|e| e.to_string())?;
        loop {
            if let Some(r) = self.store.get_run(&run_id).map_err(|e| e.to_string())?
                && r.status.is_ended()
            {
                return if r.status == RunStatus::Success {
                    Ok(())
                } else {
                    Err(format!(
                        "deploy run {run_id} {}{}",
                        r.status,
                        r.error.map(|e| format!(": {e}")).unwrap_or_default()
                    ))
                };
            }
            tokio::select! {
                _ = live.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = self.shutdown.cancelled() => return Err("the server stopped during the deploy".into()),
            }
        }
    }

    /// After a green run on the default branch: its image goes to the
    /// repository's `auto` environment.
    pub fn after_run(self: &Arc<Self>, run: &RunRecord) {
        let Some(source) = &run.source else { return };
        if run.status != RunStatus::Success || run.deploy.is_some() || source.pull_request.is_some()
        {
            return;
        }
        let Some(repo) = self.config.repo(&source.repo) else {
            return;
        };
        let Some(env) = repo.environments.iter().find(|e| e.auto) else {
            return;
        };
        let default = repo.default_branch.as_deref().unwrap_or("main");
        if run.branch.as_deref() != Some(default) {
            return;
        }
        let Some(digest) = run
            .steps
            .iter()
            .filter_map(|s| s.output.as_deref())
            .find_map(digest_of)
        else {
            return;
        };
        if let Err(e) = self.request(&repo.name, &env.name, Some(digest), "slipway") {
            warn!(run_id = %run.id, error = %e, "automatic promotion not started");
            let note = format!("automatic promotion to `{}` not started: {e}", env.name);
            let _ = self.store.update_run(&run.id, |r| r.notes.push(note));
        }
    }

    /// After a restart: promotions cut off mid-way fail (retryable);
    /// approved ones start.
    pub fn reconcile(self: &Arc<Self>) -> Result<(), StoreError> {
        for p in self.store.promotions()? {
            match p.status {
                PromotionStatus::Promoting => self.fail(
                    &p.id,
                    "the server stopped during the promotion; retry it".into(),
                )?,
                PromotionStatus::Approved => self.start(&p.id),
                _ => {}
            }
        }
        Ok(())
    }

    /// Closes requests nobody answered in time; run periodically.
    pub fn expire_due(&self) -> Result<(), StoreError> {
        let now = now_ms();
        for p in self.store.promotions()? {
            if p.status == PromotionStatus::Pending && now > p.expires_ms {
                self.store
                    .change_promotion(&p.id, |p| {
                        if p.status != PromotionStatus::Pending {
                            return Err("answered meanwhile".into());
                        }
                        p.status = PromotionStatus::Expired;
                        p.finished_ms = Some(now_ms());
                        Ok(("slipway".into(), "expired".into(), None))
                    })?
                    .ok();
            }
        }
        Ok(())
    }
}

/// The forge's view of a promotion: a deployment of the commit to the
/// environment, `in_progress` while it runs, then `success` or `failure`
/// (GitHub marks the environment's previous deployment inactive). Trouble
/// reporting is logged; it never changes the promotion.
struct Deployment(Option<u64>);

impl Deployment {
    async fn start(repo: &Repo, env: &Environment, p: &Promotion) -> Deployment {
        let Some(sha) = &p.sha else {
            return Deployment(None);
        };
        // The last environment of the chain is where users are.
        let production = !repo
            .environments
            .iter()
            .any(|e| e.from.as_deref() == Some(env.name.as_str()));
        let new = deployments::NewDeployment {
            sha: sha.clone(),
            environment: env.name.clone(),
            description: format!("Slipway promotion {} of {}", p.id, p.digest),
            production,
            transient: false,
        };
        let id = match deployments::create(repo, &new).await {
            Ok(id) => id,
            Err(e) => {
                warn!(promotion = %p.id, error = %e, "cannot report the promotion as a deployment");
                None
            }
        };
        if let Some(id) = id {
            let running = deployments::DeploymentState {
                state: DeploymentStatusState::InProgress,
                description: None,
                url: None,
                supersede: false,
            };
            if let Err(e) = deployments::set_state(repo, id, &running).await {
                warn!(promotion = %p.id, error = %e, "cannot mark the deployment in progress");
            }
        }
        Deployment(id)
    }

    async fn end(&self, repo: &Repo, ok: bool, description: &str) {
        let Some(id) = self.0 else {
            return;
        };
        let state = deployments::DeploymentState {
            state: if ok {
                DeploymentStatusState::Success
            } else {
                DeploymentStatusState::Failure
            },
            description: Some(description),
            url: None,
            supersede: true,
        };
        if let Err(e) = deployments::set_state(repo, id, &state).await {
            warn!(repo = %repo.name, error = %e, "cannot report the deployment's end");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SourceRecord, StepRecord};

    fn promoter(dir: &std::path::Path) -> Arc<Promoter> {
        promoter_with(dir, "")
    }

    /// dev (auto) and prod (alice approves; requests expire at once), and
    /// `more` environments.
    fn promoter_with(dir: &std::path::Path, more: &str) -> Arc<Promoter> {
        let config = Config::parse(
            "t.toml",
            &format!(
                "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n\
                 [[repos.environments]]\nname = \"dev\"\nimage = \"r/acme/web\"\ntag = \"dev\"\nauto = true\n\
                 [[repos.environments]]\nname = \"prod\"\nimage = \"r/acme/web\"\ntag = \"prod\"\nfrom = \"dev\"\n\
                 approvals = 1\napprovers = [\"alice\"]\nexpires_after = \"1ms\"\n{more}"
            ),
        )
        .unwrap();
        let store = Store::open(dir).unwrap();
        let queue = crate::runs::Queue::for_tests(&store);
        Promoter::new(Arc::new(config), store, queue)
    }

    fn built(store: &Store, id: &str, status: RunStatus, digest: &str) {
        built_by(store, id, status, digest, None);
    }

    /// A finished run of acme/web that pushed `digest`, written by `author`.
    fn built_by(store: &Store, id: &str, status: RunStatus, digest: &str, author: Option<&str>) {
        store
            .put_run(&RunRecord {
                finished_ms: Some(now_ms()),
                steps: vec![StepRecord {
                    name: "image".into(),
                    output: Some(format!("r/acme/web@{digest}")),
                    ..Default::default()
                }],
                source: Some(SourceRecord {
                    repo: "acme/web".into(),
                    git_ref: "refs/heads/main".into(),
                    sha: "abc".into(),
                    tag: None,
                    pull_request: None,
                    pr_target_branch: None,
                    from_fork: false,
                    head_repo: None,
                    delivery: None,
                    author: author.map(String::from),
                }),
                ..RunRecord::new(id, "p", ".slipway.yml", "push", Some("main".into()), status)
            })
            .unwrap();
    }

    /// With prevent_self_approval, whoever wrote the commit cannot approve
    /// its promotion either, not just whoever asked for it.
    #[tokio::test]
    async fn the_commit_author_cannot_approve_its_promotion() {
        let dir = std::env::temp_dir().join(format!("slipway-promote-{}", new_run_id()));
        let p = promoter_with(
            &dir,
            "[[repos.environments]]\nname = \"qa\"\nimage = \"r/acme/web\"\ntag = \"qa\"\nfrom = \"dev\"\n\
             approvals = 1\napprovers = [\"alice\", \"bob\"]\nprevent_self_approval = true\n",
        );
        let digest = format!("sha256:{}", "d".repeat(64));
        built_by(&p.store, "r1", RunStatus::Success, &digest, Some("alice"));
        // dev holds it, as after the automatic promotion of that run.
        let to_dev = Promotion {
            status: PromotionStatus::Promoting,
            ..Promotion::pending_for_test("d1", "acme/web", "dev", &digest)
        };
        p.store.create_promotion(&to_dev).unwrap().unwrap();
        p.store
            .complete_promotion(
                "d1",
                &EnvState {
                    digest: digest.clone(),
                    image: format!("r/acme/web@{digest}"),
                    run: Some("r1".into()),
                    sha: Some("abc".into()),
                    promotion: "d1".into(),
                    promoted_ms: now_ms(),
                },
            )
            .unwrap()
            .unwrap();
        let asked = p.request("acme/web", "qa", None, "dave").unwrap();
        assert_eq!(
            asked.author.as_deref(),
            Some("alice"),
            "the author comes from the run"
        );
        let e = p.approve(&asked.id, "alice", None).unwrap_err();
        assert!(e.to_string().contains("wrote its commit"), "{e}");
        assert_eq!(
            p.store
                .promotion(&asked.id)
                .unwrap()
                .unwrap()
                .status
                .as_str(),
            "pending"
        );
        // bob wrote nothing here: his approval counts.
        let approved = p.approve(&asked.id, "bob", None).unwrap();
        assert_eq!(approved.approvals.len(), 1);
        drop(p);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Issue 14: a pull request's image (a fork's included) could be
    /// promoted like any other; only branch and tag builds are now.
    #[tokio::test]
    async fn a_digest_built_by_a_pull_request_is_never_promoted() {
        let dir = std::env::temp_dir().join(format!("slipway-promote-{}", new_run_id()));
        let p = promoter(&dir);
        let digest = format!("sha256:{}", "d".repeat(64));
        built(&p.store, "pr1", RunStatus::Success, &digest);
        p.store
            .update_run("pr1", |r| {
                let source = r.source.as_mut().expect("a source");
                source.pull_request = Some(2);
                source.from_fork = true;
            })
            .unwrap();
        let e = p
            .request("acme/web", "dev", Some(&digest), "dave")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("is of pull request #2; only builds of branches and tags are promoted"),
            "{e}"
        );
        drop(p);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn unanswered_requests_expire_and_unbuilt_or_failed_digests_are_refused() {
        let dir = std::env::temp_dir().join(format!("slipway-promote-{}", new_run_id()));
        let p = promoter(&dir);
        let good = format!("sha256:{}", "a".repeat(64));
        let bad = format!("sha256:{}", "b".repeat(64));
        built(&p.store, "r1", RunStatus::Success, &good);
        built(&p.store, "r2", RunStatus::Failed, &bad);
        // Requests to dev need a digest from a green run of the repo.
        let e = p
            .request("acme/web", "dev", Some(&bad), "dave")
            .unwrap_err();
        assert!(e.to_string().contains("run r2 that built"), "{e}");
        assert!(e.to_string().contains("did not succeed (failed)"), "{e}");
        let e = p
            .request(
                "acme/web",
                "dev",
                Some(&format!("sha256:{}", "c".repeat(64))),
                "dave",
            )
            .unwrap_err();
        assert!(e.to_string().contains("no run of `acme/web` built"), "{e}");
        // Prod takes only what dev holds, and dev holds nothing yet.
        let e = p.request("acme/web", "prod", None, "dave").unwrap_err();
        assert!(e.to_string().contains("`dev` holds no image yet"), "{e}");
        let e = p.request("acme/web", "qa", None, "dave").unwrap_err();
        assert!(
            e.to_string()
                .contains("no environment `qa` (environments: dev, prod)"),
            "{e}"
        );

        // A request nobody answers in time expires, on the audit log too.
        p.store
            .complete_promotion(
                "none",
                &EnvState {
                    digest: good.clone(),
                    image: format!("r/acme/web@{good}"),
                    run: Some("r1".into()),
                    sha: Some("abc".into()),
                    promotion: "none".into(),
                    promoted_ms: now_ms(),
                },
            )
            .unwrap()
            .unwrap_err();
        let pending = Promotion {
            run: Some("r1".into()),
            sha: Some("abc".into()),
            expires_ms: now_ms(),
            ..Promotion::pending_for_test("p1", "acme/web", "prod", &good)
        };
        p.store.create_promotion(&pending).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let e = p.approve("p1", "alice", None).unwrap_err();
        assert!(e.to_string().contains("has expired"), "{e}");
        p.expire_due().unwrap();
        assert_eq!(
            p.store.promotion("p1").unwrap().unwrap().status.as_str(),
            "expired"
        );
        let actions: Vec<String> = p
            .store
            .audit_log()
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(actions, ["requested", "expired"]);
        // The environment is free again.
        let again = Promotion {
            id: "p2".into(),
            expires_ms: now_ms() + 60_000,
            ..pending
        };
        p.store.create_promotion(&again).unwrap().unwrap();
        drop(p);
        let _ = std::fs::remove_dir_all(dir);
    }
}
