//! One step's task: its attempts with retries and a timeout, a build
//! step's image build, and its caches and artifacts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_engine::duration::format_duration;
use slipway_engine::{Pipeline, Step, StepOutcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::env::{image_build, step_credentials, step_env};
use super::logs::{LogBudget, emit, emit_system, pump_logs};
use super::setup::Images;
use super::{RunOptions, Shared, StepResult};
use crate::backend::{Backend, BackendError, ContainerSpec, ImageBuild, LogChunk, StepExit};
use crate::event::{LogStream, RunEvent};
use crate::script::step_script;
use crate::step_files::{Prepared, collect_artifacts, restore_caches, save_caches};

/// A step as its task runs it: built by the run loop from the pipeline.
pub(super) struct StepTask {
    index: usize,
    spec: ContainerSpec,
    retries: u32,
    timeout: Option<Duration>,
    /// Why the step cannot start (its image did not pull, its build does
    /// not expand): it fails with this line.
    image_error: Option<String>,
    /// The build step whose image this step runs, and the tag that says so.
    built_by: Option<(String, String)>,
    build: Option<ImageBuild>,
    caches: Vec<slipway_engine::Cache>,
    artifacts: Vec<String>,
    log_budget: LogBudget,
}

impl StepTask {
    /// Step `index` of the pipeline, its environment assembled.
    pub(super) fn new(
        index: usize,
        step: &Step,
        pipeline: &Pipeline,
        base_env: &[(String, String)],
        options: &RunOptions,
        images: &Images,
    ) -> StepTask {
        let env = step_env(base_env, pipeline, step, &options.secrets);
        let (build, build_error) = match &step.build {
            None => (None, None),
            Some(b) => match image_build(step, b, &env, &step_credentials(step, options)) {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(e)),
            },
        };
        let built_by = images
            .built_by
            .get(&index)
            .map(|builder| (builder.clone(), step.image.clone()));
        let image_error = build_error.or_else(|| match built_by {
            Some(_) => None,
            None => images.errors.get(&step.image).cloned(),
        });
        StepTask {
            index,
            spec: ContainerSpec {
                name: step.name.clone(),
                attempt: 1,
                // Filled in from the build before the first attempt.
                image: images.ids.get(&step.image).cloned().unwrap_or_default(),
                script: Some(step_script(&step.commands)),
                env,
                resources: step.resources.or(options.limits.defaults),
            },
            retries: step.retries,
            timeout: step.timeout,
            image_error,
            built_by,
            build,
            caches: step.cache.clone(),
            artifacts: step.artifacts.clone(),
            log_budget: LogBudget::new(options.limits.log_max_bytes),
        }
    }

    pub(super) async fn run<B: Backend>(
        mut self,
        shared: Arc<Shared<B>>,
        cancel: CancellationToken,
    ) -> StepResult {
        let started = Instant::now();
        let (outcome, exit_code, attempts) = self.attempts(&shared, &cancel).await;
        StepResult {
            index: self.index,
            outcome,
            exit_code,
            attempts,
            duration: started.elapsed(),
        }
    }

    /// Runs the step until it succeeds, runs out of retries, times out or
    /// is stopped. Returns how it ended, its exit code and the attempts made.
    async fn attempts<B: Backend>(
        &mut self,
        shared: &Arc<Shared<B>>,
        cancel: &CancellationToken,
    ) -> (StepOutcome, Option<i64>, u32) {
        if let Some((builder, tag)) = &self.built_by {
            let built = shared
                .built
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(builder)
                .cloned();
            match built {
                Some(id) => self.spec.image = id,
                None => {
                    self.image_error = Some(format!(
                        "image `{tag}` is what step `{builder}` builds, and it built nothing in this run"
                    ));
                }
            }
        }
        if let Some(message) = self.image_error.clone() {
            self.started(shared, 1).await;
            self.say(shared, message).await;
            return (StepOutcome::Failed, None, 1);
        }
        let prepared = self.prepare_caches(shared).await;
        let mut attempt = 1;
        loop {
            let (exit, timed_out) = self.attempt(shared, attempt, cancel).await;
            match exit {
                Ok(StepExit::Exited(0)) => {
                    if !self.caches.is_empty() || !self.artifacts.is_empty() {
                        self.keep_files(shared, &prepared).await;
                    }
                    return (StepOutcome::Success, Some(0), attempt);
                }
                Ok(StepExit::Exited(code)) => {
                    self.say(shared, format!("exit code {code}")).await;
                    if attempt <= self.retries && !cancel.is_cancelled() {
                        let retrying = format!("retrying ({} of {})", attempt, self.retries);
                        self.say(shared, retrying).await;
                        attempt += 1;
                        continue;
                    }
                    return (StepOutcome::Failed, Some(code), attempt);
                }
                Ok(StepExit::Stopped) if timed_out => {
                    let limit = self.timeout.map(format_duration).unwrap_or_default();
                    self.say(shared, format!("timed out after {limit}")).await;
                    return (StepOutcome::TimedOut, None, attempt);
                }
                Ok(StepExit::Stopped) => return (StepOutcome::Cancelled, None, attempt),
                Err(e) => {
                    self.say(shared, format!("error: {e}")).await;
                    let outcome = if cancel.is_cancelled() {
                        StepOutcome::Cancelled
                    } else {
                        StepOutcome::Failed
                    };
                    return (outcome, None, attempt);
                }
            }
        }
    }

    /// One attempt: the container (or the build) beside its log pump,
    /// stopped at the step's timeout. Returns how it exited, and whether
    /// the timeout is what stopped it.
    async fn attempt<B: Backend>(
        &mut self,
        shared: &Arc<Shared<B>>,
        attempt: u32,
        cancel: &CancellationToken,
    ) -> (Result<StepExit, BackendError>, bool) {
        self.spec.attempt = attempt;
        self.started(shared, attempt).await;
        let stop = cancel.child_token();
        let (tx, rx) = mpsc::channel::<LogChunk>(64);
        let pump = pump_logs(rx, self.spec.name.clone(), shared.clone(), self.log_budget);
        let exec = async {
            let fut = async {
                match &self.build {
                    None => {
                        shared
                            .backend
                            .run_step(&shared.run, &self.spec, tx, stop.clone())
                            .await
                    }
                    Some(b) => self.build_step(shared, b, tx, stop.clone()).await,
                }
            };
            tokio::pin!(fut);
            match self.timeout {
                None => (fut.await, false),
                Some(limit) => tokio::select! {
                    r = &mut fut => (r, false),
                    _ = tokio::time::sleep(limit) => {
                        stop.cancel();
                        (fut.await, true)
                    }
                },
            }
        };
        let ((exit, timed_out), budget) = tokio::join!(exec, pump);
        self.log_budget = budget;
        (exit, timed_out)
    }

    /// Restores the step's caches, saying how in its log; returns what
    /// saving them needs after a success.
    async fn prepare_caches<B: Backend>(&self, shared: &Shared<B>) -> Vec<Option<Prepared>> {
        let Some(store) = &shared.files.cache else {
            return Vec::new();
        };
        if self.caches.is_empty() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        let prepared = restore_caches(
            shared.backend.as_ref(),
            &shared.run,
            (store, shared.files.shared.as_ref()),
            &shared.cache_scope,
            &self.caches,
            &mut lines,
        )
        .await;
        emit_system(&shared.events, &self.spec.name, lines).await;
        prepared
    }

    /// After a success: saves the caches that missed and keeps the
    /// artifacts, saying how in the step's log.
    async fn keep_files<B: Backend>(&self, shared: &Shared<B>, prepared: &[Option<Prepared>]) {
        let step = &self.spec.name;
        let mut lines = Vec::new();
        if let Some(store) = &shared.files.cache {
            save_caches(
                shared.backend.as_ref(),
                &shared.run,
                (store, shared.files.shared.as_ref()),
                &shared.cache_scope,
                &self.caches,
                prepared,
                &mut lines,
            )
            .await;
        }
        if let Some(dir) = &shared.files.artifacts
            && !self.artifacts.is_empty()
        {
            let files = collect_artifacts(
                shared.backend.as_ref(),
                &shared.run,
                step,
                &self.artifacts,
                dir,
                &mut lines,
            )
            .await;
            if !files.is_empty() {
                let step = step.clone();
                emit(&shared.events, RunEvent::Artifacts { step, files }).await;
            }
        }
        emit_system(&shared.events, step, lines).await;
    }

    async fn started<B>(&self, shared: &Shared<B>, attempt: u32) {
        let step = self.spec.name.clone();
        emit(&shared.events, RunEvent::StepStarted { step, attempt }).await;
    }

    /// A line of Slipway's own in the step's log.
    async fn say<B>(&self, shared: &Shared<B>, line: String) {
        let event = RunEvent::Log {
            step: self.spec.name.clone(),
            stream: LogStream::System,
            line,
        };
        emit(&shared.events, event).await;
    }
    /// A build step: the build's output is the step's log, and what it
    /// pushed is the step's output.
    async fn build_step<B: Backend>(
        &self,
        shared: &Arc<Shared<B>>,
        build: &ImageBuild,
        logs: mpsc::Sender<LogChunk>,
        stop: CancellationToken,
    ) -> Result<StepExit, crate::backend::BackendError> {
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let forward = async {
            while let Some(line) = rx.recv().await {
                let _ = logs
                    .send((LogStream::Stdout, bytes::Bytes::from(line + "\n")))
                    .await;
            }
        };
        let (built, ()) = tokio::join!(
            shared
                .backend
                .build_image(&shared.run, build, tx, stop.clone()),
            forward
        );
        let say = |line: String| RunEvent::Log {
            step: build.step.clone(),
            stream: LogStream::System,
            line,
        };
        match built {
            Ok(image) => {
                shared
                    .built
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(build.step.clone(), image.image_id.clone());
                let builder = if image.buildkit {
                    "BuildKit"
                } else {
                    "classic builder"
                };
                emit(
                    &shared.events,
                    say(format!(
                        "built {} with {builder}: {}",
                        image.image_id,
                        cache_summary(&image.cached, image.steps)
                    )),
                )
                .await;
                if let Some(pushed) = image.pushed {
                    emit(&shared.events, say(format!("pushed {pushed}"))).await;
                    emit(
                        &shared.events,
                        RunEvent::StepOutput {
                            step: build.step.clone(),
                            image: pushed,
                        },
                    )
                    .await;
                }
                Ok(StepExit::Exited(0))
            }
            Err(_) if stop.is_cancelled() => Ok(StepExit::Stopped),
            Err(e) => {
                emit(&shared.events, say(format!("error: {e}"))).await;
                Ok(StepExit::Exited(1))
            }
        }
    }
}

