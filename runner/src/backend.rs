//! The container lifecycle every backend implements.
//!
//! For one run, the scheduler calls, in this order:
//! 1. [`Backend::prepare_image`] for each distinct image (pull if missing);
//! 2. [`Backend::setup_run`] once: workspace and network;
//! 3. [`Backend::start_service`] for each service, detached;
//! 4. [`Backend::run_step`] per step attempt: create, start, stream output,
//!    wait, remove; when `stop` fires it stops the container (SIGTERM, then
//!    SIGKILL after the grace period) and still removes it;
//! 5. [`Backend::teardown_run`] once, always, even after a failed setup.
//!
//! Cleanup is idempotent: `teardown_run` may be called any number of times,
//! for a run that was never set up, or by another process after a crash
//! (everything a backend creates carries the run id, so it can be found).

use std::future::Future;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::LogStream;

/// What a run's steps share.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub workspace: Workspace,
    /// Create a network of the run's own (needed for services to be reachable by name).
    pub network: bool,
    /// An image already prepared, used to populate the workspace.
    pub helper_image: String,
}

/// Where `/workspace` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workspace {
    /// A copy of this directory; the user's tree is never modified.
    Copy(PathBuf),
    /// This directory itself, mounted read-write (`--bind`).
    Bind(PathBuf),
    /// An empty workspace.
    Empty,
}

/// One container: a step attempt or a service.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Step or service name.
    pub name: String,
    pub attempt: u32,
    pub image: String,
    /// A shell script run as `/bin/sh -c`, whatever the image's entrypoint;
    /// `None` keeps the image's own command (services only).
    pub script: Option<String>,
    pub env: Vec<(String, String)>,
}

/// How a step container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepExit {
    Exited(i64),
    /// Stopped because `stop` fired.
    Stopped,
}

/// A piece of a container's output, as it arrived (not split in lines).
pub type LogChunk = (LogStream, Bytes);

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot pull image `{image}`: {message}")]
    ImagePull { image: String, message: String },
    #[error("cannot reach the Docker daemon: {0}")]
    Connect(#[source] bollard::errors::Error),
    #[error("docker: cannot {action}: {source}")]
    Docker {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("cannot copy `{path}` into the workspace: {source}")]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub trait Backend: Send + Sync + 'static {
    /// Makes `image` available locally, pulling it if missing; progress lines go to `progress`.
    fn prepare_image(
        &self,
        image: &str,
        progress: mpsc::Sender<String>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    fn setup_run(&self, run: &RunSpec) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Starts a service container and returns once it is started.
    fn start_service(
        &self,
        run: &RunSpec,
        service: &ContainerSpec,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Runs a step container to completion, sending its output to `logs`.
    fn run_step(
        &self,
        run: &RunSpec,
        step: &ContainerSpec,
        logs: mpsc::Sender<LogChunk>,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<StepExit, BackendError>> + Send;

    /// Removes every container, network and volume of the run.
    fn teardown_run(&self, run_id: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}
