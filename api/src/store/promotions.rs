//! Promotions, the digest each environment holds, and the audit log.
//!
//! Key layout (private to the store):
//! - `promotions`: promotion id -> [`Promotion`] as JSON
//! - `open_promotions`: repo ++ 0 ++ environment -> id of its open promotion
//!   (pending, approved or promoting): one per environment at a time
//! - `environments`: repo ++ 0 ++ environment -> [`EnvState`] as JSON
//! - `env_history`: repo ++ 0 ++ environment ++ 0 ++ seq -> [`EnvState`]
//! - `audit`: seq (big endian) -> [`AuditEntry`] as JSON; only ever appended
//!
//! Every change is one sled transaction with its audit entry, flushed
//! before returning: an approval or a promotion a user was told about is
//! never lost, and the audit log always matches the state.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree, abort};

use super::{PromotionStatus, Store, StoreError};
use crate::ids::now_ms;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub user: String,
    pub comment: Option<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    pub id: String,
    pub repo: String,
    pub environment: String,
    pub from: Option<String>,
    /// `sha256:...`
    pub digest: String,
    /// Where the bytes are copied from: `repository@sha256:...`.
    pub source: String,
    /// The run that built the image, and its commit.
    pub run: Option<String>,
    pub sha: Option<String>,
    /// The commit's author, where known (for self-approval checks).
    pub author: Option<String>,
    pub requested_by: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub status: PromotionStatus,
    pub approvals: Vec<Decision>,
    pub rejection: Option<Decision>,
    pub error: Option<String>,
    pub finished_ms: Option<u64>,
    pub attempts: u32,
}

impl Promotion {
    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// For tests: dave's pending request to promote dev's `digest` to
    /// `environment`, never expiring; override what a test needs.
    #[cfg(test)]
    pub(crate) fn pending_for_test(
        id: &str,
        repo: &str,
        environment: &str,
        digest: &str,
    ) -> Promotion {
        Promotion {
            id: id.into(),
            repo: repo.into(),
            environment: environment.into(),
            from: Some("dev".into()),
            digest: digest.into(),
            source: format!("r/{repo}@{digest}"),
            run: None,
            sha: None,
            author: None,
            requested_by: "dave".into(),
            created_ms: now_ms(),
            expires_ms: u64::MAX,
            status: PromotionStatus::Pending,
            approvals: vec![],
            rejection: None,
            error: None,
            finished_ms: None,
            attempts: 0,
        }
    }
}

/// What an environment holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvState {
    pub digest: String,
    /// `repository@sha256:...` in the environment's own repository.
    pub image: String,
    pub run: Option<String>,
    pub sha: Option<String>,
    pub promotion: String,
    pub promoted_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    pub user: String,
    /// `requested`, `approved`, `rejected`, `promoting`, `promoted`,
    /// `failed`, `expired`, `retried`.
    pub action: String,
    pub repo: String,
    pub environment: String,
    pub promotion: String,
    pub digest: String,
    pub comment: Option<String>,
    /// For `secret-set` and `secret-removed`: the secret's name (its value
    /// is never anywhere in the log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Why a change to a promotion was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another promotion of this environment is open.
    Busy(String),
    /// The closure said no.
    No(String),
    NotFound,
}

fn env_key(repo: &str, env: &str) -> Vec<u8> {
    let mut k = repo.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(env.as_bytes());
    k
}

pub(super) fn json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Corrupt {
        key: key.into(),
        source,
    })
}

pub(super) fn parse<T: for<'a> Deserialize<'a>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.into(),
        source,
    })
}

fn entry(seq: u64, p: &Promotion, user: &str, action: &str, comment: Option<String>) -> AuditEntry {
    AuditEntry {
        seq,
        at_ms: now_ms(),
        user: user.into(),
        action: action.into(),
        repo: p.repo.clone(),
        environment: p.environment.clone(),
        promotion: p.id.clone(),
        digest: p.digest.clone(),
        comment,
        secret: None,
    }
}

/// A promotion and its audit entry, as stored.
/// Writes a promotion and its audit entry, inside a transaction: every
/// change to a promotion is audited in the same write.
fn write_audited(
    promotions: &TransactionalTree,
    audit: &TransactionalTree,
    p: &Promotion,
    entry: &AuditEntry,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let (value, line) = match (json(&p.id, p), json("audit", entry)) {
        (Ok(value), Ok(line)) => (value, line),
        (Err(e), _) | (_, Err(e)) => return abort(e),
    };
    promotions.insert(p.id.as_bytes(), value)?;
    audit.insert(&entry.seq.to_be_bytes(), line)?;
    Ok(())
}

