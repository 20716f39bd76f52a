//! `slipway run`: a pipeline on this machine, in Docker, recorded in the store.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use anyhow::{Context, bail};
use slipway_api::Store;
use slipway_api::ids::new_run_id;
use slipway_api::runs::record::{Recorder, new_run};
use slipway_engine::duration::{format_duration, parse_duration};
use slipway_engine::model::EVENTS;
use slipway_engine::{RunStatus, StepStatus, Trigger};
use slipway_runner::{DockerBackend, LogStream, RunEvent, RunOptions, Workspace, execute};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(default_value = ".slipway.yml")]
    file: PathBuf,
    /// The event this run stands for, matched by `when: { event: [...] }`.
    #[arg(long, default_value = "push")]
    event: String,
    /// The branch matched by `when: { branch: [...] }` (default: the source tree's git branch).
    #[arg(long)]
    branch: Option<String>,
    /// A secret's value, NAME=VALUE (repeatable); SLIPWAY_SECRET_<NAME> works too.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// The most steps running at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    jobs: usize,
    /// Mount the source tree itself instead of a copy: steps can change your files.
    #[arg(long)]
    bind: bool,
    /// The tree steps work on (default: the pipeline file's directory).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Time a cancelled step gets between SIGTERM and SIGKILL.
    #[arg(long, default_value = "10s")]
    grace: String,
}

