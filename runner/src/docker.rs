//! The Docker backend, through bollard.
//!
//! Every container, network, volume and built image is labelled
//! `slipway.run=<id>` and `slipway.owner=<host>:<pid>`, so a run's
//! leftovers can always be found: by [`DockerBackend::teardown_run`] at the
//! end of the run, and by [`DockerBackend::reap_orphans`] after the process
//! that owned them died.
//!
//! The daemon's image names are shared by every run. A run's build lives
//! only under its run-scoped name (`slipway.local/<run>/<step>:build`); a
//! push names it as the target for the push alone, under the write side of
//! `images`, and resolving a name to an image ID takes the read side, so no
//! run ever resolves a name another run's push is borrowing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkCreateRequest,
    NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{RwLock, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backend::{
    Backend, BackendError, BuiltImage, ContainerSpec, ImageBuild, LogChunk, RunSpec, StepExit,
    Workspace,
};
use crate::event::LogStream;
use crate::workspace;

mod build;
mod preview;
pub use build::{registry_of, split_tag};
pub use preview::{FoundPreview, LABEL_PREVIEW, PreviewContainer, PreviewSpec};

pub const LABEL_RUN: &str = "slipway.run";
pub const LABEL_OWNER: &str = "slipway.owner";
pub const LABEL_STEP: &str = "slipway.step";
pub const LABEL_SERVICE: &str = "slipway.service";
const WORKSPACE_DIR: &str = "/workspace";
/// Where a run's built images live in the daemon: `<prefix><run>/<step>:build`.
const BUILT_PREFIX: &str = "slipway.local/";

/// Every backend of this process talks to the same daemon, so they share
/// one lock over its image names (see the module's doc).
static IMAGE_NAMES: LazyLock<Arc<RwLock<()>>> = LazyLock::new(|| Arc::new(RwLock::new(())));

#[derive(Debug, Clone)]
pub struct DockerBackend {
    /// For calls a healthy daemon answers at once: the daemon deadline.
    docker: Docker,
    /// For transfers: workspace copies, pulls, builds, pushes.
    bulk: Docker,
    /// How long a control call may go unanswered.
    deadline: Duration,
    /// Time a stopped container gets between SIGTERM and SIGKILL.
    grace: Duration,
    /// `<host>:<pid>`, so another process can tell whether we are still alive.
    owner: String,
    /// CPUs the daemon has (0: unknown). Docker refuses a CPU limit above
    /// it, and such a limit limits nothing, so it is lowered to this.
    host_cpus: u64,
    /// Write side: a push borrowing a name; read side: resolving names
    /// (step and service images, a build's `FROM`).
    images: Arc<RwLock<()>>,
}

/// The daemon name a run's build step's image has for the run's life.
fn built_image_name(run_id: &str, step: &str) -> String {
    format!("{BUILT_PREFIX}{run_id}/{step}:build")
}

/// Calls that answer at once on a healthy daemon (inspect, create, start,
/// remove, list, ping) get this long, unless the backend is made with
/// another deadline; transfers (workspace copies, pulls, builds, pushes)
/// keep bollard's two minutes to the first byte of the answer.
pub const DEFAULT_DAEMON_DEADLINE: Duration = Duration::from_secs(30);

/// How often a running step's wait checks that the daemon still answers.
const LIVENESS_EVERY: Duration = Duration::from_secs(5);

/// Sleeps until `at`, or for ever when there is no `at`.
async fn sleep_until_or_never(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The two minutes bollard gives any call by default: for transfers.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(120);

/// Whether the daemon answers: `Some(why)` from the moment a call went
/// unanswered past its deadline until a ping is answered again. One per
/// process, as one process talks to one daemon (as with `IMAGE_NAMES`).
static NOT_ANSWERING: LazyLock<std::sync::Mutex<Option<String>>> =
    LazyLock::new(|| std::sync::Mutex::new(None));

fn set_not_answering(why: Option<String>) {
    let mut state = NOT_ANSWERING.lock().unwrap_or_else(|p| p.into_inner());
    if why.is_some() && state.is_none() {
        warn!(
            reason = why.as_deref().unwrap_or_default(),
            "the Docker daemon is not answering"
        );
    }
    if why.is_none() && state.is_some() {
        tracing::info!("the Docker daemon answers again");
    }
    *state = why;
}

fn docker_err(action: impl Into<String>) -> impl FnOnce(DockerError) -> BackendError {
    let action = action.into();
    move |source| match source {
        DockerError::RequestTimeoutError => not_answering(action),
        source => BackendError::Docker { action, source },
    }
}

/// A call that got no answer in time; the daemon is marked unhealthy.
fn not_answering(action: String) -> BackendError {
    set_not_answering(Some(format!("no answer to `{action}` in time")));
    BackendError::NotAnswering { action }
}

fn is_status(e: &DockerError, code: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn container_name(run_id: &str, step: &str, attempt: u32) -> String {
    format!("slipway-{run_id}-{step}-{attempt}")
}

fn network_name(run_id: &str) -> String {
    format!("slipway-{run_id}")
}

fn volume_name(run_id: &str) -> String {
    format!("slipway-{run_id}-workspace")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl DockerBackend {
    /// Connects to the local daemon (DOCKER_HOST or the default socket) and
    /// agrees on an API version, since daemons in the field are often older
    /// than the client.
    pub async fn connect(grace: Duration) -> Result<DockerBackend, BackendError> {
        let docker = Docker::connect_with_local_defaults().map_err(BackendError::Connect)?;
        DockerBackend::with_client(docker, grace, DEFAULT_DAEMON_DEADLINE).await
    }

    /// A backend over `docker` (any transport bollard speaks), whose
    /// control calls fail with [`BackendError::NotAnswering`] after
    /// `deadline`.
    pub async fn with_client(
        docker: Docker,
        grace: Duration,
        deadline: Duration,
    ) -> Result<DockerBackend, BackendError> {
        let deadline = deadline.max(Duration::from_secs(1));
        let docker = docker
            .with_timeout(deadline)
            .negotiate_version()
            .await
            .map_err(BackendError::Connect)?;
        docker.ping().await.map_err(BackendError::Connect)?;
        let bulk = docker.clone().with_timeout(TRANSFER_DEADLINE.max(deadline));
        let host_cpus = match docker.info().await {
            Ok(info) => info.ncpu.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            Err(e) => {
                warn!(error = %e, "cannot ask the daemon how many CPUs it has");
                0
            }
        };
        Ok(DockerBackend {
            docker,
            bulk,
            deadline,
            grace,
            owner: format!("{}:{}", hostname(), std::process::id()),
            host_cpus,
            images: IMAGE_NAMES.clone(),
        })
    }

    fn labels(&self, run_id: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_RUN.to_string(), run_id.to_string()),
            (LABEL_OWNER.to_string(), self.owner.clone()),
        ]);
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        labels
    }

    fn workspace_mount(run: &RunSpec) -> Mount {
        let (typ, source) = match &run.workspace {
            Workspace::Bind(path) => (MountType::BIND, path.display().to_string()),
            Workspace::Copy(_) | Workspace::Empty => (MountType::VOLUME, volume_name(&run.run_id)),
        };
        Mount {
            target: Some(WORKSPACE_DIR.into()),
            source: Some(source),
            typ: Some(typ),
            ..Default::default()
        }
    }

    fn container_body(
        &self,
        run: &RunSpec,
        spec: &ContainerSpec,
        kind: (&str, &str),
    ) -> ContainerCreateBody {
        let networking_config = NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network_name(&run.run_id),
                EndpointSettings {
                    aliases: Some(vec![spec.name.clone()]),
                    ..Default::default()
                },
            )])),
        };
        let limits = &spec.resources;
        let memory = limits.memory.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
        let millicpus = match limits.millicpus {
            Some(m) if self.host_cpus > 0 => Some(m.min(self.host_cpus * 1000)),
            m => m,
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec
                .script
                .as_ref()
                .map(|_| vec!["/bin/sh".to_string(), "-c".to_string()]),
            cmd: spec.script.as_ref().map(|s| vec![s.clone()]),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(WORKSPACE_DIR.into()),
            labels: Some(self.labels(&run.run_id, &[kind])),
            host_config: Some(HostConfig {
                mounts: Some(vec![Self::workspace_mount(run)]),
                // The run's own network, never the default bridge, where
                // every run's containers could reach each other.
                network_mode: Some(network_name(&run.run_id)),
                // A tiny init as PID 1 forwards SIGTERM to the shell; `sh` as
                // PID 1 ignores it and every cancel would wait the full grace.
                init: Some(true),
                memory,
                // Equal to `memory`: no swap on top, which would let a step
                // over its limit slow the whole machine down instead of dying.
                memory_swap: memory,
                nano_cpus: millicpus
                    .map(|m| i64::try_from(m.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
                pids_limit: limits.pids.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            networking_config: Some(networking_config),
            ..Default::default()
        }
    }

    async fn create(&self, name: &str, body: ContainerCreateBody) -> Result<(), BackendError> {
        let opts = || Some(CreateContainerOptionsBuilder::default().name(name).build());
        match self.docker.create_container(opts(), body.clone()).await {
            Ok(_) => Ok(()),
            // A leftover of an earlier, crashed attempt with the same name.
            Err(e) if is_status(&e, 409) => {
                self.remove_container(name).await;
                self.docker
                    .create_container(opts(), body)
                    .await
                    .map(|_| ())
                    .map_err(docker_err(format!("create container {name}")))
            }
            Err(e) => Err(docker_err(format!("create container {name}"))(e)),
        }
    }

    async fn remove_container(&self, name: &str) {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self.docker.remove_container(name, Some(opts)).await
            && !is_status(&e, 404)
        {
            warn!(container = name, error = %e, "cannot remove container");
        }
    }

    async fn copy_into_workspace(&self, run: &RunSpec, root: PathBuf) -> Result<(), BackendError> {
        // Created, never started: the archive API writes into its volume.
        let helper = self.workspace_helper(run).await?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
        let packer = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let files = workspace::list_files(&root)?;
                workspace::write_tar(
                    &root,
                    &files,
                    ChannelWriter {
                        tx,
                        buf: Vec::new(),
                    },
                )
            })
        };
        let stream = tokio_stream_from(rx);
        let opts = UploadToContainerOptionsBuilder::default()
            .path(WORKSPACE_DIR)
            .build();
        let upload = self
            .bulk
            .upload_to_container(&helper, Some(opts), bollard::body_try_stream(stream))
            .await;
        let packed = packer
            .await
            .map_err(|e| BackendError::Other(e.to_string()))?;
        self.remove_container(&helper).await;
        packed.map_err(|source| BackendError::Workspace {
            path: root.clone(),
            source,
        })?;
        upload.map_err(docker_err("copy the workspace into its volume"))
    }

    /// Containers, networks and volumes matching a label filter
    /// (`slipway.run` for all runs, `slipway.run=<id>` for one).
    async fn labelled(&self, label: String) -> Result<Vec<Resource>, BackendError> {
        let filter = HashMap::from([("label".to_string(), vec![label])]);
        let mut out = Vec::new();
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(docker_err("list containers"))?;
        out.extend(containers.into_iter().filter_map(|c| {
            Some(Resource {
                kind: ResourceKind::Container,
                id: c.id?,
                labels: c.labels.unwrap_or_default(),
            })
        }));
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(docker_err("list networks"))?;
        out.extend(networks.into_iter().filter_map(|n| {
            Some(Resource {
                kind: ResourceKind::Network,
                id: n.name?,
                labels: n.labels.unwrap_or_default(),
            })
        }));
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&filter)
                    .build(),
            ))
            .await
            .map_err(docker_err("list volumes"))?;
        out.extend(
            volumes
                .volumes
                .unwrap_or_default()
                .into_iter()
                .map(|v| Resource {
                    kind: ResourceKind::Volume,
                    id: v.name,
                    labels: v.labels,
                }),
        );
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default().filters(&filter).build(),
            ))
            .await
            .map_err(docker_err("list images"))?;
        // Only the run's own names: a pushed image pulled back by digest
        // (a preview) carries the run's labels too, and is not the run's.
        for image in images {
            let Some(run) = image.labels.get(LABEL_RUN) else {
                continue;
            };
            let own = format!("{BUILT_PREFIX}{run}/");
            out.extend(
                image
                    .repo_tags
                    .iter()
                    .filter(|t| t.starts_with(&own))
                    .map(|t| Resource {
                        kind: ResourceKind::Image,
                        id: t.clone(),
                        labels: image.labels.clone(),
                    }),
            );
        }
        Ok(out)
    }

    /// Removes what runs of dead `slipway` processes on this host left behind.
    /// Returns the run ids reaped.
    pub async fn reap_orphans(&self) -> Result<Vec<String>, BackendError> {
        let host = hostname();
        let mut owners: HashMap<String, String> = HashMap::new();
        for r in self.labelled(LABEL_RUN.to_string()).await? {
            if let (Some(run), Some(owner)) = (r.labels.get(LABEL_RUN), r.labels.get(LABEL_OWNER)) {
                owners.insert(run.clone(), owner.clone());
            }
        }
        let mut reaped = Vec::new();
        for (run_id, owner) in owners {
            let Some((owner_host, pid)) = owner.rsplit_once(':') else {
                continue;
            };
            let alive = pid == std::process::id().to_string()
                || PathBuf::from(format!("/proc/{pid}")).exists();
            if owner_host == host && !alive {
                self.teardown_run(&run_id).await?;
                reaped.push(run_id);
            }
        }
        reaped.sort();
        Ok(reaped)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ResourceKind {
    // Declared in removal order: a network or volume in use cannot be removed.
    Container,
    Network,
    Volume,
    Image,
}

impl ResourceKind {
    fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Container => "container",
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Image => "image",
        }
    }
}

