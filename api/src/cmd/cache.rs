//! `slipway cache ls|rm|prune`: the directory caches under the data dir.

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
    println!("{:<48}  {:>10}  {:>10}  BLOB", "KEY", "SIZE", "USED");
    let mut total = 0;
    for e in &entries {
        total += e.size;
        let ago = slipway_engine::duration::format_duration(std::time::Duration::from_millis(
            now.saturating_sub(e.used_ms),
        ));
        println!(
            "{:<48}  {:>10}  {:>10}  {}",
            e.key,
            mb(e.size),
            format!("{ago} ago"),
            &e.blob[..12]
        );
    }
    println!("{} entries, {}", entries.len(), mb(total));
    Ok(ExitCode::SUCCESS)
}

pub fn rm(data_dir: &Path, keys: &[String]) -> anyhow::Result<ExitCode> {
    let store = open(data_dir)?;
    for key in keys {
        let e = store.remove(key)?;
        println!("removed {} ({})", e.key, mb(e.size));
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
    for key in removed {
        println!("removed {key}");
    }
    Ok(ExitCode::SUCCESS)
}
