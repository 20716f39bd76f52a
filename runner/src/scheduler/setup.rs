//! Before a run's steps: pulling their images.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use slipway_engine::Pipeline;
use tokio::sync::mpsc;

use super::logs::emit;
use crate::backend::Backend;
use crate::event::RunEvent;

/// Pulls every distinct image at once. A failed pull fails only the steps
/// that use the image, so independent branches still run.
pub(super) async fn prepare_images<B: Backend>(
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

#[cfg(test)]
mod tests {
    use slipway_engine::StepStatus;
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
}
