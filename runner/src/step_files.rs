//! What a step keeps across runs and after its run: directory caches
//! (restored before the step, saved after it succeeds) and artifacts.
//! Nothing here fails a step: a cache or artifact problem is a log line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use slipway_engine::Cache;
use slipway_engine::pattern::glob_match;

use crate::backend::{Backend, RunSpec};
use crate::cache::{CacheScope, CacheStore, Hit, hex};

/// Where a step's caches and artifacts go; absent parts are off.
#[derive(Debug, Clone, Default)]
pub struct StepFiles {
    pub cache: Option<Arc<CacheStore>>,
    /// Artifacts of this run: `<dir>/<step>/<path>`.
    pub artifacts: Option<PathBuf>,
    /// Caches shared beyond this machine (a remote runner's server): read
    /// on a local miss, written after each local save.
    pub shared: Option<Arc<dyn SharedCache>>,
}

/// This machine's cache store, and the shared one if there is one.
pub type Stores<'a> = (&'a Arc<CacheStore>, Option<&'a Arc<dyn SharedCache>>);

/// A boxed future, for the object-safe [`SharedCache`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A cache store beyond this machine, bound to one run: whoever
/// implements it decides which scopes that run may read and the one it
/// writes (the run's [`CacheScope`] on the server), not the runner.
pub trait SharedCache: Send + Sync + std::fmt::Debug {
    /// Finds `key` (else the newest entry under one of `prefixes`) and
    /// writes its archive to `dest`, checked against its sha256; `None`
    /// on a miss.
    fn fetch<'a>(
        &'a self,
        key: &'a str,
        prefixes: &'a [String],
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<Option<crate::cache::Entry>, String>>;

