//! Runs a planned pipeline on a backend: up to `jobs` steps at once, each in
//! a container of its own, with timeouts, retries, secret masking and
//! cancellation, reporting everything as [`RunEvent`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_engine::dag::PlanError;
use slipway_engine::{Pipeline, Plan, RunState, RunStatus, StepOutcome, StepStatus, Trigger};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::backend::{Backend, ContainerSpec, ImageBuild, LogChunk, RunSpec, StepExit, Workspace};
use crate::event::{LogStream, RunEvent};
use crate::mask::{LineSplitter, Masker};
use crate::script::step_script;

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
    /// Registry logins for image builds and pushes.
    pub credentials: crate::backend::Credentials,
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
    Ok(run(backend, pipeline, &plan, options, events, cancel)
        .instrument(span)
        .await)
}

/// Slipway's own lines in a step's log.
async fn emit_system(events: &mpsc::Sender<RunEvent>, step: &str, lines: Vec<String>) {
    for line in lines {
        emit(
            events,
            RunEvent::Log {
                step: step.to_string(),
                stream: LogStream::System,
                line,
            },
        )
        .await;
    }
}

async fn emit(events: &mpsc::Sender<RunEvent>, event: RunEvent) {
    // A consumer that went away must not stop the run (or its cleanup).
    let _ = events.send(event).await;
}