struct Resource {
    kind: ResourceKind,
    id: String,
    labels: HashMap<String, String>,
}

/// Feeds a blocking tar writer into an async upload without holding the
/// whole archive in memory.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 256 * 1024;

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload was aborted")
        })
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Backend for DockerBackend {
    fn health(&self) -> Result<(), String> {
        match NOT_ANSWERING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(why) => Err(format!("Docker daemon not answering: {why}")),
            None => Ok(()),
        }
    }

    async fn probe(&self) -> Result<(), String> {
        match self.docker.ping().await {
            Ok(_) => {
                set_not_answering(None);
                Ok(())
            }
            Err(DockerError::RequestTimeoutError) => Err(not_answering("ping".into()).to_string()),
            // Refused or gone is not "wedged": the next call says so itself.
            Err(e) => Err(format!("Docker daemon: {e}")),
        }
    }

    async fn prepare_image(
        &self,
        image: &str,
        progress: mpsc::Sender<String>,
    ) -> Result<String, BackendError> {
        let _names = self.images.read().await;
        if let Some(id) = self.image_id(image).await? {
            return Ok(id);
        }
        let _ = progress.send(format!("pulling {image}")).await;
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.bulk.create_image(Some(opts), None, None);
        // Only changes of a layer's status are reported, not every byte count.
        let mut last: HashMap<String, String> = HashMap::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(BackendError::ImagePull {
                            image: image.into(),
                            message: detail,
                        });
                    }
                    let status = info.status.unwrap_or_default();
                    let id = info.id.unwrap_or_default();
                    if last.get(&id) != Some(&status) {
                        let line = if id.is_empty() {
                            status.clone()
                        } else {
                            format!("{id}: {status}")
                        };
                        last.insert(id, status);
                        let _ = progress.send(line).await;
                    }
                }
                Err(e) => {
                    let message = match e {
                        DockerError::DockerResponseServerError { message, .. } => message,
                        DockerError::DockerStreamError { error } => error,
                        other => other.to_string(),
                    };
                    return Err(BackendError::ImagePull {
                        image: image.into(),
                        message,
                    });
                }
            }
        }
        self.image_id(image)
            .await?
            .ok_or_else(|| BackendError::ImagePull {
                image: image.into(),
                message: "the pull finished but the daemon has no such image".into(),
            })
    }

    async fn setup_run(&self, run: &RunSpec) -> Result<(), BackendError> {
        let req = NetworkCreateRequest {
            name: network_name(&run.run_id),
            driver: Some("bridge".into()),
            labels: Some(self.labels(&run.run_id, &[])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(docker_err("create the run's network")(e)),
        }
        if matches!(run.workspace, Workspace::Bind(_)) {
            return Ok(());
        }
        let req = VolumeCreateRequest {
            name: Some(volume_name(&run.run_id)),
            labels: Some(self.labels(&run.run_id, &[])),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map_err(docker_err("create the workspace volume"))?;
        if let Workspace::Copy(root) = &run.workspace {
            self.copy_into_workspace(run, root.clone()).await?;
        }
        Ok(())
    }

    async fn start_service(
        &self,
        run: &RunSpec,
        service: &ContainerSpec,
    ) -> Result<(), BackendError> {
        let name = format!("slipway-{}-svc-{}", run.run_id, service.name);
        let body = self.container_body(run, service, (LABEL_SERVICE, &service.name));
        self.create(&name, body).await?;
        self.docker
            .start_container(&name, None)
            .await
            .map_err(docker_err(format!("start service {}", service.name)))
    }

    async fn run_step(
        &self,
        run: &RunSpec,
        step: &ContainerSpec,
        logs: mpsc::Sender<LogChunk>,
        stop: CancellationToken,
    ) -> Result<StepExit, BackendError> {
        let name = container_name(&run.run_id, &step.name, step.attempt);
        let body = self.container_body(run, step, (LABEL_STEP, &step.name));
        self.create(&name, body).await?;
        let result = self.start_and_wait(&name, logs, &stop).await;
        self.remove_container(&name).await;
        result
    }

    async fn build_image(
        &self,
        run: &RunSpec,
        build: &ImageBuild,
        log: mpsc::Sender<String>,
        stop: CancellationToken,
    ) -> Result<BuiltImage, BackendError> {
        self.build(run, build, log, stop).await
    }

    async fn export_workspace(
        &self,
        run: &RunSpec,
        paths: &[String],
        out: &std::path::Path,
    ) -> Result<Vec<String>, BackendError> {
        self.export(run, paths, out, false).await
    }

    async fn import_workspace(
        &self,
        run: &RunSpec,
        archive: &std::path::Path,
    ) -> Result<(), BackendError> {
        self.import(run, archive).await
    }

    async fn scratch_image(&self) -> Result<String, BackendError> {
        const SCRATCH: &str = "slipway.local/scratch:1";
        // Its ID, like every image a container of a run is made from.
        let _names = self.images.read().await;
        if let Some(id) = self.image_id(SCRATCH).await? {
            return Ok(id);
        }
        // An empty file system: enough to create (never start) a container.
        let empty = Bytes::from(vec![0u8; 1024]);
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo("slipway.local/scratch")
            .tag("1")
            .build();
        let mut stream =
            self.docker
                .create_image(Some(opts), Some(bollard::body_full(empty)), None);
        while let Some(item) = stream.next().await {
            item.map_err(docker_err("make the scratch image"))?;
        }
        self.image_id(SCRATCH).await?.ok_or_else(|| {
            BackendError::Other("the scratch image was made but is not there".into())
        })
    }

    async fn teardown_run(&self, run_id: &str) -> Result<(), BackendError> {
        let mut resources = self.labelled(format!("{LABEL_RUN}={run_id}")).await?;
        resources.sort_by_key(|r| r.kind);
        let containers = resources
            .iter()
            .filter(|r| r.kind == ResourceKind::Container);
        futures_util::future::join_all(containers.map(|r| self.remove_container(&r.id))).await;
        for r in resources
            .iter()
            .filter(|r| r.kind != ResourceKind::Container)
        {
            let removed = match r.kind {
                ResourceKind::Network => self.docker.remove_network(&r.id).await,
                ResourceKind::Image => {
                    // Never forced: a container of another run (or a
                    // preview) may use the image; then only the name goes.
                    let opts = RemoveImageOptionsBuilder::default().force(false).build();
                    match self.docker.remove_image(&r.id, Some(opts), None).await {
                        Err(e) if is_status(&e, 409) => {
                            warn!(image = %r.id, error = %e, "built image still in use; left");
                            Ok(())
                        }
                        other => other.map(|_| ()),
                    }
                }
                _ => {
                    let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
                    self.docker.remove_volume(&r.id, Some(opts)).await
                }
            };
            match removed {
                Err(e) if !is_status(&e, 404) => {
                    return Err(docker_err(format!("remove {} {}", r.kind.as_str(), r.id))(
                        e,
                    ));
                }
                _ => {}
            }
        }
        debug!(run_id, "torn down");
        Ok(())
    }
}

impl DockerBackend {
    /// The ID of the image `image` names, if the daemon has one.
    async fn image_id(&self, image: &str) -> Result<Option<String>, BackendError> {
        match self.docker.inspect_image(image).await {
            Ok(found) => Ok(found.id),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(docker_err(format!("inspect image {image}"))(e)),
        }
    }

    async fn start_and_wait(
        &self,
        name: &str,
        logs: mpsc::Sender<LogChunk>,
        stop: &CancellationToken,
    ) -> Result<StepExit, BackendError> {
        if stop.is_cancelled() {
            return Ok(StepExit::Stopped);
        }
        self.docker
            .start_container(name, None)
            .await
            .map_err(docker_err(format!("start container {name}")))?;
        // Output is pumped by its own task so a log stream that never closes
        // (seen with some daemons) cannot hold the step past its exit.
        let pump = {
            let docker = self.docker.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                let opts = LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build();
                let mut stream = docker.logs(&name, Some(opts));
                while let Some(item) = stream.next().await {
                    let chunk = match item {
                        Ok(bollard::container::LogOutput::StdErr { message }) => {
                            (LogStream::Stderr, message)
                        }
                        Ok(out) => (LogStream::Stdout, out.into_bytes()),
                        Err(e) => {
                            debug!(error = %e, "log stream ended");
                            break;
                        }
                    };
                    if logs.send(chunk).await.is_err() {
                        break;
                    }
                }
            })
        };
        let wait = async {
            let mut stopped = false;
            // Once stopped, the container has its grace period, and the
            // daemon its deadline, to say so; a wedged daemon never would.
            let mut stop_by: Option<tokio::time::Instant> = None;
            // The wait is one long answer, which no deadline covers: a
            // ping now and then tells a long step from a daemon that died.
            let mut liveness = tokio::time::interval(LIVENESS_EVERY);
            liveness.tick().await;
            let mut waiter = self.docker.wait_container(name, None);
            loop {
                tokio::select! {
                    item = waiter.next() => {
                        let code = match item {
                            Some(Ok(r)) => r.status_code,
                            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
                            Some(Err(e)) => return Err(docker_err(format!("wait for container {name}"))(e)),
                            None => return Err(BackendError::Other(format!("the wait for container {name} ended without an exit code"))),
                        };
                        return Ok(if stopped { StepExit::Stopped } else { StepExit::Exited(code) });
                    }
                    _ = stop.cancelled(), if !stopped => {
                        stopped = true;
                        stop_by = Some(tokio::time::Instant::now() + self.grace + self.deadline);
                        let t = i32::try_from(self.grace.as_secs()).unwrap_or(i32::MAX);
                        let opts = StopContainerOptionsBuilder::default().t(t).build();
                        // Docker answers a stop once the container is gone:
                        // the grace period on top of the deadline.
                        let stopper = self.docker.clone().with_timeout(self.grace + self.deadline);
                        match stopper.stop_container(name, Some(opts)).await {
                            Ok(()) => {}
                            Err(DockerError::RequestTimeoutError) => {
                                return Err(not_answering(format!("stop container {name}")));
                            }
                            Err(e) if !is_status(&e, 304) && !is_status(&e, 404) => {
                                warn!(container = name, error = %e, "cannot stop container");
                            }
                            Err(_) => {}
                        }
                    }
                    _ = sleep_until_or_never(stop_by) => {
                        return Err(not_answering(format!("wait for container {name} to stop")));
                    }
                    _ = liveness.tick() => {
                        if let Err(DockerError::RequestTimeoutError) = self.docker.ping().await {
                            return Err(not_answering(format!("ping, while container {name} runs")));
                        }
                    }
                }
            }
        };
        let exit = wait.await;
        let abort = pump.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), pump)
            .await
            .is_err()
        {
            warn!(
                container = name,
                "log stream still open 5s after exit; closing it"
            );
            abort.abort();
        }
        exit
    }
}
