//! Secrets set at run time (API, CLI, web form), sealed by the [`Vault`]:
//! the store holds only ciphertext, the key lives outside the data dir.
//!
//! - `secrets`: scope key ++ 0 ++ name -> [`SecretRecord`] as JSON
//!
//! Every change writes its audit entry in the same transaction and is
//! flushed before the caller answers.
//!
//! [`Vault`]: crate::vault::Vault

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::promotions::{finish_plain, json, parse};
use super::{AuditEntry, Store, StoreError};
use crate::ids::now_ms;
use crate::vault::Sealed;

/// Who a secret is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "snake_case")]
pub enum SecretScope {
    /// Every repository's runs.
    Server,
    /// One repository's runs.
    Repo { repo: String },
    /// Only the deploy steps of one environment's promotions.
    Environment { repo: String, environment: String },
}

impl SecretScope {
    pub fn repo(&self) -> Option<&str> {
        match self {
            SecretScope::Server => None,
            SecretScope::Repo { repo } | SecretScope::Environment { repo, .. } => Some(repo),
        }
    }

    pub fn environment(&self) -> Option<&str> {
        match self {
            SecretScope::Environment { environment, .. } => Some(environment),
            _ => None,
        }
    }

    /// How people and errors name it: `server`, `acme/web`, `acme/web:prod`.
    pub fn label(&self) -> String {
        match self {
            SecretScope::Server => "server".into(),
            SecretScope::Repo { repo } => repo.clone(),
            SecretScope::Environment { repo, environment } => format!("{repo}:{environment}"),
        }
    }

    fn key(&self, name: &str) -> Vec<u8> {
        let mut k = self.label().into_bytes();
        k.push(0);
        k.extend_from_slice(name.as_bytes());
        k
    }
}

/// Which runs a secret is given to; an empty list allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFilter {
    /// `push`, `tag`, `pull_request`, `manual`, `deploy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Branch globs (`main`, `release/*`) the run's branch must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Tag globs (`v*`) the run's tag must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The events a filter may name, as runs record them (a deploy run's
/// event is stored as `promotion`).
pub const SECRET_EVENTS: [&str; 5] = ["push", "tag", "pull_request", "manual", "deploy"];

impl SecretFilter {
    /// Why a run of `event` on `branch`/`tag` does not get the secret, if
    /// it does not.
    pub fn refuses(&self, event: &str, branch: Option<&str>, tag: Option<&str>) -> Option<String> {
        let event = if event == "promotion" {
            "deploy"
        } else {
            event
        };
        if !self.events.is_empty() && !self.events.iter().any(|e| e == event) {
            return Some(format!(
                "it is limited to events [{}] (this run: {event})",
                self.events.join(", ")
            ));
        }
        if self.branches.is_empty() && self.tags.is_empty() {
            return None;
        }
        let on_branch = branch.is_some_and(|b| {
            self.branches
                .iter()
                .any(|p| slipway_engine::pattern::glob_match(p, b))
        });
        let on_tag = tag.is_some_and(|t| {
            self.tags
                .iter()
                .any(|p| slipway_engine::pattern::glob_match(p, t))
        });
        if on_branch || on_tag {
            return None;
        }
        let mut limits = Vec::new();
        if !self.branches.is_empty() {
            limits.push(format!("branches [{}]", self.branches.join(", ")));
        }
        if !self.tags.is_empty() {
            limits.push(format!("tags [{}]", self.tags.join(", ")));
        }
        let this = match (branch, tag) {
            (_, Some(t)) => format!("tag {t}"),
            (Some(b), None) => format!("branch {b}"),
            (None, None) => "no branch or tag".into(),
        };
        Some(format!(
            "it is limited to {} (this run: {this})",
            limits.join(" and ")
        ))
    }
}

/// A secret set at run time, as stored: never its value in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub scope: SecretScope,
    pub name: String,
    #[serde(default)]
    pub filter: SecretFilter,
    pub set_by: String,
    pub set_ms: u64,
    pub sealed: Sealed,
}

impl SecretRecord {
    /// What the sealed value is bound to: moving it to another name or
    /// scope in the store makes it unreadable.
    pub fn binding(scope: &SecretScope, name: &str) -> String {
        format!("slipway secret {} {name}", scope.label())
    }
}

fn audit_entry(seq: u64, scope: &SecretScope, name: &str, user: &str, action: &str) -> AuditEntry {
    AuditEntry {
        seq,
        at_ms: now_ms(),
        user: user.into(),
        action: action.into(),
        repo: scope.repo().unwrap_or_default().into(),
        environment: scope.environment().unwrap_or_default().into(),
        promotion: String::new(),
        digest: String::new(),
        comment: Some(format!("secret {name} ({})", scope.label())),
        secret: Some(name.into()),
    }
}

impl Store {
    /// Every stored secret, by scope then name.
    pub fn secrets(&self) -> Result<Vec<SecretRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.secrets.iter() {
            let (k, v) = item?;
            out.push(parse(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    pub fn secret(
        &self,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<SecretRecord>, StoreError> {
        let key = scope.key(name);
        self.secrets
            .get(&key)?
            .map(|v| parse(&String::from_utf8_lossy(&key), &v))
            .transpose()
    }

    /// Stores (or replaces) a secret and its `secret-set` audit entry in
    /// one write, flushed before this returns.
    pub fn set_secret(&self, record: &SecretRecord) -> Result<(), StoreError> {
        let _order = self.audit_order();
        let entry = audit_entry(
            self.db.generate_id()? + 1,
            &record.scope,
            &record.name,
            &record.set_by,
            "secret-set",
        );
        let key = record.scope.key(&record.name);
        let (value, line) = (json(&record.name, record)?, json("audit", &entry)?);
        let r = (&self.secrets, &self.audit).transaction(|(secrets, audit)| {
            secrets.insert(key.clone(), value.clone())?;
            audit.insert(&entry.seq.to_be_bytes(), line.clone())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(Ok(()))
        });
        self.commit_audited(r, entry.seq)?
            .map_err(|refused| StoreError::Refused(format!("{refused:?}")))
    }

    /// Removes a secret with its `secret-removed` audit entry; `false`
    /// when there was none.
    pub fn remove_secret(
        &self,
        scope: &SecretScope,
        name: &str,
        user: &str,
    ) -> Result<bool, StoreError> {
        let _order = self.audit_order();
        let entry = audit_entry(
            self.db.generate_id()? + 1,
            scope,
            name,
            user,
            "secret-removed",
        );
        let key = scope.key(name);
        let line = json("audit", &entry)?;
        let r = (&self.secrets, &self.audit).transaction(|(secrets, audit)| {
            if secrets.remove(key.clone())?.is_none() {
                return Ok(Ok(false));
            }
            audit.insert(&entry.seq.to_be_bytes(), line.clone())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(Ok(true))
        });
        let removed = finish_plain(r)?;
        self.flush()?;
        if removed {
            self.announce_audit(entry.seq);
        }
        Ok(removed)
    }

    /// Writes every record in one transaction: a key rotation replaces all
    /// sealed values at once or none.
    pub fn replace_secrets(&self, records: &[SecretRecord]) -> Result<(), StoreError> {
        let mut values = Vec::new();
        for r in records {
            values.push((r.scope.key(&r.name), json(&r.name, r)?));
        }
        let r = self.secrets.transaction(|secrets| {
            for (k, v) in &values {
                secrets.insert(k.clone(), v.clone())?;
            }
            Ok::<_, ConflictableTransactionError<StoreError>>(Ok(()))
        });
        finish_plain(r)?;
        self.flush()
    }
}
