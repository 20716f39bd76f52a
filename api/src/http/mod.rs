//! The HTTP edge: the axum app and everything only HTTP needs (state,
//! errors, auth, JSON views). Domain modules never use this one; handlers
//! call into `runs`, `release`, `forge` and `store`. `app()` builds the
//! router without a socket, so tests drive it directly.
//!
//! - [`hooks`]: `POST /hooks/{provider}`: verified forge webhooks become queued runs.
//! - [`runs`]: `/api/v1/runs`, trigger, rerun, cancel, logs, artifacts; bearer tokens and scopes.
//! - [`me`]: who a token is, and the configured repositories.
//! - [`promotions`]: environments, promotion requests, approvals, the audit log.
//! - [`previews`]: previews per pull request.
//! - [`runner`]: remote runners: the claim, heartbeat and events protocol, and their registration.
//! - [`secrets`]: secrets set at run time: set, list (never values), remove.
//! - [`events`]: Server-Sent Event streams of runs, the audit log and previews.
//! - [`ui`]: the web page's static files.
//! - [`ops`]: `/healthz`, `/metrics`, the OpenAPI document.
//! - [`auth`]: bearer tokens; [`auth::Reader`], [`auth::Writer`], [`auth::Admin`] put a route's scope in its signature.
//! - [`error`]: the one error type, answered in the API's JSON shape.
//! - [`views`]: wire types of promotions, environments, the audit log and previews.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::runs::Queue;
use crate::runs::control::RunControl;
use crate::store::Store;

pub mod auth;
pub mod error;
pub mod events;
pub mod hooks;
pub mod me;
pub mod ops;
pub mod previews;
pub mod promotions;
pub mod runner;
pub mod runs;
pub mod secrets;
pub mod ui;
pub mod views;

pub use error::ApiError;
pub use ops::OPENAPI;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    /// Where webhooks, triggers and reruns queue runs.
    pub queue: Queue,
    pub control: Arc<RunControl>,
    pub metrics: Arc<Metrics>,
    /// Ends open event streams when the server stops.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Runs' artifacts: `<artifacts_root>/<run id>/<step>/<path>`.
    pub artifacts_root: std::path::PathBuf,
    pub promoter: Arc<crate::release::promote::Promoter>,
    /// `None` when previews are off (no Docker or no listener).
    pub previews: Option<Arc<crate::release::preview::Previews>>,
    /// Seals secrets set through the API.
    pub vault: Arc<crate::vault::Vault>,
    /// Remote runners: claims, heartbeats, leases.
    pub dispatch: Arc<crate::runs::dispatch::Dispatch>,
    /// Directory caches remote runners share through the server.
    pub cache: Option<Arc<slipway_runner::cache::CacheStore>>,
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/hooks/{provider}", post(hooks::hook))
        .route("/api/v1/runs", get(runs::list_runs))
        .route("/api/v1/runs/{id}", get(runs::get_run))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel_run))
        .route("/api/v1/runs/{id}/rerun", post(runs::rerun))
        .route("/api/v1/trigger", post(runs::trigger))
        .route("/api/v1/runs/{id}/logs/{step}", get(runs::get_log))
        .route("/api/v1/runs/{id}/events", get(events::run_events))
        .route("/api/v1/events", get(events::all_events))
        .route("/api/v1/me", get(me::me))
        .route("/api/v1/repos", get(me::repos))
        .route(
            "/api/v1/repos/{owner}/{name}/environments",
            get(promotions::environments),
        )
        .route(
            "/api/v1/repos/{owner}/{name}/promotions",
            post(promotions::request),
        )
        .route("/api/v1/promotions", get(promotions::list))
        .route("/api/v1/promotions/{id}", get(promotions::get))
        .route("/api/v1/promotions/{id}/approve", post(promotions::approve))
        .route("/api/v1/promotions/{id}/reject", post(promotions::reject))
        .route("/api/v1/promotions/{id}/retry", post(promotions::retry))
        .route("/api/v1/audit", get(promotions::audit))
        .route(
            "/api/v1/secrets",
            get(secrets::list).put(secrets::set).delete(secrets::remove),
        )
        .route("/api/v1/audit/events", get(events::audit_events))
        .route("/api/v1/previews", get(previews::list))
        .route("/api/v1/previews/events", get(events::preview_events))
        .route(
            "/api/v1/previews/{owner}/{name}/{number}",
            get(previews::get).delete(previews::delete),
        )
        .route(
            "/api/v1/runs/{id}/artifacts/{step}/{*path}",
            get(runs::get_artifact),
        )
        .route("/api/v1/runner/claim", post(runner::claim))
        .route("/api/v1/runner/heartbeat", post(runner::heartbeat))
        .route("/api/v1/runner/events", post(runner::events))
        .route("/api/v1/runner/cache/lookup", post(runner::cache_lookup))
        .route("/api/v1/runner/cache/blob/{blob}", get(runner::cache_blob))
        .route(
            "/api/v1/runner/cache/entry",
            axum::routing::put(runner::cache_put),
        )
        .route(
            "/api/v1/runner/artifacts/{step}",
            axum::routing::put(runner::artifacts_put),
        )
        .route("/api/v1/runners", get(runner::list).post(runner::add))
        .route(
            "/api/v1/runners/{name}",
            axum::routing::delete(runner::remove),
        )
        .merge(ui::routes())
        .with_state(state)
}

impl AppState {
    /// State over `config` and `store` for unit tests: no executor, no
    /// previews, nobody hearing reports.
    #[cfg(test)]
    pub(crate) fn for_tests(config: Arc<Config>, store: Store) -> AppState {
        AppState {
            promoter: crate::release::promote::Promoter::new(
                config.clone(),
                store.clone(),
                Queue::for_tests(&store),
            ),
            queue: Queue::for_tests(&store),
            config,
            store,
            control: Arc::default(),
            metrics: Arc::default(),
            shutdown: Default::default(),
            artifacts_root: std::env::temp_dir().join("slipway-no-artifacts"),
            previews: None,
            cache: None,
            dispatch: Arc::new(crate::runs::dispatch::Dispatch::new(
                std::time::Duration::from_secs(10),
                Arc::default(),
            )),
            vault: Arc::new(
                crate::vault::Vault::open(
                    &std::env::temp_dir()
                        .join(format!("slipway-key-{}", crate::ids::new_run_id()))
                        .join("secrets.key"),
                    &[],
                )
                .expect("a key in the temp dir"),
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SECRET: &str = "webhook-secret";

    /// Two repositories; `extra` is appended to the config, so it may add
    /// to the second one (environments) or add tokens.
    pub(crate) fn test_state(extra: &str) -> (AppState, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("slipway-srv-{}", crate::ids::new_run_id()));
        let config = Config::parse(
            "test.toml",
            &(["Codertocat/Hello-World", "Octocoders/Hello-World"]
                .map(|name| format!("[[repos]]\nname = \"{name}\"\nprovider = \"github\"\nclone_url = \"file:///nowhere\"\nwebhook_secret = \"{SECRET}\"\n"))
                .concat()
                + extra),
        )
        .unwrap();
        let state = AppState::for_tests(Arc::new(config), Store::open(&dir).unwrap());
        (state, dir)
    }
}
