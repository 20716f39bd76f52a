//! The embedded store: runs, their steps and their logs, in sled.
//!
//! Key layout (private to this module):
//! - `runs`:  run id -> [`RunRecord`] as JSON
//! - `order`: created_ms (big endian) ++ run id -> ()   (newest-first listing)
//! - `logs`:  run id ++ 0 ++ step ++ 0 ++ seq (big endian) -> offset (u64 big
//!   endian) ++ chunk of lines
//! - `events`: run id ++ 0 ++ seq (big endian) -> [`Event`] as JSON (a log
//!   event's text is not repeated: it is the `logs` chunk with the same seq)
//! - `feed`:  seq (big endian) -> run id, for run-level events of every run
//! - promotions, environments and the audit log: see [`promotions`]
//! - `deliveries`: provider ++ ":" ++ delivery id -> run id
//! - `queue`: created_ms (big endian) ++ run id -> ()   (accepted, not started yet)
//! - previews: see [`previews`]
//! - secrets set at run time, sealed: see [`secrets`]
//! - registered remote runners: see [`runners`]
//!
//! Statuses are the enums of [`status`], stored as their snake_case words.
//!
//! Retention: [`Store::delete_run`] removes an ended run with its steps,
//! logs and events in one transaction, unless something still needs it
//! ([`Retained`]). Delivery keys stay: they are what refuses a replayed
//! webhook, however old.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

mod previews;
mod promotions;
mod runners;
mod secrets;
mod status;
pub use previews::{PreviewChange, PreviewRecord};
pub use promotions::{AuditEntry, Decision, EnvState, Promotion, Refused};
pub use runners::{Lease, RunnerRecord, token_hash};
pub use secrets::{SECRET_EVENTS, SecretFilter, SecretRecord, SecretScope};
pub use status::{PromotionStatus, RunStatus, StepStatus};

/// Live events buffered per subscriber; a subscriber that falls further
/// behind reads the rest back from the store.
const LIVE_EVENTS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data dir `{path}` is in use by another slipway process (use --data-dir for a separate one)"
    )]
    Locked { path: PathBuf },
    #[error("cannot open the store in `{path}`: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A transaction that should refuse nothing did.
    #[error("store: a write was refused: {0}")]
    Refused(String),
    #[error("store: record `{key}` is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no run matches `{0}` (see `slipway runs`)")]
    NotFound(String),
    #[error("invalid cursor `{0}`: pass the `next` of a previous page")]
    BadCursor(String),
    #[error("`{prefix}` matches several runs: {}", .matches.join(", "))]
    Ambiguous {
        prefix: String,
        matches: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    /// The pipeline file, as given.
    pub file: String,
    pub event: String,
    pub branch: Option<String>,
    pub status: RunStatus,
    pub created_ms: u64,
    pub finished_ms: Option<u64>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    /// What a server run builds; `None` for local runs.
    #[serde(default)]
    pub source: Option<SourceRecord>,
    /// Things that went wrong around the run without failing it (reporting).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The run this one reruns, if it is a rerun.
    #[serde(default)]
    pub rerun: Option<Rerun>,
    /// A promotion's deploy run: only the pipeline's deploy steps for
    /// this environment run.
    #[serde(default)]
    pub deploy: Option<Deploy>,
    /// Whether the run's code was trusted when it started, and why: decided
    /// once, so the API shows what the run had even if the config changed.
    #[serde(default)]
    pub trust: Option<Trust>,
    /// The runner labels its pipeline asks for, once the server has read
    /// it (`None`: not read yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<Vec<String>>,
    /// The remote runner holding this run while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Where the time before the first step went, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
}

/// How long one phase of starting a run took (see `RunEvent::Phase`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub phase: String,
    pub micros: u64,
}

/// Whether a run's code is the repository's own (`runs::trust` decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    pub trusted: bool,
    pub why: String,
}

impl RunRecord {
    /// A run record with no steps, source, notes, rerun or deploy yet:
    /// what every kind of run (local, queued, test) starts from.
    pub fn new(
        id: &str,
        pipeline: &str,
        file: &str,
        event: &str,
        branch: Option<String>,
        status: RunStatus,
    ) -> RunRecord {
        RunRecord {
            id: id.into(),
            pipeline: pipeline.into(),
            file: file.into(),
            event: event.into(),
            branch,
            status,
            created_ms: crate::ids::now_ms(),
            finished_ms: None,
            error: None,
            steps: Vec::new(),
            source: None,
            notes: Vec::new(),
            rerun: None,
            deploy: None,
            trust: None,
            runs_on: None,
            lease: None,
            phases: Vec::new(),
        }
    }
}

