//! The `slipway` binary: argument parsing, logging, then the subcommand.
//! Everything with logic lives in the library crates, so tests call it too.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "slipway",
    version,
    about = "Container-native CI/CD: pipelines as DAGs of steps in containers"
)]
struct Cli {
    /// Where runs and logs are kept.
    #[arg(long, global = true, env = "SLIPWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A Slipway server to talk to (runs, logs, cancel, rerun, trigger); its token comes from SLIPWAY_TOKEN.
    #[arg(long, global = true, env = "SLIPWAY_SERVER")]
    server: Option<String>,
    /// Log Slipway's own diagnostics as JSON lines (to stderr).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a pipeline file and report every problem in it.
    Validate {
        #[arg(default_value = ".slipway.yml")]
        file: PathBuf,
    },
    /// Show a pipeline's steps and their dependencies.
    Graph {
        #[arg(default_value = ".slipway.yml")]
        file: PathBuf,
        /// text, dot or mermaid
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Run a pipeline on this machine, in Docker containers.
    Run(cmd::run::RunArgs),
    /// Serve webhooks: forge events start runs (see slipway.toml in the README).
    Serve {
        /// The server configuration (default: ./slipway.toml if present, else defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Remove ended runs older than `keep_runs` (logs, artifacts) and git
    /// mirrors unused for `keep_mirrors`; prints what it removes. Not while
    /// the server uses the data dir: the server does this hourly itself.
    Gc {
        /// The server configuration (default: ./slipway.toml if present, else defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List recent runs.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print the logs of a run (id or unique prefix).
    Logs {
        run: String,
        /// Only this step.
        #[arg(long)]
        step: Option<String>,
        /// Keep printing until the run ends (with --server); exit 0 only if it succeeded.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Cancel a queued or running run (with --server).
    Cancel { run: String },
    /// Run a run's commit again (with --server).
    Rerun {
        run: String,
        /// Only the steps that did not succeed, and the steps they need.
        #[arg(long)]
        failed: bool,
    },
    /// A repository's environments, the digest each holds, and pending promotions (with --server).
    Envs {
        /// owner/name
        repo: String,
    },
    /// Ask to promote an image into an environment (with --server).
    Promote {
        /// owner/name
        repo: String,
        #[arg(long)]
        to: String,
        /// Default: the digest the environment's `from` holds now.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Approve a promotion (with --server; you must be one of its environment's approvers).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a promotion (with --server).
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Open pull request previews, or remove one (with --server).
    Previews {
        /// Remove this preview: owner/name#NUMBER.
        #[arg(long)]
        rm: Option<String>,
    },
    /// Directory caches kept under the data dir.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// List a run's artifacts, or download one (local runs' from the data
    /// dir; a server's with --server).
    Artifacts {
        run: String,
        /// `STEP/PATH` of the artifact to download.
        artifact: Option<String>,
        /// Where to write the download (default: the artifact's file name).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Secrets on a server: set (value from stdin), ls (never values), rm; rotate-key on the data dir.
    Secret {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Take runs from a server and run them on this machine's Docker
    /// (token from SLIPWAY_RUNNER_TOKEN or --token-file).
    Runner(cmd::runner::RunnerArgs),
    /// Remote runners of a server (with --server, admin): add prints a token once; ls; rm.
    Runners {
        #[command(subcommand)]
        action: RunnersAction,
    },
    /// Start a run of what a branch, tag or ref points at now (with --server).
    Trigger {
        /// owner/name
        repo: String,
        #[arg(name = "REF")]
        git_ref: String,
    },
}

#[derive(Subcommand)]
enum RunnersAction {
    /// Register a runner; its token is printed once.
    Add { name: String },
    /// Every runner: state, labels, busy slots, last seen, current runs.
    Ls,
    /// Remove a runner; its token stops working.
    Rm { name: String },
}

#[derive(Subcommand)]
enum SecretAction {
    /// Set a secret (with --server); its value is read from stdin, never an argument.
    Set {
        /// owner/name, or `server` for a server-wide secret (admin).
        repo: String,
        name: String,
        /// Only the deploy steps of this environment's promotions get it.
        #[arg(long)]
        environment: Option<String>,
        /// Only runs of these events: push, tag, pull_request, manual, deploy.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only runs on branches matching these globs.
        #[arg(long, value_delimiter = ',')]
        branches: Vec<String>,
        /// Only runs of tags matching these globs.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// The secrets you may manage: names, scopes, who set them and when (with --server).
    Ls {
        /// Only this repository's (and its environments').
        repo: Option<String>,
    },
    /// Remove a secret set at run time (with --server).
    Rm {
        /// owner/name, or `server`.
        repo: String,
        name: String,
        #[arg(long)]
        environment: Option<String>,
    },
    /// Re-encrypt the data dir's secrets with a new key, replacing the key
    /// file (`[server] secrets_key`). Stop the server first.
    RotateKey {
        /// The server configuration (default: ./slipway.toml if present, else defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Every entry, most recently used first.
    Ls,
    /// Remove entries by key, in every scope unless `--scope` names one.
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
        /// Only this scope's entries (as `slipway cache ls` shows it).
        #[arg(long)]
        scope: Option<String>,
    },
    /// Remove least recently used entries until the rest fit.
    Prune {
        /// e.g. `2GB`; `0` removes everything.
        #[arg(long, default_value = "0")]
        max_size: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A runner is a daemon: what it takes, loses and is told is its
    // operator's only view of it.
    let default_log = match cli.command {
        Command::Runner(_) => "warn,slipway_api=info,slipway_runner=info",
        _ => "warn",
    };
    init_tracing(cli.log_json, default_log);
    let data_dir_flag = cli.data_dir.clone();
    let data_dir = cli.data_dir.unwrap_or_else(default_data_dir);
    let result = match cli.command {
        Command::Serve { config } => cmd::serve::run(config.as_deref(), data_dir_flag, data_dir),
        Command::Gc { config, dry_run } => {
            cmd::gc::run(config.as_deref(), data_dir_flag, data_dir, dry_run)
        }
        Command::Validate { file } => cmd::validate::run(&file),
        Command::Graph { file, format } => cmd::graph::run(&file, &format),
        Command::Run(args) => cmd::run::run(args, &data_dir),
        Command::Runs { limit } => match &cli.server {
            Some(server) => cmd::remote::runs(server, limit),
            None => cmd::runs::run(&data_dir, limit),
        },
        Command::Logs { run, step, follow } => match &cli.server {
            Some(server) => cmd::remote::logs(server, &run, step.as_deref(), follow),
            None if follow => Err(anyhow::anyhow!(
                "--follow reads a server's live logs: pass --server or set SLIPWAY_SERVER"
            )),
            None => cmd::logs::run(&data_dir, &run, step.as_deref()),
        },
        Command::Cancel { run } => with_server(cli.server.as_deref(), "cancel", |s| {
            cmd::remote::cancel(s, &run)
        }),
        Command::Rerun { run, failed } => with_server(cli.server.as_deref(), "rerun", |s| {
            cmd::remote::rerun(s, &run, failed)
        }),
        Command::Envs { repo } => with_server(cli.server.as_deref(), "envs", |s| {
            cmd::remote::envs(s, &repo)
        }),
        Command::Promote { repo, to, digest } => {
            with_server(cli.server.as_deref(), "promote", |s| {
                cmd::remote::promote(s, &repo, &to, digest.as_deref())
            })
        }
        Command::Approve { id, comment } => with_server(cli.server.as_deref(), "approve", |s| {
            cmd::remote::decide(s, &id, "approve", comment.as_deref())
        }),
        Command::Reject { id, comment } => with_server(cli.server.as_deref(), "reject", |s| {
            cmd::remote::decide(s, &id, "reject", comment.as_deref())
        }),
        Command::Previews { rm } => with_server(cli.server.as_deref(), "previews", |s| {
            cmd::remote::previews(s, rm.as_deref())
        }),
        Command::Cache { action } => match action {
            CacheAction::Ls => cmd::cache::ls(&data_dir),
            CacheAction::Rm { keys, scope } => cmd::cache::rm(&data_dir, &keys, scope.as_deref()),
            CacheAction::Prune { max_size } => cmd::cache::prune(&data_dir, &max_size),
        },
        Command::Artifacts {
            run,
            artifact,
            output,
        } => match cli.server.as_deref() {
            Some(s) => cmd::remote::artifacts(s, &run, artifact.as_deref(), output.as_deref()),
            None => cmd::artifacts::local(&data_dir, &run, artifact.as_deref(), output.as_deref()),
        },
        Command::Runner(args) => with_server(cli.server.as_deref(), "runner", |s| {
            cmd::runner::agent(args, s, data_dir)
        }),
        Command::Runners { action } => match action {
            RunnersAction::Add { name } => with_server(cli.server.as_deref(), "runners add", |s| {
                cmd::runner::add(s, &name)
            }),
            RunnersAction::Ls => with_server(cli.server.as_deref(), "runners ls", cmd::runner::ls),
            RunnersAction::Rm { name } => with_server(cli.server.as_deref(), "runners rm", |s| {
                cmd::runner::rm(s, &name)
            }),
        },
        Command::Secret { action } => match action {
            SecretAction::Set {
                repo,
                name,
                environment,
                events,
                branches,
                tags,
            } => with_server(cli.server.as_deref(), "secret set", |s| {
                cmd::secret::set(
                    s,
                    cmd::secret::SetArgs {
                        target: &repo,
                        name: &name,
                        environment: environment.as_deref(),
                        events,
                        branches,
                        tags,
                    },
                )
            }),
            SecretAction::Ls { repo } => with_server(cli.server.as_deref(), "secret ls", |s| {
                cmd::secret::ls(s, repo.as_deref())
            }),
            SecretAction::Rm {
                repo,
                name,
                environment,
            } => with_server(cli.server.as_deref(), "secret rm", |s| {
                cmd::secret::rm(s, &repo, &name, environment.as_deref())
            }),
            SecretAction::RotateKey { config } => {
                cmd::secret::rotate_key(config.as_deref(), data_dir_flag, data_dir)
            }
        },
        Command::Trigger { repo, git_ref } => with_server(cli.server.as_deref(), "trigger", |s| {
            cmd::remote::trigger(s, &repo, &git_ref)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn with_server(
    server: Option<&str>,
    what: &str,
    f: impl FnOnce(&str) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match server {
        Some(s) => f(s),
        None => Err(anyhow::anyhow!(
            "`slipway {what}` talks to a server: pass --server or set SLIPWAY_SERVER (and SLIPWAY_TOKEN)"
        )),
    }
}

fn init_tracing(json: bool, default: &str) {
    use tracing_subscriber::EnvFilter;
    // Quiet by default: the CLI's own output is what users read.
    let filter = EnvFilter::try_from_env("SLIPWAY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("slipway");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/slipway"),
        None => PathBuf::from(".slipway-data"),
    }
}
