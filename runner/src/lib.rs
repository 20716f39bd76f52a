//! The Slipway runner: executes a planned pipeline in containers and reports
//! everything that happens as [`RunEvent`]s. It knows Docker and the local
//! disk, but no HTTP and no store: whoever calls it decides what to keep.
//!
//! Layout:
//! - [`backend`]: the [`Backend`] trait, the container lifecycle every backend follows.
//! - [`docker`]: the Docker implementation (bollard); `docker/build.rs`: image builds
//!   through BuildKit, pushes, directories in and out of a workspace, the build's cache
//!   summary; `docker/preview.rs`: preview containers.
//! - [`fake`]: an in-memory backend for fast, deterministic scheduler tests.
//! - [`scheduler`]: runs a [`slipway_engine::Plan`] with a jobs limit, timeouts, retries and
//!   cancellation. `scheduler/mod.rs`: [`execute`] and the run loop; `setup.rs`: images,
//!   the run's network and workspace, services, teardown; `step.rs`: one step's attempts
//!   (retries, timeout, image build, caches, artifacts); `env.rs`: its variables and
//!   registry logins; `logs.rs`: its log pump and masking; `testing.rs`: the fixtures of
//!   its tests.
//! - [`event`]: what the scheduler reports.
//! - [`script`], [`mask`]: the shell script a step runs, and secret masking of its output.
//! - [`git`]: mirrors and checkouts of the commit a server run builds.
//! - [`workspace`]: what of the user's tree goes into a run's workspace.
//! - [`cache`]: directory caches on disk, content-addressed, with LRU eviction.
//! - [`step_files`]: a step's directory caches and artifacts, restored and kept around it.
//! - [`credentials`]: registry logins in Docker's `config.json` format.
//! - [`registry`]: copying an image between registry locations by digest.

pub mod backend;
pub mod cache;
pub mod credentials;
pub mod docker;
pub mod event;
pub mod fake;
pub mod git;
pub mod mask;
pub mod registry;
pub mod scheduler;
pub mod script;
pub mod step_files;
pub mod workspace;

pub use backend::{
    Backend, BackendError, BuiltImage, ContainerSpec, Credentials, ImageBuild, LogChunk,
    RegistryAuth, RunSpec, StepExit, Workspace,
};
pub use docker::DockerBackend;
pub use event::{LogStream, RunEvent};
pub use fake::FakeBackend;
pub use scheduler::{Limits, RunError, RunOptions, RunReport, StepReport, execute};
pub use step_files::StepFiles;
