//! Starts queued runs: fetch the commit, read the pipeline from it, run it,
//! record what happens. Also reconciles after a crash.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use slipway_engine::{Trigger, parse};
use slipway_runner::cache::{CacheScope, RunRef};
use slipway_runner::git::Mirrors;
use slipway_runner::{Backend, RunEvent, RunOptions, Workspace, execute};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::ids::now_ms;
use crate::metrics::Metrics;
use crate::runs::control::RunControl;
use crate::runs::record::{Recorder, step_records};
use crate::store::{Rerun, RunRecord, RunStatus, SourceRecord, StepStatus, Store, StoreError};

/// Steps that passed in a run, counting those that a failed-only rerun took
/// over from the run it reran (`skipped` in it, but passed before).
fn passed_steps(store: &Store, run_id: &str, depth: usize) -> HashSet<String> {
    let Ok(Some(run)) = store.get_run(run_id) else {
        return HashSet::new();
    };
    let mut passed: HashSet<String> = run
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Success)
        .map(|s| s.name.clone())
        .collect();
    // The depth bound only guards against a corrupt loop of reruns.
    if let Some(Rerun {
        of,
        failed_only: true,
    }) = &run.rerun
        && depth < 100
    {
        let reused: HashSet<&str> = run
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped)
            .map(|s| s.name.as_str())
            .collect();
        passed.extend(
            passed_steps(store, of, depth + 1)
                .into_iter()
                .filter(|s| reused.contains(s.as_str())),
        );
    }
    passed
}

pub struct Executor<B> {
    pub config: Arc<Config>,
    pub store: Store,
    pub backend: Arc<B>,
    pub mirrors: Arc<Mirrors>,
    /// Where each run's checkout lives while it runs.
    pub work_root: PathBuf,
    /// Wakes this executor when a run is queued or a slot frees up.
    pub queued: Arc<Notify>,
    pub queue: crate::runs::Queue,
    pub control: Arc<RunControl>,
    /// Run ids whose commit status should be reported.
    pub reports: mpsc::Sender<String>,
    pub metrics: Arc<Metrics>,
    /// Stops claiming queued runs (the server is stopping).
    pub shutdown: CancellationToken,
    /// Cancels every running run; each run's own token is a child of it.
    pub cancel_runs: CancellationToken,
    /// Every run's task, so a stopping server can wait until each has
    /// removed its containers and recorded its final status.
    pub runs: tokio_util::task::TaskTracker,
    /// Directory caches shared by every run; `None` turns them off.
    pub cache: Option<Arc<slipway_runner::cache::CacheStore>>,
    /// Runs' artifacts live in `<artifacts_root>/<run id>/<step>/`.
    pub artifacts_root: PathBuf,
    /// Opens the secrets set at run time.
    pub vault: Arc<crate::vault::Vault>,
    /// Hear of every run that ended (automatic promotion, previews).
    pub followers: Vec<Arc<dyn crate::runs::RunFollower>>,
}