async fn run<B: Backend>(
    backend: Arc<B>,
    pipeline: &Pipeline,
    plan: &Plan,
    options: RunOptions,
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

    let (image_errors, mut good_image) = prepare_images(&backend, pipeline, &events).await;
    // A pipeline of build steps only still needs a workspace to build from.
    if good_image.is_none() && pipeline.steps.iter().any(|s| s.build.is_some()) {
        match backend.scratch_image().await {
            Ok(image) => good_image = Some(image),
            Err(e) => warn!(error = %e, "no image to set the workspace up with"),
        }
    }
    let run = RunSpec {
        run_id: run_id.clone(),
        workspace: options.workspace.clone(),
        network: !pipeline.services.is_empty(),
        helper_image: good_image.unwrap_or_default(),
    };
    let base_env = base_env(pipeline, &options);
    let skip_reason = |name: &str| {
        options
            .skip
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, why)| why.clone())
    };
    let excluded: Vec<bool> = pipeline
        .excluded(&options.trigger)
        .into_iter()
        .zip(&pipeline.steps)
        .map(|(by_when, step)| by_when || skip_reason(&step.name).is_some())
        .collect();
    let mut state = RunState::new(
        plan,
        pipeline.steps.iter().map(|s| s.allow_failure).collect(),
        &excluded,
    );
    // What each step's task reported once it ended; statuses are read from
    // `state` when the run ends, the one place that knows them.
    let mut results: Vec<Option<StepResult>> = pipeline.steps.iter().map(|_| None).collect();
    for (i, step) in pipeline.steps.iter().enumerate() {
        if let StepStatus::Skipped(_) = state.status(i) {
            emit(
                &events,
                RunEvent::Log {
                    step: step.name.clone(),
                    stream: LogStream::System,
                    line: format!(
                        "skipped: {}",
                        skip_reason(&step.name)
                            .unwrap_or_else(|| step.when.explain(&options.trigger))
                    ),
                },
            )
            .await;
            emit(
                &events,
                RunEvent::StepSettled {
                    step: step.name.clone(),
                    status: state.status(i).clone(),
                },
            )
            .await;
        }
    }

    let mut error = None;
    if !run.helper_image.is_empty()
        && !cancel.is_cancelled()
        && let Err(e) = backend.setup_run(&run).await
    {
        error = Some(format!("setting up the run failed: {e}"));
    }
    if error.is_none() && !cancel.is_cancelled() {
        for service in &pipeline.services {
            if let Some(msg) = image_errors.get(&service.image) {
                error = Some(format!("service `{}`: {msg}", service.name));
                break;
            }
            let spec = ContainerSpec {
                name: service.name.clone(),
                attempt: 1,
                image: service.image.clone(),
                script: (!service.commands.is_empty()).then(|| step_script(&service.commands)),
                env: merge_env([&base_env, &pipeline.env, &service.env]),
            };
            match backend.start_service(&run, &spec).await {
                Ok(()) => {
                    emit(
                        &events,
                        RunEvent::ServiceStarted {
                            service: service.name.clone(),
                        },
                    )
                    .await
                }
                Err(e) => {
                    error = Some(format!("service `{}` did not start: {e}", service.name));
                    break;
                }
            }
        }
    }

    let masker = Masker::new(options.secrets.values().map(String::as_str));
    let shared = Arc::new(Shared {
        backend: backend.clone(),
        run,
        events: events.clone(),
        masker,
        files: options.files.clone(),
    });
    let jobs = options.jobs.max(1);
    let mut tasks: JoinSet<StepResult> = JoinSet::new();
    let step_cancel = cancel.child_token();
    if error.is_some() || cancel.is_cancelled() {
        cancel_pending(&mut state, plan, &events).await;
    }
    loop {
        // Cancellation is settled before anything else: a step stopped by it
        // may report back before this loop sees the token, and must then be
        // counted as cancelled, not as a failure.
        if cancel.is_cancelled() && !state.is_cancelled() {
            step_cancel.cancel();
            cancel_pending(&mut state, plan, &events).await;
        }
        while tasks.len() < jobs
            && let Some(i) = state.pop_ready()
        {
            let step = &pipeline.steps[i];
            let env = step_env(&base_env, pipeline, step, &options.secrets);
            let (build, build_error) = match &step.build {
                None => (None, None),
                Some(b) => match image_build(step, b, &env, &step_credentials(step, &options)) {
                    Ok(b) => (Some(b), None),
                    Err(e) => (None, Some(e)),
                },
            };
            let spec = ContainerSpec {
                name: step.name.clone(),
                attempt: 1,
                image: step.image.clone(),
                script: Some(step_script(&step.commands)),
                env,
            };
            let task = StepTask {
                index: i,
                spec,
                retries: step.retries,
                timeout: step.timeout,
                image_error: build_error.or_else(|| image_errors.get(&step.image).cloned()),
                build,
                caches: step.cache.clone(),
                artifacts: step.artifacts.clone(),
            };
            let span = info_span!("step", run_id = %run_id, step = %step.name);
            tasks.spawn(
                task.run(shared.clone(), step_cancel.clone())
                    .instrument(span),
            );
        }
        if state.is_finished() {
            break;
        }
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            _ = cancel.cancelled(), if !state.is_cancelled() => continue,
        };
        let Some(joined) = joined else { break };
        if cancel.is_cancelled() && !state.is_cancelled() {
            step_cancel.cancel();
            cancel_pending(&mut state, plan, &events).await;
        }
        let result = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking step task is a bug; the run must still end.
                warn!(error = %e, "step task failed");
                continue;
            }
        };
        let i = result.index;
        let settled = state.finish(plan, i, result.outcome);
        let status = state.status(i).clone();
        emit(
            &events,
            RunEvent::StepFinished {
                step: plan.name(i).to_string(),
                status,
                exit_code: result.exit_code,
                duration: result.duration,
                attempts: result.attempts,
            },
        )
        .await;
        results[i] = Some(result);
        for j in settled {
            let status = state.status(j).clone();
            emit(
                &events,
                RunEvent::StepSettled {
                    step: plan.name(j).to_string(),
                    status,
                },
            )
            .await;
        }
    }
    let reports = step_reports(pipeline, &state, results);

    if let Err(e) = backend.teardown_run(&run_id).await {
        warn!(error = %e, "cleanup failed; a later run will reap what is left");
    }
    // Steps settled because setup failed were "cancelled" by us, not the
    // user: the run failed.
    let mut status = state.run_status();
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

/// Settles every step not started yet as cancelled, and says so.
async fn cancel_pending(state: &mut RunState, plan: &Plan, events: &mpsc::Sender<RunEvent>) {
    for j in state.cancel() {
        emit(
            events,
            RunEvent::StepSettled {
                step: plan.name(j).to_string(),
                status: StepStatus::Cancelled,
            },
        )
        .await;
    }
}

