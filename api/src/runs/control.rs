//! Runs in progress and how to stop them: one mechanism for the cancel
//! endpoint, superseding older runs of a ref, and server shutdown.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::ids::now_ms;
use crate::store::{RunStatus, Store, StoreError};

struct Running {
    cancel: CancellationToken,
    repo: String,
    git_ref: String,
    /// Why it was cancelled, recorded on the run when it ends.
    reason: Option<String>,
}

#[derive(Default)]
pub struct RunControl {
    running: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    runs: HashMap<String, Running>,
    /// Set once the server cancels everything on its way out: a run the
    /// executor registers after that is cancelled at once, with this reason.
    closing: Option<String>,
}

/// What cancelling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and is now cancelled.
    Queued,
    /// It is running; its containers are being stopped.
    Stopping,
    /// It had already ended, with this status.
    AlreadyEnded(RunStatus),
}

impl RunControl {
    pub fn start(&self, id: &str, repo: &str, git_ref: &str, cancel: CancellationToken) {
        let mut registry = self.running.lock().expect("run control");
        let reason = registry.closing.clone();
        if reason.is_some() {
            cancel.cancel();
        }
        let run = Running {
            cancel,
            repo: repo.into(),
            git_ref: git_ref.into(),
            reason,
        };
        registry.runs.insert(id.into(), run);
    }

    /// Cancels every running run, and any the executor registers from now
    /// on, each recording `reason` (server shutdown).
    pub fn cancel_all(&self, reason: &str) {
        let mut registry = self.running.lock().expect("run control");
        registry.closing.get_or_insert_with(|| reason.to_string());
        for run in registry.runs.values_mut() {
            run.reason.get_or_insert_with(|| reason.to_string());
            run.cancel.cancel();
        }
    }

    /// Forgets a run that ended; returns why it was cancelled, if it was.
    pub fn finish(&self, id: &str) -> Option<String> {
        self.running
            .lock()
            .expect("run control")
            .runs
            .remove(id)
            .and_then(|r| r.reason)
    }

    /// Why a running run was cancelled, if it was (it stays registered).
    pub fn reason(&self, id: &str) -> Option<String> {
        self.running
            .lock()
            .expect("run control")
            .runs
            .get(id)
            .and_then(|r| r.reason.clone())
    }

    /// Whether the server is stopping (everything was cancelled with
    /// [`RunControl::cancel_all`]).
    pub fn closing(&self) -> bool {
        self.running.lock().expect("run control").closing.is_some()
    }

    pub fn running(&self) -> usize {
        self.running.lock().expect("run control").runs.len()
    }

    pub fn running_in(&self, repo: &str) -> usize {
        self.running
            .lock()
            .expect("run control")
            .runs
            .values()
            .filter(|r| r.repo.eq_ignore_ascii_case(repo))
            .count()
    }

    fn running_of(&self, repo: &str, git_ref: &str) -> Vec<String> {
        let running = self.running.lock().expect("run control");
        running
            .runs
            .iter()
            .filter(|(_, r)| r.repo.eq_ignore_ascii_case(repo) && r.git_ref == git_ref)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn cancel_running(&self, id: &str, reason: &str) -> bool {
        let mut running = self.running.lock().expect("run control");
        match running.runs.get_mut(id) {
            Some(r) => {
                r.reason.get_or_insert_with(|| reason.to_string());
                r.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels a run, queued or running.
    pub fn cancel(&self, store: &Store, id: &str, reason: &str) -> Result<Cancelled, StoreError> {
        let changed = store.transition(id, &[RunStatus::Queued], |r| {
            r.status = RunStatus::Cancelled;
            r.finished_ms = Some(now_ms());
            r.error = Some(reason.to_string());
        })?;
        if changed.is_some() {
            store.flush()?;
            return Ok(Cancelled::Queued);
        }
        let stored = |store: &Store| {
            store
                .get_run(id)?
                .ok_or_else(|| StoreError::NotFound(id.into()))
        };
        // The final status is stored a moment before the executor lets go
        // of the run: what is stored decides, or a finished run would be
        // answered "cancelling".
        let run = stored(store)?;
        if run.status.is_ended() {
            return Ok(Cancelled::AlreadyEnded(run.status));
        }
        if self.cancel_running(id, reason) {
            return Ok(Cancelled::Stopping);
        }
        // Claimed by the executor between the checks above.
        let run = stored(store)?;
        if run.status == RunStatus::Running && self.cancel_running(id, reason) {
            return Ok(Cancelled::Stopping);
        }
        Ok(Cancelled::AlreadyEnded(run.status))
    }

    /// Cancels older queued and running runs of the same repository and ref.
    pub fn supersede(
        &self,
        store: &Store,
        repo: &str,
        git_ref: &str,
        newer: &str,
    ) -> Result<Vec<String>, StoreError> {
        let reason = format!("superseded by run {newer}");
        let mut older = self.running_of(repo, git_ref);
        for id in store.queued()? {
            if let Some(run) = store.get_run(&id)?
                && run
                    .source
                    .as_ref()
                    .is_some_and(|s| s.repo.eq_ignore_ascii_case(repo) && s.git_ref == git_ref)
            {
                older.push(id);
            }
        }
        older.retain(|id| id != newer);
        older.sort();
        older.dedup();
        for id in &older {
            self.cancel(store, id, &reason)?;
        }
        Ok(older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The executor stores a run's final status, then lets go of it; a
    /// cancel in between must say the run ended, not "cancelling".
    #[test]
    fn a_run_stored_as_ended_is_not_cancelled_while_still_registered() {
        let dir =
            std::env::temp_dir().join(format!("slipway-control-{}", crate::ids::new_run_id()));
        let store = Store::open(&dir).unwrap();
        let parsed = slipway_engine::parse::parse(
            ".slipway.yml",
            "steps:\n  a:\n    image: x\n    commands: [a]\n",
        );
        let pipeline = parsed.pipeline.expect("valid pipeline");
        let mut run = crate::runs::record::new_run("r1", &pipeline, ".slipway.yml", "push", None);
        run.status = RunStatus::Success;
        store.put_run(&run).unwrap();
        let control = RunControl::default();
        let token = CancellationToken::new();
        control.start("r1", "acme/web", "refs/heads/main", token.clone());
        assert_eq!(
            control.cancel(&store, "r1", "cancelled by t").unwrap(),
            Cancelled::AlreadyEnded(RunStatus::Success)
        );
        assert!(!token.is_cancelled(), "a finished run is left alone");
        // Still running: it is stopped.
        run.status = RunStatus::Running;
        store.put_run(&run).unwrap();
        assert_eq!(
            control.cancel(&store, "r1", "cancelled by t").unwrap(),
            Cancelled::Stopping
        );
        assert!(token.is_cancelled());
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cancel_all_reaches_running_runs_and_those_registered_after_it() {
        let control = RunControl::default();
        let early = CancellationToken::new();
        control.start("r1", "acme/web", "refs/heads/main", early.clone());
        control.cancel_all("the server is shutting down");
        assert!(early.is_cancelled());
        assert_eq!(
            control.reason("r1").as_deref(),
            Some("the server is shutting down")
        );
        // Claimed by the executor just as the server began to stop.
        let late = CancellationToken::new();
        control.start("r2", "acme/web", "refs/heads/dev", late.clone());
        assert!(
            late.is_cancelled(),
            "a run started while closing is cancelled at once"
        );
        assert_eq!(
            control.finish("r2").as_deref(),
            Some("the server is shutting down")
        );
    }
}
