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
pub use scheduler::{RunError, RunOptions, RunReport, StepReport, execute};
pub use step_files::StepFiles;

#[cfg(test)]
mod tests {
    /// Every file under `src/` is named in the `//!` list above: a
    /// top-level module as a link, a file in a module folder by its name.
    #[test]
    fn the_module_list_names_every_file_in_the_tree() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let doc: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .collect();
        let doc = doc.join("\n");
        let mut missing = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap().to_string_lossy();
                let rel = rel.replace('\\', "/");
                if rel == "lib.rs" || !rel.ends_with(".rs") {
                    continue;
                }
                let named = match rel.rsplit_once('/') {
                    None => doc.contains(&format!("[`{}`]", rel.trim_end_matches(".rs"))),
                    Some((_, file)) => {
                        doc.contains(&format!("`{file}`")) || doc.contains(&format!("`{rel}`"))
                    }
                };
                if !named {
                    missing.push(rel);
                }
            }
        }
        missing.sort();
        assert!(
            missing.is_empty(),
            "not in lib.rs's module list: {missing:?}"
        );
    }
}
