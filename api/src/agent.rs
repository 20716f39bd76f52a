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
    Ok(())
}

impl<B: Backend> Agent<B> {
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
            .map(|(id, r)| Held {
                run_id: id.clone(),
                epoch: r.epoch,
            })
            .collect()
    }

    async fn claim(&self) -> Result<Option<Job>, String> {
        let response = self
            .http
            .post(self.url("/api/v1/runner/claim"))
            .bearer_auth(&self.config.token)
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
                .http
                .post(self.url("/api/v1/runner/heartbeat"))
                .bearer_auth(&self.config.token)
                .timeout(Duration::from_secs(5))
                .json(&beat)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => match r.json::<HeartbeatReply>().await {
                    Ok(reply) => self.obey(reply),
                    Err(e) => warn!(error = %e, "unreadable heartbeat answer"),
                },
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
                },
            );
        info!(repo = %job.repo, sha = %job.sha, "took a run");
        let (tx, rx) = mpsc::channel::<RunEvent>(1024);
        let upload = tokio::spawn(self.clone().upload(job.run_id.clone(), job.epoch, rx));
        let checkout = self.config.data_dir.join("work").join(&job.run_id);
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

    /// Sends a run's events in order until the server has stored the last
    /// one, retrying with backoff; returns early when the run is fenced.
    async fn upload(self: Arc<Self>, run_id: String, epoch: u64, mut rx: mpsc::Receiver<RunEvent>) {
        let mut pending = Pending::default();
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
            let batch = EventBatch {
                run_id: run_id.clone(),
                epoch,
                first: pending.acked,
                events: pending.events.iter().take(take).cloned().collect(),
            };
            pending.in_flight = take;
            let sent = self
                .http
                .post(self.url("/api/v1/runner/events"))
                .bearer_auth(&self.config.token)
                .timeout(Duration::from_secs(15))
                .json(&batch)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => match r.json::<EventsReply>().await {
                    Ok(reply) => {
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
        if is_marker(&self.events[first]) {
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
            self.marked += 1;
            if let RunEvent::Log { step, .. } = &self.events[first] {
                self.events[first] = marker(step.clone(), self.marked);
            }
        } else if let RunEvent::Log { step, .. } = &self.events[first] {
            self.marked = 1;
            self.events[first] = marker(step.clone(), 1);
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
        assert_eq!(p.events[2], marker("s".into(), 11));
        assert_eq!(
            p.events[3],
            line(12),
            "lines 1..=11 went: the marker says 11"
        );
        assert_eq!(p.events.back(), Some(&line(MAX_BUFFERED + 9)));
        p.ack(2);
        assert_eq!((p.acked, p.events.len()), (2, MAX_BUFFERED - 2));
        assert!(is_marker(&p.events[0]));
    }
}
