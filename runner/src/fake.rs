//! An in-memory backend: steps "run" for a scripted time with a scripted
//! exit code, so scheduler behaviour (ordering, parallelism, timeouts,
//! cancellation, cleanup) is tested in milliseconds, without Docker.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    Backend, BackendError, BuiltImage, ContainerSpec, ImageBuild, LogChunk, RunSpec, StepExit,
};
use crate::event::LogStream;

/// What a step does on the fake backend.
#[derive(Debug, Clone, Default)]
pub struct FakeStep {
    /// Exit code of each attempt in turn; the last one repeats. Empty means 0.
    pub exits: Vec<i64>,
    pub duration: Duration,
    pub output: Vec<String>,
}

#[derive(Debug, Default)]
pub struct FakeBackend {
    steps: Mutex<HashMap<String, FakeStep>>,
    missing_images: Mutex<HashMap<String, String>>,
    /// Everything the scheduler asked for, in order, e.g. `run build#1`.
    calls: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// The image each step's last container was created from.
    step_images: Mutex<HashMap<String, String>>,
}

/// The image ID the fake resolves `image` to.
pub fn fake_image_id(image: &str) -> String {
    format!("sha256:id-of-{image}")
}

impl FakeBackend {
    pub fn new() -> Arc<FakeBackend> {
        Arc::new(FakeBackend::default())
    }

    pub fn script(&self, step: &str, behaviour: FakeStep) {
        self.steps
            .lock()
            .expect("fake lock")
            .insert(step.into(), behaviour);
    }

    /// Makes pulling `image` fail with `message`.
    pub fn missing_image(&self, image: &str, message: &str) {
        self.missing_images
            .lock()
            .expect("fake lock")
            .insert(image.into(), message.into());
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("fake lock").clone()
    }

    /// The image `step`'s last container was created from.
    pub fn image_of(&self, step: &str) -> Option<String> {
        self.step_images
            .lock()
            .expect("fake lock")
            .get(step)
            .cloned()
    }

    /// The most steps that were running at the same time.
    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    fn record(&self, call: String) {
        self.calls.lock().expect("fake lock").push(call);
    }
}

impl Backend for FakeBackend {
    async fn prepare_image(
        &self,
        image: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<String, BackendError> {
        self.record(format!("image {image}"));
        let missing = self
            .missing_images
            .lock()
            .expect("fake lock")
            .get(image)
            .cloned();
        if let Some(message) = missing {
            let _ = progress.send(format!("pulling {image}")).await;
            return Err(BackendError::ImagePull {
                image: image.into(),
                message,
            });
        }
        Ok(fake_image_id(image))
    }

    async fn setup_run(&self, run: &RunSpec) -> Result<(), BackendError> {
        self.record(format!("setup {}", run.run_id));
        Ok(())
    }

    async fn start_service(
        &self,
        _run: &RunSpec,
        service: &ContainerSpec,
    ) -> Result<(), BackendError> {
        self.record(format!("service {}", service.name));
        Ok(())
    }

    async fn run_step(
        &self,
        _run: &RunSpec,
        step: &ContainerSpec,
        logs: mpsc::Sender<LogChunk>,
        stop: CancellationToken,
    ) -> Result<StepExit, BackendError> {
        self.record(format!("run {}#{}", step.name, step.attempt));
        self.step_images
            .lock()
            .expect("fake lock")
            .insert(step.name.clone(), step.image.clone());
        let behaviour = self
            .steps
            .lock()
            .expect("fake lock")
            .get(&step.name)
            .cloned()
            .unwrap_or_default();
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        for line in &behaviour.output {
            let _ = logs
                .send((LogStream::Stdout, Bytes::from(format!("{line}\n"))))
                .await;
        }
        // A zero-length sleep still waits for the timer's next tick (1 ms);
        // that would be counted as engine time in the planning benchmark.
        let pause = async {
            if behaviour.duration.is_zero() {
                tokio::task::yield_now().await
            } else {
                tokio::time::sleep(behaviour.duration).await
            }
        };
        let exit = tokio::select! {
            _ = pause => {
                let i = (step.attempt as usize).saturating_sub(1).min(behaviour.exits.len().saturating_sub(1));
                StepExit::Exited(behaviour.exits.get(i).copied().unwrap_or(0))
            }
            _ = stop.cancelled() => StepExit::Stopped,
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(exit)
    }

    async fn build_image(
        &self,
        _run: &RunSpec,
        build: &ImageBuild,
        log: mpsc::Sender<String>,
        _stop: CancellationToken,
    ) -> Result<BuiltImage, BackendError> {
        self.record(format!("build {} {}", build.step, build.tags.join(",")));
        let _ = log.send(format!("building {}", build.context)).await;
        Ok(BuiltImage {
            image_id: format!("sha256:built-by-{}", build.step),
            pushed: build
                .push
                .then(|| build.tags.first().map(|t| format!("{t}@sha256:fake")))
                .flatten(),
            cached: Vec::new(),
            steps: 1,
            buildkit: true,
        })
    }

    /// Writes an empty archive: the fake has no workspace contents.
    async fn export_workspace(
        &self,
        _run: &RunSpec,
        paths: &[String],
        out: &Path,
    ) -> Result<Vec<String>, BackendError> {
        self.record(format!("export {}", paths.join(",")));
        std::fs::write(out, []).map_err(|source| BackendError::Workspace {
            path: out.to_path_buf(),
            source,
        })?;
        Ok(Vec::new())
    }

    async fn import_workspace(&self, _run: &RunSpec, archive: &Path) -> Result<(), BackendError> {
        self.record(format!("import {}", archive.display()));
        Ok(())
    }

    async fn scratch_image(&self) -> Result<String, BackendError> {
        Ok("scratch".into())
    }

    async fn teardown_run(&self, run_id: &str) -> Result<(), BackendError> {
        self.record(format!("teardown {run_id}"));
        Ok(())
    }
}
