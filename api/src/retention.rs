//! Retention: ended runs older than `keep_runs` go with their logs, events
//! and artifacts, git mirrors unused for `keep_mirrors` go too. Runs that
//! are still going, or that an environment, an open promotion or a
//! preview needs, stay whatever their age, and the report says why.
//! `slipway gc` runs one sweep; `slipway serve` one at start and every hour.

use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_runner::git::{IdleMirror, Mirrors, disk_usage};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{Retained, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot remove `{path}`: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot look for idle git mirrors in `{path}`: {source}")]
    Mirrors {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long things are kept; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_runs: Option<Duration>,
    pub keep_mirrors: Option<Duration>,
}

impl Policy {
    pub fn of(config: &Config) -> Policy {
        Policy {
            keep_runs: config.keep_runs,
            keep_mirrors: config.keep_mirrors,
        }
    }

    /// Whether a sweep can remove anything at all.
    pub fn removes_anything(&self) -> bool {
        self.keep_runs.is_some() || self.keep_mirrors.is_some()
    }
}

/// Where a data dir keeps what a sweep looks at.
#[derive(Debug)]
pub struct Places<'a> {
    pub store: &'a Store,
    /// `<data>/artifacts`: one directory per run.
    pub artifacts_root: &'a Path,
    pub mirrors: &'a Mirrors,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedRun {
    pub id: String,
    pub created_ms: u64,
    pub log_bytes: u64,
    pub artifact_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRun {
    pub id: String,
    pub why: Retained,
}

/// What a sweep removed (or, dry, would remove) and what it kept.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub dry_run: bool,
    pub runs: Vec<RemovedRun>,
    pub kept: Vec<KeptRun>,
    /// Artifact directories of runs the store no longer has (a sweep
    /// stopped between the store and the disk).
    pub orphan_artifacts: Vec<(PathBuf, u64)>,
    pub mirrors: Vec<IdleMirror>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.kept.is_empty()
            && self.orphan_artifacts.is_empty()
            && self.mirrors.is_empty()
    }

    /// One line per thing removed or kept, then a total.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = Vec::new();
        for r in &self.runs {
            out.push(format!(
                "{verb} run {} ({} old; logs {}, artifacts {})",
                r.id,
                age(Duration::from_millis(
                    crate::ids::now_ms().saturating_sub(r.created_ms)
                )),
                bytes(r.log_bytes),
                bytes(r.artifact_bytes)
            ));
        }
        for k in &self.kept {
            out.push(format!("kept run {}: {}", k.id, k.why));
        }
        for (path, size) in &self.orphan_artifacts {
            out.push(format!(
                "{verb} artifacts of a deleted run: {} ({})",
                path.display(),
                bytes(*size)
            ));
        }
        for m in &self.mirrors {
            out.push(format!(
                "{verb} git mirror {} (unused for {}, {})",
                m.path.display(),
                age(m.idle),
                bytes(m.bytes)
            ));
        }
        let logs: u64 = self.runs.iter().map(|r| r.log_bytes).sum();
        let artifacts: u64 = self.runs.iter().map(|r| r.artifact_bytes).sum::<u64>()
            + self.orphan_artifacts.iter().map(|(_, b)| b).sum::<u64>();
        let mirrors: u64 = self.mirrors.iter().map(|m| m.bytes).sum();
        out.push(format!(
            "{verb} {} run(s) (logs {}, artifacts {}) and {} git mirror(s) ({}); kept {} old run(s)",
            self.runs.len(),
            bytes(logs),
            bytes(artifacts),
            self.mirrors.len(),
            bytes(mirrors),
            self.kept.len()
        ));
        out
    }
}

/// One sweep. Each run goes in one store transaction, then its artifacts;
/// `stop` is looked at between runs. The caller flushes the store.
/// Blocking (sled, the file system): call it off the async runtime.
pub fn sweep(
    at: &Places<'_>,
    policy: &Policy,
    dry_run: bool,
    stop: &CancellationToken,
) -> Result<Report, RetentionError> {
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    if let Some(keep) = policy.keep_runs {
        let cutoff = crate::ids::now_ms().saturating_sub(keep.as_millis() as u64);
        sweep_runs(at, cutoff, &mut report, stop)?;
        sweep_orphan_artifacts(at, cutoff, &mut report)?;
    }
    if let Some(keep) = policy.keep_mirrors
        && !stop.is_cancelled()
    {
        report.mirrors =
            at.mirrors
                .remove_idle(keep, dry_run)
                .map_err(|source| RetentionError::Mirrors {
                    path: at.mirrors.root().to_path_buf(),
                    source,
                })?;
    }
    Ok(report)
}

