//! `slipway runner`: a build runner on another machine. It asks a server
//! for runs (long-poll), runs each whole run on this machine's Docker with
//! the same scheduler as the server's built-in runner, and sends the
//! run's events back, numbered, until each is stored.
//!
//! What it keeps to the protocol's rules (`protocol`, ARCHITECTURE.md):
//! - a heartbeat every [`HEARTBEAT_EVERY`] names every run it holds, with
//!   its epoch; a run the server answers as fenced is stopped at once, its
//!   containers removed, and nothing more of it is sent;
//! - events wait in memory until the server says they are stored; while
//!   the server is unreachable at most [`MAX_BUFFERED`] wait, and the
//!   oldest log lines go first, replaced by a line that says so;
//! - secrets and logins of a job live only in memory, never on disk.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway_runner::cache::CacheStore;
use slipway_runner::git::Mirrors;
use slipway_runner::{Backend, LogStream, RunEvent, RunOptions, Workspace, execute};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::protocol::{
    EventBatch, EventsReply, HEARTBEAT_EVERY, Heartbeat, HeartbeatReply, Held, Hello, Job,
};

/// Events of one run waiting to be stored, at most; past it the oldest
/// unsent log lines are dropped.
pub const MAX_BUFFERED: usize = 50_000;

/// Events per upload, at most.
const BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("runner: {0}")]
    Setup(String),
}

/// How `slipway runner` was started.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` or `https://...` of the server.
    pub server: String,
    pub token: String,
    pub name: Option<String>,
    pub labels: Vec<String>,
    pub capacity: usize,
    pub data_dir: PathBuf,
    /// A PEM certificate to trust besides the usual roots (a private CA).
    pub ca_cert: Option<PathBuf>,
    pub cache_max_bytes: u64,
}

struct Running {
    epoch: u64,
    cancel: CancellationToken,
    fenced: bool,
    /// Its final event is stored: the server has let go of its lease, so
    /// heartbeats stop naming it (else they would be answered "fenced").
    reported: bool,
}

struct Agent<B> {
    config: AgentConfig,
    http: reqwest::Client,
    backend: Arc<B>,
    mirrors: Mirrors,
    cache: Option<Arc<CacheStore>>,
    running: Mutex<HashMap<String, Running>>,
}

