//! `slipway serve`: webhooks in, runs out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slipway_api::Store;
use slipway_api::config::{Config, OnShutdown};
use slipway_runner::DockerBackend;

pub fn run(
    config_path: Option<&Path>,
    data_dir_flag: Option<PathBuf>,
    default_data_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let (config, data_dir) = super::server_setup(config_path, data_dir_flag, default_data_dir)?;
    let store = Store::open(&data_dir)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(serve(config, store, data_dir))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config, store: Store, data_dir: PathBuf) -> anyhow::Result<()> {
    // A cancelled step's container gets SIGTERM, then SIGKILL after this:
    // well inside the time a stopping server gives its runs to clean up.
    let stop_grace = (config.shutdown_timeout / 2).min(Duration::from_secs(10));
    let backend = Arc::new(
        DockerBackend::connect(stop_grace)
            .await
            .context("is the Docker daemon running? (`docker info` should answer)")?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let repos = config.repos.len();
    let tokens = config.tokens.len();
    let (on_shutdown, timeout) = (config.on_shutdown, config.shutdown_timeout);
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
    if on_shutdown == OnShutdown::Wait && running.running_runs() > 0 {
        eprintln!(
            "slipway: shutting down: no new runs; waiting for {} running run(s) to finish (signal again to cancel them)",
            running.running_runs()
        );
        running.stop_accepting();
        tokio::select! {
            _ = running.runs_ended() => {}
            _ = wait_for_signal() => {}
        }
    }
    let cancelling = running.running_runs();
    if cancelling > 0 {
        eprintln!("slipway: shutting down: cancelling {cancelling} running run(s)");
    } else {
        eprintln!("slipway: shutting down");
    }
    let left = running.stopped(timeout).await;
    // Off the async workers: sled's flush is blocking I/O.
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .context("the final flush did not run")??;
    if left > 0 {
        eprintln!(
            "slipway: {left} run(s) had not stopped within {}; the next start marks them interrupted",
            slipway_engine::duration::format_duration(timeout)
        );
    } else if cancelling > 0 {
        eprintln!("slipway: every run stopped and recorded; store flushed");
    }
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