    /// Publishes an archive saved here (sha256 `blob`) under `key`.
    fn publish<'a>(
        &'a self,
        key: &'a str,
        archive: &'a Path,
        blob: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn rate(bytes: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64();
    format!(
        "{:.1} MB in {:.2}s ({:.0} MB/s)",
        mb(bytes),
        secs,
        if secs > 0.0 { mb(bytes) / secs } else { 0.0 }
    )
}

/// A cache of a step, its key worked out, and whether it was found exactly.
pub struct Prepared {
    pub key: String,
    pub exact: bool,
}

/// The key of each cache, computed from the workspace's files.
async fn render_key<B: Backend>(
    backend: &B,
    run: &RunSpec,
    cache: &Cache,
    scratch: &Path,
    log: &mut Vec<String>,
) -> Result<String, String> {
    let files: Vec<String> = cache.key.hashed_files().map(String::from).collect();
    let mut contents: std::collections::HashMap<String, String> = Default::default();
    if !files.is_empty() {
        let missing = backend
            .export_workspace(run, &files, scratch)
            .await
            .map_err(|e| e.to_string())?;
        for m in &missing {
            log.push(format!(
                "cache key: `{m}` is not in the workspace; hashed as missing"
            ));
        }
        let file = std::fs::File::open(scratch).map_err(|e| e.to_string())?;
        let mut archive = tar::Archive::new(file);
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            let path = entry
                .path()
                .map_err(|e| e.to_string())?
                .display()
                .to_string();
            let (hash, _) = crate::cache::hash_reader(entry).map_err(|e| e.to_string())?;
            contents.insert(path, hash);
        }
        let _ = std::fs::remove_file(scratch);
    }
    Ok(cache.key.render(|files| {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for f in files {
            h.update(f.as_bytes());
            h.update([0]);
            h.update(contents.get(f).map_or("missing", String::as_str).as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())[..16].to_string()
    }))
}

/// Restores each cache: scope by scope, the exact key, else the newest
/// entry under a restore prefix. Returns the keys, for [`save_caches`].
pub async fn restore_caches<B: Backend>(
    backend: &B,
    run: &RunSpec,
    (store, shared): Stores<'_>,
    scope: &CacheScope,
    caches: &[Cache],
    log: &mut Vec<String>,
) -> Vec<Option<Prepared>> {
    let mut out = Vec::new();
    for cache in caches {
        let scratch = store.temp_path("key");
        let key = match render_key(backend, run, cache, &scratch, log).await {
            Ok(k) => k,
            Err(e) => {
                log.push(format!(
                    "cache `{}`: cannot work out the key: {e}",
                    cache.key.source
                ));
                out.push(None);
                continue;
            }
        };
        let lookup = {
            let store = store.clone();
            let (key, prefixes) = (key.clone(), cache.restore_keys.clone());
            let scopes = scope.read.clone();
            tokio::task::spawn_blocking(move || {
                let mut warnings = Vec::new();
                let hit = store
                    .lookup(&scopes, &key, &prefixes, |w| warnings.push(w))
                    .map_err(|e| e.to_string());
                (hit, warnings)
            })
            .await
        };
        let (hit, warnings) = match lookup {
            Ok(r) => r,
            Err(e) => (Err(e.to_string()), Vec::new()),
        };
        log.extend(warnings);
        let hit = match (hit, shared) {
            (Ok(None), Some(shared)) => {
                fetch_shared(shared.as_ref(), store, &key, &cache.restore_keys, log).await
            }
            (hit, _) => hit,
        };
        let exact = match hit {
            Ok(Some(hit)) => {
                let entry = hit.entry().clone();
                let started = Instant::now();
                match backend
                    .import_workspace(run, &store.blob_path(&entry.blob))
                    .await
                {
                    Ok(()) => {
                        let how = match &hit {
                            Hit::Exact(_) => "exact key".to_string(),
                            Hit::Prefix(e) => format!("restore key, from `{}`", e.key),
                        };
                        log.push(format!(
                            "cache `{key}` restored ({how}) from scope `{}`: {}",
                            entry.scope,
                            rate(entry.size, started)
                        ));
                        matches!(hit, Hit::Exact(_))
                    }
                    Err(e) => {
                        log.push(format!("cache `{key}` could not be restored: {e}"));
                        false
                    }
                }
            }
            Ok(None) => {
                log.push(format!(
                    "cache `{key}`: miss (scopes searched: {})",
                    scope.read.join(", ")
                ));
                false
            }
            Err(e) => {
                log.push(format!("cache `{key}`: lookup failed: {e}"));
                false
            }
        };
        out.push(Some(Prepared { key, exact }));
    }
    out
}

/// A local miss looked up in the shared store; a hit there is kept here
/// (under the scope it came from) before it is restored.
async fn fetch_shared(
    shared: &dyn SharedCache,
    store: &Arc<CacheStore>,
    key: &str,
    prefixes: &[String],
    log: &mut Vec<String>,
) -> Result<Option<Hit>, String> {
    let started = Instant::now();
    let dest = store.temp_path("fetch");
    let fetched = shared.fetch(key, prefixes, &dest).await;
    let entry = match fetched {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(None),
        Err(e) => {
            let _ = std::fs::remove_file(&dest);
            log.push(format!("cache `{key}`: the shared cache failed: {e}"));
            return Ok(None);
        }
    };
    log.push(format!(
        "cache `{}` fetched from the server (scope `{}`): {}",
        entry.key,
        entry.scope,
        rate(entry.size, started)
    ));
    let kept = {
        let (store, scope, found) = (store.clone(), entry.scope.clone(), entry.key.clone());
        tokio::task::spawn_blocking(move || store.save(&scope, &found, &dest)).await
    };
    match kept {
        Ok(Ok(local)) if local.key == key => Ok(Some(Hit::Exact(local))),
        Ok(Ok(local)) => Ok(Some(Hit::Prefix(local))),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Saves the caches whose key was not found exactly, after a success, in
/// the run's own scope (and shares them, where a shared store is set).
pub async fn save_caches<B: Backend>(
    backend: &B,
    run: &RunSpec,
    (store, shared): Stores<'_>,
    scope: &CacheScope,
    caches: &[Cache],
    prepared: &[Option<Prepared>],
    log: &mut Vec<String>,
) {
    for (cache, prepared) in caches.iter().zip(prepared) {
        let Some(Prepared { key, exact: false }) = prepared else {
            continue;
        };
        let Some(write) = &scope.write else {
            log.push(format!(
                "cache `{key}` not saved: this run is untrusted and has no scope of its own"
            ));
            continue;
        };
        let started = Instant::now();
        let archive = store.temp_path("save");
        let missing = match backend.export_workspace(run, &cache.paths, &archive).await {
            Ok(m) => m,
            Err(e) => {
                log.push(format!("cache `{key}` not saved: {e}"));
                let _ = std::fs::remove_file(&archive);
                continue;
            }
        };
        if missing.len() == cache.paths.len() {
            log.push(format!(
                "cache `{key}` not saved: none of {} exists",
                cache.paths.join(", ")
            ));
            let _ = std::fs::remove_file(&archive);
            continue;
        }
        for m in missing {
            log.push(format!(
                "cache `{key}`: `{m}` does not exist; saved without it"
            ));
        }
        let saved = {
            let (store, key, write) = (store.clone(), key.clone(), write.clone());
            tokio::task::spawn_blocking(move || store.save(&write, &key, &archive)).await
        };
        match saved {
            Ok(Ok(entry)) => {
                log.push(format!(
                    "cache `{key}` saved in scope `{write}`: {}",
                    rate(entry.size, started)
                ));
                if let Some(shared) = shared {
                    let started = Instant::now();
                    match shared
                        .publish(key, &store.blob_path(&entry.blob), &entry.blob)
                        .await
                    {
                        Ok(()) => log.push(format!(
                            "cache `{key}` shared with the server: {}",
                            rate(entry.size, started)
                        )),
                        Err(e) => log.push(format!("cache `{key}` not shared: {e}")),
                    }
                }
            }
            Ok(Err(e)) => log.push(format!("cache `{key}` not saved: {e}")),
            Err(e) => log.push(format!("cache `{key}` not saved: {e}")),
        }
    }
}

/// The directory a glob's files all live under (its part before any
/// wildcard), so only that much of the workspace is read.
fn glob_root(glob: &str) -> String {
    let fixed: Vec<&str> = glob
        .split('/')
        .take_while(|c| !c.contains(['*', '?', '[']))
        .collect();
    // A glob without wildcards names a file or directory itself.
    if fixed.len() == glob.split('/').count() {
        return glob.to_string();
    }
    if fixed.is_empty() {
        ".".into()
    } else {
        fixed.join("/")
    }
}

/// Whether a workspace file is one of the step's artifacts.
pub fn is_artifact(globs: &[String], path: &str) -> bool {
    globs.iter().any(|g| {
        glob_match(g, path)
            || (!g.contains(['*', '?'])
                && path.starts_with(&format!("{}/", g.trim_end_matches('/'))))
    })
}

/// Copies the files matching `globs` to `dir/<step>/`; returns them with
/// their sizes.
pub async fn collect_artifacts<B: Backend>(
    backend: &B,
    run: &RunSpec,
    step: &str,
    globs: &[String],
    dir: &Path,
    log: &mut Vec<String>,
) -> Vec<(String, u64)> {
    let mut roots: Vec<String> = globs.iter().map(|g| glob_root(g)).collect();
    roots.sort();
    roots.dedup();
    let dest = dir.join(step);
    let scratch = dir.join(format!(".{step}.tar"));
    if let Err(e) = std::fs::create_dir_all(&dest) {
        log.push(format!("artifacts not kept: {e}"));
        return Vec::new();
    }
    if let Err(e) = backend.export_workspace(run, &roots, &scratch).await {
        log.push(format!("artifacts not kept: {e}"));
        return Vec::new();
    }
    let (owned, scratch2, dest2) = (globs.to_vec(), scratch.clone(), dest.clone());
    let kept = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<(String, u64)>> {
        let mut kept = Vec::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&scratch2)?);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.display().to_string();
            if is_artifact(&owned, &path) {
                let size = entry.header().size()?;
                // `unpack_in` refuses paths that climb out of `dest`.
                if entry.unpack_in(&dest2)? {
                    kept.push((path, size));
                }
            }
        }
        Ok(kept)
    })
    .await;
    let _ = std::fs::remove_file(&scratch);
    match kept {
        Ok(Ok(kept)) => {
            if kept.is_empty() {
                log.push(format!("artifacts: nothing matched {}", globs.join(", ")));
            } else {
                let total: u64 = kept.iter().map(|(_, s)| s).sum();
                log.push(format!(
                    "artifacts: kept {} file(s), {:.1} MB",
                    kept.len(),
                    mb(total)
                ));
            }
            kept
        }
        Ok(Err(e)) => {
            log.push(format!("artifacts not kept: {e}"));
            Vec::new()
        }
        Err(e) => {
            log.push(format!("artifacts not kept: {e}"));
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_read_only_their_fixed_directory_and_match_files_under_it() {
        assert_eq!(glob_root("dist/**"), "dist");
        assert_eq!(glob_root("out/*.txt"), "out");
        assert_eq!(glob_root("*.log"), ".");
        assert_eq!(glob_root("report.html"), "report.html");
        let globs = vec!["dist/**".to_string(), "*.log".into(), "docs".into()];
        assert!(is_artifact(&globs, "dist/a/b.js"));
        assert!(is_artifact(&globs, "run.log"));
        assert!(is_artifact(&globs, "docs/index.html"));
        assert!(!is_artifact(&globs, "src/main.rs"));
        assert!(!is_artifact(&globs, "sub/run.log"));
    }
}