/// Runs until `stop`: then takes no more runs, cancels those it holds and
/// sends what is left of them before returning.
pub async fn run<B: Backend>(
    config: AgentConfig,
    backend: Arc<B>,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    if config.capacity == 0 {
        return Err(AgentError::Setup("--capacity must be at least 1".into()));
    }
    if let Some(bad) = config
        .labels
        .iter()
        .find(|l| !slipway_engine::parse::is_runner_label(l))
    {
        return Err(AgentError::Setup(format!(
            "--labels: `{}` is not a plain word (letters, digits, `-`, `_`, `.`, `/`)",
            bad.escape_debug()
        )));
    }
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(crate::protocol::CLAIM_WAIT + Duration::from_secs(10));
    if let Some(path) = &config.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| AgentError::Setup(format!("--ca-cert {}: {e}", path.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| AgentError::Setup(format!("--ca-cert {}: {e}", path.display())))?;
        http = http.add_root_certificate(cert);
    }
    let http = http
        .build()
        .map_err(|e| AgentError::Setup(format!("HTTP client: {e}")))?;
    let work = config.data_dir.join("work");
    // Checkouts of runs a killed runner left behind; none is in use yet.
    let _ = tokio::fs::remove_dir_all(&work).await;
    let cache = match CacheStore::open(&config.data_dir.join("cache"), config.cache_max_bytes) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            warn!(error = %e, "directory caches are off");
            None
        }
    };
    let agent = Arc::new(Agent {
        mirrors: Mirrors::new(config.data_dir.join("mirrors")),
        config,
        http,
        backend,
        cache,
        running: Mutex::default(),
    });
    let beats = tokio::spawn(agent.clone().heartbeats(stop.clone()));
    let tasks = tokio_util::task::TaskTracker::new();
    let mut backoff = Duration::from_millis(200);
    let mut refused = None;
    while !stop.is_cancelled() {
        let free = agent.config.capacity > agent.held().len();
        let unhealthy = agent.backend.health().err();
        if !free || unhealthy.is_some() {
            if unhealthy.is_some() {
                let _ = agent.backend.probe().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let claimed = tokio::select! {
            c = agent.claim() => c,
            _ = stop.cancelled() => break,
        };
        match claimed {
            Ok(Some(job)) => {
                backoff = Duration::from_millis(200);
                let span = info_span!("run", run_id = %job.run_id, epoch = job.epoch);
                let this = agent.clone();
                tasks.spawn(async move { this.run_job(job).await }.instrument(span));
            }
            Ok(None) => backoff = Duration::from_millis(200),
            // Removed (`slipway runners rm`) or not this token's name:
            // asking again will not help.
            Err(e)
                if e.starts_with("claim answered 401") || e.starts_with("claim answered 403") =>
            {
                refused = Some(e);
                break;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "cannot reach the server");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    info!("stopping: cancelling held runs and sending what is left");
    for run in agent
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
    {
        run.cancel.cancel();
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(30), tasks.wait()).await;
    beats.abort();
    match refused {
        Some(why) => Err(AgentError::Setup(format!(
            "the server refused this runner ({why}); was it removed with `slipway runners rm`?"
        ))),
        None => Ok(()),
    }
}

impl<B: Backend> Agent<B> {
    /// A request to the server with this runner's token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.config.token)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.server.trim_end_matches('/'))
    }

    fn hello(&self) -> Hello {
        Hello {
            name: self.config.name.clone(),
            labels: self.config.labels.clone(),
            capacity: self.config.capacity,
            version: env!("CARGO_PKG_VERSION").into(),
            unhealthy: self.backend.health().err(),
        }
    }

    fn held(&self) -> Vec<Held> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| !r.reported)
            .map(|(id, r)| Held {
                run_id: id.clone(),
                epoch: r.epoch,
            })
            .collect()
    }

    async fn claim(&self) -> Result<Option<Job>, String> {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/runner/claim")
            .json(&self.hello())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            204 => Ok(None),
            200 => response
                .json::<Job>()
                .await
                .map(Some)
                .map_err(|e| e.to_string()),
            status => Err(format!(
                "claim answered {status}: {}",
                response.text().await.unwrap_or_default()
            )),
        }
    }

    /// Every [`HEARTBEAT_EVERY`]: renews the leases of held runs, and
    /// passes on cancels and fences.
    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let beat = Heartbeat {
                hello: self.hello(),
                runs: self.held(),
            };
            let sent = self
                .request(reqwest::Method::POST, "/api/v1/runner/heartbeat")
                .timeout(Duration::from_secs(5))
                .json(&beat)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => match r.json::<HeartbeatReply>().await {
                    Ok(reply) => self.obey(reply),
                    Err(e) => warn!(error = %e, "unreadable heartbeat answer"),
                },
                // Its token no longer works: it holds nothing any more.
                Ok(r) if r.status().as_u16() == 401 => {
                    warn!(
                        "heartbeat refused: this runner's token no longer works; stopping its runs"
                    );
                    let held: Vec<String> = self.held().into_iter().map(|h| h.run_id).collect();
                    self.obey(HeartbeatReply {
                        cancel: Vec::new(),
                        fenced: held,
                    });
                }
                Ok(r) => warn!(status = %r.status(), "heartbeat refused"),
                Err(e) => warn!(error = %e, "heartbeat not delivered"),
            }
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                _ = stop.cancelled() => {
                    // Held runs still report until they end.
                    if self.held().is_empty() { return; }
                    tokio::time::sleep(HEARTBEAT_EVERY).await;
                }
            }
        }
    }

    fn obey(&self, reply: HeartbeatReply) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for id in &reply.cancel {
            if let Some(run) = running.get(id) {
                info!(run_id = %id, "cancelled by the server");
                run.cancel.cancel();
            }
        }
        for id in &reply.fenced {
            if let Some(run) = running.get_mut(id) {
                warn!(run_id = %id, "fenced: the server gave this run to another attempt; stopping it");
                run.fenced = true;
                run.cancel.cancel();
            }
        }
    }

    fn is_fenced(&self, run_id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .is_some_and(|r| r.fenced)
    }

    fn fence(&self, run_id: &str) {
        if let Some(run) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(run_id)
        {
            run.fenced = true;
            run.cancel.cancel();
        }
    }

    async fn run_job(self: Arc<Self>, job: Job) {
        let started = Instant::now();
        let cancel = CancellationToken::new();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                job.run_id.clone(),
                Running {
                    epoch: job.epoch,
                    cancel: cancel.clone(),
                    fenced: false,
                    reported: false,
                },
            );
        info!(repo = %job.repo, sha = %job.sha, "took a run");
        let (tx, rx) = mpsc::channel::<RunEvent>(1024);
        let upload = tokio::spawn(self.clone().upload(job.run_id.clone(), job.epoch, rx));
        let checkout = self.config.data_dir.join("work").join(&job.run_id);
        let checking_out = Instant::now();
        let prepared = async {
            self.mirrors
                .fetch(&job.repo, &job.remote, &job.git_ref, &job.sha)
                .await?;
            self.mirrors.checkout(&job.repo, &job.sha, &checkout).await
        }
        .await;
        let run_id = job.run_id.clone();
        match prepared {
            Err(e) => {
                let _ = tx
                    .send(RunEvent::RunError {
                        message: format!("runner could not check out the commit: {e}"),
                    })
                    .await;
                let _ = tx
                    .send(RunEvent::RunFinished {
                        status: slipway_engine::RunStatus::Failed,
                        duration: started.elapsed(),
                    })
                    .await;
            }
            Ok(()) => {
                let _ = tx
                    .send(RunEvent::Phase {
                        phase: "checkout".into(),
                        took: checking_out.elapsed(),
                    })
                    .await;
                let options = RunOptions {
                    run_id: job.run_id.clone(),
                    jobs: job.jobs.max(1),
                    trigger: job.trigger,
                    secrets: job.secrets,
                    workspace: Workspace::Copy(checkout.clone()),
                    env: job.env,
                    skip: job.skip,
                    files: slipway_runner::StepFiles {
                        cache: self.cache.clone(),
                        artifacts: Some(self.config.data_dir.join("artifacts").join(&job.run_id)),
                        shared: Some(Arc::new(ServerCache {
                            http: self.http.clone(),
                            server: self.config.server.trim_end_matches('/').to_string(),
                            token: self.config.token.clone(),
                            run_id: job.run_id.clone(),
                            epoch: job.epoch,
                        })),
                    },
                    cache_scope: job.cache_scope,
                    credentials: job.credentials,
                    limits: job.limits,
                };
                let result = execute(
                    self.backend.clone(),
                    &job.pipeline,
                    options,
                    tx.clone(),
                    cancel,
                )
                .await;
                if let Err(e) = result {
                    let _ = tx
                        .send(RunEvent::RunError {
                            message: e.to_string(),
                        })
                        .await;
                    let _ = tx
                        .send(RunEvent::RunFinished {
                            status: slipway_engine::RunStatus::Failed,
                            duration: started.elapsed(),
                        })
                        .await;
                }
            }
        }
        drop(tx);
        let _ = upload.await;
        if self.is_fenced(&run_id) {
            // `execute` tears down at its end; this covers a fence that
            // came after (or during) that.
            if let Err(e) = self.backend.teardown_run(&run_id).await {
                warn!(error = %e, "cannot remove the containers of a fenced run");
            }
        }
        let _ = tokio::fs::remove_dir_all(&checkout).await;
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&run_id);
        info!(took = ?started.elapsed(), "run done");
    }

    /// Sends one step's artifacts as a tar, with its sha256.
    async fn upload_artifacts(&self, run_id: &str, epoch: u64, step: &str) -> Result<(), String> {
        let dir = self
            .config
            .data_dir
            .join("artifacts")
            .join(run_id)
            .join(step);
        let tar_path = self
            .config
            .data_dir
            .join("artifacts")
            .join(format!(".{run_id}-{step}.tar"));
        let packed = {
            let (dir, tar_path) = (dir.clone(), tar_path.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<String> {
                let file = std::fs::File::create(&tar_path)?;
                let mut writer = slipway_runner::cache::HashingWriter::new(file);
                {
                    let mut tar = tar::Builder::new(&mut writer);
                    tar.append_dir_all(".", &dir)?;
                    tar.finish()?;
                }
                let (_, digest) = writer.finish();
                Ok(digest)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot pack the artifacts of `{step}`: {e}"))?
        };
        let file = tokio::fs::File::open(&tar_path)
            .await
            .map_err(|e| e.to_string())?;
        let sent = self
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/runner/artifacts/{step}"),
            )
            .query(&[("run_id", run_id), ("epoch", &epoch.to_string())])
            .header(crate::protocol::SHA256_HEADER, &packed)
            .timeout(Duration::from_secs(600))
            .body(reqwest::Body::wrap_stream(
                tokio_util::io::ReaderStream::new(file),
            ))
            .send()
            .await;
        let _ = tokio::fs::remove_file(&tar_path).await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!(
                "artifacts answered {}: {}",
                r.status().as_u16(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a run's events in order until the server has stored the last
    /// one, retrying with backoff; returns early when the run is fenced.
    async fn upload(self: Arc<Self>, run_id: String, epoch: u64, mut rx: mpsc::Receiver<RunEvent>) {
        let mut pending = Pending::default();
        let mut uploaded = std::collections::HashSet::new();
        let mut open = true;
        let mut backoff = Duration::from_millis(100);
        loop {
            if self.is_fenced(&run_id) {
                return;
            }
            if open && pending.events.is_empty() {
                match rx.recv().await {
                    Some(e) => pending.push(e),
                    None => open = false,
                }
            }
            // A short wait gathers a batch; live logs stay within ~100 ms.
            let until = tokio::time::Instant::now() + Duration::from_millis(100);
            while open && pending.events.len() < BATCH {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(e)) => pending.push(e),
                    Ok(None) => open = false,
                    Err(_) => break,
                }
            }
            if pending.events.is_empty() {
                if open {
                    continue;
                }
                return;
            }
            let take = pending.events.len().min(BATCH);
            // A step's artifacts reach the server before the event that
            // lists them, so whoever reads the event can download them.
            let steps: Vec<String> = pending
                .events
                .iter()
                .take(take)
                .filter_map(|e| match e {
                    RunEvent::Artifacts { step, .. } if !uploaded.contains(step) => {
                        Some(step.clone())
                    }
                    _ => None,
                })
                .collect();
            let mut artifacts_failed = None;
            for step in steps {
                match self.upload_artifacts(&run_id, epoch, &step).await {
                    Ok(()) => {
                        uploaded.insert(step);
                    }
                    Err(e) => {
                        artifacts_failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = artifacts_failed {
                if e.contains("409") {
                    self.fence(&run_id);
                    return;
                }
                warn!(error = %e, retry_in = ?backoff, "cannot send artifacts; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            let batch = EventBatch {
                run_id: run_id.clone(),
                epoch,
                first: pending.acked,
                events: pending.events.iter().take(take).cloned().collect(),
            };
            pending.in_flight = take;
            let sent = self
                .request(reqwest::Method::POST, "/api/v1/runner/events")
                .timeout(Duration::from_secs(15))
                .json(&batch)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => match r.json::<EventsReply>().await {
                    Ok(reply) => {
                        let finished = pending
                            .events
                            .iter()
                            .take(reply.acked.saturating_sub(pending.acked) as usize)
                            .any(|e| matches!(e, RunEvent::RunFinished { .. }));
                        if finished
                            && let Some(run) = self
                                .running
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_mut(&run_id)
                        {
                            run.reported = true;
                        }
                        pending.ack(reply.acked);
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    Err(e) => warn!(error = %e, "unreadable events answer"),
                },
                Ok(r) if r.status().as_u16() == 409 => {
                    warn!("fenced while sending events: dropping the rest");
                    self.fence(&run_id);
                    return;
                }
                Ok(r) => warn!(status = %r.status(), "events refused; retrying"),
                Err(e) => warn!(error = %e, retry_in = ?backoff, "cannot send events; retrying"),
            }
            pending.in_flight = 0;
            // Keep reading while the server is away, so the run never
            // blocks on a full channel; the buffer bounds memory.
            let wait = tokio::time::Instant::now() + backoff;
            while open {
                match tokio::time::timeout_at(wait, rx.recv()).await {
                    Ok(Some(e)) => pending.push(e),
                    Ok(None) => open = false,
                    Err(_) => break,
                }
            }
            tokio::time::sleep_until(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// The server's directory caches, as one run may use them: the server
/// decides which scopes it reads and the one it writes.
#[derive(Debug)]
struct ServerCache {
    http: reqwest::Client,
    server: String,
    token: String,
    run_id: String,
    epoch: u64,
}

impl slipway_runner::step_files::SharedCache for ServerCache {
    fn fetch<'a>(
        &'a self,
        key: &'a str,
        prefixes: &'a [String],
        dest: &'a std::path::Path,
    ) -> slipway_runner::step_files::BoxFuture<
        'a,
        Result<Option<slipway_runner::cache::Entry>, String>,
    > {
        Box::pin(async move {
            let found = self
                .http
                .post(format!("{}/api/v1/runner/cache/lookup", self.server))
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(30))
                .json(&crate::protocol::CacheLookup {
                    run_id: self.run_id.clone(),
                    epoch: self.epoch,
                    key: key.to_string(),
                    prefixes: prefixes.to_vec(),
                })
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let entry: slipway_runner::cache::Entry = match found.status().as_u16() {
                204 => return Ok(None),
                200 => found.json().await.map_err(|e| e.to_string())?,
                s => {
                    return Err(format!(
                        "lookup answered {s}: {}",
                        found.text().await.unwrap_or_default()
                    ));
                }
            };
            let mut blob = self
                .http
                .get(format!(
                    "{}/api/v1/runner/cache/blob/{}",
                    self.server, entry.blob
                ))
                .query(&[
                    ("run_id", self.run_id.as_str()),
                    ("epoch", &self.epoch.to_string()),
                ])
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !blob.status().is_success() {
                return Err(format!("blob answered {}", blob.status().as_u16()));
            }
            use sha2::Digest;
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::create(dest)
                .await
                .map_err(|e| e.to_string())?;
            let mut hasher = sha2::Sha256::new();
            while let Some(chunk) = blob.chunk().await.map_err(|e| e.to_string())? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            file.flush().await.map_err(|e| e.to_string())?;
            let got = hex::encode(hasher.finalize());
            if got != entry.blob {
                let _ = tokio::fs::remove_file(dest).await;
                return Err(format!("the blob's sha256 is {got}, not {}", entry.blob));
            }
            Ok(Some(entry))
        })
    }

    fn publish<'a>(
        &'a self,
        key: &'a str,
        archive: &'a std::path::Path,
        blob: &'a str,
    ) -> slipway_runner::step_files::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let file = tokio::fs::File::open(archive)
                .await
                .map_err(|e| e.to_string())?;
            let sent = self
                .http
                .put(format!("{}/api/v1/runner/cache/entry", self.server))
                .query(&[
                    ("run_id", self.run_id.as_str()),
                    ("epoch", &self.epoch.to_string()),
                    ("key", key),
                ])
                .bearer_auth(&self.token)
                .header(crate::protocol::SHA256_HEADER, blob)
                .timeout(Duration::from_secs(600))
                .body(reqwest::Body::wrap_stream(
                    tokio_util::io::ReaderStream::new(file),
                ))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if sent.status().is_success() {
                Ok(())
            } else {
                Err(format!(
                    "the server answered {}: {}",
                    sent.status().as_u16(),
                    sent.text().await.unwrap_or_default()
                ))
            }
        })
    }
}

/// A run's events not yet stored by the server, `acked..` in order.
#[derive(Default)]
struct Pending {
    events: VecDeque<RunEvent>,
    /// The number of the first of `events`.
    acked: u64,
    /// How many at the front were sent in the batch now in flight: never
    /// dropped, as the server may have stored them.
    in_flight: usize,
    /// Lines the newest unsent marker stands for.
    marked: u64,
}

const DROPPED: &str = "[slipway runner]";

fn is_marker(event: &RunEvent) -> bool {
    matches!(event, RunEvent::Log { stream: LogStream::System, line, .. } if line.starts_with(DROPPED))
}

fn marker(step: String, lines: u64) -> RunEvent {
    RunEvent::Log {
        step,
        stream: LogStream::System,
        line: format!("{DROPPED} {lines} lines dropped while the server could not be reached"),
    }
}

impl Pending {
    /// Queues an event; past [`MAX_BUFFERED`], the oldest unsent log line
    /// goes, and a marker where the first of them was says how many.
    fn push(&mut self, event: RunEvent) {
        self.events.push_back(event);
        if self.events.len() <= MAX_BUFFERED {
            return;
        }
        let is_log = |e: &RunEvent| matches!(e, RunEvent::Log { .. });
        let Some(first) = self
            .events
            .iter()
            .skip(self.in_flight)
            .position(is_log)
            .map(|i| i + self.in_flight)
        else {
            return;
        };
        // The line after the first one (or after the marker) goes.
        let Some(next) = self
            .events
            .iter()
            .skip(first + 1)
            .position(is_log)
            .map(|i| i + first + 1)
        else {
            return;
        };
        self.events.remove(next);
        if is_marker(&self.events[first]) {
            self.marked += 1;
        } else {
            // The first one becomes the marker: two lines gone.
            self.marked = 2;
        }
        if let RunEvent::Log { step, .. } = &self.events[first] {
            self.events[first] = marker(step.clone(), self.marked);
        }
    }

    fn ack(&mut self, acked: u64) {
        let n = acked.saturating_sub(self.acked) as usize;
        for _ in 0..n.min(self.events.len()) {
            self.events.pop_front();
        }
        self.acked = acked.max(self.acked);
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> RunEvent {
        RunEvent::Log {
            step: "s".into(),
            stream: LogStream::Stdout,
            line: n.to_string(),
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_unsent_lines_behind_one_marker_and_keeps_the_rest() {
        let mut p = Pending::default();
        p.push(RunEvent::StepStarted {
            step: "s".into(),
            attempt: 1,
        });
        for n in 0..MAX_BUFFERED + 10 {
            p.push(line(n));
            if n == 0 {
                // The first line is in flight: it may be stored already.
                p.in_flight = 2;
            }
        }
        assert_eq!(p.events.len(), MAX_BUFFERED);
        assert!(
            matches!(p.events[0], RunEvent::StepStarted { .. }),
            "never dropped"
        );
        assert_eq!(p.events[1], line(0), "in flight: kept");
        assert_eq!(p.events[2], marker("s".into(), 12));
        assert_eq!(
            p.events[3],
            line(13),
            "lines 1..=12 went: the marker says 12"
        );
        assert_eq!(p.events.back(), Some(&line(MAX_BUFFERED + 9)));
        p.ack(2);
        assert_eq!((p.acked, p.events.len()), (2, MAX_BUFFERED - 2));
        assert!(is_marker(&p.events[0]));
    }
}