impl<B: Backend> Executor<B> {
    /// Runs left `running` by a process that died are `interrupted`, and
    /// their containers removed (and, with `requeue_interrupted`, queued
    /// again as new runs); queued runs stay queued and start.
    pub async fn reconcile(&self) -> Result<Vec<String>, StoreError> {
        let mut interrupted = Vec::new();
        // Checkouts of runs a dead process left behind; none is in use yet.
        if let Err(e) = tokio::fs::remove_dir_all(&self.work_root).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %self.work_root.display(), error = %e, "cannot remove stale checkouts");
        }
        for run in self.store.list_runs(usize::MAX)? {
            if run.status == RunStatus::Running {
                if let Err(e) = self.backend.teardown_run(&run.id).await {
                    warn!(run_id = %run.id, error = %e, "cannot remove the containers of an interrupted run");
                }
                self.store.update_run(&run.id, |r| {
                    r.status = RunStatus::Interrupted;
                    r.finished_ms = Some(now_ms());
                    r.error = Some("the server stopped while this run was running".into());
                    for s in &mut r.steps {
                        if s.status == StepStatus::Running || s.status == StepStatus::Pending {
                            s.status = StepStatus::Cancelled;
                        }
                    }
                })?;
                self.store.dequeue(&run)?;
                if self.config.requeue_interrupted
                    && let Some(source) = run.source.clone()
                {
                    let mut again = crate::runs::queued_run(
                        &source.repo.clone(),
                        &run.file,
                        &run.event,
                        run.branch.clone(),
                        source,
                    );
                    again.rerun = Some(crate::store::Rerun {
                        of: run.id.clone(),
                        failed_only: false,
                    });
                    self.queue.submit(&again, &crate::runs::Submit::default())?;
                    let again_id = again.id.clone();
                    self.store.update_run(&run.id, |r| {
                        r.notes.push(format!("queued again as run {again_id}"));
                    })?;
                    info!(run_id = %run.id, again = %again_id, "interrupted run queued again");
                }
                interrupted.push(run.id);
            }
        }
        self.store.flush()?;
        Ok(interrupted)
    }

    /// Starts queued runs until shutdown: oldest first, at most
    /// `max_concurrent_runs` at once, and at most a repository's own limit
    /// for each repository (a run over it waits, later runs of others go).
    pub async fn run(self: Arc<Self>) {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_runs));
        loop {
            // A daemon that does not answer would hang each new run's first
            // call; queued runs wait until it answers again.
            if let Err(why) = self.backend.health() {
                warn!(reason = %why, "taking no new run");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    _ = self.shutdown.cancelled() => return,
                }
                continue;
            }
            let queued = self.store.queued().unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the queue");
                Vec::new()
            });
            for id in queued {
                let Ok(Some(run)) = self.store.get_run(&id) else {
                    continue;
                };
                let Some(source) = run.source.clone() else {
                    continue;
                };
                let limit = self
                    .config
                    .repo(&source.repo)
                    .and_then(|r| r.max_concurrent_runs);
                if limit.is_some_and(|l| self.control.running_in(&source.repo) >= l) {
                    continue;
                }
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
                    _ = self.shutdown.cancelled() => return,
                };
                // Claimed atomically: a cancel that got there first wins.
                let claimed = self
                    .store
                    .transition(&id, &[RunStatus::Queued], |r| r.status = RunStatus::Running);
                let run = match claimed {
                    Ok(Some(run)) => run,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(run_id = %id, error = %e, "cannot claim a queued run");
                        continue;
                    }
                };
                // Durable before any container starts: after a crash the run
                // must read `running` (and be reconciled as interrupted), not
                // `queued` (and silently start over).
                if let Err(e) = self.store.flush_async().await {
                    warn!(run_id = %id, error = %e, "cannot flush the claim of a run");
                }
                let cancel = self.cancel_runs.child_token();
                self.control
                    .start(&id, &source.repo, &source.git_ref, cancel.clone());
                let this = self.clone();
                let span = info_span!("run", run_id = %id);
                self.runs.spawn(
                    async move {
                        let pipeline = match this.run_one(run, cancel).await {
                            Ok(pipeline) => pipeline,
                            Err(e) => {
                                warn!(error = %e, "run failed to record");
                                None
                            }
                        };
                        if let Ok(Some(done)) = this.store.get_run(&id) {
                            this.metrics.run_finished(done.status);
                            for follower in &this.followers {
                                follower.clone().run_finished(&done, pipeline.as_ref());
                            }
                        }
                        let _ = this.reports.send(id).await;
                        drop(permit);
                        this.queued.notify_one();
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                _ = self.queued.notified() => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Runs one claimed run to its end; returns the pipeline that ran.
    async fn run_one(
        &self,
        run: RunRecord,
        cancel: CancellationToken,
    ) -> Result<Option<slipway_engine::Pipeline>, StoreError> {
        let id = run.id.clone();
        let source = run
            .source
            .clone()
            .expect("queued server runs have a source");
        let result = match self.config.repo(&source.repo).cloned() {
            None => Err((
                RunStatus::Error,
                format!("repository `{}` is no longer configured", source.repo),
            )),
            Some(repo) => {
                let checkout = self.work_root.join(&id);
                let result = self.prepare_and_run(&run, &repo, &checkout, cancel).await;
                let _ = tokio::fs::remove_dir_all(&checkout).await;
                result
            }
        };
        let cancelled_because = self.control.finish(&id);
        match (result, cancelled_because) {
            (Err((status, message)), _) => {
                self.finish_with_error(&run, status, message)?;
                Ok(None)
            }
            (Ok(pipeline), Some(reason)) => {
                self.store.update_run(&id, |r| r.error = Some(reason))?;
                self.store.flush()?;
                Ok(Some(pipeline))
            }
            (Ok(pipeline), None) => Ok(Some(pipeline)),
        }
    }

    /// Errors are `(status, message)` for the run record.
    async fn prepare_and_run(
        &self,
        run: &RunRecord,
        repo: &crate::config::Repo,
        checkout: &std::path::Path,
        cancel: CancellationToken,
    ) -> Result<slipway_engine::Pipeline, (RunStatus, String)> {
        let source = run.source.as_ref().expect("server runs have a source");
        // Decided once, with the config the run starts under, and kept
        // with the run: what it gets follows from this.
        let trust = crate::runs::trust::trust(Some(source), &repo.trusted_pull_requests);
        let kept = trust.clone();
        self.store
            .update_run(&run.id, |r| r.trust = Some(kept))
            .map_err(|e| (RunStatus::Failed, e.to_string()))?;
        self.mirrors
            .fetch(&repo.name, &repo.remote(), &source.git_ref, &source.sha)
            .await
            .map_err(|e| (RunStatus::Failed, e.to_string()))?;
        let text = self
            .mirrors
            .read_file(&repo.name, &source.sha, &repo.pipeline)
            .await
            .map_err(|e| (RunStatus::Failed, e.to_string()))?
            .ok_or_else(|| {
                (
                    RunStatus::Error,
                    format!(
                        "commit {} has no pipeline file `{}`",
                        source.sha, repo.pipeline
                    ),
                )
            })?;
        let parsed = parse(&repo.pipeline, &text);
        let Some(pipeline) = parsed.pipeline else {
            let all: Vec<String> = parsed.diagnostics.iter().map(ToString::to_string).collect();
            return Err((RunStatus::Error, all.join("\n")));
        };
        let trigger = Trigger {
            event: run.event.clone(),
            branch: run.branch.clone(),
            tag: source.tag.clone(),
            target_branch: source.pr_target_branch.clone(),
        };
        // A deploy run runs the environment's deploy steps; any other run
        // everything else, as its `on:` allows.
        let pipeline = match &run.deploy {
            Some(d) => match pipeline.deploy_steps(&d.environment) {
                Some(p) => p,
                None => {
                    self.store
                        .update_run(&run.id, |r| {
                            r.notes.push(format!(
                                "the pipeline has no deploy steps for `{}`",
                                d.environment
                            ));
                        })
                        .map_err(|e| (RunStatus::Failed, e.to_string()))?;
                    return Err((RunStatus::Success, "nothing to deploy".into()));
                }
            },
            None => {
                if let Some(on) = &pipeline.on
                    && let Err(reason) = on.accepts(&trigger)
                {
                    return Err((RunStatus::Skipped, reason));
                }
                pipeline.without_deploy_steps()
            }
        };
        // A step that says nothing about time gets the server's limit: a
        // pull request's `sleep infinity` must not hold a slot for ever.
        let mut pipeline = pipeline;
        for step in &mut pipeline.steps {
            step.timeout.get_or_insert(self.config.step_timeout);
        }
        // Refused like an invalid pipeline, before anything runs: the
        // maximum is what the machine can give one step.
        let too_big: Vec<String> = pipeline
            .steps
            .iter()
            .flat_map(|step| {
                step.resources
                    .above(&self.config.max_resources)
                    .into_iter()
                    .map(move |(key, asked, allowed)| {
                        format!(
                            "{}:{}: step `{}` asks for {key}: {asked}; this server allows at most {allowed} (server.max_step_{key})",
                            repo.pipeline, step.line, step.name
                        )
                    })
            })
            .collect();
        if !too_big.is_empty() {
            return Err((RunStatus::Error, too_big.join("\n")));
        }
        self.mirrors
            .checkout(&repo.name, &source.sha, checkout)
            .await
            .map_err(|e| (RunStatus::Failed, e.to_string()))?;
        let steps = step_records(&pipeline);
        let name = pipeline.name.clone();
        self.store
            .update_run(&run.id, |r| {
                r.pipeline = name;
                r.steps = steps;
            })
            .map_err(|e| (RunStatus::Failed, e.to_string()))?;

        let mut env = vec![
            ("SLIPWAY_REPO".to_string(), repo.name.clone()),
            ("SLIPWAY_COMMIT_SHA".to_string(), source.sha.clone()),
            ("SLIPWAY_REF".to_string(), source.git_ref.clone()),
        ];
        if let Some(tag) = &source.tag {
            env.push(("SLIPWAY_TAG".into(), tag.clone()));
        }
        if let Some(pr) = source.pull_request {
            env.push(("SLIPWAY_PR".into(), pr.to_string()));
        }
        if let Some(target) = &source.pr_target_branch {
            env.push(("SLIPWAY_PR_TARGET_BRANCH".into(), target.clone()));
        }
        if let Some(rerun) = &run.rerun {
            env.push(("SLIPWAY_RERUN_OF".into(), rerun.of.clone()));
        }
        if let Some(d) = &run.deploy {
            env.push(("SLIPWAY_ENVIRONMENT".into(), d.environment.clone()));
            env.push(("SLIPWAY_IMAGE".into(), d.image.clone()));
            env.push(("SLIPWAY_PROMOTION".into(), d.promotion.clone()));
        }
        let skip = match &run.rerun {
            Some(Rerun {
                of,
                failed_only: true,
            }) => {
                let passed = passed_steps(&self.store, of, 0);
                let again = pipeline.with_needs(
                    pipeline
                        .steps
                        .iter()
                        .map(|s| s.name.as_str())
                        .filter(|n| !passed.contains(*n)),
                );
                pipeline
                    .steps
                    .iter()
                    .filter(|s| !again.contains(&s.name))
                    .map(|s| (s.name.clone(), format!("succeeded in run {of}")))
                    .collect()
            }
            _ => Vec::new(),
        };
        let pipeline = crate::runs::trust::without_unneeded_secrets(pipeline, &trigger, &skip);
        let offer = self
            .offer(
                repo,
                run.deploy.as_ref().map(|d| d.environment.as_str()),
                trust.trusted,
            )
            .map_err(|message| (RunStatus::Error, message))?;
        let granted = crate::runs::trust::grant(&trust, repo, &offer, &pipeline, &trigger)
            .map_err(|message| (RunStatus::Error, message))?;
        drop(offer);
        // Steps skipped for want of a secret need none, like those a rerun skips.
        let mut skip = skip;
        skip.extend(granted.skip);
        let pipeline = crate::runs::trust::without_unneeded_secrets(pipeline, &trigger, &skip);
        let options = RunOptions {
            run_id: run.id.clone(),
            jobs: 4,
            trigger,
            secrets: granted.secrets,
            workspace: Workspace::Copy(checkout.to_path_buf()),
            env,
            skip,
            files: slipway_runner::StepFiles {
                cache: self.cache.clone(),
                artifacts: Some(self.artifacts_root.join(&run.id)),
            },
            cache_scope: cache_scope(source, repo, trust.trusted),
            credentials: granted.credentials,
            limits: self.config.limits,
        };
        let (tx, mut rx) = mpsc::channel::<RunEvent>(1024);
        let mut recorder = Recorder::new(self.store.clone(), &run.id);
        // sled writes (and the final flush) happen off the async workers.
        let metrics = self.metrics.clone();
        let (control, run_id) = (self.control.clone(), run.id.clone());
        let handle = tokio::runtime::Handle::current();
        let record = tokio::task::spawn_blocking(move || {
            let drained = recorder.drain(&mut rx, &handle, |recorder, event| match event {
                RunEvent::StepFinished { duration, .. } => metrics.step_finished(*duration),
                RunEvent::RunFinished { .. } => recorder.set_final_error(control.reason(&run_id)),
                _ => {}
            });
            if let Err(e) = drained {
                warn!(error = %e, "cannot record a run event");
            }
        });
        let limit = self.config.run_timeout;
        let (control, store, run_id) = (self.control.clone(), self.store.clone(), run.id.clone());
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let reason = format!(
                "cancelled: the run took longer than {} (the server's run_timeout)",
                slipway_engine::duration::format_duration(limit)
            );
            let _ =
                tokio::task::spawn_blocking(move || control.cancel(&store, &run_id, &reason)).await;
        });
        let result = execute(self.backend.clone(), &pipeline, options, tx, cancel).await;
        watchdog.abort();
        let _ = record.await;
        match result {
            Ok(report) => {
                info!(status = %report.status, "run finished");
                Ok(pipeline)
            }
            Err(e) => Err((RunStatus::Error, e.to_string())),
        }
    }

    /// Every secret and login a run of `repo` could get: nothing for an
    /// untrusted run (no value is even opened); else the config's and the
    /// stored ones of the server, the repository and (deploying) the
    /// environment.
    fn offer(
        &self,
        repo: &crate::config::Repo,
        deploying: Option<&str>,
        trusted: bool,
    ) -> Result<crate::runs::trust::Offer, String> {
        use crate::runs::trust::{Offer, Offered};
        use crate::store::{SecretRecord, SecretScope};
        if !trusted {
            return Ok(Offer::default());
        }
        let mut offer = Offer::from_config(
            &self.config.secrets,
            &self.config.registries,
            repo,
            deploying,
        );
        for record in self.store.secrets().map_err(|e| e.to_string())? {
            let scope = &record.scope;
            if scope.repo().is_some_and(|r| r != repo.name) {
                continue;
            }
            let value = match scope {
                SecretScope::Environment { environment, .. } if deploying != Some(environment) => {
                    String::new()
                }
                _ => self
                    .vault
                    .open_value(&SecretRecord::binding(scope, &record.name), &record.sealed)
                    .map_err(|e| e.to_string())?,
            };
            offer.add_stored(
                scope,
                deploying,
                &record.name,
                Offered {
                    value,
                    filter: record.filter.clone(),
                    origin: format!("set by {}", record.set_by),
                },
            );
        }
        Ok(offer)
    }

    fn finish_with_error(
        &self,
        run: &RunRecord,
        status: RunStatus,
        message: String,
    ) -> Result<(), StoreError> {
        info!(run_id = %run.id, %status, %message, "run did not start");
        self.store.update_run(&run.id, |r| {
            r.status = status;
            r.error = Some(message);
            r.finished_ms = Some(now_ms());
        })?;
        self.store.flush()
    }
}

