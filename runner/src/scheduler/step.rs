//! One step's task: its attempts with retries and a timeout, a build
//! step's image build, and its caches and artifacts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_engine::StepOutcome;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::logs::{emit, emit_system, pump_logs};
use super::{Shared, StepResult};
use crate::backend::{Backend, ContainerSpec, ImageBuild, LogChunk, StepExit};
use crate::event::{LogStream, RunEvent};

/// A step as its task runs it: built by the run loop from the pipeline.
pub(super) struct StepTask {
    pub(super) index: usize,
    pub(super) spec: ContainerSpec,
    pub(super) retries: u32,
    pub(super) timeout: Option<Duration>,
    pub(super) image_error: Option<String>,
    pub(super) build: Option<ImageBuild>,
    pub(super) caches: Vec<slipway_engine::Cache>,
    pub(super) artifacts: Vec<String>,
}

impl StepTask {
    pub(super) async fn run<B: Backend>(
        mut self,
        shared: Arc<Shared<B>>,
        cancel: CancellationToken,
    ) -> StepResult {
        let started = Instant::now();
        let step = self.spec.name.clone();
        let log = |line: String| RunEvent::Log {
            step: step.clone(),
            stream: LogStream::System,
            line,
        };
        let result = |outcome, exit_code, attempts| StepResult {
            index: self.index,
            outcome,
            exit_code,
            attempts,
            duration: started.elapsed(),
        };
        if let Some(message) = &self.image_error {
            emit(
                &shared.events,
                RunEvent::StepStarted {
                    step: step.clone(),
                    attempt: 1,
                },
            )
            .await;
            emit(&shared.events, log(message.clone())).await;
            return result(StepOutcome::Failed, None, 1);
        }
        let mut prepared = Vec::new();
        if let Some(store) = &shared.files.cache
            && !self.caches.is_empty()
        {
            let mut lines = Vec::new();
            prepared = crate::step_files::restore_caches(
                shared.backend.as_ref(),
                &shared.run,
                store,
                &self.caches,
                &mut lines,
            )
            .await;
            emit_system(&shared.events, &step, lines).await;
        }
        let succeeded = |attempt: u32| {
            let shared = shared.clone();
            let (caches, artifacts, step) =
                (self.caches.clone(), self.artifacts.clone(), step.clone());
            let prepared = &prepared;
            async move {
                let mut lines = Vec::new();
                if let Some(store) = &shared.files.cache {
                    crate::step_files::save_caches(
                        shared.backend.as_ref(),
                        &shared.run,
                        store,
                        &caches,
                        prepared,
                        &mut lines,
                    )
                    .await;
                }
                if let Some(dir) = &shared.files.artifacts
                    && !artifacts.is_empty()
                {
                    let dir = dir.clone();
                    let files = crate::step_files::collect_artifacts(
                        shared.backend.as_ref(),
                        &shared.run,
                        &step,
                        &artifacts,
                        &dir,
                        &mut lines,
                    )
                    .await;
                    if !files.is_empty() {
                        emit(
                            &shared.events,
                            RunEvent::Artifacts {
                                step: step.clone(),
                                files,
                            },
                        )
                        .await;
                    }
                }
                emit_system(&shared.events, &step, lines).await;
                attempt
            }
        };
        let mut attempt = 1;
        loop {
            self.spec.attempt = attempt;
            emit(
                &shared.events,
                RunEvent::StepStarted {
                    step: step.clone(),
                    attempt,
                },
            )
            .await;
            let stop = cancel.child_token();
            let (tx, rx) = mpsc::channel::<LogChunk>(64);
            let pump = pump_logs(rx, step.clone(), shared.clone());
            let build = self.build.clone();
            let exec = async {
                let fut = async {
                    match &build {
                        None => {
                            shared
                                .backend
                                .run_step(&shared.run, &self.spec, tx, stop.clone())
                                .await
                        }
                        Some(b) => self.build_step(&shared, b, tx, stop.clone()).await,
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
            let ((exit, timed_out), ()) = tokio::join!(exec, pump);
            match exit {
                Ok(StepExit::Exited(0)) => {
                    if !self.caches.is_empty() || !self.artifacts.is_empty() {
                        succeeded(attempt).await;
                    }
                    return result(StepOutcome::Success, Some(0), attempt);
                }
                Ok(StepExit::Exited(code)) => {
                    emit(&shared.events, log(format!("exit code {code}"))).await;
                    if attempt <= self.retries && !cancel.is_cancelled() {
                        emit(
                            &shared.events,
                            log(format!("retrying ({} of {})", attempt, self.retries)),
                        )
                        .await;
                        attempt += 1;
                        continue;
                    }
                    return result(StepOutcome::Failed, Some(code), attempt);
                }
                Ok(StepExit::Stopped) if timed_out => {
                    let limit = self
                        .timeout
                        .map(slipway_engine::duration::format_duration)
                        .unwrap_or_default();
                    emit(&shared.events, log(format!("timed out after {limit}"))).await;
                    return result(StepOutcome::TimedOut, None, attempt);
                }
                Ok(StepExit::Stopped) => return result(StepOutcome::Cancelled, None, attempt),
                Err(e) => {
                    emit(&shared.events, log(format!("error: {e}"))).await;
                    let outcome = if cancel.is_cancelled() {
                        StepOutcome::Cancelled
                    } else {
                        StepOutcome::Failed
                    };
                    return result(outcome, None, attempt);
                }
            }
        }
    }
}

impl StepTask {
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
                let builder = if image.buildkit {
                    "BuildKit"
                } else {
                    "classic builder"
                };
                emit(
                    &shared.events,
                    say(format!(
                        "built {} with {builder}: {} of {} build steps from cache",
                        image.image_id, image.cached, image.steps
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

#[cfg(test)]
mod tests {
    use slipway_engine::{RunStatus, StepStatus};
    use tokio_util::sync::CancellationToken;

    use crate::event::RunEvent;
    use crate::fake::{FakeBackend, FakeStep};
    use crate::scheduler::testing::{go, options, pipeline, secs, status_of};

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
