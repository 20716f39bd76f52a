//! `slipway runner` (a build runner for a server, on this machine's
//! Docker) and `slipway runners add|ls|rm` (their registration, against
//! a server, admin).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use slipway_api::agent::AgentConfig;
use slipway_runner::DockerBackend;

#[derive(clap::Args)]
pub struct RunnerArgs {
    /// A file holding the runner's token (else SLIPWAY_RUNNER_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The name `slipway runners add` gave it; checked against the token.
    #[arg(long)]
    pub name: Option<String>,
    /// What `runs_on:` labels this runner satisfies, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Runs at once.
    #[arg(long, default_value_t = 2)]
    pub capacity: usize,
    /// A PEM certificate to trust for an https:// server with a private CA.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
}

/// Takes runs from `server` (http://host:port or https://...).
pub fn agent(args: RunnerArgs, server: &str, data_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let server = server.to_string();
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the runner token from {}", path.display()))?
            .trim()
            .to_string(),
        None => std::env::var("SLIPWAY_RUNNER_TOKEN").unwrap_or_default(),
    };
    if token.is_empty() {
        anyhow::bail!(
            "no runner token: set SLIPWAY_RUNNER_TOKEN or pass --token-file (an admin gets one from `slipway runners add NAME`)"
        );
    }
    // `--labels ""` means none.
    let mut args = args;
    args.labels.retain(|l| !l.is_empty());
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let backend = Arc::new(
            DockerBackend::connect(Duration::from_secs(10))
                .await
                .context("is the Docker daemon running? (`docker info` should answer)")?,
        );
        // Containers of runs a killed runner on this machine left behind.
        match backend.reap_orphans().await {
            Ok(reaped) if !reaped.is_empty() => eprintln!(
                "slipway runner: removed what {} interrupted run(s) left: {}",
                reaped.len(),
                reaped.join(", ")
            ),
            Ok(_) => {}
            Err(e) => eprintln!("slipway runner: cannot look for orphaned containers: {e}"),
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
        let stop = tokio_util::sync::CancellationToken::new();
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                super::serve::wait_for_signal().await;
                stop.cancel();
            });
        }
        eprintln!(
            "slipway runner: taking runs from {} (labels [{}], capacity {}, data in {})",
            server,
            args.labels.join(", "),
            args.capacity,
            data_dir.display()
        );
        slipway_api::agent::run(
            AgentConfig {
                server,
                token,
                name: args.name,
                labels: args.labels,
                capacity: args.capacity,
                data_dir,
                ca_cert: args.ca_cert,
                cache_max_bytes: slipway_api::config::DEFAULT_CACHE_MAX_BYTES,
            },
            backend,
            stop,
        )
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn add(server: &str, name: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = super::remote::client(server)?;
    let added = rt.block_on(client.post("/api/v1/runners", Some(json!({ "name": name }))))?;
    let token = added["token"].as_str().unwrap_or_default();
    eprintln!("runner `{name}` added; its token is shown this once:");
    println!("{token}");
    eprintln!(
        "start it with: SLIPWAY_RUNNER_TOKEN=<token> slipway runner --server {server} --name {name}"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn ls(server: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = super::remote::client(server)?;
    let list = rt.block_on(client.get("/api/v1/runners"))?;
    println!(
        "{:<20} {:<8} {:<20} {:>9} {:<14} RUNS",
        "NAME", "STATE", "LABELS", "BUSY", "LAST SEEN"
    );
    for r in list.as_array().into_iter().flatten() {
        let state = if r["unhealthy"].is_string() {
            "unhealthy"
        } else if r["online"].as_bool() == Some(true) {
            "online"
        } else {
            "offline"
        };
        let labels: Vec<&str> = r["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .collect();
        let runs: Vec<&str> = r["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .collect();
        let seen = r["last_seen_ms"]
            .as_u64()
            .map(super::remote::ago)
            .unwrap_or_else(|| "never".into());
        println!(
            "{:<20} {:<8} {:<20} {:>4}/{:<4} {:<14} {}",
            r["name"].as_str().unwrap_or("?"),
            state,
            labels.join(","),
            r["busy"].as_u64().unwrap_or(0),
            r["capacity"].as_u64().unwrap_or(0),
            seen,
            runs.join(" ")
        );
        if let Some(why) = r["unhealthy"].as_str() {
            println!("  unhealthy: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(server: &str, name: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = super::remote::client(server)?;
    rt.block_on(client.delete(&format!("/api/v1/runners/{name}")))?;
    println!("runner `{name}` removed: its token no longer works");
    Ok(ExitCode::SUCCESS)
}