fn sweep_runs(
    at: &Places<'_>,
    cutoff_ms: u64,
    report: &mut Report,
    stop: &CancellationToken,
) -> Result<(), RetentionError> {
    let holds = at.store.run_holds()?;
    for id in at.store.runs_created_before(cutoff_ms)? {
        if stop.is_cancelled() {
            break;
        }
        let Some(run) = at.store.get_run(&id)? else {
            continue;
        };
        if run.finished_ms.unwrap_or(run.created_ms) >= cutoff_ms {
            continue;
        }
        // A dry run asks what a real one would; a real one leaves the
        // decision to the store, which makes it under its lock.
        let outcome = if report.dry_run {
            match retained(&run, &holds) {
                Some(why) => Err(why),
                None => Ok(at.store.log_bytes(&run.id)?),
            }
        } else {
            match at.store.delete_run(&run.id) {
                Ok(outcome) => outcome.map(|deleted| deleted.log_bytes),
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let log_bytes = match outcome {
            Ok(log_bytes) => log_bytes,
            Err(why) => {
                report.kept.push(KeptRun { id: run.id, why });
                continue;
            }
        };
        let dir = artifacts_dir(at.artifacts_root, &run.id);
        let artifact_bytes = match &dir {
            Some(dir) if dir.exists() => {
                let size = disk_usage(dir);
                if !report.dry_run {
                    remove_dir(dir)?;
                }
                size
            }
            _ => 0,
        };
        report.runs.push(RemovedRun {
            id: run.id,
            created_ms: run.created_ms,
            log_bytes,
            artifact_bytes,
        });
    }
    Ok(())
}

/// Why a real sweep would keep `run`, as [`Store::delete_run`] decides.
fn retained(
    run: &crate::RunRecord,
    holds: &std::collections::HashMap<String, Retained>,
) -> Option<Retained> {
    if !run.status.is_ended() {
        return Some(Retained::Active(run.status));
    }
    holds.get(&run.id).cloned()
}

fn sweep_orphan_artifacts(
    at: &Places<'_>,
    cutoff_ms: u64,
    report: &mut Report,
) -> Result<(), RetentionError> {
    let Ok(entries) = std::fs::read_dir(at.artifacts_root) else {
        return Ok(());
    };
    let cutoff = std::time::UNIX_EPOCH + Duration::from_millis(cutoff_ms);
    for entry in entries.flatten() {
        let path = entry.path();
        let id = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        // A run's directory appears after its record, so a young one
        // without a record may belong to a run being written right now.
        if !path.is_dir() || !old || at.store.get_run(&id)?.is_some() {
            continue;
        }
        let size = disk_usage(&path);
        if !report.dry_run {
            remove_dir(&path)?;
        }
        report.orphan_artifacts.push((path, size));
    }
    Ok(())
}

/// A run's artifacts directory; `None` for an id that is not a plain
/// directory name (ids are made by the server, but a path is never built
/// from a stored value without looking).
fn artifacts_dir(root: &Path, id: &str) -> Option<PathBuf> {
    let plain = !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0']);
    plain.then(|| root.join(id))
}

fn remove_dir(path: &Path) -> Result<(), RetentionError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RetentionError::Remove {
            path: path.into(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{PreviewRecord, RunStatus};
    use crate::{RunRecord, StepRecord};

    const HOUR_MS: u64 = 3_600_000;

    fn ended(id: &str, age_ms: u64) -> RunRecord {
        let at = crate::ids::now_ms() - age_ms;
        RunRecord {
            created_ms: at,
            finished_ms: Some(at + 1000),
            steps: vec![StepRecord::pending("build", &[])],
            ..RunRecord::new(id, "p", ".slipway.yml", "push", None, RunStatus::Failed)
        }
    }

    fn preview_of(run: &str) -> PreviewRecord {
        PreviewRecord {
            repo: "acme/web".into(),
            number: 3,
            sha: "c".repeat(40),
            run: run.into(),
            image: "r/acme/web@sha256:cc".into(),
            container: "c".into(),
            network: "n".into(),
            ip: "10.0.0.2".into(),
            port: 80,
            url: "http://x/".into(),
            created_ms: 1,
            updated_ms: 1,
            comment_id: None,
            deployment_id: None,
        }
    }

    /// Issue 14: runs, logs and artifacts were never deleted.
    #[test]
    fn old_ended_runs_go_with_their_artifacts_and_the_rest_stay() {
        let dir = std::env::temp_dir().join(format!("slipway-gc-{}", crate::ids::new_run_id()));
        let store = Store::open(&dir.join("db")).unwrap();
        let artifacts = dir.join("artifacts");
        let mirrors = Mirrors::new(dir.join("mirrors"));
        let places = Places {
            store: &store,
            artifacts_root: &artifacts,
            mirrors: &mirrors,
        };
        let mut running = ended("running", 3 * HOUR_MS);
        running.status = RunStatus::Running;
        running.finished_ms = None;
        for run in [
            ended("old", 3 * HOUR_MS),
            ended("young", HOUR_MS / 2),
            running,
            ended("previewed", 3 * HOUR_MS),
        ] {
            store.put_run(&run).unwrap();
            store.append_log(&run.id, "build", "0123456789\n").unwrap();
            let kept = artifacts.join(&run.id).join("build");
            std::fs::create_dir_all(&kept).unwrap();
            std::fs::write(kept.join("app.bin"), [7u8; 300]).unwrap();
        }
        store.put_preview(&preview_of("previewed")).unwrap();
        // Left by a sweep that stopped after the store: no record, old.
        let orphan = artifacts.join("gone");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::File::open(&orphan)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        let policy = Policy {
            keep_runs: Some(Duration::from_secs(3600)),
            keep_mirrors: None,
        };
        let stop = CancellationToken::new();

        let dry = sweep(&places, &policy, true, &stop).unwrap();
        let summary = |r: &Report| {
            (
                r.runs
                    .iter()
                    .map(|r| (r.id.clone(), r.log_bytes, r.artifact_bytes))
                    .collect::<Vec<_>>(),
                r.kept
                    .iter()
                    .map(|k| format!("{}: {}", k.id, k.why))
                    .collect::<Vec<_>>(),
                r.orphan_artifacts.clone(),
            )
        };
        let expected = (
            vec![("old".to_string(), 11, 300)],
            vec![
                "previewed: the preview of acme/web#3 shows its image".to_string(),
                "running: it is running".to_string(),
            ],
            vec![(orphan.clone(), 0)],
        );
        assert_eq!(summary(&dry), expected);
        assert!(
            dry.lines()[0]
                .starts_with("would remove run old (3h0m old; logs 11 B, artifacts 300 B)")
        );
        assert!(
            store.get_run("old").unwrap().is_some(),
            "a dry run removes nothing"
        );
        assert!(artifacts.join("old").exists() && orphan.exists());

        let done = sweep(&places, &policy, false, &stop).unwrap();
        assert_eq!(summary(&done), expected);
        assert!(
            done.lines()[0].starts_with("removed run old "),
            "{:?}",
            done.lines()
        );
        assert!(store.get_run("old").unwrap().is_none());
        assert_eq!(store.read_log("old", "build").unwrap(), "");
        assert!(!artifacts.join("old").exists() && !orphan.exists());
        for id in ["young", "running", "previewed"] {
            assert!(store.get_run(id).unwrap().is_some(), "{id}");
            assert!(artifacts.join(id).join("build/app.bin").exists(), "{id}");
        }

        let forever = Policy {
            keep_runs: None,
            keep_mirrors: None,
        };
        store.delete_preview("acme/web", 3).unwrap();
        assert!(sweep(&places, &forever, false, &stop).unwrap().is_empty());
        assert!(store.get_run("previewed").unwrap().is_some());
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
