//! `slipway serve` end to end, in process: a signed real webhook body for a
//! commit of a local bare repository becomes a run in real Docker. One
//! module per topic; the harness (the server, signed webhooks, the fake
//! forge, waits) is in `tests/support/`.

// Webhooks in: a signed push becomes a run of its commit, exactly once.
mod webhooks;
// The run queue: newer pushes supersede, a repository's limit holds.
mod queue;
// The JSON API and the CLI through it: cancel, rerun, trigger, artifacts.
mod api;
// Server-sent events: live, resumable, per run and for every run.
mod events;
// Commit statuses on the forge, and a forge that refuses them.
mod statuses;
// The real binary stopped and killed: no run lost, no container left.
mod crash;
// Promotions: images by digest through environments behind approvals.
mod promotion;
// Previews: a live container per pull request behind the preview proxy.
mod previews;
// Images: an untrusted run's build cannot replace what trusted runs resolve.
mod images;
// The web UI in headless Chromium against a real server.
mod ui;
// Trust: what untrusted pull requests never get; clone credentials.
mod trust;
// Directory caches scoped by repository and ref: a fork cannot poison them.
mod caches;
// Retention: `slipway gc` and the server's sweep remove old runs and idle mirrors.
mod retention;
// Secrets: set through the API, sealed at rest, given by scope and filter, masked.
mod secrets;
