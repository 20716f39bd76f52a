//! The runner protocol's wire types: JSON over the server's own HTTP
//! listener, shared by the server's handlers (`http::runner`) and the
//! remote runner (`agent`), so the two cannot drift apart.
//!
//! - `POST /api/v1/runner/claim` ([`Hello`]) long-polls for a [`Job`]:
//!   200 with one, 204 when none came within the wait.
//! - `POST /api/v1/runner/heartbeat` ([`Heartbeat`]) renews the leases of
//!   the runs it names and answers which to cancel and which are fenced
//!   ([`HeartbeatReply`]).
//! - `POST /api/v1/runner/events` ([`EventBatch`]) stores a run's events
//!   exactly once by sequence number ([`EventsReply`]); 409 when the
//!   sender's epoch is no longer the run's (fenced).
//!
//! Every call carries the runner's token as `Authorization: Bearer`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use slipway_engine::{Pipeline, Trigger};
use slipway_runner::cache::CacheScope;
use slipway_runner::git::Remote;
use slipway_runner::{Credentials, Limits, RunEvent};

/// A claim waits at most this long on the server for a run.
pub const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How often a runner says it is alive; also how late a cancel can be.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// What a runner says of itself with every claim and heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The name it was started with (`--name`); must be its token's.
    #[serde(default)]
    pub name: Option<String>,
    pub labels: Vec<String>,
    /// Runs it takes at once.
    pub capacity: usize,
    pub version: String,
    /// Why it takes no work (its Docker daemon is not answering); `None`: healthy.
    #[serde(default)]
    pub unhealthy: Option<String>,
}

/// One run handed to one runner: everything it needs to check out the
/// commit and run the pipeline, exactly what this run may have. Secrets
/// and logins travel only here, and the runner keeps them in memory.
#[derive(Clone, Serialize, Deserialize)]
pub struct Job {
    pub run_id: String,
    /// The lease's epoch: every later message about this run carries it.
    pub epoch: u64,
    pub repo: String,
    pub remote: Remote,
    pub git_ref: String,
    pub sha: String,
    /// The pipeline as the server shaped it (deploy steps or not, default
    /// timeouts, secrets only where granted).
    pub pipeline: Pipeline,
    pub trigger: Trigger,
    pub secrets: HashMap<String, String>,
    pub env: Vec<(String, String)>,
    pub skip: Vec<(String, String)>,
    pub cache_scope: CacheScope,
    pub credentials: Credentials,
    pub limits: Limits,
    pub jobs: usize,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("run_id", &self.run_id)
            .field("epoch", &self.epoch)
            .field("repo", &self.repo)
            .field("sha", &self.sha)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A run a runner holds, under the epoch it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub run_id: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub hello: Hello,
    pub runs: Vec<Held>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Runs to cancel (a user, a timeout or a newer push asked).
    pub cancel: Vec<String>,
    /// Runs this runner no longer holds: stop them, remove their
    /// containers, drop what is left to send.
    pub fenced: Vec<String>,
}

/// Events `first..first + events.len()` of one run's attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventBatch {
    pub run_id: String,
    pub epoch: u64,
    pub first: u64,
    pub events: Vec<RunEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsReply {
    /// Events `0..acked` are stored: send from there.
    pub acked: u64,
}

/// `POST /api/v1/runner/cache/lookup`: a local miss, asked of the
/// server's cache in the scopes the server allows the run. Answered with
/// the entry (`slipway_runner::cache::Entry`, its blob then fetched from
/// `GET /api/v1/runner/cache/blob/{blob}?run_id=&epoch=`) or 204.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheLookup {
    pub run_id: String,
    pub epoch: u64,
    pub key: String,
    pub prefixes: Vec<String>,
}

/// Which run an upload or download is for (query string): `PUT
/// /api/v1/runner/cache/entry?run_id=&epoch=&key=` (an archive) and `PUT
/// /api/v1/runner/artifacts/{step}?run_id=&epoch=` (a tar of the step's
/// artifacts), each with [`SHA256_HEADER`]; checked before it is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFile {
    pub run_id: String,
    pub epoch: u64,
    #[serde(default)]
    pub key: Option<String>,
}

/// The hex sha256 of an upload's body.
pub const SHA256_HEADER: &str = "x-slipway-sha256";
