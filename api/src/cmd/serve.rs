//! `slipway serve`: webhooks in, runs out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slipway_api::Store;
use slipway_api::config::Config;
use slipway_api::executor::Executor;
use slipway_api::server::{AppState, app};
use slipway_runner::DockerBackend;
use slipway_runner::git::Mirrors;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    let config = Arc::new(config);
    let queued = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let control: Arc<slipway_api::control::RunControl> = Arc::default();
    let reports = slipway_api::report::spawn_reporter(store.clone(), config.clone());
    let metrics: Arc<slipway_api::metrics::Metrics> = Arc::default();
    let executor = Arc::new(Executor {
        control: control.clone(),
        reports: reports.clone(),
        metrics: metrics.clone(),
        config: config.clone(),
        store: store.clone(),
        backend,
        mirrors: Arc::new(Mirrors::new(data_dir.join("mirrors"))),
        work_root: data_dir.join("work"),
        queued: queued.clone(),
        shutdown: shutdown.clone(),
    });
    let interrupted = executor.reconcile().await?;
    if !interrupted.is_empty() {
        eprintln!(
            "slipway: {} run(s) were interrupted by the last stop: {}",
            interrupted.len(),
            interrupted.join(", ")
        );
    }
    let worker = tokio::spawn(executor.run());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    eprintln!(
        "slipway: serving on http://{} ({} repositories, data in {})",
        listener.local_addr()?,
        config.repos.len(),
        data_dir.display()
    );
    let state = AppState {
        config,
        store: store.clone(),
        queued,
        control,
        reports,
        metrics,
    };
    let stop = shutdown.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            wait_for_signal().await;
            eprintln!("slipway: shutting down: cancelling running runs");
            stop.cancel();
        })
        .await?;
    // Running runs see the cancel and clean up; don't hang forever on one.
    let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
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
