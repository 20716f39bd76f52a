//! Runs a planned pipeline on a backend: up to `jobs` steps at once, each in
//! a container of its own, with timeouts, retries, secret masking and
//! cancellation, reporting everything as [`RunEvent`]s.
//!
//! - `mod.rs`: [`execute`] and the run loop: start ready steps up to the
//!   jobs limit, settle each as it ends, report.
//! - `setup`: before and after the steps: images (resolved to IDs, or a
//!   build of the run), the run's network and workspace, services, teardown.
//! - `step`: one step's task: attempts, retries, timeout, image builds,
//!   caches and artifacts.
//! - `env`: what a step's container gets: variables, registry logins, its
//!   image build.
//! - `logs`: events out: Slipway's own log lines, a step's output masked.

mod env;
mod logs;
mod setup;
mod step;
#[cfg(test)]
mod testing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway_engine::dag::PlanError;
use slipway_engine::{Pipeline, Plan, RunState, RunStatus, StepOutcome, StepStatus, Trigger};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use self::env::base_env;
use self::logs::emit;
use self::step::StepTask;
use crate::backend::{Backend, RunSpec, Workspace};
use crate::event::{LogStream, RunEvent};
use crate::mask::Masker;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Unique across every run this backend sees: it names containers.
    pub run_id: String,
    /// The most steps running at once.
    pub jobs: usize,
    pub trigger: Trigger,
    /// Values of secrets by name; steps get only those they list.
    pub secrets: HashMap<String, String>,
    pub workspace: Workspace,
    /// Variables set by whoever started the run (commit, ref, ...), for every step.
    pub env: Vec<(String, String)>,
    /// Steps not to run, each with the reason shown in its log (e.g. a
    /// rerun of failed steps skips what passed). They count as satisfied.
    pub skip: Vec<(String, String)>,
    /// Directory caches and artifacts; off where `None`.
    pub files: crate::step_files::StepFiles,
    /// Which caches the run may restore and where it saves them: the
    /// caller knows whose code this is.
    pub cache_scope: crate::cache::CacheScope,
    /// Registry logins for image builds and pushes.
    pub credentials: crate::backend::Credentials,
    /// What every container of the run is held to.
    pub limits: Limits,
}

/// Bounds on what a run's code may use, so one pull request cannot starve
/// the machine (or fill the store) for every other run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// For what a step's `resources:` leaves unset, and for services.
    pub defaults: slipway_engine::Resources,
    /// A step's output past this many bytes (all its attempts together)
    /// is not kept; the step runs on. `None`: all of it is.
    pub log_max_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    pub name: String,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub duration: Duration,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    pub steps: Vec<StepReport>,
    pub duration: Duration,
    /// Why the run failed before or around its steps (setup, services), if it did.
    pub error: Option<String>,
}

