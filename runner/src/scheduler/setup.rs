//! Before and after a run's steps: their images, the run's network and
//! workspace, its services, and tearing it all down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use slipway_engine::Pipeline;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::env::merge_env;
use super::logs::emit;
use super::{Limits, RunOptions};
use crate::backend::{Backend, ContainerSpec, RunSpec};
use crate::event::RunEvent;
use crate::script::step_script;

/// Pulls the images and picks the run's helper image. Returns why images
/// did not pull (by image), and the run's spec.
pub(super) async fn prepare<B: Backend>(
    backend: &Arc<B>,
    pipeline: &Pipeline,
    options: &RunOptions,
    events: &mpsc::Sender<RunEvent>,
) -> (HashMap<String, String>, RunSpec) {
    let (image_errors, mut good_image) = prepare_images(backend, pipeline, events).await;
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
    (image_errors, run)
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

/// The containers of the pipeline's services, in file order.
pub(super) fn services(
    pipeline: &Pipeline,
    base_env: &[(String, String)],
    limits: &Limits,
) -> Vec<ContainerSpec> {
    pipeline
        .services
        .iter()
        .map(|service| ContainerSpec {
            name: service.name.clone(),
            attempt: 1,
            image: service.image.clone(),
            script: (!service.commands.is_empty()).then(|| step_script(&service.commands)),
            env: merge_env([base_env, &pipeline.env, &service.env]),
            // A service runs the pipeline's code as much as a step does.
            resources: limits.defaults,
        })
        .collect()
}

/// Sets the run up (network, workspace) and starts its services, unless
/// the run is cancelled first. Returns why the run cannot go on, if it
/// cannot.
pub(super) async fn start<B: Backend>(
    backend: &B,
    run: &RunSpec,
    services: &[ContainerSpec],
    image_errors: &HashMap<String, String>,
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
    for service in services {
        if let Some(msg) = image_errors.get(&service.image) {
            return Some(format!("service `{}`: {msg}", service.name));
        }
        if let Err(e) = backend.start_service(run, service).await {
            return Some(format!("service `{}` did not start: {e}", service.name));
        }
        let service = service.name.clone();
        emit(events, RunEvent::ServiceStarted { service }).await;
    }
    None
}

/// Removes every container, network and volume of the run.
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
    use crate::fake::FakeBackend;
    use crate::scheduler::testing::{go, options, pipeline, status_of};

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