/// How many of a build's steps came from cache, naming them (the first
/// few, each cut short): "2 of 3 build steps from cache: [2/3] RUN make,
/// [3/3] COPY . .".
fn cache_summary(cached: &[String], steps: usize) -> String {
    const NAMED: usize = 3;
    const NAME_CHARS: usize = 40;
    if steps == 0 {
        return "no build steps that could come from cache".into();
    }
    let mut summary = format!("{} of {steps} build steps from cache", cached.len());
    let names: Vec<String> = cached
        .iter()
        .take(NAMED)
        .map(|name| match name.char_indices().nth(NAME_CHARS) {
            Some((cut, _)) => format!("{}…", &name[..cut]),
            None => name.clone(),
        })
        .collect();
    if !names.is_empty() {
        summary.push_str(": ");
        summary.push_str(&names.join(", "));
    }
    if cached.len() > NAMED {
        summary.push_str(&format!(" and {} more", cached.len() - NAMED));
    }
    summary
}

#[cfg(test)]
mod tests {
    use slipway_engine::{RunStatus, StepStatus};
    use tokio_util::sync::CancellationToken;

    use crate::event::RunEvent;
    use crate::fake::{FakeBackend, FakeStep};
    use crate::scheduler::testing::{go, options, pipeline, secs, status_of};

