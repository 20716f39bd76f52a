//! One module per subcommand, a thin shell over the library:
//! [`validate`], [`graph`], [`run`] (a local run), [`runs`] and [`logs`]
//! (the local store), [`cache`], [`artifacts`] (local or remote), [`serve`],
//! [`gc`] (retention), [`secret`] (secrets on a server, key rotation), and
//! [`remote`] (every command that talks to a server).

pub mod artifacts;
pub mod cache;
pub mod gc;
pub mod graph;
pub mod logs;
pub mod remote;
pub mod run;
pub mod runs;
pub mod secret;
pub mod serve;
pub mod validate;

use std::path::Path;

use anyhow::Context;
use slipway_engine::{Parsed, parse};

/// Reads and parses a pipeline file; the caller reports the diagnostics.
pub fn load(file: &Path) -> anyhow::Result<Parsed> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read pipeline file `{}`", file.display()))?;
    Ok(parse(&file.display().to_string(), &source))
}

/// Prints diagnostics to stderr; returns whether any is an error.
pub fn report(parsed: &Parsed) -> bool {
    for d in &parsed.diagnostics {
        eprintln!("{d}");
    }
    parsed.has_errors()
}