/// Problems found before anything is started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "step `{step}` needs secret `{secret}`, which has no value (pass it with --secret {secret}=...)"
    )]
    MissingSecret { step: String, secret: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What a step task hands back to the scheduler loop.
struct StepResult {
    index: usize,
    outcome: StepOutcome,
    exit_code: Option<i64>,
    attempts: u32,
    duration: Duration,
}

/// Everything a step task needs, shared by all of them.
struct Shared<B> {
    backend: Arc<B>,
    run: RunSpec,
    events: mpsc::Sender<RunEvent>,
    masker: Masker,
    files: crate::step_files::StepFiles,
    cache_scope: crate::cache::CacheScope,
    /// The image ID each build step of this run made, by step name.
    built: Mutex<HashMap<String, String>>,
}

pub async fn execute<B: Backend>(
    backend: Arc<B>,
    pipeline: &Pipeline,
    options: RunOptions,
    events: mpsc::Sender<RunEvent>,
    cancel: CancellationToken,
) -> Result<RunReport, RunError> {
    let plan = Plan::new(pipeline)?;
    for step in &pipeline.steps {
        if let Some(secret) = step
            .secrets
            .iter()
            .find(|s| !options.secrets.contains_key(*s))
        {
            return Err(RunError::MissingSecret {
                step: step.name.clone(),
                secret: secret.clone(),
            });
        }
    }
    let span = info_span!("run", run_id = %options.run_id, pipeline = %pipeline.name);
    // Everything the run reports passes one masker on its way out, not only
    // step output: Slipway's own lines, errors and pull progress can quote
    // a value too (a failing command line, a registry's answer).
    let masker = Masker::new(options.secrets.values().map(String::as_str));
    let (inner, mut outgoing) = mpsc::channel::<RunEvent>(256);
    let forward = {
        let masker = masker.clone();
        tokio::spawn(async move {
            while let Some(event) = outgoing.recv().await {
                // A consumer that went away does not stop the run.
                let _ = events.send(masked(&masker, event)).await;
            }
        })
    };
    let mut report = run(backend, pipeline, &plan, options, &masker, inner, cancel)
        .instrument(span)
        .await;
    // `run` has dropped its senders: the forwarder ends once it has
    // delivered the last event, so nothing arrives after the report.
    let _ = forward.await;
    report.error = report.error.map(|e| masker.mask(&e).into_owned());
    Ok(report)
}

/// `event` with every secret value in its text masked.
fn masked(masker: &Masker, event: RunEvent) -> RunEvent {
    let mask = |s: String| match masker.mask(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(m) => m,
    };
    match event {
        RunEvent::Log { step, stream, line } => RunEvent::Log {
            step,
            stream,
            line: mask(line),
        },
        RunEvent::RunError { message } => RunEvent::RunError {
            message: mask(message),
        },
        RunEvent::ImagePull { image, status } => RunEvent::ImagePull {
            image: mask(image),
            status: mask(status),
        },
        RunEvent::Artifacts { step, files } => RunEvent::Artifacts {
            step,
            files: files.into_iter().map(|(f, n)| (mask(f), n)).collect(),
        },
        RunEvent::StepOutput { step, image } => RunEvent::StepOutput {
            step,
            image: mask(image),
        },
        // Names of steps and services come from the pipeline file, not
        // from anything run, and consumers key logs and states by them:
        // masking one that happened to contain a value would break that.
        // Listed rather than `_` so a new text field must be decided on.
        e @ (RunEvent::RunStarted { .. }
        | RunEvent::ServiceStarted { .. }
        | RunEvent::StepStarted { .. }
        | RunEvent::StepFinished { .. }
        | RunEvent::StepSettled { .. }
        | RunEvent::RunFinished { .. }
        | RunEvent::Phase { .. }) => e,
    }
}

async fn run<B: Backend>(
    backend: Arc<B>,
    pipeline: &Pipeline,
    plan: &Plan,
    options: RunOptions,
    masker: &Masker,
    events: mpsc::Sender<RunEvent>,
    cancel: CancellationToken,
) -> RunReport {
    let started = Instant::now();
    let run_id = options.run_id.clone();
    emit(
        &events,
        RunEvent::RunStarted {
            run_id: run_id.clone(),
            steps: pipeline.steps.iter().map(|s| s.name.clone()).collect(),
        },
    )
    .await;
    let base_env = base_env(pipeline, &options);
    let state = initial_state(pipeline, plan, &options);
    let phase = Instant::now();
    let (images, spec) = setup::prepare(
        &backend, pipeline, plan, &state, &base_env, &options, &events,
    )
    .await;
    let images_took = phase.elapsed();
    announce_skipped(pipeline, &state, &options, &events).await;
    let services = setup::services(pipeline, &images, &base_env, &options.limits);
    let phase = Instant::now();
    let error = setup::start(backend.as_ref(), &spec, services, &events, &cancel).await;
    for (phase, took) in [
        ("images", images_took),
        ("network+workspace", phase.elapsed()),
    ] {
        let phase = phase.to_string();
        emit(&events, RunEvent::Phase { phase, took }).await;
    }
    let shared = Arc::new(Shared {
        backend: backend.clone(),
        run: spec,
        events: events.clone(),
        masker: masker.clone(),
        files: options.files.clone(),
        cache_scope: options.cache_scope.clone(),
        built: Mutex::new(HashMap::new()),
    });
    let mut steps = RunLoop {
        pipeline,
        plan,
        options: &options,
        base_env,
        images,
        shared,
        step_cancel: cancel.child_token(),
        cancel: cancel.clone(),
        state,
        tasks: JoinSet::new(),
        results: pipeline.steps.iter().map(|_| None).collect(),
    };
    if error.is_some() || cancel.is_cancelled() {
        steps.cancel_pending().await;
    }
    steps.drive().await;
    let reports = step_reports(pipeline, &steps.state, std::mem::take(&mut steps.results));

    setup::teardown(backend.as_ref(), &run_id).await;
    // Steps settled because setup failed were "cancelled" by us, not the
    // user: the run failed.
    let mut status = steps.state.run_status();
    if error.is_some() && !cancel.is_cancelled() {
        status = RunStatus::Failed;
    }
    if let Some(message) = &error {
        emit(
            &events,
            RunEvent::RunError {
                message: message.clone(),
            },
        )
        .await;
    }
    let duration = started.elapsed();
    emit(&events, RunEvent::RunFinished { status, duration }).await;
    RunReport {
        run_id,
        status,
        steps: reports,
        duration,
        error,
    }
}

/// Why `options` skips the step named `name`, if it does.
fn skip_reason(options: &RunOptions, name: &str) -> Option<String> {
    options
        .skip
        .iter()
        .find(|(s, _)| s == name)
        .map(|(_, why)| why.clone())
}

/// The steps' fates as the run starts: those the trigger's `when`
/// excludes, or `options.skip` names, are skipped from the start.
fn initial_state(pipeline: &Pipeline, plan: &Plan, options: &RunOptions) -> RunState {
    let excluded: Vec<bool> = pipeline
        .excluded(&options.trigger)
        .into_iter()
        .zip(&pipeline.steps)
        .map(|(by_when, step)| by_when || skip_reason(options, &step.name).is_some())
        .collect();
    RunState::new(
        plan,
        pipeline.steps.iter().map(|s| s.allow_failure).collect(),
        &excluded,
    )
}

/// Says in each skipped step's log why it is skipped, and settles it.
async fn announce_skipped(
    pipeline: &Pipeline,
    state: &RunState,
    options: &RunOptions,
    events: &mpsc::Sender<RunEvent>,
) {
    for (i, step) in pipeline.steps.iter().enumerate() {
        if let StepStatus::Skipped(_) = state.status(i) {
            emit(
                events,
                RunEvent::Log {
                    step: step.name.clone(),
                    stream: LogStream::System,
                    line: format!(
                        "skipped: {}",
                        skip_reason(options, &step.name)
                            .unwrap_or_else(|| step.when.explain(&options.trigger))
                    ),
                },
            )
            .await;
            emit(
                events,
                RunEvent::StepSettled {
                    step: step.name.clone(),
                    status: state.status(i).clone(),
                },
            )
            .await;
        }
    }
}

/// The run loop: what it needs to start steps, and the state it moves on.
struct RunLoop<'a, B> {
    pipeline: &'a Pipeline,
    plan: &'a Plan,
    options: &'a RunOptions,
    base_env: Vec<(String, String)>,
    /// What each step's container is created from, or why it cannot be.
    images: setup::Images,
    shared: Arc<Shared<B>>,
    /// The whole run's cancellation, from whoever started it.
    cancel: CancellationToken,
    /// Stops the running steps; a child of `cancel`.
    step_cancel: CancellationToken,
    state: RunState,
    tasks: JoinSet<StepResult>,
    /// What each step's task reported once it ended; statuses are read from
    /// `state` when the run ends, the one place that knows them.
    results: Vec<Option<StepResult>>,
}

