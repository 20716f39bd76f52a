//! Everything `slipway serve` runs, wired in one place so the binary and
//! the tests start exactly the same server.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use slipway_runner::Backend;
use slipway_runner::git::Mirrors;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::{AppState, app};
use crate::runs::control::RunControl;
use crate::runs::executor::Executor;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the listener has no address: {0}")]
    Listener(#[from] std::io::Error),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

pub struct Running {
    pub addr: SocketAddr,
    /// The preview proxy's address, when previews are on.
    pub preview_addr: Option<SocketAddr>,
    /// Runs the last stop interrupted (now marked so).
    pub interrupted: Vec<String>,
    /// Cancel to stop at once: no new work, running runs cancelled (with no
    /// reason recorded; [`Running::cancel_runs`] first gives one).
    pub shutdown: CancellationToken,
    /// A child of `shutdown`: cancelled alone, the listeners close and no
    /// queued run starts, while running runs go on.
    accepting: CancellationToken,
    control: Arc<RunControl>,
    runs: TaskTracker,
    server: JoinHandle<std::io::Result<()>>,
    executor: JoinHandle<()>,
}

/// Recorded on each run a stopping server cancels.
pub const SHUTDOWN_REASON: &str = "cancelled: the server was shutting down";

impl Running {
    /// Runs in progress.
    pub fn running_runs(&self) -> usize {
        self.control.running()
    }

    /// Closes the listeners and starts no further queued run; running runs
    /// go on (queued ones wait for the next start).
    pub fn stop_accepting(&self) {
        self.accepting.cancel();
    }

    /// Stops accepting, and cancels every running run, recording why.
    pub fn cancel_runs(&self) {
        self.stop_accepting();
        self.control.cancel_all(SHUTDOWN_REASON);
    }

    /// Resolves when every run this server started has ended: containers
    /// removed and final status recorded.
    pub async fn runs_ended(&self) {
        self.runs.close();
        self.runs.wait().await;
    }

    /// Cancels what is still running, waits at most `grace` for the runs to
    /// clean up, then for the listeners and the executor. Returns how many
    /// runs had not ended by then (the next start marks them interrupted).
    pub async fn stopped(self, grace: std::time::Duration) -> usize {
        self.cancel_runs();
        let _ = tokio::time::timeout(grace, self.runs_ended()).await;
        let left = self.runs.len();
        self.shutdown.cancel();
        let _ = self.server.await;
        let _ = self.executor.await;
        left
    }
}

/// Reconciles after the last stop, then starts the executor, the status
/// reporter and the HTTP server on `listener`.
pub async fn start<B: Backend>(
    config: Config,
    store: Store,
    data_dir: &Path,
    backend: Arc<B>,
    listener: TcpListener,
) -> Result<Running, ServeError> {
    // Before anything runs: a store whose secrets this key cannot open
    // must not start runs that would quietly go without them.
    let key_ids: Vec<String> = store
        .secrets()?
        .into_iter()
        .map(|r| r.sealed.key_id)
        .collect();
    let vault = Arc::new(crate::vault::Vault::open(&config.secrets_key, &key_ids)?);
    let config = Arc::new(config);
    let queued = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    // Everything but the runs themselves stops when the server stops
    // accepting; the runs stop when `shutdown` itself is cancelled.
    let accepting = shutdown.child_token();
    let runs = TaskTracker::new();
    let control: Arc<RunControl> = Arc::default();
    let reports = crate::forge::status::spawn_reporter(store.clone(), config.clone());
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    // Previews need Docker and a listener of their own; without either the
    // server still runs pipelines.
    let (previews, preview_listener) = start_previews(&config, &store).await;
    let queue = crate::runs::Queue::new(
        store.clone(),
        control.clone(),
        queued.clone(),
        reports.clone(),
        config.cancel_superseded,
    );
    let promoter = Arc::new(crate::release::promote::Promoter {
        config: config.clone(),
        store: store.clone(),
        queue: queue.clone(),
        shutdown: shutdown.clone(),
    });
    // One instance for the executor and the retention sweep, so a sweep
    // never removes a mirror a run is fetching into.
    let mirrors = Arc::new(Mirrors::new(data_dir.join("mirrors")));
    // One store for the built-in runner's runs and remote runners' shares.
    let cache = match slipway_runner::cache::CacheStore::open(
        &data_dir.join("cache"),
        config.cache_max_bytes,
    ) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "directory caches are off");
            None
        }
    };
    let dispatch = Arc::new(crate::runs::dispatch::Dispatch::new(
        config.runner_lease,
        queued.clone(),
    ));
    let executor = Arc::new(Executor {
        config: config.clone(),
        store: store.clone(),
        backend,
        mirrors: mirrors.clone(),
        work_root: data_dir.join("work"),
        queued: queued.clone(),
        queue: queue.clone(),
        control: control.clone(),
        reports: reports.clone(),
        metrics: metrics.clone(),
        shutdown: accepting.clone(),
        cancel_runs: shutdown.clone(),
        runs: runs.clone(),
        cache: cache.clone(),
        artifacts_root: data_dir.join("artifacts"),
        vault: vault.clone(),
        followers: {
            let mut followers: Vec<Arc<dyn crate::runs::RunFollower>> = vec![promoter.clone()];
            if let Some(previews) = &previews {
                followers.push(previews.clone());
            }
            followers
        },
        dispatch: dispatch.clone(),
        adopted: Default::default(),
        texts: Default::default(),
        reading: Default::default(),
    });
    if config.local_runner {
        // The daemon's health, asked every few seconds: what /healthz and
        // the metrics say, and what lets the executor take runs again.
        let (backend, metrics, queued, stop) = (
            executor.backend.clone(),
            metrics.clone(),
            queued.clone(),
            accepting.clone(),
        );
        tokio::spawn(async move {
            loop {
                let health = backend.probe().await;
                let back = health.is_ok() && metrics.docker().is_some();
                metrics.set_docker(health);
                if back {
                    queued.notify_one();
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let interrupted = executor.reconcile().await?;
    if let Some(previews) = &previews
        && let Err(e) = previews.reconcile().await
    {
        tracing::warn!(error = %e, "cannot reconcile previews");
    }
    promoter.reconcile()?;
    {
        let (promoter, stop) = (promoter.clone(), accepting.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                    _ = stop.cancelled() => return,
                }
                let p = promoter.clone();
                let _ = tokio::task::spawn_blocking(move || p.expire_due()).await;
            }
        });
    }
    spawn_retention(&config, &store, data_dir, mirrors, accepting.clone());
    let executor = tokio::spawn(executor.run());
    let addr = listener.local_addr()?;
    let state = AppState {
        config,
        store,
        queue,
        control: control.clone(),
        metrics,
        shutdown: accepting.clone(),
        artifacts_root: data_dir.join("artifacts"),
        promoter,
        previews: previews.clone(),
        vault,
        dispatch,
        cache,
    };
    let preview_addr = preview_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let (Some(previews), Some(listener)) = (previews, preview_listener) {
        let stop = accepting.clone();
        let app = crate::release::preview::proxy_app(previews.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        let stop = accepting.clone();
        let every = (config_ttl_half(&previews)).min(std::time::Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => previews.expire_idle().await,
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    let stop = accepting.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    Ok(Running {
        addr,
        preview_addr,
        interrupted,
        shutdown,
        accepting,
        control,
        runs,
        server,
        executor,
    })
}

/// How often the server sweeps old runs and idle mirrors.
pub const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sweeps at once, then every [`RETENTION_EVERY`], until `stop`.
fn spawn_retention(
    config: &Config,
    store: &Store,
    data_dir: &Path,
    mirrors: Arc<Mirrors>,
    stop: CancellationToken,
) {
    let policy = crate::retention::Policy::of(config);
    if !policy.removes_anything() {
        return;
    }
    let (store, artifacts_root) = (store.clone(), data_dir.join("artifacts"));
    tokio::spawn(async move {
        loop {
            let (store, root, mirrors, token) = (
                store.clone(),
                artifacts_root.clone(),
                mirrors.clone(),
                stop.clone(),
            );
            // Sled and the file system block: off the async workers.
            let swept = tokio::task::spawn_blocking(move || {
                let places = crate::retention::Places {
                    store: &store,
                    artifacts_root: &root,
                    mirrors: &mirrors,
                };
                let report = crate::retention::sweep(&places, &policy, false, &token)?;
                store.flush()?;
                Ok::<_, crate::retention::RetentionError>(report)
            })
            .await;
            match swept {
                Ok(Ok(report)) if report.is_empty() => {}
                Ok(Ok(report)) => {
                    for line in report.lines() {
                        tracing::info!(target: "slipway::retention", "{line}");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "retention sweep failed"),
                Err(e) => tracing::warn!(error = %e, "retention sweep did not finish"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETENTION_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}

fn config_ttl_half(previews: &crate::release::preview::Previews) -> std::time::Duration {
    previews.ttl() / 2
}

async fn start_previews(
    config: &Arc<Config>,
    store: &Store,
) -> (
    Option<Arc<crate::release::preview::Previews>>,
    Option<TcpListener>,
) {
    let docker =
        match slipway_runner::DockerBackend::connect(std::time::Duration::from_secs(5)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "previews are off: no Docker");
                return (None, None);
            }
        };
    let listener = match TcpListener::bind(config.preview_listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(addr = %config.preview_listen, error = %e, "previews are off: cannot listen");
            return (None, None);
        }
    };
    let Ok(addr) = listener.local_addr() else {
        return (None, None);
    };
    let previews =
        crate::release::preview::Previews::new(config.clone(), store.clone(), docker, addr);
    (Some(previews), Some(listener))
}
