//! Runs of the server: how one is queued (one submit path for webhooks, the
//! API, promotions and recovery), started and recorded, and how a running
//! one is stopped. Nothing here knows HTTP.
//!
//! - [`queue`]: the one way a run is queued (supersede, report, wake the executor).
//! - [`executor`]: starts queued runs from their commit; reconciles after a crash.
//! - [`control`]: runs in progress and how to cancel them.
//! - [`dispatch`]: remote runners: who is online, who waits for work, leases and fencing.
//! - [`record`]: turns runner events into stored runs, step states and log chunks.
//! - [`trust`]: whether a run's code is the repository's own, and what it may have.

pub mod control;
pub mod dispatch;
pub mod executor;
pub mod queue;
pub mod record;
pub mod trust;

pub use queue::{Queue, Submit, Submitted, queued_run};

use std::sync::Arc;

use crate::store::RunRecord;

/// Told of each run that ended, once its final status is stored: how
/// promotions (a green default-branch build lands in `auto`) and previews
/// (a green pull request build is deployed) follow runs, without this
/// module knowing either.
pub trait RunFollower: Send + Sync {
    /// `pipeline` is the one that ran; `None` when the run ended before its
    /// pipeline could be read. Must not block: spawn what takes time.
    fn run_finished(self: Arc<Self>, run: &RunRecord, pipeline: Option<&slipway_engine::Pipeline>);
}
