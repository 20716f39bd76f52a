//! The container lifecycle every backend implements.
//!
//! For one run, the scheduler calls, in this order:
//! 1. [`Backend::prepare_image`] for each distinct image (pull if missing),
//!    resolving it to the image ID its containers are created from;
//! 2. [`Backend::setup_run`] once: workspace and the run's own network,
//!    which every step and service joins (never the daemon's default
//!    bridge, where one run could reach another's containers);
//! 3. [`Backend::start_service`] for each service, detached;
//! 4. [`Backend::run_step`] per step attempt: create, start, stream output,
//!    wait, remove; when `stop` fires it stops the container (SIGTERM, then
//!    SIGKILL after the grace period) and still removes it;
//! 5. [`Backend::teardown_run`] once, always, even after a failed setup.
//!
//! Cleanup is idempotent: `teardown_run` may be called any number of times,
//! for a run that was never set up, or by another process after a crash
//! (everything a backend creates carries the run id, so it can be found).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::LogStream;

/// What a run's steps share.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub run_id: String,
    pub workspace: Workspace,
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
    /// The image ID [`Backend::prepare_image`] resolved (or a build made),
    /// so a name moved after setup cannot change what runs.
    pub image: String,
    /// A shell script run as `/bin/sh -c`, whatever the image's entrypoint;
    /// `None` keeps the image's own command (services only).
    pub script: Option<String>,
    pub env: Vec<(String, String)>,
    /// Limits of the container, defaults already applied.
    pub resources: slipway_engine::Resources,
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

/// A registry login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

/// Logins by registry host (`127.0.0.1:5000`, `ghcr.io`, `docker.io`).
pub type Credentials = HashMap<String, RegistryAuth>;

/// An image to build from the run's workspace; `${VAR}`s already expanded.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    pub step: String,
    /// Workspace-relative directory.
    pub context: String,
    /// Relative to the context.
    pub dockerfile: String,
    pub target: Option<String>,
    pub args: Vec<(String, String)>,
    pub tags: Vec<String>,
    pub push: bool,
    pub cache_from: Vec<String>,
    pub cache_to: Option<String>,
    pub credentials: Credentials,
}

/// What a build made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub image_id: String,
    /// `repository@sha256:...` of the first tag, once pushed.
    pub pushed: Option<String>,
    /// The build steps answered from cache, by name (`[2/3] RUN ...`).
    pub cached: Vec<String>,
    /// The build steps that could have been: the Dockerfile's
    /// instructions after `FROM`, not the builder's own work around them.
    pub steps: usize,
    /// False when the classic builder was used instead of BuildKit.
    pub buildkit: bool,
}

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
    #[error("cannot build the image of step `{step}`: {message}")]
    Build { step: String, message: String },
    #[error("cannot push `{image}` to {registry}: {message}")]
    Push {
        image: String,
        registry: String,
        message: String,
    },
    /// A call got no answer within the daemon deadline: the daemon is
    /// wedged or overloaded. The step (or run) fails instead of waiting.
    #[error("Docker daemon not answering: no answer to `{action}` within the daemon deadline")]
    NotAnswering { action: String },
    #[error("{0}")]
    Other(String),
}

pub trait Backend: Send + Sync + 'static {
    /// Makes `image` available locally, pulling it if missing, and returns
    /// the image ID it names; progress lines go to `progress`.
    fn prepare_image(
        &self,
        image: &str,
        progress: mpsc::Sender<String>,
    ) -> impl Future<Output = Result<String, BackendError>> + Send;

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

    /// Builds (and pushes, if asked) an image from the workspace; build
    /// output goes to `log` line by line. The image stays the run's own
    /// until teardown: `tags` name it only in the registry it is pushed to.
    fn build_image(
        &self,
        run: &RunSpec,
        build: &ImageBuild,
        log: mpsc::Sender<String>,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<BuiltImage, BackendError>> + Send;

    /// Writes a tar of these workspace paths (entries relative to the
    /// workspace) to `out`. Returns the paths that did not exist.
    fn export_workspace(
        &self,
        run: &RunSpec,
        paths: &[String],
        out: &Path,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// Unpacks a tar made by [`Backend::export_workspace`] into the workspace.
    fn import_workspace(
        &self,
        run: &RunSpec,
        archive: &Path,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The ID of an image any never-started helper container can be
    /// created from (to reach the workspace), made locally if need be.
    fn scratch_image(&self) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// Removes every container, network, volume and built image of the run.
    fn teardown_run(&self, run_id: &str) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Whether the daemon answered its last calls in time (`Err`: why
    /// not). A server takes no new run while it does not.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    /// Asks the daemon now, within its deadline; the answer becomes
    /// [`Backend::health`].
    fn probe(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}
