//! The embedded store: runs, their steps and their logs, in sled.
//!
//! Key layout (private to this module):
//! - `runs`:  run id -> [`RunRecord`] as JSON
//! - `order`: created_ms (big endian) ++ run id -> ()   (newest-first listing)
//! - `logs`:  run id ++ 0 ++ step ++ 0 ++ seq (big endian) -> chunk of lines
//! - `deliveries`: provider ++ ":" ++ delivery id -> run id
//! - `queue`: created_ms (big endian) ++ run id -> ()   (accepted, not started yet)

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    /// `queued`, `running`, `success`, `failed`, `cancelled`, `interrupted`.
    pub status: String,
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
    pub delivery: Option<String>,
}

/// What accepting a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    New(String),
    /// The forge redelivered; this is the run the first delivery made.
    Duplicate(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub needs: Vec<String>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub attempts: u32,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    runs: sled::Tree,
    order: sled::Tree,
    logs: sled::Tree,
    deliveries: sled::Tree,
    queue: sled::Tree,
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
        Ok(Store {
            runs: db.open_tree("runs")?,
            order: db.open_tree("order")?,
            logs: db.open_tree("logs")?,
            deliveries: db.open_tree("deliveries")?,
            queue: db.open_tree("queue")?,
            db,
        })
    }

    /// Makes everything written so far durable. Called before telling a
    /// user something is kept.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(run).map_err(|source| StoreError::Corrupt {
            key: run.id.clone(),
            source,
        })?;
        if self.runs.insert(run.id.as_bytes(), json)?.is_none() {
            self.order.insert(order_key(run.created_ms, &run.id), &[])?;
        }
        Ok(())
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

    /// Records a verified delivery and its queued run in one transaction,
    /// then flushes: once this returns, the run survives a crash. A delivery
    /// seen before returns the run it made instead.
    pub fn accept_delivery(&self, key: &str, run: &RunRecord) -> Result<Accepted, StoreError> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        let json = serde_json::to_vec(run).map_err(|source| StoreError::Corrupt {
            key: run.id.clone(),
            source,
        })?;
        let order = order_key(run.created_ms, &run.id);
        let outcome = (&self.deliveries, &self.runs, &self.order, &self.queue)
            .transaction(|(deliveries, runs, order_tree, queue)| {
                if let Some(existing) = deliveries.get(key.as_bytes())? {
                    return Ok(Accepted::Duplicate(
                        String::from_utf8_lossy(&existing).into_owned(),
                    ));
                }
                deliveries.insert(key.as_bytes(), run.id.as_bytes())?;
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
        self.flush()?;
        Ok(outcome)
    }

    /// Changes a run atomically, only if its status is one of `from`, and
    /// takes it off the queue. Returns the run as changed, or `None` when its
    /// status was something else (someone else got there first).
    pub fn transition(
        &self,
        id: &str,
        from: &[&str],
        change: impl Fn(&mut RunRecord),
    ) -> Result<Option<RunRecord>, StoreError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, abort};
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
            if !from.contains(&run.status.as_str()) {
                return Ok(None);
            }
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
            Ok(r) => Ok(r),
            Err(sled::transaction::TransactionError::Abort(e)) => Err(e),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
        }
    }

    /// Stores a new run and queues it, flushed before returning.
    pub fn enqueue(&self, run: &RunRecord) -> Result<(), StoreError> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        let json = serde_json::to_vec(run).map_err(|source| StoreError::Corrupt {
            key: run.id.clone(),
            source,
        })?;
        let order = order_key(run.created_ms, &run.id);
        (&self.runs, &self.order, &self.queue)
            .transaction(|(runs, order_tree, queue)| {
                runs.insert(run.id.as_bytes(), json.clone())?;
                order_tree.insert(order.clone(), &[])?;
                queue.insert(order.clone(), &[])?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => {
                    StoreError::Sled(sled::Error::Unsupported("aborted".into()))
                }
            })?;
        self.flush()
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
        let log = self.read_log(run, step)?;
        let mut start = offset.min(log.len());
        while !log.is_char_boundary(start) {
            start -= 1;
        }
        Ok((log[start..].to_string(), log.len()))
    }

    /// Appends a chunk of log text (whole lines) to a step's log.
    pub fn append_log(&self, run: &str, step: &str, chunk: &str) -> Result<(), StoreError> {
        let seq = self.db.generate_id()?;
        let mut key = log_prefix(run, step);
        key.extend_from_slice(&seq.to_be_bytes());
        self.logs.insert(key, chunk.as_bytes())?;
        Ok(())
    }

    /// A step's whole log.
    pub fn read_log(&self, run: &str, step: &str) -> Result<String, StoreError> {
        let mut out = String::new();
        for item in self.logs.scan_prefix(log_prefix(run, step)) {
            let (_, v) = item?;
            out.push_str(&String::from_utf8_lossy(&v));
        }
        Ok(out)
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
            id: id.into(),
            pipeline: "p".into(),
            file: ".slipway.yml".into(),
            event: "push".into(),
            branch: None,
            status: "running".into(),
            created_ms,
            finished_ms: None,
            error: None,
            steps: vec![],
            source: None,
            notes: vec![],
            rerun: None,
        }
    }

    #[test]
    fn runs_list_newest_first_and_resolve_by_prefix() {
        let (store, dir) = temp_store();
        store.put_run(&run("aaa111", 1)).unwrap();
        store.put_run(&run("aab222", 3)).unwrap();
        store.put_run(&run("bbb333", 2)).unwrap();
        store
            .update_run("aaa111", |r| r.status = "success".into())
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
        assert_eq!(store.find_run("aaa").unwrap().status, "success");
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
        first.status = "queued".into();
        assert_eq!(
            store.accept_delivery("github:d1", &first).unwrap(),
            Accepted::New("r1".into())
        );
        assert_eq!(
            store.accept_delivery("github:d1", &run("r2", 6)).unwrap(),
            Accepted::Duplicate("r1".into())
        );
        assert!(
            store.get_run("r2").unwrap().is_none(),
            "a redelivery makes no second run"
        );
        assert_eq!(store.queued().unwrap(), ["r1"]);
        assert!(
            store
                .transition("r1", &["running"], |r| r.status = "x".into())
                .unwrap()
                .is_none(),
            "wrong from-status"
        );
        let claimed = store
            .transition("r1", &["queued"], |r| r.status = "running".into())
            .unwrap()
            .unwrap();
        assert_eq!(claimed.status, "running");
        assert!(
            store.queued().unwrap().is_empty(),
            "a transition takes the run off the queue"
        );
        assert!(
            store
                .transition("r1", &["queued"], |r| r.status = "cancelled".into())
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
                "success".into()
            } else {
                "failed".into()
            };
            store.put_run(&r).unwrap();
        }
        let (first, next) = store.page_runs(2, None, |r| r.status == "success").unwrap();
        assert_eq!(
            first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run6", "run4"]
        );
        let (second, next) = store
            .page_runs(2, next.as_deref(), |r| r.status == "success")
            .unwrap();
        assert_eq!(
            second.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["run2", "run0"]
        );
        let (third, next) = store
            .page_runs(2, next.as_deref(), |r| r.status == "success")
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
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.read_log("r", "build").unwrap(), "one\ntwo\n");
        assert_eq!(store.read_log("r", "build-2").unwrap(), "other\n");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