/// The outcome of a transaction that may be refused.
type Outcome<T> = Result<Result<T, Refused>, StoreError>;

fn finish<T>(r: Result<Result<T, Refused>, TransactionError<StoreError>>) -> Outcome<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(StoreError::Sled(e)),
    }
}

/// [`finish`] for a transaction that refuses nothing.
pub(super) fn finish_plain<T>(
    r: Result<Result<T, Refused>, TransactionError<StoreError>>,
) -> Result<T, StoreError> {
    finish(r)?.map_err(|refused| StoreError::Refused(format!("{refused:?}")))
}

impl Store {
    /// After an audited transaction: durable before anyone is told, then
    /// announced to the audit stream's followers.
    pub(super) fn commit_audited<T>(
        &self,
        r: Result<Result<T, Refused>, TransactionError<StoreError>>,
        seq: u64,
    ) -> Outcome<T> {
        let out = finish(r)?;
        self.flush()?;
        if out.is_ok() {
            self.announce_audit(seq);
        }
        Ok(out)
    }

    /// Stores a new request, unless its environment has an open one.
    pub fn create_promotion(&self, p: &Promotion) -> Outcome<()> {
        let _order = self.audit_order();
        let entry = entry(
            self.db.generate_id()? + 1,
            p,
            &p.requested_by,
            "requested",
            None,
        );
        let (value, audit) = (json(&p.id, p)?, json("audit", &entry)?);
        let open_key = env_key(&p.repo, &p.environment);
        let r = (&self.promotions, &self.open_promotions, &self.audit).transaction(
            |(promotions, open, audit_tree)| {
                if let Some(other) = open.get(&open_key)? {
                    return Ok(Err(Refused::Busy(
                        String::from_utf8_lossy(&other).into_owned(),
                    )));
                }
                promotions.insert(p.id.as_bytes(), value.clone())?;
                open.insert(open_key.clone(), p.id.as_bytes())?;
                audit_tree.insert(&entry.seq.to_be_bytes(), audit.clone())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(Ok(()))
            },
        );
        self.commit_audited(r, entry.seq)
    }

    /// Changes a promotion atomically. `change` validates and mutates it
    /// and names the audit entry (`user`, `action`, `comment`); it may run
    /// more than once under contention, so it must not have side effects.
    /// Returns the promotion as changed.
    pub fn change_promotion(
        &self,
        id: &str,
        change: impl Fn(&mut Promotion) -> Result<(String, String, Option<String>), String>,
    ) -> Outcome<Promotion> {
        let _order = self.audit_order();
        let seq = self.db.generate_id()? + 1;
        let r = (&self.promotions, &self.open_promotions, &self.audit).transaction(
            |(promotions, open, audit_tree)| {
                let Some(bytes) = promotions.get(id.as_bytes())? else {
                    return Ok(Err(Refused::NotFound));
                };
                let mut p: Promotion = match parse(id, &bytes) {
                    Ok(p) => p,
                    Err(e) => return abort(e),
                };
                let was_open = p.is_open();
                let (user, action, comment) = match change(&mut p) {
                    Ok(a) => a,
                    Err(why) => return Ok(Err(Refused::No(why))),
                };
                let key = env_key(&p.repo, &p.environment);
                if p.is_open() && !was_open {
                    if let Some(other) = open.get(&key)?
                        && other != p.id.as_bytes()
                    {
                        return Ok(Err(Refused::Busy(
                            String::from_utf8_lossy(&other).into_owned(),
                        )));
                    }
                    open.insert(key.clone(), p.id.as_bytes())?;
                } else if !p.is_open() && was_open {
                    open.remove(key.clone())?;
                }
                write_audited(
                    promotions,
                    audit_tree,
                    &p,
                    &entry(seq, &p, &user, &action, comment),
                )?;
                Ok(Ok(p))
            },
        );
        self.commit_audited(r, seq)
    }

