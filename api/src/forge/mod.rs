//! What Slipway says to and hears from forges (GitHub, Gitea, Forgejo,
//! GitLab): webhooks in, commit statuses and deployments out.
//!
//! - [`webhook`]: signatures, delivery ids, what an event asks for.
//! - [`status`]: commit statuses, retried, never failing a run; the forge's API client.
//! - [`deployments`]: deployments and pull request comments, for promotions and previews.

pub mod deployments;
pub mod status;
pub mod webhook;
