//! `slipway gc`: one retention sweep of the data dir, as the server does
//! hourly: old runs with their logs and artifacts, idle git mirrors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use slipway_api::Store;
use slipway_api::retention::{Places, Policy, sweep};
use slipway_runner::git::Mirrors;
use tokio_util::sync::CancellationToken;

pub fn run(
    config_path: Option<&Path>,
    data_dir_flag: Option<PathBuf>,
    default_data_dir: PathBuf,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    // The same config and data dir `slipway serve` would use.
    let (config, data_dir) = super::server_setup(config_path, data_dir_flag, default_data_dir)?;
    let store = Store::open(&data_dir)?;
    let mirrors = Mirrors::new(data_dir.join("mirrors"));
    let places = Places {
        store: &store,
        artifacts_root: &data_dir.join("artifacts"),
        mirrors: &mirrors,
    };
    let report = sweep(
        &places,
        &Policy::of(&config),
        dry_run,
        &CancellationToken::new(),
    )?;
    store.flush()?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
