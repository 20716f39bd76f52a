//! Source checkouts for server runs: one bare mirror per repository, so a
//! later run fetches only new objects, and a cheap `--shared` clone of the
//! exact commit per run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot fetch `{git_ref}` from {url}: {message}")]
    Fetch {
        url: String,
        git_ref: String,
        message: String,
    },
    #[error("commit {sha} is not in {url} (fetched `{git_ref}`)")]
    UnknownCommit {
        url: String,
        git_ref: String,
        sha: String,
    },
    #[error("git {action} failed: {message}")]
    Command { action: String, message: String },
}

/// Resolves a branch, tag or full ref on a remote to `(full ref, sha)`.
/// Branches win over tags of the same name, as in git.
pub async fn resolve_ref(url: &str, name: &str) -> Result<(String, String), GitError> {
    let out = git(None, &["ls-remote", "--heads", "--tags", url], "ls-remote")
        .await
        .map_err(|e| GitError::Fetch {
            url: url.into(),
            git_ref: name.into(),
            message: e.to_string(),
        })?;
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, r)| (r, sha))
        .collect();
    let wanted = [
        name.to_string(),
        format!("refs/heads/{name}"),
        format!("refs/tags/{name}"),
    ];
    wanted
        .iter()
        .find_map(|w| {
            // An annotated tag's commit is listed as `<tag>^{}`.
            let peeled = format!("{w}^{{}}");
            refs.iter()
                .find(|(r, _)| *r == peeled)
                .or_else(|| refs.iter().find(|(r, _)| r == w))
                .map(|(_, sha)| (w.clone(), sha.to_string()))
        })
        .ok_or_else(|| GitError::Fetch {
            url: url.into(),
            git_ref: name.into(),
            message: "no such branch or tag".into(),
        })
}

#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    /// One fetch at a time per repository; different repositories in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

async fn git(dir: Option<&Path>, args: &[&str], action: &str) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    // Never prompt for credentials: a server has no one to answer.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| GitError::Command {
        action: action.into(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(GitError::Command {
            action: action.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Mirrors {
        Mirrors {
            root,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn mirror_dir(&self, repo: &str) -> PathBuf {
        let safe: String = repo
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(format!("{safe}.git"))
    }

    /// Makes sure `sha` is in the repository's mirror, fetching `git_ref` if not.
    pub async fn fetch(
        &self,
        repo: &str,
        url: &str,
        git_ref: &str,
        sha: &str,
    ) -> Result<PathBuf, GitError> {
        let lock = self
            .locks
            .lock()
            .expect("mirror locks")
            .entry(repo.to_string())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let mirror = self.mirror_dir(repo);
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&mirror)
                .await
                .map_err(|e| GitError::Command {
                    action: "create mirror".into(),
                    message: e.to_string(),
                })?;
            git(Some(&mirror), &["init", "--bare", "-q"], "init mirror").await?;
        }
        let has = |m: PathBuf| async move {
            git(
                Some(&m),
                &["cat-file", "-e", &format!("{sha}^{{commit}}")],
                "cat-file",
            )
            .await
            .is_ok()
        };
        if has(mirror.clone()).await {
            return Ok(mirror);
        }
        let refspec = format!(
            "+{git_ref}:refs/slipway/{}",
            git_ref.trim_start_matches("refs/")
        );
        git(
            Some(&mirror),
            &["fetch", "-q", "--no-tags", url, &refspec],
            "fetch",
        )
        .await
        .map_err(|e| GitError::Fetch {
            url: url.into(),
            git_ref: git_ref.into(),
            message: e.to_string(),
        })?;
        if !has(mirror.clone()).await {
            // A force-push may have moved the ref on; the commit itself may still be fetchable.
            let _ = git(
                Some(&mirror),
                &["fetch", "-q", "--no-tags", url, sha],
                "fetch commit",
            )
            .await;
        }
        if has(mirror.clone()).await {
            Ok(mirror)
        } else {
            Err(GitError::UnknownCommit {
                url: url.into(),
                git_ref: git_ref.into(),
                sha: sha.into(),
            })
        }
    }

    /// A file at a commit, `None` when the commit has no such file.
    pub async fn read_file(
        &self,
        repo: &str,
        sha: &str,
        path: &str,
    ) -> Result<Option<String>, GitError> {
        let mirror = self.mirror_dir(repo);
        match git(Some(&mirror), &["show", &format!("{sha}:{path}")], "show").await {
            Ok(text) => Ok(Some(text)),
            Err(GitError::Command { message, .. })
                if message.contains("does not exist")
                    || message.contains("exists on disk, but not in") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Checks the commit out into `dest` (which must not exist), sharing the mirror's objects.
    pub async fn checkout(&self, repo: &str, sha: &str, dest: &Path) -> Result<(), GitError> {
        let mirror = self.mirror_dir(repo);
        let (m, d) = (mirror.display().to_string(), dest.display().to_string());
        git(
            None,
            &["clone", "-q", "--shared", "--no-checkout", &m, &d],
            "clone",
        )
        .await?;
        git(
            Some(dest),
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "-q",
                "--detach",
                sha,
            ],
            "checkout",
        )
        .await?;
        Ok(())
    }
}
