//! Slipway's outer layer: the sled store, the server and the `slipway`
//! binary (`main.rs` and `cmd/`, a thin shell over this and the runner).
//!
//! Layers, each using only those below it, never those above:
//!
//! ```text
//! http      routes, auth, JSON views, event streams, the web page
//!   │
//!   ├──▶ runs      queue, executor, control, record
//!   ├──▶ release   promotions and previews
//!   └──▶ forge     webhooks in, commit statuses and deployments out
//!          │
//!          ▼
//!        store     the only module that touches sled; config, ids
//! ```
//!
//! Layout:
//! - [`serve`]: the composition root: starts everything `slipway serve` runs, for the binary and the tests alike.
//! - [`http`]: the axum app: webhooks in, `/api/v1`, event streams, the web page.
//! - [`runs`]: queueing, executing, cancelling and recording runs.
//! - [`release`]: promotion through environments, previews per pull request.
//! - [`forge`]: forge webhooks, commit statuses and deployments.
//! - [`store`]: the only module that touches sled; nothing else knows the key layout.
//! - [`retention`]: what `keep_runs` and `keep_mirrors` remove (`slipway gc`, and the server hourly).
//! - [`config`]: `slipway.toml`, validated with errors that name file, key and line.
//! - [`metrics`]: Prometheus counters, gauges and the step duration histogram.
//! - [`client`]: a client of `/api/v1`, for the CLI's remote commands.
//! - [`ids`]: run ids and timestamps.
//! - [`protocol`]: the runner protocol's wire types (claim, heartbeat, events), shared by the server and `slipway runner`.
//! - [`agent`]: `slipway runner`: takes runs from a server and runs them on this machine's Docker.
//! - [`vault`]: the key file secrets set at run time are sealed with, kept outside the data dir.

pub mod agent;
pub mod client;
pub mod config;
pub mod forge;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod protocol;
pub mod release;
pub mod retention;
pub mod runs;
pub mod serve;
pub mod store;
pub mod vault;

pub use store::{Accepted, Rerun, RunRecord, SourceRecord, StepRecord, Store, StoreError};
