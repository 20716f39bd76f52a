//! What Slipway says to and hears from forges (GitHub, Gitea, Forgejo,
//! GitLab): webhooks in, commit statuses and deployments out.
//!
//! - [`webhook`]: signatures, delivery ids, what an event asks for.
//! - [`status`]: commit statuses and deployments, retried, never failing a run.

pub mod status;
pub mod webhook;
