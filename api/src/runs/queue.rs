//! The one way a run is queued, whoever asks: a webhook, the API (trigger,
//! rerun), a promotion's deploy run, or recovery after a crash. What differs
//! between them is said in [`Submit`], not written again.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use crate::ids::new_run_id;
use crate::runs::control::RunControl;
use crate::store::{Accepted, RunRecord, RunStatus, SourceRecord, Store, StoreError};

/// Queues runs and tells whoever must hear of them.
#[derive(Clone)]
pub struct Queue {
    store: Store,
    control: Arc<RunControl>,
    /// Wakes the executor.
    queued: Arc<Notify>,
    /// Run ids whose commit status should be reported.
    reports: mpsc::Sender<String>,
    /// `[server] cancel_superseded`.
    cancel_superseded: bool,
}

/// How a run enters the queue.
#[derive(Debug, Default, Clone)]
pub struct Submit {
    /// The forge's delivery key: the same delivery again queues nothing and
    /// names the run it made.
    pub delivery: Option<String>,
    /// Cancel older queued and running runs of the same repository and ref
    /// (when the server is configured to).
    pub supersede: bool,
    /// Report the run's "pending" commit status at once.
    pub report: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Queued {
        run: String,
        /// Older runs of the ref this one cancelled.
        superseded: Vec<String>,
    },
    /// The delivery was accepted before, as this run.
    Duplicate(String),
}

impl Queue {
    pub fn new(
        store: Store,
        control: Arc<RunControl>,
        queued: Arc<Notify>,
        reports: mpsc::Sender<String>,
        cancel_superseded: bool,
    ) -> Queue {
        Queue {
            store,
            control,
            queued,
            reports,
            cancel_superseded,
        }
    }

    /// Stores and queues `run` durably (flushed before this returns), then
    /// supersedes, reports and wakes the executor as `how` says. Blocking
    /// (sled): from async code use [`Queue::submit_async`].
    pub fn submit(&self, run: &RunRecord, how: &Submit) -> Result<Submitted, StoreError> {
        let id = match self.store.enqueue(how.delivery.as_deref(), run)? {
            Accepted::Duplicate(first) => return Ok(Submitted::Duplicate(first)),
            Accepted::New(id) => id,
        };
        let superseded = match &run.source {
            Some(source) if how.supersede && self.cancel_superseded => {
                self.control
                    .supersede(&self.store, &source.repo, &source.git_ref, &id)?
            }
            _ => Vec::new(),
        };
        if how.report {
            // A full report queue only delays "pending"; the final report still comes.
            let _ = self.reports.try_send(id.clone());
        }
        self.queued.notify_one();
        Ok(Submitted::Queued {
            run: id,
            superseded,
        })
    }

    /// [`Queue::submit`] off the async workers.
    pub async fn submit_async(&self, run: RunRecord, how: Submit) -> Result<Submitted, StoreError> {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || queue.submit(&run, &how))
            .await
            .map_err(|e| {
                StoreError::Sled(sled::Error::Unsupported(format!("queueing task: {e}")))
            })?
    }

    /// A queue for unit tests: nobody listens for reports or wake-ups.
    #[cfg(test)]
    pub(crate) fn for_tests(store: &Store) -> Queue {
        Queue::new(
            store.clone(),
            Arc::default(),
            Arc::default(),
            mpsc::channel(16).0,
            true,
        )
    }

    /// Wakes the executor (a run finished, so a slot is free).
    pub fn wake(&self) {
        self.queued.notify_one();
    }
}

/// A new queued run of a commit: what every submitter starts from.
pub fn queued_run(
    repo: &str,
    pipeline_path: &str,
    event: &str,
    branch: Option<String>,
    source: SourceRecord,
) -> RunRecord {
    RunRecord {
        source: Some(source),
        ..RunRecord::new(
            &new_run_id(),
            repo,
            pipeline_path,
            event,
            branch,
            RunStatus::Queued,
        )
    }
}
