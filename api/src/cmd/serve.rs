//! `slipway serve`: webhooks in, runs out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slipway_api::Store;
use slipway_api::config::Config;
use slipway_runner::DockerBackend;

pub fn run(
    config_path: Option<&Path>,
    data_dir_flag: Option<PathBuf>,
    default_data_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let config = match config_path {
        Some(path) => Config::load(path)?,
        None if Path::new("slipway.toml").exists() => Config::load(Path::new("slipway.toml"))?,
        None => Config::default(),
    };
    let data_dir = data_dir_flag
        .or_else(|| config.data_dir.clone())
        .unwrap_or(default_data_dir);
    let store = Store::open(&data_dir)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(serve(config, store, data_dir))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, store: Store, data_dir: PathBuf) -> anyhow::Result<()> {
    let backend = Arc::new(
        DockerBackend::connect(Duration::from_secs(10))
            .await
            .context("is the Docker daemon running? (`docker info` should answer)")?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let repos = config.repos.len();
    let tokens = config.tokens.len();
    let running =
        slipway_api::serve::start(config, store.clone(), &data_dir, backend, listener).await?;
    if !running.interrupted.is_empty() {
        eprintln!(
            "slipway: {} run(s) were interrupted by the last stop: {}",
            running.interrupted.len(),
            running.interrupted.join(", ")
        );
    }
    eprintln!(
        "slipway: serving on http://{} ({repos} repositories, data in {}); web page at http://{}/",
        running.addr,
        data_dir.display(),
        running.addr
    );
    if tokens == 0 {
        eprintln!(
            "slipway: no [[tokens]] configured: the API and the web page refuse every request"
        );
    }
    wait_for_signal().await;
    eprintln!("slipway: shutting down: cancelling running runs");
    running.shutdown.cancel();
    // Running runs see the cancel and clean up; don't hang forever on one.
    running.stopped(Duration::from_secs(30)).await;
    store.flush()?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