impl<B: Backend> RunLoop<'_, B> {
    /// Starts ready steps up to the jobs limit and settles each as it ends,
    /// until every step is settled.
    async fn drive(&mut self) {
        let jobs = self.options.jobs.max(1);
        loop {
            // Cancellation is settled before anything else: a step stopped by it
            // may report back before this loop sees the token, and must then be
            // counted as cancelled, not as a failure.
            self.settle_cancellation().await;
            while self.tasks.len() < jobs
                && let Some(i) = self.state.pop_ready()
            {
                self.start(i);
            }
            if self.state.is_finished() {
                break;
            }
            let joined = tokio::select! {
                joined = self.tasks.join_next() => joined,
                _ = self.cancel.cancelled(), if !self.state.is_cancelled() => continue,
            };
            let Some(joined) = joined else { break };
            self.settle_cancellation().await;
            match joined {
                Ok(result) => self.finished(result).await,
                // A panicking step task is a bug; the run must still end.
                Err(e) => warn!(error = %e, "step task failed"),
            }
        }
    }

    /// Once the run is cancelled: stops the running steps, settles the rest.
    async fn settle_cancellation(&mut self) {
        if self.cancel.is_cancelled() && !self.state.is_cancelled() {
            self.step_cancel.cancel();
            self.cancel_pending().await;
        }
    }

    /// Settles every step not started yet as cancelled, and says so.
    async fn cancel_pending(&mut self) {
        for j in self.state.cancel() {
            emit(
                &self.shared.events,
                RunEvent::StepSettled {
                    step: self.plan.name(j).to_string(),
                    status: StepStatus::Cancelled,
                },
            )
            .await;
        }
    }

    fn start(&mut self, i: usize) {
        let step = &self.pipeline.steps[i];
        let task = StepTask::new(
            i,
            step,
            self.pipeline,
            &self.base_env,
            self.options,
            &self.images,
        );
        let span = info_span!("step", run_id = %self.options.run_id, step = %step.name);
        self.tasks.spawn(
            task.run(self.shared.clone(), self.step_cancel.clone())
                .instrument(span),
        );
    }

    /// Records how a step ended, and settles the steps that decides.
    async fn finished(&mut self, result: StepResult) {
        let i = result.index;
        let settled = self.state.finish(self.plan, i, result.outcome);
        emit(
            &self.shared.events,
            RunEvent::StepFinished {
                step: self.plan.name(i).to_string(),
                status: self.state.status(i).clone(),
                exit_code: result.exit_code,
                duration: result.duration,
                attempts: result.attempts,
            },
        )
        .await;
        self.results[i] = Some(result);
        for j in settled {
            if let StepStatus::Skipped(slipway_engine::SkipReason::Condition) = self.state.status(j)
            {
                let step = &self.pipeline.steps[j];
                emit(
                    &self.shared.events,
                    RunEvent::Log {
                        step: step.name.clone(),
                        stream: LogStream::System,
                        line: format!(
                            "skipped: {}",
                            skip_reason(self.options, &step.name)
                                .unwrap_or_else(|| step.when.explain(&self.options.trigger))
                        ),
                    },
                )
                .await;
            }
            emit(
                &self.shared.events,
                RunEvent::StepSettled {
                    step: self.plan.name(j).to_string(),
                    status: self.state.status(j).clone(),
                },
            )
            .await;
        }
    }
}

