//! Before and after a run's steps: their images, the run's network and
//! workspace, its services, and tearing it all down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use slipway_engine::{Pipeline, Plan, RunState, StepStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::env::{image_build, merge_env, step_env};
use super::logs::emit;
use super::{Limits, RunOptions};
use crate::backend::{Backend, ContainerSpec, Credentials, RunSpec};
use crate::event::RunEvent;
use crate::script::step_script;

/// What the run's steps and services are created from, decided at setup.
#[derive(Debug, Default)]
pub(super) struct Images {
    /// The image ID each name resolved to.
    pub ids: HashMap<String, String>,
    /// Why a name did not resolve, by name: what uses it fails with this.
    pub errors: HashMap<String, String>,
    /// Steps (by index) whose `image` is a tag of a build step they need:
    /// they run that build (the step's name here), which no other run and
    /// no daemon name can replace.
    pub built_by: HashMap<usize, String>,
}

/// Resolves the images and picks the run's helper image. Returns the
/// images and the run's spec.
pub(super) async fn prepare<B: Backend>(
    backend: &Arc<B>,
    pipeline: &Pipeline,
    plan: &Plan,
    state: &RunState,
    base_env: &[(String, String)],
    options: &RunOptions,
    events: &mpsc::Sender<RunEvent>,
) -> (Images, RunSpec) {
    let built_by = built_by(pipeline, plan, state, base_env, options);
    let (mut images, mut good_image) = prepare_images(backend, pipeline, &built_by, events).await;
    images.built_by = built_by;
    // A pipeline of build steps only still needs a workspace to build from.
    if good_image.is_none() && pipeline.steps.iter().any(|s| s.build.is_some()) {
        match backend.scratch_image().await {
            Ok(image) => good_image = Some(image),
            Err(e) => warn!(error = %e, "no image to set the workspace up with"),
        }
    }
    let run = RunSpec {
        run_id: options.run_id.clone(),
        workspace: options.workspace.clone(),
        helper_image: good_image.unwrap_or_default(),
    };
    (images, run)
}

/// Which steps run the image a build step they need makes: their `image`
/// is one of its `tags` (with `${VAR}`s expanded as the build step will).
/// A build step this run skips makes nothing, so its tags resolve as
/// ordinary names. Of two such builds, the one that needs the other wins,
/// as the later one to name the image would have.
fn built_by(
    pipeline: &Pipeline,
    plan: &Plan,
    state: &RunState,
    base_env: &[(String, String)],
    options: &RunOptions,
) -> HashMap<usize, String> {
    let tags: Vec<Vec<String>> = pipeline
        .steps
        .iter()
        .enumerate()
        .map(|(j, step)| match &step.build {
            Some(b) if !matches!(state.status(j), StepStatus::Skipped(_)) => {
                let env = step_env(base_env, pipeline, step, &options.secrets);
                image_build(step, b, &env, &Credentials::default())
                    .map(|b| b.tags)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        })
        .collect();
    let mut out = HashMap::new();
    for (i, step) in pipeline.steps.iter().enumerate() {
        if step.build.is_some() || step.image.is_empty() {
            continue;
        }
        let builder = ancestors(plan, i)
            .into_iter()
            .filter(|&j| tags[j].contains(&step.image))
            .max_by_key(|&j| (ancestors(plan, j).len(), j));
        if let Some(j) = builder {
            out.insert(i, pipeline.steps[j].name.clone());
        }
    }
    out
}

/// Every step `step` needs, directly or not.
fn ancestors(plan: &Plan, step: usize) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut todo = vec![step];
    while let Some(s) = todo.pop() {
        for &n in plan.needs(s) {
            if seen.insert(n) {
                todo.push(n);
            }
        }
    }
    seen
}

/// Resolves every distinct image at once (but those a build of the run
/// makes). A failed pull fails only the steps that use the image, so
/// independent branches still run. Also returns the ID of a step's image
/// for the run's helper containers.
async fn prepare_images<B: Backend>(
    backend: &Arc<B>,
    pipeline: &Pipeline,
    built_by: &HashMap<usize, String>,
    events: &mpsc::Sender<RunEvent>,
) -> (Images, Option<String>) {
    let mut seen = HashSet::new();
    let images: Vec<String> = pipeline
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !built_by.contains_key(i))
        .map(|(_, s)| s.image.clone())
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
    let mut out = Images::default();
    let mut good = None;
    for (image, result) in futures_util::future::join_all(pulls).await {
        match result {
            Ok(id) => {
                if good.is_none() && pipeline.steps.iter().any(|s| s.image == image) {
                    good = Some(id.clone());
                }
                out.ids.insert(image, id);
            }
            Err(e) => {
                out.errors.insert(image, e.to_string());
            }
        }
    }
    (out, good)
}