impl StepRecord {
    /// A step that has not started.
    pub fn pending(name: &str, needs: &[String]) -> StepRecord {
        StepRecord {
            name: name.into(),
            needs: needs.to_vec(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deploy {
    pub environment: String,
    /// `repository@sha256:...` as promoted (`SLIPWAY_IMAGE`).
    pub image: String,
    pub promotion: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rerun {
    pub of: String,
    /// Only the steps that did not succeed (and what they need) run again.
    pub failed_only: bool,
}

/// The commit a server run builds, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `owner/name`.
    pub repo: String,
    pub git_ref: String,
    pub sha: String,
    pub tag: Option<String>,
    pub pull_request: Option<u64>,
    pub pr_target_branch: Option<String>,
    pub from_fork: bool,
    /// A pull request's head repository (`owner/name`), where the forge
    /// said: whose fork it is, for `trusted_pull_requests`.
    #[serde(default)]
    pub head_repo: Option<String>,
    pub delivery: Option<String>,
    /// The forge login of who wrote the change, where the webhook said.
    #[serde(default)]
    pub author: Option<String>,
}

/// What accepting a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    New(String),
    /// The forge redelivered; this is the run the first delivery made.
    Duplicate(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub needs: Vec<String>,
    pub status: StepStatus,
    pub exit_code: Option<i64>,
    pub attempts: u32,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// What a build step pushed: `repository@sha256:...`.
    #[serde(default)]
    pub output: Option<String>,
    /// Files the step kept: workspace-relative path and size.
    #[serde(default)]
    pub artifacts: Vec<(String, u64)>,
}

/// Something that happened to a run. `seq` grows across the whole store,
/// so a client that saw event `seq` resumes with what came after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub run: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The run was created, or its status or error changed.
    Run {
        status: RunStatus,
        pipeline: String,
        event: String,
        branch: Option<String>,
        repo: Option<String>,
        git_ref: Option<String>,
        sha: Option<String>,
        pull_request: Option<u64>,
        created_ms: u64,
        finished_ms: Option<u64>,
        error: Option<String>,
    },
    /// A step's state changed.
    Step {
        step: String,
        status: StepStatus,
        exit_code: Option<i64>,
        attempts: u32,
        started_ms: Option<u64>,
        finished_ms: Option<u64>,
    },
    /// Something went wrong around the run without failing it (reporting).
    Note { text: String },
    /// Lines appended to a step's log at byte `offset`.
    Log {
        step: String,
        offset: u64,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
    },
}

/// Why a run is kept however old it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Queued or running: it may still change.
    Active(RunStatus),
    /// An environment holds the image it built.
    Environment { repo: String, environment: String },
    /// An open promotion refers to it.
    Promotion(String),
    /// A pull request's preview shows what it built.
    Preview { repo: String, number: u64 },
}

impl std::fmt::Display for Retained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retained::Active(status) => write!(f, "it is {status}"),
            Retained::Environment { repo, environment } => {
                write!(f, "environment {environment} of {repo} holds its image")
            }
            Retained::Promotion(id) => write!(f, "open promotion {id} refers to it"),
            Retained::Preview { repo, number } => {
                write!(f, "the preview of {repo}#{number} shows its image")
            }
        }
    }
}

/// What deleting a run removed from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedRun {
    pub id: String,
    /// Bytes of log text.
    pub log_bytes: u64,
}

impl Event {
    /// A run-level event with a status the run never leaves.
    pub fn ends_run(&self) -> bool {
        matches!(&self.kind, EventKind::Run { status, .. } if status.is_ended())
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    runs: sled::Tree,
    order: sled::Tree,
    logs: sled::Tree,
    deliveries: sled::Tree,
    queue: sled::Tree,
    events: sled::Tree,
    feed: sled::Tree,
    promotions: sled::Tree,
    open_promotions: sled::Tree,
    environments: sled::Tree,
    env_history: sled::Tree,
    audit: sled::Tree,
    previews: sled::Tree,
    secrets: sled::Tree,
    runners: sled::Tree,
    live: broadcast::Sender<Arc<Event>>,
    /// Audit entries as they are written: every change to a promotion or
    /// an environment writes one, so this is what a board follows.
    audit_live: broadcast::Sender<Arc<AuditEntry>>,
    /// Held from numbering an audit entry until it is flushed and
    /// announced, so entries become durable and are announced in number
    /// order and a follower can resume after a number.
    audit_order: Arc<Mutex<()>>,
    /// The newest audit entry known to be flushed.
    audit_flushed: Arc<std::sync::atomic::AtomicU64>,
    preview_live: broadcast::Sender<PreviewChange>,
    /// Held while a change is written and its events numbered and sent, so
    /// events are stored and delivered in the order of the changes.
    emitting: Arc<Mutex<()>>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| match &source {
                sled::Error::Io(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("lock") =>
                {
                    StoreError::Locked {
                        path: dir.to_path_buf(),
                    }
                }
                _ => StoreError::Open {
                    path: dir.to_path_buf(),
                    source,
                },
            })?;
        let audit = db.open_tree("audit")?;
        // What is on disk at start-up is durable.
        let audit_flushed = audit
            .last()?
            .and_then(|(k, _)| k.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        Ok(Store {
            runs: db.open_tree("runs")?,
            order: db.open_tree("order")?,
            logs: db.open_tree("logs")?,
            deliveries: db.open_tree("deliveries")?,
            queue: db.open_tree("queue")?,
            events: db.open_tree("events")?,
            feed: db.open_tree("feed")?,
            promotions: db.open_tree("promotions")?,
            open_promotions: db.open_tree("open_promotions")?,
            environments: db.open_tree("environments")?,
            env_history: db.open_tree("env_history")?,
            audit,
            previews: db.open_tree("previews")?,
            secrets: db.open_tree("secrets")?,
            runners: db.open_tree("runners")?,
            live: broadcast::channel(LIVE_EVENTS).0,
            audit_live: broadcast::channel(LIVE_EVENTS).0,
            audit_order: Arc::default(),
            audit_flushed: Arc::new(audit_flushed.into()),
            preview_live: broadcast::channel(LIVE_EVENTS).0,
            emitting: Arc::default(),
            db,
        })
    }

    /// Events as they are emitted. Subscribe before reading stored events
    /// so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// A run's events after `after`, oldest first, log text included.
    pub fn run_events_after(&self, run: &str, after: u64) -> Result<Vec<Event>, StoreError> {
        self.run_events_page(run, after, usize::MAX)
    }

    /// At most `limit` of a run's events after `after`, oldest first: a
    /// long log is replayed page by page, so its first lines go out before
    /// the last are read.
    pub fn run_events_page(
        &self,
        run: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = event_prefix(run);
        let mut start = prefix.clone();
        start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
        let mut end = prefix;
        end.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in self.events.range(start..=end).take(limit) {
            let (k, v) = item?;
            out.push(self.decode_event(&k, &v)?);
        }
        Ok(out)
    }

    /// Run-level events of every run after `after`, oldest first.
    pub fn feed_after(&self, after: u64) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for item in self.feed.range(after.saturating_add(1).to_be_bytes()..) {
            let (seq, run) = item?;
            let mut key = event_prefix(&String::from_utf8_lossy(&run));
            key.extend_from_slice(&seq);
            if let Some(v) = self.events.get(&key)? {
                out.push(self.decode_event(&key, &v)?);
            }
        }
        Ok(out)
    }