/// The caches a run of `source` reads and the scope it saves to (see
/// [`CacheScope::for_run`]): keyed by the pull request, not its head
/// branch, because a fork's head branch may well be called `main`.
fn cache_scope(source: &SourceRecord, repo: &crate::config::Repo, trusted: bool) -> CacheScope {
    // The same default as promotions' `auto` environment.
    let default_branch = repo.default_branch.as_deref().unwrap_or("main");
    let of = match (source.pull_request, &source.tag) {
        (Some(number), _) => RunRef::PullRequest {
            number,
            base: source.pr_target_branch.as_deref().unwrap_or(default_branch),
        },
        (None, Some(tag)) => RunRef::Tag(tag),
        (None, None) => match source.git_ref.strip_prefix("refs/heads/") {
            Some(branch) => RunRef::Branch(branch),
            None => RunRef::Other(&source.git_ref),
        },
    };
    CacheScope::for_run(&source.repo, of, default_branch, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StepRecord;

    fn run(id: &str, steps: &[(&str, StepStatus)], rerun: Option<&str>) -> RunRecord {
        RunRecord {
            steps: steps
                .iter()
                .map(|(n, s)| StepRecord {
                    status: *s,
                    ..StepRecord::pending(n, &[])
                })
                .collect(),
            rerun: rerun.map(|of| Rerun {
                of: of.into(),
                failed_only: true,
            }),
            ..RunRecord::new(id, "p", ".slipway.yml", "push", None, RunStatus::Failed)
        }
    }

    #[test]
    fn passed_steps_follow_a_chain_of_failed_only_reruns() {
        let dir = std::env::temp_dir().join(format!("slipway-exec-{}", crate::ids::new_run_id()));
        let store = Store::open(&dir).unwrap();
        store
            .put_run(&run(
                "r0",
                &[
                    ("build", StepStatus::Success),
                    ("lint", StepStatus::Success),
                    ("flaky", StepStatus::Failed),
                    ("docs", StepStatus::Skipped),
                ],
                None,
            ))
            .unwrap();
        store
            .put_run(&run(
                "r1",
                &[
                    ("build", StepStatus::Success),
                    ("lint", StepStatus::Skipped),
                    ("flaky", StepStatus::Failed),
                    ("docs", StepStatus::Skipped),
                ],
                Some("r0"),
            ))
            .unwrap();
        let mut passed: Vec<String> = passed_steps(&store, "r1", 0).into_iter().collect();
        passed.sort();
        assert_eq!(
            passed,
            ["build", "lint"],
            "lint passed in r0 and was reused in r1; docs never passed"
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn source(git_ref: &str, pull_request: Option<u64>, from_fork: bool) -> SourceRecord {
        SourceRecord {
            repo: "acme/web".into(),
            git_ref: git_ref.into(),
            sha: "a".repeat(40),
            tag: None,
            pull_request,
            pr_target_branch: pull_request.map(|_| "release".into()),
            from_fork,
            head_repo: None,
            delivery: None,
            author: None,
        }
    }

    #[test]
    fn a_runs_cache_scope_comes_from_its_pull_request_not_its_head_branch() {
        let config = crate::config::Config::parse(
            "s.toml",
            "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"s\"\ndefault_branch = \"master\"\n",
        )
        .unwrap();
        let repo = config.repo("acme/web").unwrap();
        // A fork's head branch is often called like the default branch.
        let fork = source("refs/pull/2/head", Some(2), true);
        let scope = cache_scope(
            &fork,
            repo,
            crate::runs::trust::trust(Some(&fork), &repo.trusted_pull_requests).trusted,
        );
        assert_eq!(scope.write.as_deref(), Some("acme/web:pr-2"));
        assert_eq!(
            scope.read,
            [
                "acme/web:pr-2",
                "acme/web:refs/heads/release",
                "acme/web:refs/heads/master"
            ]
            .map(String::from)
        );
        let push = source("refs/heads/master", None, false);
        assert_eq!(
            cache_scope(&push, repo, true),
            CacheScope::single("acme/web:refs/heads/master")
        );
        let tag = SourceRecord {
            tag: Some("v1".into()),
            ..source("refs/tags/v1", None, false)
        };
        assert_eq!(
            cache_scope(&tag, repo, true).read,
            ["acme/web:refs/tags/v1", "acme/web:refs/heads/master"].map(String::from)
        );
    }
}