pub fn run(args: RunArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let parsed = super::load(&args.file)?;
    if super::report(&parsed) {
        return Ok(ExitCode::FAILURE);
    }
    let pipeline = parsed.pipeline.expect("valid");
    if !EVENTS.contains(&args.event.as_str()) {
        bail!(
            "unknown event `{}` (events: {})",
            args.event,
            EVENTS.join(", ")
        );
    }
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let grace = parse_duration(&args.grace)
        .with_context(|| format!("invalid --grace `{}` (e.g. 10s)", args.grace))?;
    let source = match &args.source {
        Some(s) => s.clone(),
        None => args
            .file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| ".".into()),
    };
    let source = source
        .canonicalize()
        .with_context(|| format!("source tree `{}` not found", source.display()))?;
    let secrets = collect_secrets(&args.secrets, &pipeline)?;
    let branch = args
        .branch
        .clone()
        .or_else(|| git(&source, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD"));
    let mut env = Vec::new();
    if let Some(sha) = git(&source, &["rev-parse", "HEAD"]) {
        env.push(("SLIPWAY_COMMIT_SHA".to_string(), sha));
    }

    let store = Store::open(data_dir)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let backend = rt
        .block_on(DockerBackend::connect(grace))
        .context("is the Docker daemon running? (`docker info` should answer)")?;
    match rt.block_on(backend.reap_orphans()) {
        Ok(reaped) if !reaped.is_empty() => eprintln!(
            "slipway: removed what {} crashed run(s) left behind",
            reaped.len()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("slipway: warning: cannot check for leftovers of crashed runs: {e}"),
    }

    let run_id = new_run_id();
    let file = args.file.display().to_string();
    store.put_run(&new_run(
        &run_id,
        &pipeline,
        &file,
        &args.event,
        branch.as_deref(),
    ))?;
    store.flush()?;
    let options = RunOptions {
        run_id: run_id.clone(),
        jobs: args.jobs,
        trigger: Trigger {
            event: args.event.clone(),
            branch: branch.clone(),
            ..Trigger::default()
        },
        secrets,
        workspace: if args.bind {
            Workspace::Bind(source)
        } else {
            Workspace::Copy(source)
        },
        env,
        skip: Vec::new(),
        files: slipway_runner::StepFiles {
            cache: slipway_runner::cache::CacheStore::open(
                &data_dir.join("cache"),
                slipway_api::config::DEFAULT_CACHE_MAX_BYTES,
            )
            .map(Arc::new)
            .map_err(|e| eprintln!("slipway: directory caches are off: {e}"))
            .ok(),
            artifacts: Some(data_dir.join("artifacts").join(&run_id)),
            shared: None,
        },
        // The user's own code on the user's machine: one scope, which no
        // server run reads even if it shares the data dir.
        cache_scope: slipway_runner::cache::CacheScope::single(slipway_runner::cache::LOCAL_SCOPE),
        credentials: docker_logins(),
        // The server's defaults: a pipeline that passes here fits there.
        limits: slipway_api::config::DEFAULT_LIMITS,
    };
    let cancel = CancellationToken::new();
    rt.spawn(watch_signals(cancel.clone()));
    let (tx, mut rx) = mpsc::channel::<RunEvent>(1024);
    let job = {
        let pipeline = pipeline.clone();
        let cancel = cancel.clone();
        rt.spawn(async move { execute(Arc::new(backend), &pipeline, options, tx, cancel).await })
    };

    eprintln!(
        "slipway: run {run_id} of {} ({} steps, up to {} at once)",
        pipeline.name,
        pipeline.steps.len(),
        args.jobs
    );
    let mut printer = Printer::new(pipeline.steps.iter().map(|s| s.name.as_str()));
    let mut recorder = Recorder::new(store.clone(), &run_id);
    // Printing and sled writes happen here, on the main thread, off the runtime.
    recorder.drain(&mut rx, rt.handle(), |_, event| printer.print(event))?;
    let report = match rt.block_on(job).context("the run task failed")? {
        Ok(report) => report,
        Err(e) => {
            store.update_run(&run_id, |r| {
                r.status = slipway_api::store::RunStatus::Failed;
                r.error = Some(e.to_string());
            })?;
            store.flush()?;
            bail!(e);
        }
    };
    store.flush()?;

    println!();
    println!(
        "{:<w$}  {:<10}  {:>9}  {:>4}  ATTEMPTS",
        "STEP",
        "STATUS",
        "DURATION",
        "EXIT",
        w = printer.width.max(4)
    );
    for s in &report.steps {
        let ran = s.attempts > 0;
        println!(
            "{:<w$}  {:<10}  {:>9}  {:>4}  {}",
            s.name,
            s.status.as_str(),
            if ran {
                format_duration(s.duration)
            } else {
                "-".into()
            },
            s.exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            if ran {
                s.attempts.to_string()
            } else {
                "-".into()
            },
            w = printer.width.max(4)
        );
    }
    if let Some(error) = &report.error {
        println!("error: {error}");
    }
    println!(
        "run {run_id} {} in {}  (logs: slipway logs {run_id})",
        report.status,
        format_duration(report.duration)
    );
    Ok(match report.status {
        RunStatus::Success => ExitCode::SUCCESS,
        RunStatus::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

async fn watch_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let Ok(mut int) = signal(SignalKind::interrupt()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("\nslipway: cancelling: stopping containers and cleaning up (again to quit at once)");
    cancel.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("slipway: quitting without cleanup; the next run removes what is left");
    std::process::exit(130);
}

fn collect_secrets(
    given: &[String],
    pipeline: &slipway_engine::Pipeline,
) -> anyhow::Result<HashMap<String, String>> {
    let mut secrets = HashMap::new();
    for kv in given {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--secret takes NAME=VALUE, got `{kv}`");
        };
        secrets.insert(k.to_string(), v.to_string());
    }
    for step in &pipeline.steps {
        for name in &step.secrets {
            if !secrets.contains_key(name)
                && let Ok(v) = std::env::var(format!("SLIPWAY_SECRET_{name}"))
            {
                secrets.insert(name.clone(), v);
            }
        }
    }
    for (name, value) in &secrets {
        if let Err(m) = slipway_api::config::check_secret_value(value) {
            bail!("secret {name} {m}");
        }
    }
    Ok(secrets)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Step-prefixed output, coloured per step on a terminal.
struct Printer {
    colours: HashMap<String, &'static str>,
    width: usize,
    tty: bool,
    out: std::io::Stdout,
}

const PALETTE: &[&str] = &["36", "33", "35", "32", "34", "96", "93", "95"];

impl Printer {
    fn new<'a>(steps: impl Iterator<Item = &'a str>) -> Printer {
        let steps: Vec<&str> = steps.collect();
        Printer {
            width: steps.iter().map(|s| s.len()).max().unwrap_or(0),
            colours: steps
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), PALETTE[i % PALETTE.len()]))
                .collect(),
            tty: std::io::stdout().is_terminal(),
            out: std::io::stdout(),
        }
    }

    fn line(&mut self, step: &str, dim: bool, text: &str) {
        let mut out = self.out.lock();
        if self.tty {
            let c = self.colours.get(step).copied().unwrap_or("37");
            let body = if dim {
                format!("\x1b[2m{text}\x1b[0m")
            } else {
                text.to_string()
            };
            let _ = writeln!(out, "\x1b[{c}m{step:>w$} |\x1b[0m {body}", w = self.width);
        } else {
            let _ = writeln!(out, "{step:>w$} | {text}", w = self.width);
        }
    }

    fn print(&mut self, event: &RunEvent) {
        match event {
            RunEvent::Log { step, stream, line } => {
                self.line(step, *stream == LogStream::System, line)
            }
            RunEvent::ImagePull { image, status } => eprintln!("slipway: pull {image}: {status}"),
            RunEvent::ServiceStarted { service } => eprintln!("slipway: service {service} started"),
            RunEvent::StepStarted { step, attempt } if *attempt > 1 => {
                self.line(step, true, &format!("attempt {attempt}"))
            }
            RunEvent::StepStarted { .. } => {}
            RunEvent::StepFinished {
                step,
                status,
                duration,
                ..
            } => self.line(
                step,
                true,
                &format!("{status} in {}", format_duration(*duration)),
            ),
            RunEvent::StepSettled { step, status } => {
                let why = match status {
                    StepStatus::Skipped(slipway_engine::SkipReason::Upstream(s)) => {
                        format!("skipped: `{s}` failed")
                    }
                    other => other.to_string(),
                };
                self.line(step, true, &why)
            }
            RunEvent::RunError { message } => eprintln!("slipway: {message}"),
            RunEvent::StepOutput { step, image } => {
                self.line(step, true, &format!("output {image}"))
            }
            RunEvent::Artifacts { .. } => {}
            RunEvent::RunStarted { .. } | RunEvent::RunFinished { .. } | RunEvent::Phase { .. } => {
            }
        }
    }
}

/// The user's own Docker logins (`~/.docker/config.json`), if any, so a
/// local build can push where `docker push` could.
fn docker_logins() -> slipway_runner::Credentials {
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .map(|d| d.join("config.json"));
    let Some(path) = path else {
        return Default::default();
    };
    match std::fs::read_to_string(&path) {
        Ok(json) => slipway_runner::credentials::parse_docker_config(&json).unwrap_or_else(|e| {
            eprintln!("slipway: ignoring {}: {e}", path.display());
            Default::default()
        }),
        Err(_) => Default::default(),
    }
}