    /// The newest event's seq (0 when there is none).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.feed.last()? {
            Some((k, _)) => seq_of(&k),
            None => 0,
        })
    }

    fn decode_event(&self, key: &[u8], bytes: &[u8]) -> Result<Event, StoreError> {
        let mut event: Event =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
                key: String::from_utf8_lossy(key).into_owned(),
                source,
            })?;
        if let EventKind::Log { step, text, .. } = &mut event.kind {
            let mut chunk_key = log_prefix(&event.run, step);
            chunk_key.extend_from_slice(&event.seq.to_be_bytes());
            if let Some(chunk) = self.logs.get(chunk_key)? {
                *text = String::from_utf8_lossy(chunk.get(8..).unwrap_or_default()).into_owned();
            }
        }
        Ok(event)
    }

    /// Numbers, stores and sends one event. Callers hold `emitting`.
    fn emit(&self, run: &str, kind: EventKind, seq: Option<u64>) -> Result<(), StoreError> {
        let seq = match seq {
            Some(s) => s,
            None => self.next_seq()?,
        };
        let event = Event {
            seq,
            run: run.into(),
            kind,
        };
        let mut key = event_prefix(run);
        key.extend_from_slice(&seq.to_be_bytes());
        // The stored log event points at its chunk instead of copying it.
        let stored = match &event.kind {
            EventKind::Log { step, offset, .. } => serde_json::to_vec(&Event {
                seq,
                run: run.into(),
                kind: EventKind::Log {
                    step: step.clone(),
                    offset: *offset,
                    text: String::new(),
                },
            }),
            _ => serde_json::to_vec(&event),
        }
        .map_err(|source| StoreError::Corrupt {
            key: run.into(),
            source,
        })?;
        self.events.insert(key, stored)?;
        if matches!(event.kind, EventKind::Run { .. }) {
            self.feed.insert(seq.to_be_bytes(), run.as_bytes())?;
        }
        // No subscriber is fine: the event is stored for whoever comes.
        let _ = self.live.send(Arc::new(event));
        Ok(())
    }

    /// Emits what changed between two versions of a run.
    fn emit_changes(&self, old: Option<&RunRecord>, new: &RunRecord) -> Result<(), StoreError> {
        if old.is_none_or(|o| o.status != new.status || o.error != new.error) {
            let source = new.source.as_ref();
            self.emit(
                &new.id,
                EventKind::Run {
                    status: new.status,
                    pipeline: new.pipeline.clone(),
                    event: new.event.clone(),
                    branch: new.branch.clone(),
                    repo: source.map(|s| s.repo.clone()),
                    git_ref: source.map(|s| s.git_ref.clone()),
                    sha: source.map(|s| s.sha.clone()),
                    pull_request: source.and_then(|s| s.pull_request),
                    created_ms: new.created_ms,
                    finished_ms: new.finished_ms,
                    error: new.error.clone(),
                },
                None,
            )?;
        }
        let noted = old.map_or(0, |o| o.notes.len());
        for text in new.notes.iter().skip(noted) {
            self.emit(&new.id, EventKind::Note { text: text.clone() }, None)?;
        }
        for step in &new.steps {
            let before = old.and_then(|o| o.steps.iter().find(|s| s.name == step.name));
            if before != Some(step) {
                self.emit(
                    &new.id,
                    EventKind::Step {
                        step: step.name.clone(),
                        status: step.status,
                        exit_code: step.exit_code,
                        attempts: step.attempts,
                        started_ms: step.started_ms,
                        finished_ms: step.finished_ms,
                    },
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// From 1, so that 0 can mean "from the start" to a resuming client.
    fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guard protects no data, so a panic elsewhere leaves nothing torn.
        self.emitting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes everything written so far durable. Called before telling a
    /// user something is kept.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// [`Store::flush`] without blocking an async worker.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(run).map_err(|source| StoreError::Corrupt {
            key: run.id.clone(),
            source,
        })?;
        let _emitting = self.lock();
        let old = self.runs.insert(run.id.as_bytes(), json)?;
        if old.is_none() {
            self.order.insert(order_key(run.created_ms, &run.id), &[])?;
        }
        let old = old.and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok());
        self.emit_changes(old.as_ref(), run)
    }

    pub fn get_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        match self.runs.get(id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(id, &bytes).map(Some),
        }
    }

    /// A run by id or unique id prefix.
    pub fn find_run(&self, prefix: &str) -> Result<RunRecord, StoreError> {
        if let Some(run) = self.get_run(prefix)? {
            return Ok(run);
        }
        let mut matches = Vec::new();
        for item in self.runs.scan_prefix(prefix.as_bytes()).take(6) {
            let (k, v) = item?;
            matches.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        match matches.len() {
            0 => Err(StoreError::NotFound(prefix.into())),
            1 => decode(&matches[0].0, &matches[0].1),
            _ => Err(StoreError::Ambiguous {
                prefix: prefix.into(),
                matches: matches.into_iter().map(|(k, _)| k).collect(),
            }),
        }
    }

    /// Applies `change` to a stored run.
    pub fn update_run(
        &self,
        id: &str,
        change: impl FnOnce(&mut RunRecord),
    ) -> Result<RunRecord, StoreError> {
        let mut run = self
            .get_run(id)?
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        change(&mut run);
        self.put_run(&run)?;
        Ok(run)
    }

    /// Newest first.
    pub fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.order.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[8..]).into_owned();
            if let Some(run) = self.get_run(&id)? {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// Stores a new run and queues it in one transaction, then flushes:
    /// once this returns, the run survives a crash. With the forge's
    /// `delivery` key, a delivery seen before queues nothing and returns the
    /// run it made.
    pub fn enqueue(&self, delivery: Option<&str>, run: &RunRecord) -> Result<Accepted, StoreError> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        let json = serde_json::to_vec(run).map_err(|source| StoreError::Corrupt {
            key: run.id.clone(),
            source,
        })?;
        let order = order_key(run.created_ms, &run.id);
        let _emitting = self.lock();
        let outcome = (&self.deliveries, &self.runs, &self.order, &self.queue)
            .transaction(|(deliveries, runs, order_tree, queue)| {
                if let Some(key) = delivery {
                    if let Some(existing) = deliveries.get(key.as_bytes())? {
                        return Ok(Accepted::Duplicate(
                            String::from_utf8_lossy(&existing).into_owned(),
                        ));
                    }
                    deliveries.insert(key.as_bytes(), run.id.as_bytes())?;
                }
                runs.insert(run.id.as_bytes(), json.clone())?;
                order_tree.insert(order.clone(), &[])?;
                queue.insert(order.clone(), &[])?;
                Ok::<_, ConflictableTransactionError<()>>(Accepted::New(run.id.clone()))
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::Sled(sled::Error::Unsupported("aborted".into()))
                }
            })?;
        if matches!(outcome, Accepted::New(_)) {
            self.emit_changes(None, run)?;
        }
        self.flush()?;
        Ok(outcome)
    }

    /// Changes a run atomically, only if its status is one of `from`, and
    /// takes it off the queue. Returns the run as changed, or `None` when its
    /// status was something else (someone else got there first).
    pub fn transition(
        &self,
        id: &str,
        from: &[RunStatus],
        change: impl Fn(&mut RunRecord),
    ) -> Result<Option<RunRecord>, StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, abort};
        let _emitting = self.lock();
        // The version the winning attempt changed, for its events.
        let before = std::cell::RefCell::new(None);
        let outcome = (&self.runs, &self.queue).transaction(|(runs, queue)| {
            let Some(bytes) = runs.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut run: RunRecord = match serde_json::from_slice(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    return abort(StoreError::Corrupt {
                        key: id.into(),
                        source: e,
                    });
                }
            };
            if !from.contains(&run.status) {
                return Ok(None);
            }
            *before.borrow_mut() = Some(run.clone());
            change(&mut run);
            let json = serde_json::to_vec(&run).map_err(|e| {
                ConflictableTransactionError::Abort(StoreError::Corrupt {
                    key: id.into(),
                    source: e,
                })
            })?;
            runs.insert(id.as_bytes(), json)?;
            queue.remove(order_key(run.created_ms, &run.id))?;
            Ok(Some(run))
        });
        match outcome {
            Ok(Some(run)) => {
                self.emit_changes(before.borrow().as_ref(), &run)?;
                Ok(Some(run))
            }
            Ok(None) => Ok(None),
            Err(sled::transaction::TransactionError::Abort(e)) => Err(e),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }

    /// Queued runs, oldest first.
    pub fn queued(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self.queue.iter() {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k[8..]).into_owned());
        }
        Ok(out)
    }

    /// Takes a run off the queue (it started, or will never).
    pub fn dequeue(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.queue.remove(order_key(run.created_ms, &run.id))?;
        Ok(())
    }

    /// A page of runs, newest first, keeping those `keep` accepts; `cursor` is
    /// the `next` of the previous page. Returns the page and the next cursor.
    pub fn page_runs(
        &self,
        limit: usize,
        cursor: Option<&str>,
        keep: impl Fn(&RunRecord) -> bool,
    ) -> Result<(Vec<RunRecord>, Option<String>), StoreError> {
        let upper = match cursor {
            Some(c) => Some(decode_cursor(c).ok_or_else(|| StoreError::BadCursor(c.to_string()))?),
            None => None,
        };
        let iter = match &upper {
            Some(u) => self.order.range(..u.as_slice()),
            None => self.order.iter(),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (k, _) = item?;
            let id = String::from_utf8_lossy(&k[8..]).into_owned();
            let Some(run) = self.get_run(&id)? else {
                continue;
            };
            if keep(&run) {
                out.push(run);
                if out.len() == limit {
                    let next = encode_cursor(&k);
                    return Ok((out, Some(next)));
                }
            }
        }
        Ok((out, None))
    }

    /// A step's log from byte `offset` on, and the offset to ask for next.
    pub fn read_log_from(
        &self,
        run: &str,
        step: &str,
        offset: usize,
    ) -> Result<(String, usize), StoreError> {
        // Chunks are whole lines of UTF-8, so starting at a chunk boundary
        // is safe; only the first chunk may need trimming.
        let mut out: Vec<u8> = Vec::new();
        let mut end = 0;
        let mut first = None;
        for item in self.logs.scan_prefix(log_prefix(run, step)) {
            let (_, v) = item?;
            let (at, text) = split_chunk(&v);
            end = at + text.len() as u64;
            if end as usize <= offset {
                continue;
            }
            if first.is_none() {
                first = Some(at as usize);
            }
            out.extend_from_slice(text);
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let Some(first) = first else {
            return Ok((String::new(), end as usize));
        };
        let mut start = offset.saturating_sub(first).min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        Ok((text[start..].to_string(), end as usize))
    }

    /// Appends a chunk of log text (whole lines) to a step's log, and emits
    /// it as a log event.
    pub fn append_log(&self, run: &str, step: &str, chunk: &str) -> Result<(), StoreError> {
        let _emitting = self.lock();
        let prefix = log_prefix(run, step);
        let offset = match self.logs.scan_prefix(&prefix).next_back() {
            Some(item) => {
                let (_, v) = item?;
                let (at, text) = split_chunk(&v);
                at + text.len() as u64
            }
            None => 0,
        };
        let seq = self.next_seq()?;
        let mut key = prefix;
        key.extend_from_slice(&seq.to_be_bytes());
        let mut value = Vec::with_capacity(8 + chunk.len());
        value.extend_from_slice(&offset.to_be_bytes());
        value.extend_from_slice(chunk.as_bytes());
        self.logs.insert(key, value)?;
        self.emit(
            run,
            EventKind::Log {
                step: step.into(),
                offset,
                text: chunk.into(),
            },
            Some(seq),
        )
    }

    /// Ids of the runs created before `cutoff_ms`, oldest first: every
    /// run that can have ended before it. Ids only, so a first sweep of a
    /// years-old store does not hold every record at once.
    pub fn runs_created_before(&self, cutoff_ms: u64) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self.order.range(..cutoff_ms.to_be_bytes().as_slice()) {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k[8..]).into_owned());
        }
        Ok(out)
    }

    /// Runs that something other than their age keeps: those an
    /// environment holds, an open promotion or a preview refers to.
    pub fn run_holds(&self) -> Result<std::collections::HashMap<String, Retained>, StoreError> {
        let mut holds = std::collections::HashMap::new();
        for item in self.environments.iter() {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let state: EnvState =
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: key.clone(),
                    source,
                })?;
            let (repo, environment) = key.split_once('\0').unwrap_or((&key, ""));
            if let Some(run) = state.run {
                holds.insert(
                    run,
                    Retained::Environment {
                        repo: repo.into(),
                        environment: environment.into(),
                    },
                );
            }
        }
        for item in self.open_promotions.iter() {
            let (_, id) = item?;
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(run) = self.promotion(&id)?.and_then(|p| p.run) {
                holds.insert(run, Retained::Promotion(id));
            }
        }
        for p in self.previews()? {
            holds.insert(
                p.run,
                Retained::Preview {
                    repo: p.repo,
                    number: p.number,
                },
            );
        }
        Ok(holds)
    }

    /// Bytes of a run's log text, every step's.
    pub fn log_bytes(&self, run: &str) -> Result<u64, StoreError> {
        let mut total = 0;
        for item in self.logs.scan_prefix(event_prefix(run)) {
            let (_, v) = item?;
            total += split_chunk(&v).1.len() as u64;
        }
        Ok(total)
    }

    /// Deletes an ended run with its steps, logs and events in one
    /// transaction; a run still queued or running, or one [`run_holds`]
    /// names, is kept and the answer says why. Not flushed: a sweep
    /// flushes once after many.
    ///
    /// [`run_holds`]: Store::run_holds
    pub fn delete_run(&self, id: &str) -> Result<Result<DeletedRun, Retained>, StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, abort};
        // Every event and log chunk is written under this lock, so none
        // can land between reading the run's keys and removing them.
        let _emitting = self.lock();
        let held = self.run_holds()?.remove(id);
        let prefix = event_prefix(id);
        let mut events = Vec::new();
        for item in self.events.scan_prefix(&prefix) {
            events.push(item?.0);
        }
        let mut chunks = Vec::new();
        let mut log_bytes = 0;
        for item in self.logs.scan_prefix(&prefix) {
            let (k, v) = item?;
            log_bytes += split_chunk(&v).1.len() as u64;
            chunks.push(k);
        }
        let outcome = (
            &self.runs,
            &self.order,
            &self.queue,
            &self.events,
            &self.feed,
            &self.logs,
        )
            .transaction(|(runs, order, queue, events_tree, feed, logs)| {
                let Some(bytes) = runs.get(id.as_bytes())? else {
                    return Ok(None);
                };
                let run = match decode(id, &bytes) {
                    Ok(run) => run,
                    Err(e) => return abort(e),
                };
                if !run.status.is_ended() {
                    return Ok(Some(Err(Retained::Active(run.status))));
                }
                if let Some(why) = &held {
                    return Ok(Some(Err(why.clone())));
                }
                runs.remove(id.as_bytes())?;
                let at = order_key(run.created_ms, id);
                order.remove(at.clone())?;
                queue.remove(at)?;
                for key in &events {
                    events_tree.remove(key)?;
                    // A run-level event is also in the feed, under its seq.
                    feed.remove(&seq_of(key).to_be_bytes())?;
                }
                for key in &chunks {
                    logs.remove(key)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(Some(Ok(())))
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        match outcome {
            None => Err(StoreError::NotFound(id.into())),
            Some(Err(why)) => Ok(Err(why)),
            Some(Ok(())) => Ok(Ok(DeletedRun {
                id: id.into(),
                log_bytes,
            })),
        }
    }

    /// A step's whole log.
    pub fn read_log(&self, run: &str, step: &str) -> Result<String, StoreError> {
        let mut out = Vec::new();
        for item in self.logs.scan_prefix(log_prefix(run, step)) {
            let (_, v) = item?;
            out.extend_from_slice(split_chunk(&v).1);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(c: &str) -> Option<Vec<u8>> {
    if c.len() < 18 || !c.len().is_multiple_of(2) {
        return None;
    }
    (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok())
        .collect()
}

fn decode(key: &str, bytes: &[u8]) -> Result<RunRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.into(),
        source,
    })
}

fn order_key(created_ms: u64, id: &str) -> Vec<u8> {
    let mut key = created_ms.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// A stored log chunk: the byte offset it starts at, and its text.
fn split_chunk(value: &[u8]) -> (u64, &[u8]) {
    match value.split_first_chunk::<8>() {
        Some((at, text)) => (u64::from_be_bytes(*at), text),
        None => (0, value),
    }
}

fn event_prefix(run: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(run.len() + 9);
    key.extend_from_slice(run.as_bytes());
    key.push(0);
    key
}

fn seq_of(key: &[u8]) -> u64 {
    key.last_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b))
}

