//! `slipway cache ls|rm|prune`: the directory caches under the data dir,
//! each entry shown with its scope (repository and ref, `pr-<n>`, or
//! `local`), since one key may be held by several scopes.

use std::path::Path;
use std::process::ExitCode;

use slipway_runner::cache::{CacheStore, parse_size};

fn open(data_dir: &Path) -> anyhow::Result<CacheStore> {
    Ok(CacheStore::open(&data_dir.join("cache"), u64::MAX)?)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn ls(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let store = open(data_dir)?;
    let entries = store.list()?;
    if entries.is_empty() {
        println!("no cache entries in {}", store.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let key_width = entries
        .iter()
        .map(|e| e.key.len())
        .max()
        .unwrap_or(0)
        .max(3);
    let scope_width = entries
        .iter()
        .map(|e| e.scope.len())
        .max()
        .unwrap_or(0)
        .max(5);
    println!(
        "{:<key_width$}  {:<scope_width$}  {:>10}  {:>10}  BLOB",
        "KEY", "SCOPE", "SIZE", "USED"
    );
    let mut total = 0;
    for e in &entries {
        total += e.size;
        let ago = slipway_engine::duration::format_duration(std::time::Duration::from_millis(
            now.saturating_sub(e.used_ms),
        ));
        println!(
            "{:<key_width$}  {:<scope_width$}  {:>10}  {:>10}  {}",
            e.key,
            e.scope,
            mb(e.size),
            format!("{ago} ago"),
            &e.blob[..12]
        );
    }
    println!("{} entries, {}", entries.len(), mb(total));
    Ok(ExitCode::SUCCESS)
}

/// Removes `keys` from `scope`, or from every scope holding them.
pub fn rm(data_dir: &Path, keys: &[String], scope: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = open(data_dir)?;
    let entries = store.list()?;
    for key in keys {
        let matching: Vec<_> = entries
            .iter()
            .filter(|e| e.key == *key && scope.is_none_or(|s| e.scope == s))
            .collect();
        if matching.is_empty() {
            match scope {
                Some(s) => anyhow::bail!("no cache entry `{key}` in scope `{s}`"),
                None => anyhow::bail!("no cache entry `{key}` in any scope"),
            }
        }
        for e in matching {
            let e = store.remove(&e.scope, &e.key)?;
            println!("removed {} of {} ({})", e.key, e.scope, mb(e.size));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn prune(data_dir: &Path, max_size: &str) -> anyhow::Result<ExitCode> {
    let max = parse_size(max_size)
        .ok_or_else(|| anyhow::anyhow!("--max-size `{max_size}` is not a size (e.g. 2GB, 0)"))?;
    let store = open(data_dir)?;
    let removed = store.evict(max)?;
    if removed.is_empty() {
        println!("nothing to remove: the caches fit in {}", mb(max));
    }
    for e in removed {
        println!("removed {} of {}", e.key, e.scope);
    }
    Ok(ExitCode::SUCCESS)
}
