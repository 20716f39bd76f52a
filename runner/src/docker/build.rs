//! Image builds through the daemon's BuildKit (a bollard session, no
//! buildx), pushes, and moving directories in and out of a run's workspace
//! with the archive API.
//!
//! A build is named only `slipway.local/<run>/<step>:build` in the daemon.
//! Its `tags` never become daemon names: a push lends the target name to
//! the build for the push alone and gives it back to whatever it named.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::auth::DockerCredentials;
use bollard::models::{BuildInfoAux, ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, BuilderVersion, DownloadFromContainerOptionsBuilder,
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DockerBackend, WORKSPACE_DIR, built_image_name, docker_err, is_status};
use crate::backend::{BackendError, BuiltImage, Credentials, ImageBuild, RunSpec};

/// Names helper containers apart within a process.
static HELPERS: AtomicU64 = AtomicU64::new(0);

/// Reads what an async stream sends, for a blocking tar reader.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// Copies a tar from the archive API (entries under the exported path's
/// base name) into `builder`, with entries placed under `prefix` instead.
fn rebase(
    reader: impl Read,
    prefix: &str,
    builder: &mut tar::Builder<impl Write>,
) -> std::io::Result<()> {
    let place = |p: &Path| -> PathBuf {
        let mut comps = p.components();
        while matches!(comps.clone().next(), Some(Component::CurDir)) {
            comps.next();
        }
        comps.next();
        let rest = comps.as_path();
        if rest.as_os_str().is_empty() {
            // The exported path itself: a file, or its directory's entry.
            return PathBuf::from(if prefix == "." { "" } else { prefix });
        }
        if prefix.is_empty() || prefix == "." {
            rest.to_path_buf()
        } else {
            Path::new(prefix).join(rest)
        }
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = place(&entry.path()?);
        if path.as_os_str().is_empty() {
            continue;
        }
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name()?.map(|t| t.into_owned()) else {
                continue;
            };
            // Hard links name another entry of this archive, which moved too.
            let target = if kind.is_hard_link() {
                place(&target)
            } else {
                target
            };
            builder.append_link(&mut header, &path, &target)?;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    Ok(())
}

/// The registry host of an image reference, as Docker reads it.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// `repo:tag` split at the tag's colon (not a registry port's).
pub fn split_tag(image: &str) -> (&str, &str) {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

fn docker_credentials(creds: &Credentials, registry: &str) -> Option<DockerCredentials> {
    creds.get(registry).map(|a| DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: Some(registry.to_string()),
        ..Default::default()
    })
}

/// Whether a failed BuildKit build means the daemon cannot do BuildKit
/// (as opposed to a Dockerfile that does not build).
fn buildkit_unavailable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("buildkit not supported")
        || m.contains("session not supported")
        || m.contains("unsupported builder version")
        || m.contains("buildkit is not enabled")
        || m.contains("page not found")
}

/// A build step as the builder finished it: BuildKit's vertex, or the
/// classic builder's `Step 2/3 : ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finished {
    name: String,
    cached: bool,
}