    /// Marks a promotion succeeded and moves its environment to its digest,
    /// in one transaction with the history and audit entries.
    pub fn complete_promotion(&self, id: &str, state: &EnvState) -> Outcome<Promotion> {
        let _order = self.audit_order();
        let seq = self.db.generate_id()? + 1;
        let hist = self.db.generate_id()? + 1;
        let state_json = json(id, state)?;
        let r = (
            &self.promotions,
            &self.open_promotions,
            &self.audit,
            &self.environments,
            &self.env_history,
        )
            .transaction(|(promotions, open, audit_tree, envs, history)| {
                let Some(bytes) = promotions.get(id.as_bytes())? else {
                    return Ok(Err(Refused::NotFound));
                };
                let mut p: Promotion = match parse(id, &bytes) {
                    Ok(p) => p,
                    Err(e) => return abort(e),
                };
                if p.status != PromotionStatus::Promoting {
                    return Ok(Err(Refused::No(format!("promotion {id} is {}", p.status))));
                }
                p.status = PromotionStatus::Succeeded;
                p.finished_ms = Some(now_ms());
                p.error = None;
                let key = env_key(&p.repo, &p.environment);
                open.remove(key.clone())?;
                envs.insert(key.clone(), state_json.clone())?;
                let mut hkey = key.clone();
                hkey.push(0);
                hkey.extend_from_slice(&hist.to_be_bytes());
                history.insert(hkey, state_json.clone())?;
                write_audited(
                    promotions,
                    audit_tree,
                    &p,
                    &entry(seq, &p, "slipway", "promoted", None),
                )?;
                Ok(Ok(p))
            });
        self.commit_audited(r, seq)
    }

    pub fn promotion(&self, id: &str) -> Result<Option<Promotion>, StoreError> {
        match self.promotions.get(id.as_bytes())? {
            Some(b) => parse(id, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Newest first.
    pub fn promotions(&self) -> Result<Vec<Promotion>, StoreError> {
        let mut out: Vec<Promotion> = Vec::new();
        for item in self.promotions.iter() {
            let (k, v) = item?;
            out.push(parse(&String::from_utf8_lossy(&k), &v)?);
        }
        out.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    pub fn environment_state(&self, repo: &str, env: &str) -> Result<Option<EnvState>, StoreError> {
        match self.environments.get(env_key(repo, env))? {
            Some(b) => parse(env, &b).map(Some),
            None => Ok(None),
        }
    }

    /// Every digest the environment has held, oldest first.
    pub fn environment_history(&self, repo: &str, env: &str) -> Result<Vec<EnvState>, StoreError> {
        let mut prefix = env_key(repo, env);
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.env_history.scan_prefix(prefix) {
            let (_, v) = item?;
            out.push(parse(env, &v)?);
        }
        Ok(out)
    }

    /// The audit log, oldest first.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_after(0)
    }

    /// Audit entries after `seq`, oldest first, up to the newest flushed
    /// one: a follower is never told of an entry a crash could still lose.
    pub fn audit_after(&self, seq: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let durable = self.last_audit_seq()?;
        if seq >= durable {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self
            .audit
            .range(seq.saturating_add(1).to_be_bytes()..=durable.to_be_bytes())
        {
            let (_, v) = item?;
            out.push(parse("audit", &v)?);
        }
        Ok(out)
    }

    /// The newest flushed audit entry's seq (0 when there is none).
    pub fn last_audit_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .audit_flushed
            .load(std::sync::atomic::Ordering::Acquire))
    }

    pub(super) fn audit_order(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guard protects no data, so a panic elsewhere leaves nothing torn.
        self.audit_order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Audit entries as they are written (after they are flushed).
    /// Subscribe before reading stored ones so nothing falls between.
    pub fn subscribe_audit(&self) -> tokio::sync::broadcast::Receiver<Arc<AuditEntry>> {
        self.audit_live.subscribe()
    }

    /// Marks the entry just committed and flushed as durable and sends it
    /// to whoever follows the audit log; read back rather than passed in,
    /// so it is exactly what was stored. Called under `audit_order`.
    pub(super) fn announce_audit(&self, seq: u64) {
        self.audit_flushed
            .fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
        if let Ok(Some(bytes)) = self.audit.get(seq.to_be_bytes())
            && let Ok(entry) = parse::<AuditEntry>("audit", &bytes)
        {
            let _ = self.audit_live.send(Arc::new(entry));
        }
    }
}
