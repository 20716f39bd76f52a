//! Slipway's outer layer: what is kept (the sled [`store`]) and how runs are
//! recorded into it ([`record`]). The `slipway` binary (`main.rs` and
//! `cmd/`) is a thin shell over this and the runner.
//!
//! Layout:
//! - [`store`]: the only module that touches sled; nothing else knows the key layout.
//! - [`record`]: turns runner events into stored runs, step states and log chunks.
//! - [`ids`]: run ids and timestamps.
//! - [`control`]: runs in progress and how to cancel them.
//! - [`executor`]: starts queued runs from their commit; reconciles after a crash.
//! - [`api_v1`]: the JSON API under `/api/v1`, with bearer tokens and scopes.
//! - [`metrics`]: Prometheus counters, gauges and the step duration histogram.
//! - [`report`]: commit statuses on the forge, retried, never failing a run.
//! - [`serve`]: starts everything `slipway serve` runs, for the binary and the tests alike.
//! - [`server`]: the axum app: webhooks in, runs queued durably.
//! - [`webhook`]: forge webhooks: signatures, delivery ids, what an event asks for.
//! - [`client`]: a client of `/api/v1`, for the CLI's remote commands.
//! - [`config`]: `slipway.toml`, validated with errors that name file, key and line.

pub mod api_me;
pub mod api_preview;
pub mod api_promote;
pub mod api_v1;
pub mod client;
pub mod config;
pub mod control;
pub mod executor;
pub mod ids;
pub mod metrics;
pub mod preview;
pub mod promote;
pub mod record;
pub mod report;
pub mod serve;
pub mod server;
pub mod sse;
pub mod store;
pub mod ui;
pub mod webhook;

pub use store::{Accepted, Rerun, RunRecord, SourceRecord, StepRecord, Store, StoreError};