/// Sets the run up (network, workspace) and starts its services, unless
/// the run is cancelled first. Returns why the run cannot go on, if it
/// cannot.
pub(super) async fn start<B: Backend>(
    backend: &B,
    run: &RunSpec,
    services: Result<Vec<ContainerSpec>, String>,
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancellationToken,
) -> Option<String> {
    if !run.helper_image.is_empty()
        && !cancel.is_cancelled()
        && let Err(e) = backend.setup_run(run).await
    {
        return Some(format!("setting up the run failed: {e}"));
    }
    if cancel.is_cancelled() {
        return None;
    }
    let services = match services {
        Ok(services) => services,
        Err(why) => return Some(why),
    };
    for service in services {
        if let Err(e) = backend.start_service(run, &service).await {
            return Some(format!("service `{}` did not start: {e}", service.name));
        }
        let service = service.name;
        emit(events, RunEvent::ServiceStarted { service }).await;
    }
    None
}

/// The containers of the pipeline's services, in file order, each from
/// the image ID resolved for it; or why one cannot start.
pub(super) fn services(
    pipeline: &Pipeline,
    images: &Images,
    base_env: &[(String, String)],
    limits: &Limits,
) -> Result<Vec<ContainerSpec>, String> {
    pipeline
        .services
        .iter()
        .map(|service| {
            if let Some(msg) = images.errors.get(&service.image) {
                return Err(format!("service `{}`: {msg}", service.name));
            }
            let image = images.ids.get(&service.image).ok_or_else(|| {
                format!(
                    "service `{}`: image `{}` was not resolved",
                    service.name, service.image
                )
            })?;
            Ok(ContainerSpec {
                name: service.name.clone(),
                attempt: 1,
                image: image.clone(),
                script: (!service.commands.is_empty()).then(|| step_script(&service.commands)),
                env: merge_env([base_env, &pipeline.env, &service.env]),
                // A service runs the pipeline's code as much as a step does.
                resources: limits.defaults,
            })
        })
        .collect()
}

/// Removes every container, network, volume and built image of the run.
pub(super) async fn teardown<B: Backend>(backend: &B, run_id: &str) {
    if let Err(e) = backend.teardown_run(run_id).await {
        warn!(error = %e, "cleanup failed; a later run will reap what is left");
    }
}

#[cfg(test)]
mod tests {
    use slipway_engine::{RunStatus, StepStatus};
    use tokio_util::sync::CancellationToken;

    use crate::event::RunEvent;
    use crate::fake::{FakeBackend, fake_image_id};
    use crate::scheduler::testing::{go, options, pipeline, status_of};

    const BUILD_THEN_USE: &str = "env: {FLAVOUR: test}
steps:
  img: {build: {tags: ['acme/app:${FLAVOUR}']}}
  use: {image: 'acme/app:test', commands: [x], needs: [img]}
";

    #[tokio::test(start_paused = true)]
    async fn a_step_running_a_tag_of_a_build_it_needs_runs_that_build_and_no_daemon_name() {
        let fake = FakeBackend::new();
        let (report, _) = go(
            &fake,
            &pipeline(BUILD_THEN_USE),
            options(1),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(fake.image_of("use").as_deref(), Some("sha256:built-by-img"));
        assert!(
            !fake.calls().iter().any(|c| c == "image acme/app:test"),
            "the tag is never resolved as a daemon name: {:?}",
            fake.calls()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tag_is_an_ordinary_name_to_steps_that_do_not_need_its_build_or_when_it_is_skipped() {
        let src = format!("{BUILD_THEN_USE}  apart: {{image: 'acme/app:test', commands: [x]}}\n");
        let fake = FakeBackend::new();
        let (_, _) = go(&fake, &pipeline(&src), options(1), CancellationToken::new()).await;
        assert_eq!(fake.image_of("use").as_deref(), Some("sha256:built-by-img"));
        let resolved = fake_image_id("acme/app:test");
        assert_eq!(fake.image_of("apart"), Some(resolved.clone()));

        // A rerun that skips the build: its image is what the name resolves to.
        let fake = FakeBackend::new();
        let mut opts = options(1);
        opts.skip.push(("img".into(), "succeeded in run r0".into()));
        let (report, _) = go(
            &fake,
            &pipeline(BUILD_THEN_USE),
            opts,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(report.status, RunStatus::Success);
        assert_eq!(fake.image_of("use"), Some(resolved));
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

    /// Slipway's own lines and errors pass the run's masker too: a
    /// registry's answer that quotes a secret shows up masked in the step's
    /// log, the run's error event and its report.
    #[tokio::test(start_paused = true)]
    async fn slipways_own_lines_and_errors_are_masked() {
        let src = "services:\n  db: {image: gone}\nsteps:\n  a: {image: gone, commands: [x], secrets: [TOKEN]}\n";
        let fake = FakeBackend::new();
        fake.missing_image("gone", "denied for token s3cret-t0ken-value");
        let mut opts = options(1);
        opts.secrets
            .insert("TOKEN".into(), "s3cret-t0ken-value".into());
        let (report, events) = go(&fake, &pipeline(src), opts, CancellationToken::new()).await;
        let error = report.error.clone().unwrap_or_default();
        assert_eq!(
            error,
            "service `db`: cannot pull image `gone`: denied for token ********"
        );
        let texts: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { line, .. } => Some(line.clone()),
                RunEvent::RunError { message } => Some(message.clone()),
                _ => None,
            })
            .collect();
        assert!(
            texts
                .iter()
                .any(|t| t.contains("denied for token ********")),
            "{texts:?}"
        );
        assert!(!texts.iter().any(|t| t.contains("s3cret")), "{texts:?}");
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
}
