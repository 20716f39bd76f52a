//! One module per subcommand, a thin shell over the library:
//! [`validate`], [`graph`], [`run`] (a local run), [`runs`] and [`logs`]
//! (the local store), [`cache`], [`artifacts`] (local or remote), [`serve`],
//! [`gc`] (retention), [`runner`] (a remote build runner, and runner
//! registration on a server), [`secret`] (secrets on a server, key rotation), and
//! [`remote`] (every command that talks to a server).

pub mod artifacts;
pub mod cache;
pub mod gc;
pub mod graph;
pub mod logs;
pub mod remote;
pub mod run;
pub mod runner;
pub mod runs;
pub mod secret;
pub mod serve;
pub mod validate;

use std::path::Path;

use anyhow::Context;
use slipway_engine::{Parsed, parse};

/// The config and data dir a server command uses: `--config`, else
/// `./slipway.toml` if present, else defaults; `--data-dir`, else the
/// config's, else the default. `serve`, `gc` and `secret rotate-key` agree.
pub fn server_setup(
    config_path: Option<&Path>,
    data_dir_flag: Option<std::path::PathBuf>,
    default_data_dir: std::path::PathBuf,
) -> anyhow::Result<(slipway_api::config::Config, std::path::PathBuf)> {
    use slipway_api::config::Config;
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None if Path::new("slipway.toml").exists() => Config::load(Path::new("slipway.toml"))?,
        None => Config::default(),
    };
    let data_dir = data_dir_flag
        .or_else(|| config.data_dir.clone())
        .unwrap_or(default_data_dir);
    Ok((config, data_dir))
}

/// Reads and parses a pipeline file; the caller reports the diagnostics.
pub fn load(file: &Path) -> anyhow::Result<Parsed> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read pipeline file `{}`", file.display()))?;
    Ok(parse(&file.display().to_string(), &source))
}

/// Prints diagnostics to stderr; returns whether any is an error.
pub fn report(parsed: &Parsed) -> bool {
    for d in &parsed.diagnostics {
        eprintln!("{d}");
    }
    parsed.has_errors()
}
