//! The Slipway engine: what a pipeline *is* and how a run of it *proceeds*,
//! with no I/O at all (no tokio, Docker, HTTP or disk), so every rule here is
//! tested in milliseconds.
//!
//! Layout:
//! - [`diagnostic`]: a problem in a pipeline file, with file, line, column and hint.
//! - [`model`]: [`Pipeline`], [`Step`], [`Service`], [`When`] and the [`Trigger`] they match.
//! - [`parse`](mod@parse): YAML text to a [`Pipeline`] plus *every* diagnostic at once,
//!   one file per part of the pipeline file:
//!   - `parse/walk.rs`: the one walker every mapping goes through (mapping
//!     check, plain-word keys, unknown keys with a did-you-mean hint);
//!   - `parse/value.rs` (scalars, lists, names) and `parse/env.rs` (`env:`);
//!   - `parse/step.rs` (steps, `build`, `cache`), `parse/services.rs`,
//!     `parse/triggers.rs` (`on:`, `when:`), `parse/preview.rs`;
//!   - `parse/graph.rs`: `needs`, cycles and deploy-step environments.
//! - [`duration`]: `30s`, `5m`, `1h30m` and friends.
//! - [`size`]: `512MiB`, `2g` and friends.
//! - [`dag`]: the [`Plan`] (dependency graph of steps) and its text, DOT and Mermaid renderings.
//! - [`state`]: [`RunState`], the state machine that says which steps may start next.
//! - [`pattern`]: the glob patterns used by `when: { branch: [...] }`.
//! - [`template`]: `${VAR}` in build args and tags, and cache key templates.
//! - `suggest` (private): the "did you mean ...?" behind every hint.

pub mod dag;
pub mod diagnostic;
pub mod duration;
pub mod model;
pub mod parse;
pub mod pattern;
pub mod size;
pub mod state;
mod suggest;
pub mod template;

pub use dag::{GraphFormat, Plan};
pub use diagnostic::{Diagnostic, Severity};
pub use model::{Build, Cache, On, Pipeline, RefFilter, Resources, Service, Step, Trigger, When};
pub use parse::{Parsed, parse};
pub use state::{RunState, RunStatus, SkipReason, StepOutcome, StepStatus};