fn log_prefix(run: &str, step: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(run.len() + step.len() + 10);
    key.extend_from_slice(run.as_bytes());
    key.push(0);
    key.extend_from_slice(step.as_bytes());
    key.push(0);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("slipway-store-{}", crate::ids::new_run_id()));
        (Store::open(&dir).unwrap(), dir)
    }

    fn run(id: &str, created_ms: u64) -> RunRecord {
        RunRecord {
            created_ms,
            ..RunRecord::new(id, "p", ".slipway.yml", "push", None, RunStatus::Running)
        }
    }

    #[test]
    fn runs_list_newest_first_and_resolve_by_prefix() {
        let (store, dir) = temp_store();
        store.put_run(&run("aaa111", 1)).unwrap();
        store.put_run(&run("aab222", 3)).unwrap();
        store.put_run(&run("bbb333", 2)).unwrap();
        store
            .update_run("aaa111", |r| r.status = RunStatus::Success)
            .unwrap();
        let ids: Vec<_> = store
            .list_runs(10)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids,
            ["aab222", "bbb333", "aaa111"],
            "updating does not duplicate the listing"
        );
        assert_eq!(store.find_run("bb").unwrap().id, "bbb333");
        assert_eq!(store.find_run("aaa").unwrap().status.as_str(), "success");
        assert!(matches!(
            store.find_run("aa"),
            Err(StoreError::Ambiguous { .. })
        ));
        assert!(matches!(store.find_run("zz"), Err(StoreError::NotFound(_))));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_delivery_is_accepted_once_and_its_run_queued() {
        let (store, dir) = temp_store();
        let mut first = run("r1", 5);
        first.status = RunStatus::Queued;
        assert_eq!(
            store.enqueue(Some("github:d1"), &first).unwrap(),
            Accepted::New("r1".into())
        );
        assert_eq!(
            store.enqueue(Some("github:d1"), &run("r2", 6)).unwrap(),
            Accepted::Duplicate("r1".into())
        );
        assert!(
            store.get_run("r2").unwrap().is_none(),
            "a redelivery makes no second run"
        );
        assert_eq!(store.queued().unwrap(), ["r1"]);
        assert!(
            store
                .transition("r1", &[RunStatus::Running], |r| r.status = RunStatus::Error)
                .unwrap()
                .is_none(),
            "wrong from-status"
        );
        let claimed = store
            .transition("r1", &[RunStatus::Queued], |r| {
                r.status = RunStatus::Running
            })
            .unwrap()
            .unwrap();
        assert_eq!(claimed.status.as_str(), "running");
        assert!(
            store.queued().unwrap().is_empty(),
            "a transition takes the run off the queue"
        );
        assert!(
            store
                .transition("r1", &[RunStatus::Queued], |r| r.status =
                    RunStatus::Cancelled)
                .unwrap()
                .is_none(),
            "claimed once only"
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pages_walk_newest_first_with_a_filter() {
        let (store, dir) = temp_store();
        for i in 0..7u64 {
            let mut r = run(&format!("run{i}"), 100 + i);
            r.status = if i % 2 == 0 {
                RunStatus::Success
            } else {
                RunStatus::Failed
            };
            store.put_run(&r).unwrap();
        }
        let (first, next) = store
            .page_runs(2, None, |r| r.status == RunStatus::Success)
            .unwrap();
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run6", "run4"]
        );
        let (second, next) = store
            .page_runs(2, next.as_deref(), |r| r.status == RunStatus::Success)
            .unwrap();
        assert_eq!(
            second.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run2", "run0"]
        );
        let (third, next) = store
            .page_runs(2, next.as_deref(), |r| r.status == RunStatus::Success)
            .unwrap();
        assert!(third.is_empty() && next.is_none());
        assert!(matches!(
            store.page_runs(2, Some("zz"), |_| true),
            Err(StoreError::BadCursor(_))
        ));
        store.append_log("run1", "s", "héllo\n").unwrap();
        assert_eq!(
            store.read_log_from("run1", "s", 2).unwrap(),
            ("héllo\n"[1..].to_string(), 7)
        );
        assert_eq!(
            store.read_log_from("run1", "s", 99).unwrap(),
            (String::new(), 7)
        );
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn logs_append_in_order_per_step_and_survive_reopen() {
        let (store, dir) = temp_store();
        store.append_log("r", "build", "one\n").unwrap();
        store.append_log("r", "build-2", "other\n").unwrap();
        store.append_log("r", "build", "two\n").unwrap();
        store.flush().unwrap();
        drop(store);
        // sled's flusher thread lets go of the lock a moment after the drop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let store = loop {
            match Store::open(&dir) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(store.read_log("r", "build").unwrap(), "one\ntwo\n");
        assert_eq!(store.read_log("r", "build-2").unwrap(), "other\n");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn changes_become_numbered_events_that_resume_after_any_seq() {
        let (store, dir) = temp_store();
        let mut live = store.subscribe();
        let mut r = run("r1", 1);
        r.status = RunStatus::Queued;
        r.steps = vec![StepRecord::pending("build", &[])];
        store.enqueue(None, &r).unwrap();
        store
            .transition("r1", &[RunStatus::Queued], |r| {
                r.status = RunStatus::Running
            })
            .unwrap()
            .unwrap();
        // A change that touches neither status, steps nor notes says nothing.
        store.update_run("r1", |r| r.pipeline = "q".into()).unwrap();
        store
            .update_run("r1", |r| r.notes.push("x".into()))
            .unwrap();
        store
            .update_run("r1", |r| r.steps[0].status = StepStatus::Running)
            .unwrap();
        store.append_log("r1", "build", "one\n").unwrap();
        store.append_log("r1", "build", "two\n").unwrap();
        store
            .update_run("r1", |r| {
                r.steps[0].status = StepStatus::Success;
                r.status = RunStatus::Success;
            })
            .unwrap();
        let all = store.run_events_after("r1", 0).unwrap();
        let kinds: Vec<String> = all
            .iter()
            .map(|e| match &e.kind {
                EventKind::Run { status, .. } => format!("run {status}"),
                EventKind::Step { step, status, .. } => format!("{step} {status}"),
                EventKind::Log { text, offset, .. } => format!("log@{offset} {text:?}"),
                EventKind::Note { text } => format!("note {text}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "run queued",
                "build pending",
                "run running",
                "note x",
                "build running",
                "log@0 \"one\\n\"",
                "log@4 \"two\\n\"",
                "run success",
                "build success",
            ]
        );
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert!(all.last().is_some_and(|e| !e.ends_run()));
        assert!(all[7].ends_run());
        // What was sent live is what was stored, in the same order.
        let mut sent = Vec::new();
        while let Ok(e) = live.try_recv() {
            sent.push((*e).clone());
        }
        assert_eq!(sent, all);
        // Resuming after any event gives exactly the ones after it.
        assert_eq!(store.run_events_after("r1", all[3].seq).unwrap(), all[4..]);
        assert_eq!(store.run_events_page("r1", 0, 2).unwrap(), all[..2]);
        assert_eq!(
            store.run_events_page("r1", all[1].seq, 3).unwrap(),
            all[2..5]
        );
        // The feed holds the run-level ones only.
        let feed: Vec<u64> = store.feed_after(0).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(feed, [all[0].seq, all[2].seq, all[7].seq]);
        assert_eq!(store.feed_after(all[2].seq).unwrap(), [all[7].clone()]);
        assert_eq!(store.last_seq().unwrap(), all[7].seq);
        // Another run's events are its own.
        store.put_run(&run("r2", 2)).unwrap();
        assert_eq!(store.run_events_after("r1", 0).unwrap(), all);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn ended(id: &str, created_ms: u64) -> RunRecord {
        RunRecord {
            status: RunStatus::Success,
            finished_ms: Some(created_ms + 1),
            steps: vec![StepRecord::pending("build", &[])],
            ..run(id, created_ms)
        }
    }

    /// Issue 14: runs, their logs and events were never deleted.
    #[test]
    fn deleting_a_run_takes_its_logs_and_events_and_leaves_the_others() {
        let (store, dir) = temp_store();
        for id in ["old", "other"] {
            store.put_run(&ended(id, 10)).unwrap();
            store.append_log(id, "build", "one\n").unwrap();
            store.append_log(id, "build", "twenty\n").unwrap();
        }
        let others_events = store.run_events_after("other", 0).unwrap();
        assert_eq!(store.runs_created_before(11).unwrap().len(), 2);
        assert!(store.runs_created_before(10).unwrap().is_empty());

        let deleted = store.delete_run("old").unwrap().unwrap();
        assert_eq!(deleted.log_bytes, 11);
        assert!(store.get_run("old").unwrap().is_none());
        assert!(store.run_events_after("old", 0).unwrap().is_empty());
        assert_eq!(store.read_log("old", "build").unwrap(), "");
        assert_eq!(store.log_bytes("old").unwrap(), 0);
        assert!(
            store
                .feed
                .iter()
                .all(|item| item.unwrap().1 != "old".as_bytes()),
            "its run events are gone from the feed of every run"
        );
        assert_eq!(
            store
                .list_runs(10)
                .unwrap()
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["other"]
        );
        assert_eq!(store.run_events_after("other", 0).unwrap(), others_events);
        assert_eq!(store.read_log("other", "build").unwrap(), "one\ntwenty\n");
        assert!(matches!(
            store.delete_run("old"),
            Err(StoreError::NotFound(_))
        ));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn queued_and_running_runs_are_never_deleted() {
        let (store, dir) = temp_store();
        let mut queued = run("q", 1);
        queued.status = RunStatus::Queued;
        store.enqueue(None, &queued).unwrap();
        store.put_run(&run("r", 2)).unwrap();
        assert_eq!(
            store.delete_run("q").unwrap(),
            Err(Retained::Active(RunStatus::Queued))
        );
        assert_eq!(
            store.delete_run("r").unwrap(),
            Err(Retained::Active(RunStatus::Running))
        );
        assert_eq!(store.queued().unwrap(), ["q"]);
        assert!(store.get_run("r").unwrap().is_some());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn runs_an_environment_a_promotion_or_a_preview_needs_are_kept() {
        let (store, dir) = temp_store();
        for id in ["held", "promoting", "previewed", "free"] {
            store.put_run(&ended(id, 1)).unwrap();
        }
        // `held` built what prod now runs.
        let mut done = Promotion::pending_for_test("p1", "acme/web", "prod", "sha256:aa");
        done.run = Some("held".into());
        store.create_promotion(&done).unwrap().unwrap();
        store
            .change_promotion("p1", |p| {
                p.status = PromotionStatus::Promoting;
                Ok(("slipway".into(), "promoting".into(), None))
            })
            .unwrap()
            .unwrap();
        let state = EnvState {
            digest: "sha256:aa".into(),
            image: "r/acme/web@sha256:aa".into(),
            run: Some("held".into()),
            sha: None,
            promotion: "p1".into(),
            promoted_ms: 1,
        };
        store.complete_promotion("p1", &state).unwrap().unwrap();
        // `promoting` built what an open request wants in staging.
        let mut open = Promotion::pending_for_test("p2", "acme/web", "staging", "sha256:bb");
        open.run = Some("promoting".into());
        store.create_promotion(&open).unwrap().unwrap();
        store
            .put_preview(&PreviewRecord {
                repo: "acme/web".into(),
                number: 7,
                sha: "c".repeat(40),
                run: "previewed".into(),
                image: "r/acme/web@sha256:cc".into(),
                container: "c".into(),
                network: "n".into(),
                ip: "10.0.0.2".into(),
                port: 80,
                url: "http://x/".into(),
                created_ms: 1,
                updated_ms: 1,
                comment_id: None,
                deployment_id: None,
            })
            .unwrap();

        let kept = |id: &str| store.delete_run(id).unwrap().unwrap_err().to_string();
        assert_eq!(kept("held"), "environment prod of acme/web holds its image");
        assert_eq!(kept("promoting"), "open promotion p2 refers to it");
        assert_eq!(
            kept("previewed"),
            "the preview of acme/web#7 shows its image"
        );
        assert!(store.delete_run("free").unwrap().is_ok());
        for id in ["held", "promoting", "previewed"] {
            assert!(store.get_run(id).unwrap().is_some(), "{id}");
        }
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn logs_read_from_an_offset_across_chunks() {
        let (store, dir) = temp_store();
        for line in ["aa\n", "bbb\n", "c\n"] {
            store.append_log("r", "s", line).unwrap();
        }
        let read = |at| store.read_log_from("r", "s", at).unwrap();
        assert_eq!(read(0), ("aa\nbbb\nc\n".into(), 9));
        assert_eq!(read(3), ("bbb\nc\n".into(), 9));
        assert_eq!(read(5), ("b\nc\n".into(), 9));
        assert_eq!(read(9), (String::new(), 9));
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
