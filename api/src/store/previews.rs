//! Preview records: `previews`: repo ++ 0 ++ number (big endian) -> JSON.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// A pull request's preview, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewRecord {
    pub repo: String,
    pub number: u64,
    /// The head commit it shows, and the run that built it.
    pub sha: String,
    pub run: String,
    /// `repository@sha256:...`
    pub image: String,
    /// The container serving it now, and its address.
    pub container: String,
    pub network: String,
    pub ip: String,
    pub port: u16,
    pub url: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The forge comment edited on each update.
    pub comment_id: Option<u64>,
    /// The forge deployment of the commit now shown (`preview/pr-<n>`).
    #[serde(default)]
    pub deployment_id: Option<u64>,
}

/// A preview that appeared, changed or went, as sent to followers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewChange {
    pub repo: String,
    pub number: u64,
    /// `updated` (new or changed) or `removed`.
    pub change: &'static str,
}

fn key(repo: &str, number: u64) -> Vec<u8> {
    let mut k = repo.to_ascii_lowercase().into_bytes();
    k.push(0);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

impl Store {
    /// This data dir's identity, made on first use: it tells this server's
    /// preview containers from those of another server on the same Docker.
    pub fn server_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.db.get("server_id")? {
            return Ok(String::from_utf8_lossy(&id).into_owned());
        }
        let id = crate::ids::new_run_id();
        let _ =
            self.db
                .compare_and_swap("server_id", None as Option<&[u8]>, Some(id.as_bytes()))?;
        let id = self
            .db
            .get("server_id")?
            .map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(id.unwrap_or_default())
    }

    pub fn put_preview(&self, p: &PreviewRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(p).map_err(|source| StoreError::Corrupt {
            key: format!("{}#{}", p.repo, p.number),
            source,
        })?;
        self.previews.insert(key(&p.repo, p.number), json)?;
        self.flush()?;
        let _ = self.preview_live.send(PreviewChange {
            repo: p.repo.clone(),
            number: p.number,
            change: "updated",
        });
        Ok(())
    }

    /// Preview changes as they are stored. Subscribe, then read the list.
    pub fn subscribe_previews(&self) -> tokio::sync::broadcast::Receiver<PreviewChange> {
        self.preview_live.subscribe()
    }

    pub fn preview(&self, repo: &str, number: u64) -> Result<Option<PreviewRecord>, StoreError> {
        match self.previews.get(key(repo, number))? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| StoreError::Corrupt {
                    key: format!("{repo}#{number}"),
                    source,
                }),
        }
    }

    pub fn previews(&self) -> Result<Vec<PreviewRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.previews.iter() {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(&v).map_err(|source| StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    source,
                })?,
            );
        }
        Ok(out)
    }

    pub fn delete_preview(&self, repo: &str, number: u64) -> Result<(), StoreError> {
        let removed = self.previews.remove(key(repo, number))?;
        self.flush()?;
        if removed.is_some() {
            let _ = self.preview_live.send(PreviewChange {
                repo: repo.to_string(),
                number,
                change: "removed",
            });
        }
        Ok(())
    }
}
