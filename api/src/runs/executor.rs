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
    /// Remote runners, their claims and leases.
    pub dispatch: Arc<crate::runs::dispatch::Dispatch>,
    /// Remote runs found running at start, followed once `run` starts.
    pub adopted: std::sync::Mutex<Vec<RunRecord>>,
    /// Pipeline files by (repository, commit, path), as read from mirrors.
    pub texts: std::sync::Mutex<std::collections::HashMap<TextKey, Arc<str>>>,
    /// Reads of pipeline files in flight, by the same key.
    pub reading: std::sync::Mutex<std::collections::HashMap<TextKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// A pipeline file of a commit: (repository, commit, path).
pub type TextKey = (String, String, String);

/// Where a claimed run executes.
enum Slot {
    /// On this server's own Docker daemon; the permit is its share of
    /// `max_concurrent_runs`.
    Local(tokio::sync::OwnedSemaphorePermit),
    /// On the remote runner waiting for it.
    Remote(crate::runs::dispatch::Waiter),
}

/// How a run task ended.
enum Ran {
    /// The run ended; the pipeline that ran, if it got that far.
    Ended(Option<Box<slipway_engine::Pipeline>>),
    /// It never started: back on the queue (its runner went away before
    /// hearing of it, or the built-in runner lacks a label it asks for).
    Unclaimed,
    /// The server is stopping; a remote runner goes on with it, and the
    /// next server start follows it again.
    Detached,
}

/// How following a remote run ended.
enum Followed {
    Finished,
    /// The runner stopped renewing its lease.
    Expired,
    Detached,
}

