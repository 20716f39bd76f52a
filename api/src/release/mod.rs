//! Images on their way to users: promotion through environments behind
//! approvals, and a preview per pull request.
//!
//! - [`promote`]: gates, copy by digest, the deploy run.
//! - [`preview`]: a container per pull request, its lifecycle and its proxy.

pub mod preview;
pub mod promote;
