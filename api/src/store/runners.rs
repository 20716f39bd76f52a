//! Registered remote runners: who may take runs, known by the hash of the
//! token `slipway runners add` printed once.
//!
//! - `runners`: name -> [`RunnerRecord`] as JSON
//!
//! What a runner reports while connected (labels, capacity, health, last
//! seen) lives in memory in `runs::dispatch`; only registrations are kept.

use serde::{Deserialize, Serialize};

use super::{RunStatus, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRecord {
    pub name: String,
    /// sha256 of the token, hex: a stolen data dir yields no token.
    pub token_sha256: String,
    pub created_ms: u64,
    pub created_by: String,
}

/// Which runner holds a run, under which epoch, and how many of its
/// events are stored: the fence against a runner that lost its lease and
/// the dedup of a retried upload, both durable across a server restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub runner: String,
    pub epoch: u64,
    /// Events `0..acked` of this attempt are stored.
    pub acked: u64,
}

/// The hash a runner token is stored and looked up by.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Registers a runner; `false` when the name is taken (nothing changes).
    pub fn add_runner(&self, runner: &RunnerRecord) -> Result<bool, StoreError> {
        let json = serde_json::to_vec(runner).map_err(|source| StoreError::Corrupt {
            key: runner.name.clone(),
            source,
        })?;
        let added = self
            .runners
            .compare_and_swap(runner.name.as_bytes(), None::<&[u8]>, Some(json))?
            .is_ok();
        self.flush()?;
        Ok(added)
    }

    pub fn runners(&self) -> Result<Vec<RunnerRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.runners.iter() {
            let (k, v) = item?;
            let runner = serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                source,
            })?;
            out.push(runner);
        }
        Ok(out)
    }

    /// The runner a token belongs to.
    pub fn runner_by_token(&self, token: &str) -> Result<Option<RunnerRecord>, StoreError> {
        let hash = token_hash(token);
        Ok(self.runners()?.into_iter().find(|r| {
            subtle::ConstantTimeEq::ct_eq(r.token_sha256.as_bytes(), hash.as_bytes()).into()
        }))
    }

    /// Forgets a runner; its token stops working at once.
    pub fn remove_runner(&self, name: &str) -> Result<bool, StoreError> {
        let removed = self.runners.remove(name.as_bytes())?.is_some();
        self.flush()?;
        Ok(removed)
    }

    /// A number no earlier lease had, across restarts.
    pub fn next_epoch(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()? + 1)
    }

    /// Puts a claimed run that never reached a runner back on the queue,
    /// with the labels it turned out to ask for.
    pub fn unclaim(&self, id: &str, runs_on: Option<Vec<String>>) -> Result<bool, StoreError> {
        let back = self.transition(id, &[RunStatus::Running], |r| {
            r.status = RunStatus::Queued;
            r.lease = None;
            if runs_on.is_some() {
                r.runs_on = runs_on.clone();
            }
        })?;
        match back {
            Some(run) => {
                self.queue
                    .insert(super::order_key(run.created_ms, &run.id), &[])?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records the labels a queued run asks for; nothing if it is no
    /// longer queued (a cancel got there first).
    pub fn set_runs_on(&self, id: &str, runs_on: Vec<String>) -> Result<(), StoreError> {
        let _emitting = self.lock();
        self.runs
            .transaction(|runs| {
                let Some(bytes) = runs.get(id.as_bytes())? else {
                    return Ok(());
                };
                let Ok(mut run) = serde_json::from_slice::<super::RunRecord>(&bytes) else {
                    return Ok(());
                };
                if run.status != RunStatus::Queued {
                    return Ok(());
                }
                run.runs_on = Some(runs_on.clone());
                if let Ok(json) = serde_json::to_vec(&run) {
                    runs.insert(id.as_bytes(), json)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::Refused("setting a run's labels".into())
                }
            })
    }
}