impl<B: Backend> Executor<B> {
    /// Runs left `running` by a process that died are `interrupted`, and
    /// their containers removed (and, with `requeue_interrupted`, queued
    /// again as new runs); queued runs stay queued and start. A run a
    /// remote runner holds is not: the runner goes on with it, and is
    /// followed again (returned here) under the lease it had.
    pub async fn reconcile(&self) -> Result<Vec<String>, StoreError> {
        let mut interrupted = Vec::new();
        // Checkouts of runs a dead process left behind; none is in use yet.
        if let Err(e) = tokio::fs::remove_dir_all(&self.work_root).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %self.work_root.display(), error = %e, "cannot remove stale checkouts");
        }
        let mut adopted = Vec::new();
        for run in self.store.list_runs(usize::MAX)? {
            if run.status != RunStatus::Running {
                continue;
            }
            if let Some(lease) = &run.lease {
                info!(run_id = %run.id, runner = %lease.runner, epoch = lease.epoch, "following a remote run again");
                adopted.push(run);
                continue;
            }
            if let Err(e) = self.backend.teardown_run(&run.id).await {
                warn!(run_id = %run.id, error = %e, "cannot remove the containers of an interrupted run");
            }
            self.interrupt(&run, "the server stopped while this run was running")?;
            interrupted.push(run.id);
        }
        *self.adopted.lock().unwrap_or_else(|p| p.into_inner()) = adopted;
        self.store.flush()?;
        Ok(interrupted)
    }

    /// Marks a run that stopped without ending `interrupted`, and with
    /// `requeue_interrupted` queues its commit again as a new run.
    fn interrupt(&self, run: &RunRecord, reason: &str) -> Result<(), StoreError> {
        self.store.update_run(&run.id, |r| {
            r.status = RunStatus::Interrupted;
            r.finished_ms = Some(now_ms());
            r.error = Some(reason.to_string());
            for s in &mut r.steps {
                if s.status == StepStatus::Running || s.status == StepStatus::Pending {
                    s.status = StepStatus::Cancelled;
                }
            }
        })?;
        self.store.dequeue(run)?;
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
            again.deploy = run.deploy.clone();
            self.queue.submit(&again, &crate::runs::Submit::default())?;
            let again_id = again.id.clone();
            self.store.update_run(&run.id, |r| {
                r.notes.push(format!("queued again as run {again_id}"));
            })?;
            info!(run_id = %run.id, again = %again_id, "interrupted run queued again");
        }
        self.store.flush()
    }

    /// Starts queued runs until shutdown, oldest first: on the built-in
    /// runner (at most `max_concurrent_runs` at once) or on a remote runner
    /// waiting for work whose labels and free slots allow it, and at most
    /// a repository's own limit for each repository (a run over it waits,
    /// later runs of others go). A run nobody can take now is told why.
    pub async fn run(self: Arc<Self>) {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_runs));
        let adopted = std::mem::take(&mut *self.adopted.lock().unwrap_or_else(|p| p.into_inner()));
        for run in adopted {
            self.clone().follow_adopted(run);
        }
        let expiry = {
            let (dispatch, shutdown) = (self.dispatch.clone(), self.shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    for (run, runner) in dispatch.expire() {
                        warn!(run_id = %run, %runner, "the runner's lease expired");
                    }
                }
            })
        };
        let planning: Arc<std::sync::Mutex<HashSet<String>>> = Arc::default();
        let mut reasons_told = std::time::Instant::now();
        let mut claimed_now = Vec::new();
        loop {
            // With no free slot, a pass only says why runs wait, once a
            // second: a long queue is not read again for every claim.
            let reasons_due = reasons_told.elapsed() >= std::time::Duration::from_secs(1);
            if reasons_due {
                reasons_told = std::time::Instant::now();
            }
            // A daemon that does not answer would hang each new run's first
            // call; runs wait for it (or go to a remote runner).
            let local_unhealthy = if self.config.local_runner {
                self.backend.health().err()
            } else {
                None
            };
            if let Some(why) = &local_unhealthy {
                warn!(reason = %why, "the built-in runner takes no new run");
            }
            let queued = self.store.queued().unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the queue");
                Vec::new()
            });
            self.dispatch
                .keep_pending(&queued.iter().cloned().collect());
            for id in queued {
                let local_free = self.config.local_runner
                    && local_unhealthy.is_none()
                    && permits.available_permits() > 0;
                if !local_free && !self.dispatch.has_waiters() && !reasons_due {
                    break;
                }
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
                // Runs claimed earlier in this pass are not registered yet.
                let claimed_of_repo = claimed_now
                    .iter()
                    .filter(|(_, _, s): &&(RunRecord, Slot, SourceRecord)| {
                        s.repo.eq_ignore_ascii_case(&source.repo)
                    })
                    .count();
                if limit
                    .is_some_and(|l| self.control.running_in(&source.repo) + claimed_of_repo >= l)
                {
                    self.dispatch.set_pending(
                        &id,
                        format!(
                            "`{}` already has its most runs at once running",
                            source.repo
                        ),
                    );
                    continue;
                }
                // Labels are known once the pipeline was read. With no
                // remote runner around, the built-in runner reads it as it
                // starts (no extra fetch on the one-machine path).
                let runs_on = match &run.runs_on {
                    Some(labels) => labels.clone(),
                    None if !self.dispatch.any_online() && self.config.local_runner => Vec::new(),
                    None => {
                        if planning
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id.clone())
                        {
                            self.dispatch
                                .set_pending(&id, "reading its pipeline for `runs_on`".into());
                            let (this, planning) = (self.clone(), planning.clone());
                            tokio::spawn(async move {
                                this.plan(&run).await;
                                planning
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .remove(&run.id);
                                this.queued.notify_one();
                            });
                        }
                        continue;
                    }
                };
                let local_fits = self.config.local_runner
                    && local_unhealthy.is_none()
                    && runs_on
                        .iter()
                        .all(|l| self.config.local_runner_labels.contains(l));
                let slot = match local_fits
                    .then(|| permits.clone().try_acquire_owned().ok())
                    .flatten()
                {
                    Some(permit) => Slot::Local(permit),
                    None => match self.dispatch.take_waiter(&runs_on) {
                        Some(waiter) => Slot::Remote(waiter),
                        None => {
                            let local =
                                self.config
                                    .local_runner
                                    .then(|| crate::runs::dispatch::Local {
                                        labels: &self.config.local_runner_labels,
                                        unhealthy: local_unhealthy.clone(),
                                        busy: self.config.max_concurrent_runs
                                            - permits.available_permits(),
                                        capacity: self.config.max_concurrent_runs,
                                    });
                            self.dispatch.set_pending(
                                &id,
                                self.dispatch.why_waiting(&runs_on, local.as_ref()),
                            );
                            continue;
                        }
                    },
                };
                let lease = match &slot {
                    Slot::Local(_) => None,
                    Slot::Remote(waiter) => match self.store.next_epoch() {
                        Ok(epoch) => Some(crate::store::Lease {
                            runner: waiter.runner.clone(),
                            epoch,
                            acked: 0,
                        }),
                        Err(e) => {
                            warn!(error = %e, "cannot number a lease");
                            continue;
                        }
                    },
                };
                // Claimed atomically: a cancel that got there first wins.
                let claimed = self.store.transition(&id, &[RunStatus::Queued], |r| {
                    r.status = RunStatus::Running;
                    r.lease = lease.clone();
                });
                let run = match claimed {
                    Ok(Some(run)) => run,
                    Ok(None) => continue,
                    Err(e) => {
                        warn!(run_id = %id, error = %e, "cannot claim a queued run");
                        continue;
                    }
                };
                self.dispatch.clear_pending(&id);
                claimed_now.push((run, slot, source));
            }
            // Durable before any container starts: after a crash a run
            // must read `running` (and be reconciled as interrupted, or
            // followed on its runner), not `queued` (and silently start
            // over). One flush for every claim of the pass, not one each.
            if !claimed_now.is_empty()
                && let Err(e) = self.store.flush_async().await
            {
                warn!(error = %e, "cannot flush the claims of runs");
            }
            for (run, slot, source) in claimed_now.drain(..) {
                let id = run.id.clone();
                let cancel = self.cancel_runs.child_token();
                self.control
                    .start(&id, &source.repo, &source.git_ref, cancel.clone());
                let this = self.clone();
                let span = info_span!("run", run_id = %id);
                self.runs.spawn(
                    async move {
                        let ran = match this.run_one(run, cancel, slot).await {
                            Ok(ran) => ran,
                            Err(e) => {
                                warn!(error = %e, "run failed to record");
                                Ran::Ended(None)
                            }
                        };
                        match ran {
                            Ran::Ended(pipeline) => this.ended(&id, pipeline.as_deref()).await,
                            Ran::Unclaimed | Ran::Detached => {}
                        }
                        this.queued.notify_one();
                    }
                    .instrument(span),
                );
            }
            tokio::select! {
                _ = self.queued.notified() => {}
                // Pending reasons follow runners coming and going.
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }
        expiry.abort();
    }

    /// What follows every run that ended: metrics, followers (promotion,
    /// previews), the commit status.
    async fn ended(&self, id: &str, pipeline: Option<&slipway_engine::Pipeline>) {
        if let Ok(Some(done)) = self.store.get_run(id) {
            self.metrics.run_finished(done.status);
            for follower in &self.followers {
                follower.clone().run_finished(&done, pipeline);
            }
        }
        let _ = self.reports.send(id.to_string()).await;
    }

    /// Reads a queued run's pipeline for the labels it asks for; one that
    /// cannot be read asks for none (its start then says what is wrong).
    async fn plan(&self, run: &RunRecord) {
        let labels = match (
            &run.source,
            run.source.as_ref().and_then(|s| self.config.repo(&s.repo)),
        ) {
            (Some(source), Some(repo)) => {
                let text = self.pipeline_text(repo, source).await.ok().flatten();
                text.and_then(|t| parse(&repo.pipeline, &t).pipeline)
                    .map(|p| p.runs_on)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        if let Err(e) = self.store.set_runs_on(&run.id, labels) {
            warn!(run_id = %run.id, error = %e, "cannot record a run's labels");
        }
    }

    /// Records how long a phase of starting a run took (see `RunEvent::Phase`).
    fn phase(&self, run_id: &str, phase: &str, took: std::time::Duration) {
        let phase = crate::store::Phase {
            phase: phase.into(),
            micros: took.as_micros() as u64,
        };
        if let Err(e) = self.store.update_run(run_id, |r| r.phases.push(phase)) {
            warn!(error = %e, "cannot record a phase");
        }
    }

    /// The pipeline file of a commit: fetched into the mirror and read
    /// once, then remembered, as the labels' read and the run's start
    /// (and every rerun of the commit) want the same text.
    async fn pipeline_text(
        &self,
        repo: &crate::config::Repo,
        source: &SourceRecord,
    ) -> Result<Option<Arc<str>>, slipway_runner::git::GitError> {
        let key = (repo.name.clone(), source.sha.clone(), repo.pipeline.clone());
        let cached = |this: &Self| {
            this.texts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(text) = cached(self) {
            return Ok(Some(text));
        }
        // One read per commit at a time: a burst of runs of one commit
        // (reruns, a queue met by many runners) waits for the first read
        // instead of each fetching and reading it again.
        let flight = self
            .reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let _reading = flight.lock().await;
        let read = match cached(self) {
            Some(text) => Ok(Some(text)),
            None => self.read_pipeline(repo, source, &key).await,
        };
        self.reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        read
    }

    async fn read_pipeline(
        &self,
        repo: &crate::config::Repo,
        source: &SourceRecord,
        key: &TextKey,
    ) -> Result<Option<Arc<str>>, slipway_runner::git::GitError> {
        self.mirrors
            .fetch(&repo.name, &repo.remote(), &source.git_ref, &source.sha)
            .await?;
        let Some(text) = self
            .mirrors
            .read_file(&repo.name, &source.sha, &repo.pipeline)
            .await?
        else {
            return Ok(None);
        };
        let text: Arc<str> = text.into();
        let mut texts = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        // A commit's file never changes; the bound only caps memory.
        if texts.len() >= 256 {
            texts.clear();
        }
        texts.insert(key.clone(), text.clone());
        Ok(Some(text))
    }

    /// Follows a remote run that a runner held when the server stopped.
    fn follow_adopted(self: Arc<Self>, run: RunRecord) {
        let Some(lease) = run.lease.clone() else {
            return;
        };
        let cancel = self.cancel_runs.child_token();
        let (repo, git_ref) = run
            .source
            .as_ref()
            .map(|s| (s.repo.clone(), s.git_ref.clone()))
            .unwrap_or_default();
        self.control.start(&run.id, &repo, &git_ref, cancel.clone());
        let ended = self.dispatch.hold(
            &run.id,
            &lease.runner,
            lease.epoch,
            crate::runs::dispatch::Recording {
                recorder: Recorder::new(self.store.clone(), &run.id),
                acked: lease.acked,
            },
            None,
        );
        let span = info_span!("run", run_id = %run.id);
        let this = self.clone();
        self.runs.spawn(
            async move {
                let followed = this.follow_remote(&run.id, ended, cancel).await;
                if this.settle_remote(&run, &lease.runner, followed) {
                    // The pipeline it ran is read again from its commit
                    // (previews follow its `preview:`).
                    let pipeline = match (
                        &run.source,
                        run.source.as_ref().and_then(|s| this.config.repo(&s.repo)),
                    ) {
                        (Some(source), Some(repo)) => this
                            .pipeline_text(repo, source)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|text| parse(&repo.pipeline, &text).pipeline),
                        _ => None,
                    };
                    this.ended(&run.id, pipeline.as_ref()).await;
                }
                this.queued.notify_one();
            }
            .instrument(span),
        );
    }

    /// Waits for a remote run to end, passing a cancel on to its runner.
    async fn follow_remote(
        &self,
        id: &str,
        ended: Arc<Notify>,
        cancel: CancellationToken,
    ) -> Followed {
        let mut asked = false;
        loop {
            tokio::select! {
                _ = ended.notified() => break,
                _ = cancel.cancelled(), if !asked => {
                    if self.control.closing() {
                        return Followed::Detached;
                    }
                    self.dispatch.cancel(id);
                    asked = true;
                }
            }
        }
        match self.store.get_run(id) {
            Ok(Some(run)) if run.status == RunStatus::Running => Followed::Expired,
            _ => Followed::Finished,
        }
    }

    /// Records how a remote run ended; `false` when it did not (detached).
    fn settle_remote(&self, run: &RunRecord, runner: &str, followed: Followed) -> bool {
        match followed {
            Followed::Detached => return false,
            Followed::Finished => {}
            Followed::Expired => {
                let reason = format!(
                    "runner `{runner}` stopped answering: its lease expired after {}",
                    slipway_engine::duration::format_duration(self.dispatch.lease_time())
                );
                if let Err(e) = self.interrupt(run, &reason) {
                    warn!(run_id = %run.id, error = %e, "cannot record an interrupted run");
                }
            }
        }
        if let Some(reason) = self.control.finish(&run.id)
            && let Ok(Some(r)) = self.store.get_run(&run.id)
            && r.error.is_none()
            && r.status == RunStatus::Cancelled
        {
            let _ = self.store.update_run(&run.id, |r| r.error = Some(reason));
            let _ = self.store.flush();
        }
        true
    }

    /// Runs one claimed run to its end.
    async fn run_one(
        &self,
        run: RunRecord,
        cancel: CancellationToken,
        slot: Slot,
    ) -> Result<Ran, StoreError> {
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
                let result = self
                    .prepare_and_run(&run, &repo, &checkout, cancel, slot)
                    .await;
                let _ = tokio::fs::remove_dir_all(&checkout).await;
                result
            }
        };
        match result {
            Ok(Ran::Unclaimed) => {
                self.control.finish(&id);
                return Ok(Ran::Unclaimed);
            }
            Ok(Ran::Detached) => return Ok(Ran::Detached),
            _ => {}
        }
        let cancelled_because = self.control.finish(&id);
        match (result, cancelled_because) {
            (Err((status, message)), _) => {
                self.finish_with_error(&run, status, message)?;
                Ok(Ran::Ended(None))
            }
            (Ok(ran), Some(reason)) => {
                self.store.update_run(&id, |r| r.error = Some(reason))?;
                self.store.flush()?;
                Ok(ran)
            }
            (Ok(ran), None) => Ok(ran),
        }
    }

    /// Errors are `(status, message)` for the run record.
    async fn prepare_and_run(
        &self,
        run: &RunRecord,
        repo: &crate::config::Repo,
        checkout: &std::path::Path,
        cancel: CancellationToken,
        slot: Slot,
    ) -> Result<Ran, (RunStatus, String)> {
        let source = run.source.as_ref().expect("server runs have a source");
        let preparing = std::time::Instant::now();
        self.phase(
            &run.id,
            "queued",
            std::time::Duration::from_millis(now_ms().saturating_sub(run.created_ms)),
        );
        // Decided once, with the config the run starts under, and kept
        // with the run: what it gets follows from this.
        let trust = crate::runs::trust::trust(Some(source), &repo.trusted_pull_requests);
        let kept = trust.clone();
        self.store
            .update_run(&run.id, |r| r.trust = Some(kept))
            .map_err(|e| (RunStatus::Failed, e.to_string()))?;
        // The built-in runner checks the commit out of the mirror: it must
        // be there even when the pipeline's text is known.
        if matches!(slot, Slot::Local(_)) {
            self.mirrors
                .fetch(&repo.name, &repo.remote(), &source.git_ref, &source.sha)
                .await
                .map_err(|e| (RunStatus::Failed, e.to_string()))?;
        }
        let text = self
            .pipeline_text(repo, source)
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
        // Taken before its labels were known: the built-in runner may not
        // be the one it asks for.
        if matches!(slot, Slot::Local(_))
            && !pipeline
                .runs_on
                .iter()
                .all(|l| self.config.local_runner_labels.contains(l))
        {
            self.store
                .unclaim(&run.id, Some(pipeline.runs_on.clone()))
                .map_err(|e| (RunStatus::Error, e.to_string()))?;
            return Ok(Ran::Unclaimed);
        }
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
        self.phase(&run.id, "prepare", preparing.elapsed());
        if matches!(slot, Slot::Local(_)) {
            let checking_out = std::time::Instant::now();
            self.mirrors
                .checkout(&repo.name, &source.sha, checkout)
                .await
                .map_err(|e| (RunStatus::Failed, e.to_string()))?;
            self.phase(&run.id, "checkout", checking_out.elapsed());
        }
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
        let cache_scope = cache_scope(source, repo, trust.trusted);
        let waiter = match slot {
            Slot::Local(permit) => permit,
            Slot::Remote(waiter) => {
                let lease = run.lease.clone().ok_or_else(|| {
                    (
                        RunStatus::Error,
                        "a remote run was claimed without a lease".to_string(),
                    )
                })?;
                let job = crate::protocol::Job {
                    run_id: run.id.clone(),
                    epoch: lease.epoch,
                    repo: repo.name.clone(),
                    remote: repo.remote(),
                    git_ref: source.git_ref.clone(),
                    sha: source.sha.clone(),
                    pipeline: pipeline.clone(),
                    trigger,
                    secrets: granted.secrets,
                    env,
                    skip,
                    cache_scope,
                    credentials: granted.credentials,
                    limits: self.config.limits,
                    jobs: 4,
                };
                return self
                    .run_remote(run, &lease.runner, job, waiter, cancel, pipeline)
                    .await;
            }
        };
        let _permit = waiter;
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
                shared: None,
            },
            cache_scope,
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
        let watchdog = self.watchdog(&run.id);
        let result = execute(self.backend.clone(), &pipeline, options, tx, cancel).await;
        watchdog.abort();
        let _ = record.await;
        match result {
            Ok(report) => {
                info!(status = %report.status, "run finished");
                Ok(Ran::Ended(Some(Box::new(pipeline))))
            }
            Err(e) => Err((RunStatus::Error, e.to_string())),
        }
    }

    /// Cancels the run once it has taken longer than the server's `run_timeout`.
    fn watchdog(&self, run_id: &str) -> tokio::task::JoinHandle<()> {
        let limit = self.config.run_timeout;
        let (control, store, run_id) =
            (self.control.clone(), self.store.clone(), run_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let reason = format!(
                "cancelled: the run took longer than {} (the server's run_timeout)",
                slipway_engine::duration::format_duration(limit)
            );
            let _ =
                tokio::task::spawn_blocking(move || control.cancel(&store, &run_id, &reason)).await;
        })
    }

    /// Hands a prepared run to the remote runner waiting for it and
    /// follows it to its end; its events arrive through `http::runner`.
    async fn run_remote(
        &self,
        run: &RunRecord,
        runner: &str,
        job: crate::protocol::Job,
        waiter: crate::runs::dispatch::Waiter,
        cancel: CancellationToken,
        pipeline: slipway_engine::Pipeline,
    ) -> Result<Ran, (RunStatus, String)> {
        let epoch = job.epoch;
        let ended = self.dispatch.hold(
            &run.id,
            runner,
            epoch,
            crate::runs::dispatch::Recording {
                recorder: Recorder::new(self.store.clone(), &run.id),
                acked: 0,
            },
            Some(job.cache_scope.clone()),
        );
        if waiter.job.send(job).is_err() {
            // Its claim ended (timed out, connection gone) before the run
            // was ready: nothing ran; another runner may take it.
            self.dispatch.finished(&run.id);
            self.store
                .unclaim(&run.id, None)
                .map_err(|e| (RunStatus::Error, e.to_string()))?;
            return Ok(Ran::Unclaimed);
        }
        info!(%runner, epoch, "handed to a remote runner");
        let watchdog = self.watchdog(&run.id);
        let followed = self.follow_remote(&run.id, ended, cancel).await;
        watchdog.abort();
        if matches!(followed, Followed::Detached) {
            return Ok(Ran::Detached);
        }
        // `settle_remote` finishes the control entry; `run_one` must not
        // find a cancel reason to record twice.
        let _ = self.settle_remote(run, runner, followed);
        Ok(Ran::Ended(Some(Box::new(pipeline))))
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