/// Each step's report: its status as the run ended, and what its task said
/// (nothing for a step that never ran).
fn step_reports(
    pipeline: &Pipeline,
    state: &RunState,
    results: Vec<Option<StepResult>>,
) -> Vec<StepReport> {
    pipeline
        .steps
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (step, result))| StepReport {
            name: step.name.clone(),
            status: state.status(i).clone(),
            exit_code: result.as_ref().and_then(|r| r.exit_code),
            duration: result.as_ref().map_or(Duration::ZERO, |r| r.duration),
            attempts: result.as_ref().map_or(0, |r| r.attempts),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeBackend, FakeStep};
    use crate::scheduler::testing::{go, options, pipeline, secs, status_of};
    use slipway_engine::SkipReason;

    const FOUR: &str = "steps:\n  a: {image: i, commands: [x]}\n  b: {image: i, commands: [x]}\n  c: {image: i, commands: [x]}\n  d: {image: i, commands: [x]}\n";

    /// Issue 15: what Slipway itself says passes the run's masker too, not
    /// only step output: a pull's progress, a registry's refusal quoting an
    /// auth header (base64 of `user:value`) and a skip reason, both written
    /// into a step's log. (The run's error event and report: setup.rs.)
    /// Every event is delivered, in order, before `execute` returns.
    #[tokio::test(start_paused = true)]
    async fn everything_the_run_says_is_masked_and_delivered_before_the_report() {
        use base64::Engine;
        let secret = "s3cret-t0ken-value";
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("ci:{secret}"));
        let src = format!(
            "steps:\n  a: {{image: reg.example/{secret}, commands: [x]}}\n  b: {{image: i, commands: [x], secrets: [TOKEN]}}\n"
        );
        let fake = FakeBackend::new();
        fake.missing_image(
            &format!("reg.example/{secret}"),
            &format!("401: Authorization: Basic {auth} refused"),
        );
        let mut opts = options(1);
        opts.secrets.insert("TOKEN".into(), secret.into());
        opts.skip
            .push(("b".into(), format!("token {secret} is revoked")));
        let (tx, mut rx) = mpsc::channel(1024);
        let report = execute(
            fake.clone(),
            &pipeline(&src),
            opts,
            tx,
            CancellationToken::new(),
        )
        .await
        .expect("run");
        let mut events = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    panic!("execute returned before its events were delivered: {events:?}")
                }
            }
        }
        assert!(
            matches!(events.last(), Some(RunEvent::RunFinished { .. })),
            "in order, the end last: {events:?}"
        );
        let all = format!("{events:?} {:?}", report.error);
        assert!(!all.contains(secret), "{all}");
        assert!(!all.contains(&auth[4..auth.len() - 4]), "{all}");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RunEvent::ImagePull { status, .. }
                if status == "pulling reg.example/********")),
            "{events:?}"
        );
        assert!(
            events.iter().any(
                |e| matches!(e, RunEvent::Log { step, stream: LogStream::System, line }
                if step == "b" && line == "skipped: token ******** is revoked")
            ),
            "{events:?}"
        );
        // `Y2k6` is `ci:`, which holds no bit of the value.
        assert!(
            events.iter().any(|e| matches!(e, RunEvent::Log { step, stream: LogStream::System, line }
                if step == "a" && line == "cannot pull image `reg.example/********`: 401: Authorization: Basic Y2k6******** refused")),
            "{events:?}"
        );
    }
    #[tokio::test(start_paused = true)]
    async fn runs_at_most_jobs_steps_at_once() {
        let fake = FakeBackend::new();
        for s in ["a", "b", "c", "d"] {
            fake.script(
                s,
                FakeStep {
                    duration: secs(1),
                    ..Default::default()
                },
            );
        }
        let started = tokio::time::Instant::now();
        let (report, _) = go(&fake, &pipeline(FOUR), options(2), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(fake.max_running(), 2);
        assert_eq!(started.elapsed().as_secs(), 2, "two waves of two");
        let calls = fake.calls();
        assert_eq!(calls.first().map(String::as_str), Some("image i"));
        assert_eq!(calls.last().map(String::as_str), Some("teardown r1"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_skips_dependents_and_independent_branches_finish() {
        let src = "steps:\n  build: {image: i, commands: [x]}\n  test: {image: i, commands: [x], needs: [build]}\n  ship: {image: i, commands: [x], needs: [test]}\n  lint: {image: i, commands: [x]}\n";
        let fake = FakeBackend::new();
        fake.script(
            "build",
            FakeStep {
                exits: vec![2],
                ..Default::default()
            },
        );
        fake.script(
            "lint",
            FakeStep {
                duration: secs(5),
                ..Default::default()
            },
        );
        let (report, events) =
            go(&fake, &pipeline(src), options(4), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Failed);
        assert_eq!(status_of(&report, "build"), &StepStatus::Failed);
        assert_eq!(report.steps[0].exit_code, Some(2));
        let upstream = StepStatus::Skipped(SkipReason::Upstream("build".into()));
        assert_eq!(status_of(&report, "test"), &upstream);
        assert_eq!(status_of(&report, "ship"), &upstream);
        assert_eq!(status_of(&report, "lint"), &StepStatus::Success);
        assert!(!fake.calls().iter().any(|c| c.starts_with("run test")));
        assert!(events.contains(&RunEvent::StepSettled {
            step: "ship".into(),
            status: upstream
        }));
        assert!(matches!(
            events.last(),
            Some(RunEvent::RunFinished {
                status: RunStatus::Failed,
                ..
            })
        ));
    }
    #[tokio::test(start_paused = true)]
    async fn cancel_stops_running_steps_cancels_pending_ones_and_tears_down() {
        // Repeated: which of "step stopped" and "run cancelled" the scheduler
        // sees first is up to tokio::select!, and both orders must give the
        // same answer.
        for _ in 0..25 {
            let src = "steps:\n  a: {image: i, commands: [x]}\n  b: {image: i, commands: [x], needs: [a]}\n";
            let fake = FakeBackend::new();
            fake.script(
                "a",
                FakeStep {
                    duration: secs(60),
                    ..Default::default()
                },
            );
            let cancel = CancellationToken::new();
            let trigger = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(secs(1)).await;
                trigger.cancel();
            });
            let (report, _) = go(&fake, &pipeline(src), options(2), cancel).await;
            assert_eq!(report.status, RunStatus::Cancelled);
            assert_eq!(status_of(&report, "a"), &StepStatus::Cancelled);
            assert_eq!(status_of(&report, "b"), &StepStatus::Cancelled);
            assert_eq!(fake.calls().last().map(String::as_str), Some("teardown r1"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_secret_is_refused_before_anything_starts() {
        let src = "steps:\n  deploy: {image: i, commands: [x], secrets: [TOKEN]}\n";
        let fake = FakeBackend::new();
        let (tx, _rx) = mpsc::channel(16);
        let err = execute(
            fake.clone(),
            &pipeline(src),
            options(1),
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `deploy` needs secret `TOKEN`, which has no value (pass it with --secret TOKEN=...)"
        );
        assert!(fake.calls().is_empty());
    }
    #[tokio::test(start_paused = true)]
    async fn when_conditions_skip_steps_with_the_reason() {
        let src = "steps:\n  deploy: {image: i, commands: [x], when: {branch: [release/*]}}\n  notify: {image: i, commands: [x], needs: [deploy]}\n";
        let fake = FakeBackend::new();
        let (report, events) =
            go(&fake, &pipeline(src), options(1), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(
            status_of(&report, "deploy"),
            &StepStatus::Skipped(SkipReason::Condition)
        );
        assert_eq!(status_of(&report, "notify"), &StepStatus::Success);
        assert!(
            events.iter().any(|e| matches!(e, RunEvent::Log { line, .. }
            if line == "skipped: when: branch in [release/*] (this run: event push, branch main)"))
        );
    }

    /// A `when:`-excluded deploy after tests that run was started once the
    /// tests passed; it is skipped with its reason instead.
    #[tokio::test(start_paused = true)]
    async fn a_step_excluded_by_when_after_a_step_that_runs_never_starts() {
        let src = "steps:\n  test: {image: i, commands: [x]}\n  deploy: {image: i, commands: [x], needs: [test], when: {branch: [release/*]}}\n  notify: {image: i, commands: [x], needs: [deploy]}\n";
        let fake = FakeBackend::new();
        let (report, events) =
            go(&fake, &pipeline(src), options(1), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(status_of(&report, "test"), &StepStatus::Success);
        assert_eq!(
            status_of(&report, "deploy"),
            &StepStatus::Skipped(SkipReason::Condition)
        );
        assert_eq!(status_of(&report, "notify"), &StepStatus::Success);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, RunEvent::StepStarted { step, .. } if step == "deploy")),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, RunEvent::Log { step, line, .. }
            if step == "deploy" && line == "skipped: when: branch in [release/*] (this run: event push, branch main)")));
    }

    #[tokio::test(start_paused = true)]
    async fn named_steps_are_skipped_with_their_reason_and_satisfy_dependents() {
        let src = "steps:\n  build: {image: i, commands: [x]}\n  test: {image: i, commands: [x], needs: [build]}\n";
        let fake = FakeBackend::new();
        let mut opts = options(1);
        opts.skip
            .push(("build".into(), "succeeded in run r0".into()));
        let (report, events) = go(&fake, &pipeline(src), opts, CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(
            status_of(&report, "build"),
            &StepStatus::Skipped(SkipReason::Condition)
        );
        assert_eq!(status_of(&report, "test"), &StepStatus::Success);
        assert!(!fake.calls().iter().any(|c| c == "run build#1"));
        assert!(events.iter().any(|e| matches!(e, RunEvent::Log { step, line, .. } if step == "build" && line == "skipped: succeeded in run r0")));
    }
}