/// Pulls every distinct image at once. A failed pull fails only the steps
/// that use the image, so independent branches still run.
async fn prepare_images<B: Backend>(
    backend: &Arc<B>,
    pipeline: &Pipeline,
    events: &mpsc::Sender<RunEvent>,
) -> (HashMap<String, String>, Option<String>) {
    let mut seen = HashSet::new();
    let images: Vec<String> = pipeline
        .steps
        .iter()
        .map(|s| s.image.clone())
        .chain(pipeline.services.iter().map(|s| s.image.clone()))
        .filter(|i| !i.is_empty() && seen.insert(i.clone()))
        .collect();
    let pulls = images.iter().map(|image| {
        let backend = backend.clone();
        let events = events.clone();
        let image = image.clone();
        async move {
            let (tx, mut rx) = mpsc::channel::<String>(16);
            let forward = async {
                while let Some(status) = rx.recv().await {
                    emit(
                        &events,
                        RunEvent::ImagePull {
                            image: image.clone(),
                            status,
                        },
                    )
                    .await;
                }
            };
            let (result, ()) = tokio::join!(backend.prepare_image(&image, tx), forward);
            (image.clone(), result)
        }
    });
    let mut errors = HashMap::new();
    let mut good = None;
    for (image, result) in futures_util::future::join_all(pulls).await {
        match result {
            Ok(()) => {
                if good.is_none() && pipeline.steps.iter().any(|s| s.image == image) {
                    good = Some(image);
                }
            }
            Err(e) => {
                errors.insert(image, e.to_string());
            }
        }
    }
    (errors, good)
}

/// Variables every step and service gets, documented in the README.
fn base_env(pipeline: &Pipeline, options: &RunOptions) -> Vec<(String, String)> {
    let mut env = vec![
        ("CI".to_string(), "true".to_string()),
        ("SLIPWAY".into(), "true".into()),
        ("SLIPWAY_RUN_ID".into(), options.run_id.clone()),
        ("SLIPWAY_PIPELINE".into(), pipeline.name.clone()),
        ("SLIPWAY_EVENT".into(), options.trigger.event.clone()),
        ("SLIPWAY_WORKSPACE".into(), "/workspace".into()),
    ];
    if let Some(branch) = &options.trigger.branch {
        env.push(("SLIPWAY_BRANCH".into(), branch.clone()));
    }
    env.extend(options.env.iter().cloned());
    env
}

fn step_env(
    base: &[(String, String)],
    pipeline: &Pipeline,
    step: &slipway_engine::Step,
    secrets: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let own = vec![("SLIPWAY_STEP".to_string(), step.name.clone())];
    let secret_vars: Vec<(String, String)> = step
        .secrets
        .iter()
        .filter_map(|s| secrets.get(s).map(|v| (s.clone(), v.clone())))
        .collect();
    merge_env([base, &own, &pipeline.env, &step.env, &secret_vars])
}