    use super::cache_summary;

    #[test]
    fn the_build_summary_counts_cached_steps_of_those_that_could_be_and_names_them() {
        assert_eq!(cache_summary(&[], 3), "0 of 3 build steps from cache");
        let warm = ["[2/4] RUN make", "[3/4] COPY . .", "[4/4] RUN make test"];
        assert_eq!(
            cache_summary(&warm.map(String::from), 3),
            "3 of 3 build steps from cache: [2/4] RUN make, [3/4] COPY . ., [4/4] RUN make test"
        );
        let long = "[2/9] RUN apt-get update && apt-get install -y build-essential";
        let many = [long, "[3/9] a", "[4/9] b", "[5/9] c", "[6/9] d"].map(String::from);
        assert_eq!(
            cache_summary(&many, 8),
            "5 of 8 build steps from cache: [2/9] RUN apt-get update && apt-get inst…, [3/9] a, [4/9] b and 2 more"
        );
        assert_eq!(
            cache_summary(&[], 0),
            "no build steps that could come from cache"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_a_failed_step() {
        let src = "steps:\n  flaky: {image: i, commands: [x], retries: 2}\n";
        let fake = FakeBackend::new();
        fake.script(
            "flaky",
            FakeStep {
                exits: vec![1, 1, 0],
                ..Default::default()
            },
        );
        let (report, _) = go(&fake, &pipeline(src), options(1), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(report.steps[0].attempts, 3);
        let runs: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("run"))
            .collect();
        assert_eq!(runs, ["run flaky#1", "run flaky#2", "run flaky#3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_over_its_timeout_is_stopped_and_timed_out() {
        let src = "steps:\n  slow: {image: i, commands: [x], timeout: 2s, retries: 3}\n  after: {image: i, commands: [x], needs: [slow]}\n";
        let fake = FakeBackend::new();
        fake.script(
            "slow",
            FakeStep {
                duration: secs(60),
                ..Default::default()
            },
        );
        let started = tokio::time::Instant::now();
        let (report, events) =
            go(&fake, &pipeline(src), options(1), CancellationToken::new()).await;
        assert_eq!(started.elapsed().as_secs(), 2);
        assert_eq!(status_of(&report, "slow"), &StepStatus::TimedOut);
        assert_eq!(report.steps[0].attempts, 1, "timeouts are not retried");
        assert_eq!(report.status, RunStatus::Failed);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RunEvent::Log { line, .. } if line == "timed out after 2.0s"))
        );
    }
}