/// Whether a finished vertex is one of the Dockerfile's steps, the only
/// ones whose cache use says anything: BuildKit's `[2/3] RUN ...` (or
/// `[stage 2/3] ...`), the classic builder's `Step 2/3 : RUN ...`. Not
/// BuildKit's own work around them (`[internal] load ...`, the context
/// copy, importing cache, exporting, naming, pushing), which is never a
/// layer to reuse; the context copy is marked cached whenever the context
/// is unchanged. Not `FROM` either: it is where the build starts, and
/// BuildKit's mark on it says nothing about the build (a daemon marked it
/// cached on a cold build after a prune, and not on the warm one after).
fn is_build_step(name: &str) -> bool {
    let fraction = |s: &str| {
        s.split_once('/').is_some_and(|(n, of)| {
            [n, of]
                .iter()
                .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let instruction = if let Some((tag, rest)) = name
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        && tag.rsplit(' ').next().is_some_and(fraction)
    {
        rest
    } else if let Some((step, rest)) = name
        .strip_prefix("Step ")
        .and_then(|rest| rest.split_once(" : "))
        && fraction(step)
    {
        rest
    } else {
        return false;
    };
    let keyword = instruction.split_whitespace().next().unwrap_or_default();
    !keyword.eq_ignore_ascii_case("FROM")
}

/// Of a build's finished vertices, the build steps that came from cache
/// (by name, in the order they finished) and how many build steps there
/// were. A name seen twice counts once.
fn cache_use(finished: &[Finished]) -> (Vec<String>, usize) {
    let mut steps: Vec<&str> = Vec::new();
    let mut cached: Vec<String> = Vec::new();
    for f in finished.iter().filter(|f| is_build_step(&f.name)) {
        if !steps.contains(&f.name.as_str()) {
            steps.push(&f.name);
        }
        if f.cached && !cached.contains(&f.name) {
            cached.push(f.name.clone());
        }
    }
    (cached, steps.len())
}

impl DockerBackend {
    /// A never-started container mounting the run's workspace, for the
    /// archive API. Labelled with the run, so teardown removes it too.
    pub(super) async fn workspace_helper(&self, run: &RunSpec) -> Result<String, BackendError> {
        let n = HELPERS.fetch_add(1, Ordering::Relaxed);
        let name = format!("slipway-{}-ws-{}-{n}", run.run_id, std::process::id());
        let body = ContainerCreateBody {
            image: Some(run.helper_image.clone()),
            cmd: Some(vec!["/none".into()]),
            labels: Some(self.labels(&run.run_id, &[])),
            host_config: Some(HostConfig {
                mounts: Some(vec![Self::workspace_mount(run)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.create(&name, body).await?;
        Ok(name)
    }

    /// Entries keep their workspace paths, unless `as_root` (a build
    /// context: the one directory's contents at the archive's root).
    pub(super) async fn export(
        &self,
        run: &RunSpec,
        paths: &[String],
        out: &Path,
        as_root: bool,
    ) -> Result<Vec<String>, BackendError> {
        let helper = self.workspace_helper(run).await?;
        let result = self.export_with(&helper, paths, out, as_root).await;
        self.remove_container(&helper).await;
        result
    }

    async fn export_with(
        &self,
        helper: &str,
        paths: &[String],
        out: &Path,
        as_root: bool,
    ) -> Result<Vec<String>, BackendError> {
        let ws_err = |source: std::io::Error| BackendError::Workspace {
            path: out.to_path_buf(),
            source,
        };
        let file = std::fs::File::create(out).map_err(ws_err)?;
        let mut builder = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let mut missing = Vec::new();
        for path in paths {
            let source = if path == "." {
                WORKSPACE_DIR.to_string()
            } else {
                format!("{WORKSPACE_DIR}/{path}")
            };
            let opts = DownloadFromContainerOptionsBuilder::default()
                .path(&source)
                .build();
            let mut stream = self.bulk.download_from_container(helper, Some(opts));
            let first = match stream.next().await {
                None => continue,
                Some(Err(e)) if is_status(&e, 404) => {
                    missing.push(path.clone());
                    continue;
                }
                Some(Err(e)) => {
                    return Err(docker_err(format!("read `{path}` from the workspace"))(e));
                }
                Some(Ok(b)) => b,
            };
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            let prefix = if path == "." || as_root {
                String::new()
            } else {
                path.clone()
            };
            let task = tokio::task::spawn_blocking(move || {
                let reader = ChannelReader {
                    rx,
                    buf: Bytes::new(),
                };
                rebase(reader, &prefix, &mut builder).map(|()| builder)
            });
            let feed = async {
                tx.send(first).await.ok();
                while let Some(item) = stream.next().await {
                    let bytes =
                        item.map_err(docker_err(format!("read `{path}` from the workspace")))?;
                    if tx.send(bytes).await.is_err() {
                        break;
                    }
                }
                drop(tx);
                Ok::<(), BackendError>(())
            };
            let fed = feed.await;
            builder = task
                .await
                .map_err(|e| BackendError::Other(e.to_string()))?
                .map_err(ws_err)?;
            fed?;
        }
        let mut writer = builder.into_inner().map_err(ws_err)?;
        writer.flush().map_err(ws_err)?;
        Ok(missing)
    }

    pub(super) async fn import(&self, run: &RunSpec, archive: &Path) -> Result<(), BackendError> {
        let helper = self.workspace_helper(run).await?;
        let file =
            tokio::fs::File::open(archive)
                .await
                .map_err(|source| BackendError::Workspace {
                    path: archive.to_path_buf(),
                    source,
                })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let opts = UploadToContainerOptionsBuilder::default()
            .path(WORKSPACE_DIR)
            .build();
        let result = self
            .bulk
            .upload_to_container(&helper, Some(opts), bollard::body_try_stream(stream))
            .await
            .map_err(docker_err("unpack into the workspace"));
        self.remove_container(&helper).await;
        result
    }

    pub(super) async fn build(
        &self,
        run: &RunSpec,
        build: &ImageBuild,
        log: mpsc::Sender<String>,
        stop: CancellationToken,
    ) -> Result<BuiltImage, BackendError> {
        let fail = |message: String| BackendError::Build {
            step: build.step.clone(),
            message,
        };
        let context = std::env::temp_dir().join(format!(
            "slipway-context-{}-{}-{}.tar",
            run.run_id,
            build.step,
            HELPERS.fetch_add(1, Ordering::Relaxed)
        ));
        let missing = self
            .export(run, std::slice::from_ref(&build.context), &context, true)
            .await?;
        if !missing.is_empty() {
            let _ = std::fs::remove_file(&context);
            return Err(fail(format!(
                "the context `{}` is not in the workspace",
                build.context
            )));
        }
        let local_tag = built_image_name(&run.run_id, &build.step);
        // A `FROM` resolves daemon names too: not while a push borrows one.
        let names = self.images.read().await;
        let mut outcome = tokio::select! {
            r = self.build_once(run, build, &context, &local_tag, true, &log) => r,
            _ = stop.cancelled() => Err(fail("cancelled".into())),
        };
        if let Err(BackendError::Build { message, .. }) = &outcome
            && buildkit_unavailable(message)
        {
            let _ = log
                .send(format!(
                    "BuildKit is not available on this daemon ({message}); building with the classic builder"
                ))
                .await;
            outcome = tokio::select! {
                r = self.build_once(run, build, &context, &local_tag, false, &log) => r,
                _ = stop.cancelled() => Err(fail("cancelled".into())),
            };
        }
        drop(names);
        let _ = std::fs::remove_file(&context);
        let (finished, buildkit) = outcome?;
        let (cached, steps) = cache_use(&finished);
        let image_id = self
            .image_id(&local_tag)
            .await?
            .ok_or_else(|| fail(format!("the daemon has no image named {local_tag}")))?;
        let mut pushed = None;
        let mut targets: Vec<&String> = build.tags.iter().collect();
        if let Some(c) = &build.cache_to {
            targets.push(c);
        }
        for (i, target) in targets.iter().enumerate() {
            let is_cache = build.cache_to.as_ref() == Some(*target) && i >= build.tags.len();
            // Without a push a tag names nothing in the daemon: later steps
            // of this run that use it get `image_id` from the scheduler.
            if !(build.push || is_cache) {
                continue;
            }
            let digest = self.push_as(build, &local_tag, target, &log, &stop).await?;
            if i == 0 && build.push {
                pushed = Some(format!("{}@{digest}", split_tag(target).0));
            }
        }
        // `local_tag` stays until teardown: later steps run the image by ID.
        Ok(BuiltImage {
            image_id,
            pushed,
            cached,
            steps,
            buildkit,
        })
    }

    /// Pushes the image named `local` as `target`, which names it in the
    /// daemon only while the push lasts (under the write side of
    /// `images`): afterwards `target` names what it named before, or
    /// nothing. Returns the manifest digest the registry answered with.
    async fn push_as(
        &self,
        build: &ImageBuild,
        local: &str,
        target: &str,
        log: &mpsc::Sender<String>,
        stop: &CancellationToken,
    ) -> Result<String, BackendError> {
        let _names = self.images.write().await;
        let before = self.image_id(target).await?;
        let (repo, tag) = split_tag(target);
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        let tagged = self
            .docker
            .tag_image(local, Some(opts))
            .await
            .map_err(docker_err(format!("tag the image as {target} to push it")));
        let pushed = match tagged {
            Ok(()) => tokio::select! {
                r = self.push(target, &build.credentials, log) => r,
                _ = stop.cancelled() => Err(BackendError::Build {
                    step: build.step.clone(),
                    message: "cancelled".into(),
                }),
            },
            Err(e) => Err(e),
        };
        let digest = pushed.as_ref().ok().map(String::as_str);
        // A name still pointing at this build outweighs how the push went.
        self.give_back(target, before.as_deref(), digest).await?;
        pushed
    }

    /// Makes `target` name `before` again (or nothing), and drops the
    /// digest reference the push left on the build, which would otherwise
    /// keep it past the run's teardown. Never forced, never pruning.
    async fn give_back(
        &self,
        target: &str,
        before: Option<&str>,
        digest: Option<&str>,
    ) -> Result<(), BackendError> {
        let (repo, tag) = split_tag(target);
        let untag = || RemoveImageOptionsBuilder::default().noprune(true).build();
        let restored = match before {
            Some(old) => {
                let opts = TagImageOptionsBuilder::default()
                    .repo(repo)
                    .tag(tag)
                    .build();
                match self.docker.tag_image(old, Some(opts)).await {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        // The old image went meanwhile: naming nothing
                        // beats naming this build.
                        let _ = self.docker.remove_image(target, Some(untag()), None).await;
                        Err(docker_err(format!(
                            "give the name {target} back to image {old} after the push"
                        ))(e))
                    }
                }
            }
            None => match self.docker.remove_image(target, Some(untag()), None).await {
                Err(e) if !is_status(&e, 404) => Err(docker_err(format!(
                    "remove the name {target} lent to the build for its push"
                ))(e)),
                _ => Ok(()),
            },
        };
        if let Some(digest) = digest {
            let reference = format!("{repo}@{digest}");
            if let Err(e) = self
                .docker
                .remove_image(&reference, Some(untag()), None)
                .await
                && !is_status(&e, 404)
            {
                tracing::warn!(image = %reference, error = %e, "cannot drop the pushed digest's local reference");
            }
        }
        restored
    }

    /// One build attempt; returns the vertices (or classic steps) it
    /// finished, and whether BuildKit was used.
    async fn build_once(
        &self,
        run: &RunSpec,
        build: &ImageBuild,
        context: &Path,
        local_tag: &str,
        buildkit: bool,
        log: &mpsc::Sender<String>,
    ) -> Result<(Vec<Finished>, bool), BackendError> {
        let fail = |message: String| BackendError::Build {
            step: build.step.clone(),
            message,
        };
        let mut args: HashMap<String, String> = build.args.iter().cloned().collect();
        if buildkit && (build.push || build.cache_to.is_some()) {
            // Layers' cache metadata travels with the pushed image, so a
            // builder with an empty cache can reuse them (`cache_from`).
            args.entry("BUILDKIT_INLINE_CACHE".into())
                .or_insert_with(|| "1".into());
        }
        // The run's labels make its leftover images findable by teardown
        // and orphan reaping, like its containers.
        let labels = self.labels(&run.run_id, &[(super::LABEL_STEP, &build.step)]);
        let session = format!("slipway-{}-{}", run.run_id, build.step);
        let mut opts = BuildImageOptionsBuilder::default()
            .dockerfile(&build.dockerfile)
            .t(local_tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&args)
            .labels(&labels)
            .cachefrom(&build.cache_from);
        if let Some(target) = &build.target {
            opts = opts.target(target);
        }
        opts = if buildkit {
            opts.version(BuilderVersion::BuilderBuildKit)
                .session(&session)
        } else {
            opts.version(BuilderVersion::BuilderV1)
        };
        if !buildkit {
            // The classic builder reuses only local images: fetch them first.
            for image in &build.cache_from {
                let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
                    .from_image(image)
                    .build();
                let creds = docker_credentials(&build.credentials, registry_of(image));
                let mut pull = self.bulk.create_image(Some(opts), None, creds);
                while let Some(item) = pull.next().await {
                    if item.is_err() {
                        let _ = log
                            .send(format!("cache image {image} is not available"))
                            .await;
                        break;
                    }
                }
            }
        }
        let registries: HashSet<&str> = build.cache_from.iter().map(|i| registry_of(i)).collect();
        let creds: HashMap<String, DockerCredentials> = registries
            .into_iter()
            .filter_map(|r| docker_credentials(&build.credentials, r).map(|c| (r.to_string(), c)))
            .collect();
        let file = tokio::fs::File::open(context)
            .await
            .map_err(|e| fail(format!("cannot read the packed context: {e}")))?;
        let body =
            bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let mut stream = self.bulk.build_image(
            opts.build(),
            (!creds.is_empty()).then_some(creds),
            Some(body),
        );
        let mut done: HashSet<String> = HashSet::new();
        let mut finished: Vec<Finished> = Vec::new();
        let mut partial: HashMap<String, String> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let message = match e {
                        bollard::errors::Error::DockerResponseServerError { message, .. } => {
                            message
                        }
                        bollard::errors::Error::DockerStreamError { error } => error,
                        other => other.to_string(),
                    };
                    return Err(fail(message));
                }
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(fail(detail));
            }
            if let Some(line) = info.stream {
                // Classic builder output.
                for l in line.lines().filter(|l| !l.trim().is_empty()) {
                    if l.starts_with("Step ") {
                        finished.push(Finished {
                            name: l.trim_end().to_string(),
                            cached: false,
                        });
                    } else if l.trim_start().starts_with("---> Using cache")
                        && let Some(step) = finished.last_mut()
                    {
                        step.cached = true;
                    }
                    let _ = log.send(l.trim_end().to_string()).await;
                }
            }
            if let Some(BuildInfoAux::BuildKit(status)) = info.aux {
                for v in &status.vertexes {
                    if v.completed.is_some() && done.insert(v.digest.clone()) {
                        finished.push(Finished {
                            name: v.name.clone(),
                            cached: v.cached,
                        });
                        let mark = if v.cached { "CACHED " } else { "" };
                        let _ = log.send(format!("{mark}{}", v.name)).await;
                        if !v.error.is_empty() {
                            let _ = log.send(format!("error: {}", v.error)).await;
                        }
                    }
                }
                for l in &status.logs {
                    let text = String::from_utf8_lossy(&l.msg);
                    let buf = partial.entry(l.vertex.clone()).or_default();
                    buf.push_str(&text);
                    while let Some(nl) = buf.find('\n') {
                        let line: String = buf.drain(..=nl).collect();
                        let _ = log.send(format!("  {}", line.trim_end())).await;
                    }
                }
            }
        }
        for rest in partial.into_values().filter(|r| !r.trim().is_empty()) {
            let _ = log.send(format!("  {}", rest.trim_end())).await;
        }
        Ok((finished, buildkit))
    }

    /// Pushes a tag; returns the manifest digest the registry answered with.
    async fn push(
        &self,
        image: &str,
        credentials: &Credentials,
        log: &mpsc::Sender<String>,
    ) -> Result<String, BackendError> {
        let registry = registry_of(image).to_string();
        let (repo, tag) = split_tag(image);
        let err = |message: String| BackendError::Push {
            image: image.to_string(),
            registry: registry.clone(),
            message,
        };
        let _ = log.send(format!("pushing {image}")).await;
        let opts = PushImageOptionsBuilder::default().tag(tag).build();
        let creds = docker_credentials(credentials, &registry);
        let mut stream = self.bulk.push_image(repo, Some(opts), creds);
        let mut digest = None;
        let mut last: HashMap<String, String> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| {
                err(match e {
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                    bollard::errors::Error::DockerStreamError { error } => error,
                    other => other.to_string(),
                })
            })?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(err(message));
            }
            if let Some(status) = info.status {
                if let Some(at) = status.find("digest: sha256:") {
                    let d: String = status[at + 8..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    digest = Some(d);
                }
                if last.insert(status.clone(), String::new()).is_none() {
                    let _ = log.send(status).await;
                }
            }
        }
        digest.ok_or_else(|| err("the registry answered without a manifest digest".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_registry_repository_and_tag() {
        assert_eq!(registry_of("127.0.0.1:5000/acme/web:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/acme/web"), "ghcr.io");
        assert_eq!(registry_of("acme/web:1"), "docker.io");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(
            split_tag("127.0.0.1:5000/acme/web:abc"),
            ("127.0.0.1:5000/acme/web", "abc")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/acme/web"),
            ("127.0.0.1:5000/acme/web", "latest")
        );
        assert_eq!(split_tag("web:1"), ("web", "1"));
    }

    /// What BuildKit finishes for `FROM; RUN; COPY; RUN` built from a
    /// registry cache image, as a Docker 20.10 daemon reports it.
    fn vertices(cached: &[&str]) -> Vec<Finished> {
        [
            "[internal] load remote build context",
            "copy /context /",
            "[internal] load metadata for slipway.test/busybox:1",
            "importing cache manifest from 127.0.0.1:5000/acme/web:cache",
            "[1/4] FROM slipway.test/busybox:1",
            "[2/4] RUN echo deps > /deps",
            "[3/4] COPY hello.txt /hello.txt",
            "[4/4] RUN echo \"$VERSION\" > /version",
            "exporting to image",
        ]
        .into_iter()
        .map(|name| Finished {
            name: name.to_string(),
            cached: cached.contains(&name),
        })
        .collect()
    }

    #[test]
    fn a_cold_and_a_warm_build_count_only_the_dockerfile_steps_that_could_come_from_cache() {
        // As a daemon marked them: `FROM` cached on the cold build, the
        // context copy on the warm one.
        let cold = cache_use(&vertices(&["[1/4] FROM slipway.test/busybox:1"]));
        assert_eq!(cold, (vec![], 3));
        let warm = cache_use(&vertices(&[
            "copy /context /",
            "[2/4] RUN echo deps > /deps",
            "[3/4] COPY hello.txt /hello.txt",
            "[4/4] RUN echo \"$VERSION\" > /version",
        ]));
        assert_eq!(
            warm,
            (
                vec![
                    "[2/4] RUN echo deps > /deps".to_string(),
                    "[3/4] COPY hello.txt /hello.txt".to_string(),
                    "[4/4] RUN echo \"$VERSION\" > /version".to_string(),
                ],
                3
            )
        );
    }

    #[test]
    fn build_steps_are_the_dockerfile_instructions_of_either_builder() {
        for step in [
            "[2/4] RUN make",
            "[builder 3/5] COPY . .",
            "[linux/amd64 builder 2/5] RUN go build",
            "Step 2/3 : RUN make",
        ] {
            assert!(is_build_step(step), "{step}");
        }
        for other in [
            "[internal] load build definition from Dockerfile",
            "[internal] load .dockerignore",
            "[internal] load build context",
            "[auth] library/alpine:pull token for registry-1.docker.io",
            "[1/4] FROM docker.io/library/alpine:3.20",
            "Step 1/3 : FROM busybox",
            "copy /context /",
            "exporting to image",
            "naming to 127.0.0.1:5000/acme/web:1",
            "pushing layers",
        ] {
            assert!(!is_build_step(other), "{other}");
        }
    }

    #[test]
    fn classic_builder_steps_count_without_their_from() {
        let finished = [
            ("Step 1/3 : FROM busybox", false),
            ("Step 2/3 : RUN make", true),
            ("Step 3/3 : COPY . .", false),
        ]
        .map(|(name, cached)| Finished {
            name: name.into(),
            cached,
        });
        assert_eq!(
            cache_use(&finished),
            (vec!["Step 2/3 : RUN make".to_string()], 2)
        );
    }

    #[test]
    fn archive_entries_move_under_their_new_place() {
        let mut src = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        src.append_data(&mut h, "target/a.txt", &b"hi"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        src.append_link(&mut l, "target/link", "a.txt").unwrap();
        let bytes = src.into_inner().unwrap();
        let mut out = tar::Builder::new(Vec::new());
        rebase(&bytes[..], "build/target", &mut out).unwrap();
        let out = out.into_inner().unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&out[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["build/target/a.txt", "build/target/link"]);
        let mut out2 = tar::Builder::new(Vec::new());
        rebase(&bytes[..], "", &mut out2).unwrap();
        let out2 = out2.into_inner().unwrap();
        let first = tar::Archive::new(&out2[..])
            .entries()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .unwrap()
            .display()
            .to_string();
        assert_eq!(first, "a.txt");
    }
}