/// Later lists win; order of first appearance is kept.
fn merge_env<const N: usize>(lists: [&[(String, String)]; N]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in lists.into_iter().flatten() {
        match index.get(k) {
            Some(&i) => out[i].1 = v.clone(),
            None => {
                index.insert(k.clone(), out.len());
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

/// The run's registry logins, plus any secret of the step that holds a
/// Docker `config.json` (so a pipeline can bring its own push login).
fn step_credentials(
    step: &slipway_engine::Step,
    options: &RunOptions,
) -> crate::backend::Credentials {
    let mut creds = options.credentials.clone();
    for name in &step.secrets {
        if let Some(value) = options.secrets.get(name)
            && let Ok(more) = crate::credentials::parse_docker_config(value)
        {
            creds.extend(more);
        }
    }
    creds
}

/// A build step's spec with `${VAR}`s replaced by the step's variables.
fn image_build(
    step: &slipway_engine::Step,
    b: &slipway_engine::Build,
    env: &[(String, String)],
    credentials: &crate::backend::Credentials,
) -> Result<ImageBuild, String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand = |field: &str, text: &str| {
        slipway_engine::template::expand(text, lookup).map_err(|e| format!("build.{field}: {e}"))
    };
    Ok(ImageBuild {
        step: step.name.clone(),
        context: b.context.clone(),
        dockerfile: b.dockerfile.clone(),
        target: b.target.clone(),
        args: b
            .args
            .iter()
            .map(|(k, v)| Ok((k.clone(), expand("args", v)?)))
            .collect::<Result<_, String>>()?,
        tags: b
            .tags
            .iter()
            .map(|t| expand("tags", t))
            .collect::<Result<_, _>>()?,
        push: b.push,
        cache_from: b
            .cache_from
            .iter()
            .map(|t| expand("cache_from", t))
            .collect::<Result<_, _>>()?,
        cache_to: b
            .cache_to
            .as_deref()
            .map(|t| expand("cache_to", t))
            .transpose()?,
        credentials: credentials.clone(),
    })
}

struct StepTask {
    index: usize,
    spec: ContainerSpec,
    retries: u32,
    timeout: Option<Duration>,
    image_error: Option<String>,
    build: Option<ImageBuild>,
    caches: Vec<slipway_engine::Cache>,
    artifacts: Vec<String>,
}

impl StepTask {
    async fn run<B: Backend>(
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

/// Turns raw output chunks into masked lines, one splitter per stream so
/// interleaved stdout and stderr never glue half-lines together.
async fn pump_logs<B>(mut rx: mpsc::Receiver<LogChunk>, step: String, shared: Arc<Shared<B>>) {
    let mut out = LineSplitter::default();
    let mut err = LineSplitter::default();
    while let Some((stream, bytes)) = rx.recv().await {
        let splitter = if stream == LogStream::Stderr {
            &mut err
        } else {
            &mut out
        };
        let mut lines = Vec::new();
        splitter.push(&bytes, |l| lines.push(l));
        emit_masked(&shared, &step, stream, lines).await;
    }
    for (stream, splitter) in [(LogStream::Stdout, &mut out), (LogStream::Stderr, &mut err)] {
        emit_masked(&shared, &step, stream, splitter.finish()).await;
    }
}

async fn emit_masked<B>(
    shared: &Shared<B>,
    step: &str,
    stream: LogStream,
    lines: impl IntoIterator<Item = String>,
) {
    for line in lines {
        let line = shared.masker.mask(&line).into_owned();
        emit(
            &shared.events,
            RunEvent::Log {
                step: step.to_string(),
                stream,
                line,
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeBackend, FakeStep};
    use slipway_engine::{SkipReason, parse};

    fn pipeline(src: &str) -> Pipeline {
        let parsed = parse("test.yml", src);
        parsed
            .pipeline
            .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
    }

    fn options(jobs: usize) -> RunOptions {
        RunOptions {
            run_id: "r1".into(),
            jobs,
            trigger: Trigger {
                event: "push".into(),
                branch: Some("main".into()),
                ..Trigger::default()
            },
            secrets: HashMap::new(),
            workspace: Workspace::Empty,
            env: Vec::new(),
            skip: Vec::new(),
            files: Default::default(),
            credentials: Default::default(),
        }
    }

    /// Runs to the end, collecting every event.
    async fn go(
        fake: &Arc<FakeBackend>,
        p: &Pipeline,
        opts: RunOptions,
        cancel: CancellationToken,
    ) -> (RunReport, Vec<RunEvent>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let collect = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(e) = rx.recv().await {
                all.push(e);
            }
            all
        });
        let report = execute(fake.clone(), p, opts, tx, cancel)
            .await
            .expect("run");
        (report, collect.await.unwrap())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn status_of<'a>(r: &'a RunReport, step: &str) -> &'a StepStatus {
        &r.steps.iter().find(|s| s.name == step).unwrap().status
    }

    const FOUR: &str = "steps:\n  a: {image: i, commands: [x]}\n  b: {image: i, commands: [x]}\n  c: {image: i, commands: [x]}\n  d: {image: i, commands: [x]}\n";

    #[test]
    fn a_build_step_takes_registry_logins_from_docker_config_secrets() {
        let p = pipeline(
            "steps:\n  image:\n    secrets: [PUSH_LOGIN, OTHER]\n    build: { tags: [r/x] }\n",
        );
        let mut o = options(1);
        o.secrets.insert(
            "PUSH_LOGIN".into(),
            r#"{"auths": {"reg.example:5000": {"auth": "dTpw"}}}"#.into(),
        );
        o.secrets.insert("OTHER".into(), "not json".into());
        let creds = step_credentials(&p.steps[0], &o);
        assert_eq!(creds.len(), 1);
        assert_eq!(creds["reg.example:5000"].username, "u");
        assert_eq!(creds["reg.example:5000"].password, "p");
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
    async fn secret_values_are_masked_in_output() {
        let src = "steps:\n  deploy: {image: i, commands: [x], secrets: [TOKEN]}\n";
        let fake = FakeBackend::new();
        fake.script(
            "deploy",
            FakeStep {
                output: vec!["token is s3cr3t-value!".into()],
                ..Default::default()
            },
        );
        let mut opts = options(1);
        opts.secrets.insert("TOKEN".into(), "s3cr3t-value".into());
        let (_, events) = go(&fake, &pipeline(src), opts, CancellationToken::new()).await;
        let lines: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(lines, ["token is ********!"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pull_fails_only_the_steps_using_that_image() {
        let src = "steps:\n  a: {image: gone, commands: [x]}\n  b: {image: here, commands: [x]}\n";
        let fake = FakeBackend::new();
        fake.missing_image("gone", "manifest unknown");
        let (report, events) =
            go(&fake, &pipeline(src), options(2), CancellationToken::new()).await;
        assert_eq!(status_of(&report, "a"), &StepStatus::Failed);
        assert_eq!(status_of(&report, "b"), &StepStatus::Success);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RunEvent::Log { step, line, .. }
            if step == "a" && line == "cannot pull image `gone`: manifest unknown"))
        );
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

    #[tokio::test(start_paused = true)]
    async fn a_service_that_cannot_start_fails_the_run_before_any_step() {
        let src = "services:\n  db: {image: gone}\nsteps:\n  a: {image: i, commands: [x]}\n";
        let fake = FakeBackend::new();
        fake.missing_image("gone", "not found");
        let (report, events) =
            go(&fake, &pipeline(src), options(1), CancellationToken::new()).await;
        assert_eq!(report.status, RunStatus::Failed);
        assert_eq!(
            report.error.as_deref(),
            Some("service `db`: cannot pull image `gone`: not found")
        );
        assert_eq!(status_of(&report, "a"), &StepStatus::Cancelled);
        assert!(!fake.calls().iter().any(|c| c.starts_with("run ")));
        assert_eq!(fake.calls().last().map(String::as_str), Some("teardown r1"));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, RunEvent::RunError { .. }))
        );
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

    #[test]
    fn step_env_layers_later_values_over_earlier_ones() {
        let p = pipeline(
            "env: {MODE: a, KEEP: k}\nsteps:\n  s: {image: i, commands: [x], env: {MODE: b}, secrets: [T]}\n",
        );
        let mut opts = options(1);
        opts.secrets.insert("T".into(), "v".into());
        opts.env.push(("SLIPWAY_COMMIT_SHA".into(), "abc".into()));
        let env = step_env(&base_env(&p, &opts), &p, &p.steps[0], &opts.secrets);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MODE"), Some("b"));
        assert_eq!(get("KEEP"), Some("k"));
        assert_eq!(get("T"), Some("v"));
        assert_eq!(get("CI"), Some("true"));
        assert_eq!(get("SLIPWAY_STEP"), Some("s"));
        assert_eq!(get("SLIPWAY_BRANCH"), Some("main"));
        assert_eq!(get("SLIPWAY_COMMIT_SHA"), Some("abc"));
        assert_eq!(env.iter().filter(|(k, _)| k == "MODE").count(), 1);
    }
}
