//! `slipway.toml`: the server's configuration. A bad config names the file,
//! the key and the problem, and the server does not start.
//!
//! The `[server]` and `[[tokens]]` sections are read here; the others have a
//! file each: [`repos`] (repositories and their environments),
//! [`registries`] (logins), [`secrets`] (values given inline, by
//! environment variable or by file), [`limits`] (`[server]` limits of step
//! containers and their logs).

mod limits;
mod registries;
mod repos;
mod secrets;

pub use limits::DEFAULT_LIMITS;
pub use repos::PullRequestTrust;
use secrets::resolve;
pub use secrets::{
    ConfiguredSecret, MIN_SECRET_LEN, check_filter, check_secret_value, is_variable_name,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, one per line, each `FILE:LINE:COL: message` or `FILE: key: message`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitea,
    Forgejo,
    Gitlab,
}

/// What `slipway serve` does with running runs when it is told to stop
/// (SIGTERM, Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShutdown {
    /// Cancel them: containers stopped and removed, status `cancelled`.
    #[default]
    Cancel,
    /// Let them finish (no new run starts); a second signal cancels them.
    Wait,
}

/// A secret given inline, by environment variable or by file, so configs
/// can be committed without the secrets in them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    repos: Vec<RawRepo>,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    registries: Vec<RawRegistry>,
    #[serde(default)]
    secrets: Vec<secrets::RawServerSecret>,
}

/// A registry login, or a Docker `config.json` holding several.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    host: Option<String>,
    username: Option<String>,
    password: Option<SecretSource>,
    docker_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    user: String,
    token: SecretSource,
    scope: Scope,
    /// Repositories whose secrets a write token may manage.
    #[serde(default)]
    maintains: Vec<String>,
}

/// What an API token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

/// An API token, resolved, and the user it stands for.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub user: String,
    pub token: String,
    pub scope: Scope,
    /// Repositories (owner/name) whose secrets it may set and remove.
    pub maintains: Vec<String>,
}

impl ApiToken {
    /// Whether it may manage `repo`'s secrets (and its environments') as
    /// a maintainer: a write token that lists it.
    pub fn maintains(&self, repo: &str) -> bool {
        self.scope >= Scope::Write && self.maintains.iter().any(|m| m.eq_ignore_ascii_case(repo))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    secrets_key: Option<PathBuf>,
    max_concurrent_runs: Option<usize>,
    cancel_superseded: Option<bool>,
    requeue_interrupted: Option<bool>,
    public_url: Option<String>,
    cache_max_size: Option<String>,
    preview_listen: Option<String>,
    preview_domain: Option<String>,
    preview_ttl: Option<String>,
    preview_routing: Option<toml::Spanned<String>>,
    shutdown: Option<OnShutdown>,
    shutdown_timeout: Option<String>,
    step_timeout: Option<String>,
    run_timeout: Option<String>,
    keep_runs: Option<toml::Spanned<String>>,
    keep_mirrors: Option<toml::Spanned<String>>,
    step_memory: Option<toml::Spanned<String>>,
    step_cpus: Option<toml::Spanned<limits::Number>>,
    step_pids: Option<toml::Spanned<i64>>,
    max_step_memory: Option<toml::Spanned<String>>,
    max_step_cpus: Option<toml::Spanned<limits::Number>>,
    max_step_pids: Option<toml::Spanned<i64>>,
    log_max_size: Option<toml::Spanned<String>>,
    local_runner: Option<bool>,
    local_runner_labels: Option<Vec<toml::Spanned<String>>>,
    runner_lease: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    name: String,
    provider: Provider,
    clone_url: toml::Spanned<String>,
    webhook_secret: Option<SecretSource>,
    #[serde(default = "default_pipeline")]
    pipeline: String,
    api_url: Option<String>,
    api_token: Option<SecretSource>,
    max_concurrent_runs: Option<usize>,
    default_branch: Option<String>,
    #[serde(default)]
    environments: Vec<RawEnvironment>,
    max_previews: Option<usize>,
    #[serde(default)]
    previews_for_forks: bool,
    trusted_pull_requests: Option<toml::Spanned<repos::RawPullRequestTrust>>,
    clone_username: Option<toml::Spanned<String>>,
    clone_token: Option<toml::Spanned<SecretSource>>,
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, toml::Spanned<secrets::RawSecret>>,
    /// Registry hosts (of `[[registries]]`) this repository's trusted runs
    /// may log in to.
    #[serde(default)]
    registries: Vec<toml::Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    name: String,
    image: String,
    tag: String,
    #[serde(default)]
    auto: bool,
    from: Option<String>,
    #[serde(default)]
    approvals: usize,
    #[serde(default)]
    approvers: Vec<String>,
    #[serde(default)]
    prevent_self_approval: bool,
    expires_after: Option<String>,
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, toml::Spanned<secrets::RawSecret>>,
    #[serde(default)]
    registries: Vec<toml::Spanned<String>>,
}

/// A stage images are promoted to, and the gate in front of it. Kept in
/// the server's config, not the repository, so a pull request cannot
/// weaken it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// Repository the environment's tag lives in (`127.0.0.1:5000/acme/web`).
    pub image: String,
    pub tag: String,
    /// Green runs on the default branch promote here without approval.
    pub auto: bool,
    /// Where promoted digests must come from.
    pub from: Option<String>,
    /// Distinct approvers needed.
    pub approvals: usize,
    pub approvers: Vec<String>,
    /// The requester (and the commit's author) cannot approve.
    pub prevent_self_approval: bool,
    /// Pending requests expire after this long.
    pub expires_after: std::time::Duration,
    /// Secrets only this environment's deploy steps get (over the
    /// repository's and the server's of the same name).
    pub secrets: std::collections::BTreeMap<String, ConfiguredSecret>,
    /// Registry hosts its deploy runs may log in to, besides the repository's.
    pub registries: Vec<String>,
}

impl Environment {
    /// `image:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image, self.tag)
    }
}

/// Unanswered promotion requests expire after three days unless configured.
pub const DEFAULT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

fn default_pipeline() -> String {
    ".slipway.yml".into()
}

/// The validated configuration, secrets resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: Option<PathBuf>,
    pub max_concurrent_runs: usize,
    /// A new push to a ref cancels older queued or running runs of that ref.
    pub cancel_superseded: bool,
    /// A run a dying server left running is queued again (as a new run of
    /// the same commit) when the server starts, instead of only marked.
    pub requeue_interrupted: bool,
    /// How users reach this server; links in commit statuses start with it.
    pub public_url: String,
    pub repos: Vec<Repo>,
    /// With none configured the API is closed: every call answers 401.
    pub tokens: Vec<ApiToken>,
    /// Registry logins, by host: the server's own (promotion copies,
    /// previews); a run gets those its repository lists.
    pub registries: slipway_runner::Credentials,
    /// `[[secrets]]`: server-wide secrets, by name.
    pub secrets: std::collections::BTreeMap<String, ConfiguredSecret>,
    /// The key secrets set at run time are sealed with (outside the data dir).
    pub secrets_key: PathBuf,
    /// Directory caches above this are evicted, least recently used first.
    pub cache_max_bytes: u64,
    /// The preview proxy's own listener.
    pub preview_listen: SocketAddr,
    /// Previews answer at `pr-<n>--<slug>.<domain>` (see [`preview_slug`]).
    pub preview_domain: String,
    /// Previews nobody requested for this long are removed.
    pub preview_ttl: std::time::Duration,
    pub preview_routing: PreviewRouting,
    pub on_shutdown: OnShutdown,
    /// How long cancelled runs get to stop their containers and record
    /// their status before the server exits anyway (the next start then
    /// marks them interrupted).
    pub shutdown_timeout: std::time::Duration,
    /// A step that names no `timeout:` is stopped after this.
    pub step_timeout: std::time::Duration,
    /// A run still going after this is cancelled, whatever its steps say.
    pub run_timeout: std::time::Duration,
    /// Ended runs older than this go, with their logs and artifacts
    /// (`None`: kept forever).
    pub keep_runs: Option<std::time::Duration>,
    /// Git mirrors no run has used for this long go (`None`: kept forever).
    pub keep_mirrors: Option<std::time::Duration>,
    /// What a step's container gets unless its `resources:` says otherwise
    /// (services too), and the cap on each step's log.
    pub limits: slipway_runner::Limits,
    /// A step whose `resources:` asks for more than this is refused; `None`: no maximum.
    pub max_resources: slipway_engine::Resources,
    /// Runs execute on this server's own Docker daemon (the built-in
    /// runner); off, only `slipway runner`s take them.
    pub local_runner: bool,
    /// What `runs_on:` labels the built-in runner satisfies.
    pub local_runner_labels: Vec<String>,
    /// A remote runner that has not been heard from for this long has
    /// lost its runs: they are interrupted (and queued again with
    /// `requeue_interrupted`), and it is fenced when it comes back.
    pub runner_lease: std::time::Duration,
}

/// Ten seconds of silence (twenty missed heartbeats) lose a runner's lease.
pub const DEFAULT_RUNNER_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// A step with no `timeout:` of its own is stopped after an hour, unless configured.
pub const DEFAULT_STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A run is cancelled after three hours, unless configured.
pub const DEFAULT_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3 * 3600);

/// Running runs get this long to clean up after a stop signal, unless configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs are kept 30 days unless configured.
pub const DEFAULT_KEEP_RUNS: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Mirrors unused for 14 days are removed unless configured.
pub const DEFAULT_KEEP_MIRRORS: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// 5 GB of directory caches unless configured.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 5_000_000_000;

#[derive(Debug, Clone)]
pub struct Repo {
    /// `owner/name`, as the forge names it.
    pub name: String,
    pub provider: Provider,
    pub clone_url: String,
    /// Every webhook must be signed with it: required, since a pipeline
    /// run from an unsigned body is anyone's code with the server's trust.
    pub webhook_secret: String,
    pub pipeline: String,
    pub api_url: Option<String>,
    pub api_token: Option<String>,
    pub max_concurrent_runs: Option<usize>,
    /// Runs on it promote to the `auto` environment (default `main`, or
    /// what the webhook says the repository's default branch is).
    pub default_branch: Option<String>,
    pub environments: Vec<Environment>,
    /// Open previews kept at most; the oldest go first.
    pub max_previews: usize,
    /// Untrusted pull requests (forks, unless `trusted_pull_requests`
    /// says otherwise) get previews (never secrets).
    pub previews_for_forks: bool,
    /// Which pull requests' runs are trusted.
    pub trusted_pull_requests: repos::PullRequestTrust,
    /// What git logs in with to fetch: given to git by its credential
    /// helper protocol, never in the URL.
    pub clone_login: Option<slipway_runner::git::GitLogin>,
    /// Secrets steps of its trusted runs may list, by name (over the
    /// server's of the same name).
    pub secrets: std::collections::BTreeMap<String, ConfiguredSecret>,
    /// Registry hosts (of `[[registries]]`) its trusted runs may log in
    /// to; none unless listed.
    pub registries: Vec<String>,
}

impl Repo {
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// Where git fetches the repository from, and with what login.
    pub fn remote(&self) -> slipway_runner::git::Remote {
        slipway_runner::git::Remote {
            url: self.clone_url.clone(),
            login: self.clone_login.clone(),
        }
    }
    /// Its previews answer at `pr-<n>--<this>.<preview_domain>`.
    pub fn preview_slug(&self) -> String {
        preview_slug(&self.name)
    }
}

/// How the preview proxy finds the preview a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreviewRouting {
    /// By host name only: each preview is an origin of its own, so one
    /// pull request's page cannot read another's cookies or storage.
    #[default]
    Host,
    /// Also by path (`/previews/<owner>/<name>/<n>/` on the proxy's
    /// address), for setups without wildcard DNS. Every preview served by
    /// path shares that one origin.
    HostAndPath,
}

impl PreviewRouting {
    fn parse(s: &str) -> Option<PreviewRouting> {
        match s {
            "host" => Some(PreviewRouting::Host),
            "host+path" => Some(PreviewRouting::HostAndPath),
            _ => None,
        }
    }
}

/// The longest slug that leaves room for `pr-<any u64>--` in front of it
/// within one DNS label (63 characters).
const PREVIEW_SLUG_MAX: usize = 63 - "pr-".len() - "18446744073709551615".len() - "--".len();
/// Hex digits of the name's SHA-256 a shortened slug ends with.
const PREVIEW_SLUG_HASH: usize = 8;

/// What names a repository in its previews' host names, one DNS label
/// part, lowercase.
///
/// `owner--name` when both are plain (ASCII letters, digits, single inner
/// hyphens) and it fits: such slugs have exactly one `--`, so they map
/// back to one repository. Anything else (`.`, `_`, `--`, more than two
/// parts, too long) becomes its letters and digits, single hyphens between
/// runs, shortened, then `-` and 8 hex digits of the lowercased name's
/// SHA-256: never a `--` in it, so it cannot equal a plain slug, and two
/// names share one only if their hashes do, which the config refuses.
pub fn preview_slug(repo: &str) -> String {
    let lower = repo.to_ascii_lowercase();
    let plain = |part: &str| {
        !part.is_empty()
            && !part.starts_with('-')
            && !part.ends_with('-')
            && !part.contains("--")
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if let Some((owner, name)) = lower.split_once('/')
        && plain(owner)
        && plain(name)
        && owner.len() + 2 + name.len() <= PREVIEW_SLUG_MAX
    {
        return format!("{owner}--{name}");
    }
    let mut readable = String::new();
    for c in lower.chars() {
        if c.is_ascii_alphanumeric() {
            readable.push(c);
        } else if !readable.is_empty() && !readable.ends_with('-') {
            readable.push('-');
        }
    }
    readable.truncate(PREVIEW_SLUG_MAX - PREVIEW_SLUG_HASH - 1);
    let readable = readable.trim_end_matches('-');
    use sha2::Digest;
    let digest = sha2::Sha256::digest(lower.as_bytes());
    let hash: String = digest
        .iter()
        .take(PREVIEW_SLUG_HASH / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    if readable.is_empty() {
        hash
    } else {
        format!("{readable}-{hash}")
    }
}

/// Two repositories whose previews would answer at the same host name are
/// refused: the proxy could not tell which one a request is for. Only
/// shortened slugs can meet (equal hashes), but the proxy's routing relies
/// on it never happening, so it is checked rather than trusted.
fn refuse_shared_preview_hosts(file: &str, text: &str, repos: &[Repo], problems: &mut Vec<String>) {
    /// Where each `[[repos]]` entry's `name` is, for the message.
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        repos: Vec<Name>,
    }
    #[derive(Deserialize)]
    struct Name {
        name: toml::Spanned<String>,
    }
    let names = toml::from_str::<Names>(text).map_or_else(|_| Vec::new(), |n| n.repos);
    let at = |repo: &str| {
        names
            .iter()
            .enumerate()
            .find(|(_, n)| n.name.get_ref().eq_ignore_ascii_case(repo))
            .map(|(i, n)| {
                let (line, col) = line_col(text, n.name.span().start);
                (i, format!("{file}:{line}:{col}"))
            })
            .unwrap_or_else(|| (0, file.to_string()))
    };
    for (j, later) in repos.iter().enumerate() {
        let slug = later.preview_slug();
        let Some(earlier) = repos[..j]
            .iter()
            .find(|r| !r.name.eq_ignore_ascii_case(&later.name) && r.preview_slug() == slug)
        else {
            continue;
        };
        let (i_later, where_later) = at(&later.name);
        let (i_earlier, where_earlier) = at(&earlier.name);
        problems.push(format!(
            "{where_later}: repos[{i_later}] ({}).name: its previews would answer at the same host names as those of repos[{i_earlier}] ({}) at {where_earlier} (`pr-<n>--{slug}`), so the preview proxy could not tell them apart; configure one of them on another server",
            later.name, earlier.name
        ));
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: None,
            max_concurrent_runs: 4,
            cancel_superseded: true,
            requeue_interrupted: false,
            public_url: "http://127.0.0.1:8080".into(),
            repos: Vec::new(),
            tokens: Vec::new(),
            registries: Default::default(),
            secrets: Default::default(),
            secrets_key: crate::vault::default_key_path(),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            preview_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            preview_domain: "preview.localhost".into(),
            preview_ttl: std::time::Duration::from_secs(48 * 3600),
            preview_routing: PreviewRouting::Host,
            on_shutdown: OnShutdown::Cancel,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            step_timeout: DEFAULT_STEP_TIMEOUT,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            keep_runs: Some(DEFAULT_KEEP_RUNS),
            keep_mirrors: Some(DEFAULT_KEEP_MIRRORS),
            limits: DEFAULT_LIMITS,
            max_resources: Default::default(),
            local_runner: true,
            local_runner_labels: Vec::new(),
            runner_lease: DEFAULT_RUNNER_LEASE,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    /// The token presented, compared in constant time against each configured one.
    pub fn token(&self, presented: &str) -> Option<&ApiToken> {
        use subtle::ConstantTimeEq;
        self.tokens
            .iter()
            .find(|t| bool::from(t.token.as_bytes().ct_eq(presented.as_bytes())))
    }

    pub fn repo(&self, name: &str) -> Option<&Repo> {
        self.repos
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }

    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Invalid(vec![format!("{file}:{line}:{col}: {}", e.message().trim())])
        })?;
        let mut problems = Vec::new();
        let mut config = Config::default();
        if let Some(listen) = &raw.server.listen {
            match listen.parse() {
                Ok(addr) => config.listen = addr,
                Err(_) => problems.push(format!(
                    "{file}: server.listen: `{listen}` is not an address like 127.0.0.1:8080"
                )),
            }
        }
        (config.limits, config.max_resources) =
            limits::resolve(file, text, &raw.server, &mut problems);
        config.data_dir = raw.server.data_dir;
        if let Some(n) = raw.server.max_concurrent_runs {
            if n == 0 {
                problems.push(format!(
                    "{file}: server.max_concurrent_runs: must be at least 1"
                ));
            }
            config.max_concurrent_runs = n.max(1);
        }
        config.cancel_superseded = raw.server.cancel_superseded.unwrap_or(true);
        config.requeue_interrupted = raw.server.requeue_interrupted.unwrap_or(false);
        config.local_runner = raw.server.local_runner.unwrap_or(true);
        for label in raw.server.local_runner_labels.iter().flatten() {
            if slipway_engine::parse::is_runner_label(label.get_ref()) {
                config.local_runner_labels.push(label.get_ref().clone());
            } else {
                let (line, col) = line_col(text, label.span().start);
                problems.push(format!(
                    "{file}:{line}:{col}: server.local_runner_labels: `{}` is not a plain word (letters, digits, `-`, `_`, `.`, `/`)",
                    label.get_ref().escape_debug()
                ));
            }
        }
        if let Some(listen) = &raw.server.preview_listen {
            match listen.parse() {
                Ok(addr) => config.preview_listen = addr,
                Err(_) => problems.push(format!(
                    "{file}: server.preview_listen: `{listen}` is not an address (e.g. `127.0.0.1:8081`)"
                )),
            }
        }
        if let Some(domain) = &raw.server.preview_domain {
            config.preview_domain = domain.trim_start_matches('.').to_ascii_lowercase();
        }
        if let Some(ttl) = &raw.server.preview_ttl {
            match slipway_engine::duration::parse_duration(ttl) {
                Some(d) if !d.is_zero() => config.preview_ttl = d,
                _ => problems.push(format!(
                    "{file}: server.preview_ttl: `{ttl}` is not a duration (e.g. `48h`)"
                )),
            }
        }
        if let Some(routing) = &raw.server.preview_routing {
            match PreviewRouting::parse(routing.get_ref()) {
                Some(r) => config.preview_routing = r,
                None => {
                    let (line, col) = line_col(text, routing.span().start);
                    problems.push(format!(
                        "{file}:{line}:{col}: server.preview_routing: `{}` is neither `host` (each preview on a host name of its own) nor `host+path` (also by path, for setups without wildcard DNS)",
                        routing.get_ref()
                    ));
                }
            }
        }
        config.on_shutdown = raw.server.shutdown.unwrap_or_default();
        for (key, given, into) in [
            (
                "shutdown_timeout",
                &raw.server.shutdown_timeout,
                &mut config.shutdown_timeout,
            ),
            (
                "step_timeout",
                &raw.server.step_timeout,
                &mut config.step_timeout,
            ),
            (
                "run_timeout",
                &raw.server.run_timeout,
                &mut config.run_timeout,
            ),
            (
                "runner_lease",
                &raw.server.runner_lease,
                &mut config.runner_lease,
            ),
        ] {
            if let Some(t) = given {
                match slipway_engine::duration::parse_duration(t) {
                    Some(d) if !d.is_zero() => *into = d,
                    _ => problems.push(format!(
                        "{file}: server.{key}: `{t}` is not a duration (e.g. `30s`, `1h`)"
                    )),
                }
            }
        }
        for (key, given, into) in [
            ("keep_runs", &raw.server.keep_runs, &mut config.keep_runs),
            (
                "keep_mirrors",
                &raw.server.keep_mirrors,
                &mut config.keep_mirrors,
            ),
        ] {
            if let Some(t) = given {
                match parse_age(t.get_ref()) {
                    Some(age) => *into = age,
                    None => {
                        let (line, col) = line_col(text, t.span().start);
                        problems.push(format!(
                            "{file}:{line}:{col}: server.{key}: `{}` is not a duration (e.g. `30d`, `12h`) nor `forever`",
                            t.get_ref()
                        ));
                    }
                }
            }
        }
        if let Some(size) = &raw.server.cache_max_size {
            match slipway_runner::cache::parse_size(size) {
                Some(n) => config.cache_max_bytes = n,
                None => problems.push(format!(
                    "{file}: server.cache_max_size: `{size}` is not a size (e.g. `10GB`, `500MiB`)"
                )),
            }
        }
        config.registries = registries::resolve_all(file, &raw.registries, &mut problems);
        config.secrets = secrets::resolve_server(file, text, raw.secrets, &mut problems);
        if let Some(path) = raw.server.secrets_key.clone() {
            config.secrets_key = path;
        }
        config.public_url = raw
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.listen));
        config.repos =
            repos::validate_all(file, text, raw.repos, &config.registries, &mut problems);
        refuse_shared_preview_hosts(file, text, &config.repos, &mut problems);
        for (i, t) in raw.tokens.into_iter().enumerate() {
            match resolve(Some(&t.token)) {
                Ok(Some(token)) if token.len() < 16 => problems.push(format!(
                    "{file}: tokens[{i}] ({}).token: shorter than 16 characters",
                    t.user
                )),
                Ok(Some(token)) if config.tokens.iter().any(|o| o.token == token) => {
                    problems.push(format!(
                        "{file}: tokens[{i}] ({}).token: the same token is given twice",
                        t.user
                    ))
                }
                Ok(Some(token)) => {
                    for m in &t.maintains {
                        if !config.repos.iter().any(|r| r.name.eq_ignore_ascii_case(m)) {
                            problems.push(format!(
                                "{file}: tokens[{i}] ({}).maintains: `{m}` is not a configured repository",
                                t.user
                            ));
                        }
                    }
                    config.tokens.push(ApiToken {
                        user: t.user,
                        token,
                        scope: t.scope,
                        maintains: t.maintains,
                    })
                }
                Ok(None) => {}
                Err(m) => problems.push(format!("{file}: tokens[{i}] ({}).token: {m}", t.user)),
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// How long something is kept: `forever` (or `0`) is `None`, else a
/// duration that may start with days (`30d`, `1d12h`).
fn parse_age(text: &str) -> Option<Option<std::time::Duration>> {
    let text = text.trim();
    if text == "forever" || text == "0" {
        return Some(None);
    }
    let (days, rest) = match text.split_once('d') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (n.parse::<u64>().ok()?, rest)
        }
        _ => (0, text),
    };
    let rest = match rest {
        "" => std::time::Duration::ZERO,
        rest => slipway_engine::duration::parse_duration(rest)?,
    };
    let age = std::time::Duration::from_secs(days.checked_mul(86_400)?).checked_add(rest)?;
    (!age.is_zero()).then_some(Some(age))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_out_of_the_box() {
        let c = Config::parse("s.toml", "").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_concurrent_runs, 4);
        assert!(c.cancel_superseded);
        assert_eq!(c.on_shutdown, OnShutdown::Cancel);
        assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    }

    #[test]
    fn previews_route_by_host_unless_path_routing_is_asked_for() {
        let c = Config::parse("s.toml", "").unwrap();
        assert_eq!(c.preview_routing, PreviewRouting::Host);
        let c = Config::parse("s.toml", "[server]\npreview_routing = \"host+path\"\n").unwrap();
        assert_eq!(c.preview_routing, PreviewRouting::HostAndPath);
        let bad = Config::parse(
            "s.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\npreview_routing = \"path\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad.starts_with("s.toml:3:19: server.preview_routing: `path` is neither `host`"),
            "{bad}"
        );
    }

    fn repos_named(names: &[&str]) -> String {
        names
            .iter()
            .map(|n| {
                format!(
                    "[[repos]]\nname = \"{n}\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n"
                )
            })
            .collect()
    }

    /// Issue 14: `acme/web-app` and `acme-web/app` both answered at
    /// `pr-<n>--acme-web-app`, and the proxy sent both to the first.
    #[test]
    fn preview_slugs_of_different_repositories_differ() {
        assert_eq!(
            preview_slug("Codertocat/Hello-World"),
            "codertocat--hello-world"
        );
        let names = [
            "acme/web-app",
            "acme-web/app",
            "acme/web_app",
            "acme/web.app",
            "acme/web--app",
            "acme/web-app-",
            "group/sub/app",
            "acme/ünï",
        ];
        let slugs: Vec<String> = names.iter().map(|n| preview_slug(n)).collect();
        for (i, a) in slugs.iter().enumerate() {
            for (j, b) in slugs.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{} and {}", names[i], names[j]);
            }
            assert!(
                a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !a.ends_with('-'),
                "{a} is not a host name part"
            );
        }
        assert_eq!(preview_slug("ACME/Web-App"), preview_slug("acme/web-app"));
        // Every one the config takes (owner/name) loads side by side.
        let loadable: Vec<&str> = names
            .into_iter()
            .filter(|n| n.matches('/').count() == 1)
            .collect();
        Config::parse("s.toml", &repos_named(&loadable)).unwrap();
    }

    #[test]
    fn a_long_repository_name_still_fits_one_dns_label() {
        let long_a = format!("acme/{}", "a".repeat(90));
        let long_b = format!("acme/{}b", "a".repeat(89));
        let (a, b) = (preview_slug(&long_a), preview_slug(&long_b));
        assert_ne!(a, b);
        for slug in [&a, &b] {
            let label = format!("pr-{}--{slug}", u64::MAX);
            assert!(label.len() <= 63, "{label} is {} long", label.len());
            assert!(
                slug.starts_with("acme-aaaa"),
                "{slug} still says what it is"
            );
        }
        // The longest plain slug stays readable.
        let fits = format!("acme/{}", "b".repeat(PREVIEW_SLUG_MAX - 6));
        assert_eq!(preview_slug(&fits), fits.replace('/', "--"));
    }

    /// The shortened slugs of these two names share their readable part and
    /// their 8 hex digits (found by search): the config must refuse them.
    #[test]
    fn two_repositories_with_the_same_preview_host_are_refused_by_name_and_line() {
        let (a, b) = (
            "acme/a-very-long-repository-name-25849",
            "acme/a-very-long-repository-name-112670",
        );
        assert_eq!(preview_slug(a), preview_slug(b));
        let err = Config::parse("s.toml", &repos_named(&[a, b]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "s.toml:7:8: repos[1] ({b}).name: its previews would answer at the same host names as those of repos[0] ({a}) at s.toml:2:8 (`pr-<n>--{}`), so the preview proxy could not tell them apart; configure one of them on another server",
                preview_slug(a)
            )
        );
    }

    #[test]
    fn shutdown_behaviour_is_configurable_and_checked() {
        let c = Config::parse(
            "s.toml",
            "[server]\nshutdown = \"wait\"\nshutdown_timeout = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(c.on_shutdown, OnShutdown::Wait);
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(60));
        let bad = Config::parse("s.toml", "[server]\nshutdown = \"later\"\n")
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("s.toml:2:12:"), "{bad}");
        assert!(bad.contains("cancel") && bad.contains("wait"), "{bad}");
        let bad = Config::parse("s.toml", "[server]\nshutdown_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("server.shutdown_timeout: `soon`"), "{bad}");
    }

    #[test]
    fn retention_keeps_a_month_of_runs_and_two_weeks_of_idle_mirrors() {
        let c = Config::parse("s.toml", "").unwrap();
        assert_eq!(c.keep_runs, Some(DEFAULT_KEEP_RUNS));
        assert_eq!(DEFAULT_KEEP_RUNS.as_secs(), 30 * 24 * 3600);
        assert_eq!(c.keep_mirrors, Some(DEFAULT_KEEP_MIRRORS));
        assert_eq!(DEFAULT_KEEP_MIRRORS.as_secs(), 14 * 24 * 3600);
        let c = Config::parse(
            "s.toml",
            "[server]\nkeep_runs = \"1d12h\"\nkeep_mirrors = \"forever\"\n",
        )
        .unwrap();
        assert_eq!(c.keep_runs, Some(std::time::Duration::from_secs(36 * 3600)));
        assert_eq!(c.keep_mirrors, None);
        let c = Config::parse(
            "s.toml",
            "[server]\nkeep_runs = \"0\"\nkeep_mirrors = \"90s\"\n",
        )
        .unwrap();
        assert_eq!(c.keep_runs, None);
        assert_eq!(c.keep_mirrors, Some(std::time::Duration::from_secs(90)));
        let err = Config::parse(
            "s.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\nkeep_runs = \"a month\"\nkeep_mirrors = \"d\"\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "s.toml:3:13: server.keep_runs: `a month` is not a duration (e.g. `30d`, `12h`) nor `forever`",
                "s.toml:4:16: server.keep_mirrors: `d` is not a duration (e.g. `30d`, `12h`) nor `forever`",
            ]
        );
    }

    #[test]
    fn repos_with_secrets_inline_env_and_file() {
        let dir = std::env::temp_dir().join(format!("slipway-cfg-{}", crate::ids::new_run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "file-token\n").unwrap();
        // SAFETY: a variable name no other test uses.
        unsafe { std::env::set_var("SLIPWAY_TEST_CFG_SECRET", "env-secret") };
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:9999"
[[repos]]
name = "acme/web"
provider = "github"
clone_url = "file:///srv/web.git"
webhook_secret = {{ env = "SLIPWAY_TEST_CFG_SECRET" }}
api_token = {{ file = "{}" }}
[[repos]]
name = "acme/api"
provider = "gitlab"
clone_url = "file:///srv/api.git"
webhook_secret = "inline"
"#,
            dir.join("token").display()
        );
        let c = Config::parse("s.toml", &text).unwrap();
        let web = c.repo("ACME/web").unwrap();
        assert_eq!(web.webhook_secret, "env-secret");
        assert_eq!(web.api_token.as_deref(), Some("file-token"));
        assert_eq!(web.pipeline, ".slipway.yml");
        assert_eq!(c.repo("acme/api").unwrap().provider, Provider::Gitlab);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Issue 14: a repository without `webhook_secret` took unsigned
    /// webhooks, so anyone could start its pipelines.
    #[test]
    fn a_repository_without_a_webhook_secret_is_refused_by_name() {
        let err = Config::parse(
            "s.toml",
            "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("s.toml: repos[0] (acme/web).webhook_secret: missing"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let err = Config::parse("s.toml", "[server]\nlisten = \"x\"\nport = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:3:1: unknown field `port`"), "{err}");
        let err = Config::parse(
            "s.toml",
            "[[repos]]\nname = \"a/b\"\nprovider = \"svn\"\nclone_url = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("s.toml:3:12: unknown variant `svn`"),
            "{err}"
        );
        let err = Config::parse(
            "s.toml",
            "[server]\nlisten = \"nope\"\n[[repos]]\nname = \"web\"\nprovider = \"github\"\nclone_url = \"\"\nwebhook_secret = { env = \"SLIPWAY_TEST_UNSET_VAR\" }\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "s.toml: server.listen: `nope` is not an address like 127.0.0.1:8080",
                "s.toml: repos[0].name: `web` must be owner/name",
                "s.toml: repos[0] (web).clone_url: is empty",
                "s.toml: repos[0] (web).webhook_secret: environment variable `SLIPWAY_TEST_UNSET_VAR` is not set",
            ]
        );
    }

    #[test]
    fn tokens_map_to_users_with_scopes() {
        let c = Config::parse(
            "s.toml",
            "[[tokens]]\nuser = \"alice\"\ntoken = \"alice-token-0123456789\"\nscope = \"admin\"\n[[tokens]]\nuser = \"bot\"\ntoken = \"bot-token-0123456789ab\"\nscope = \"read\"\n",
        )
        .unwrap();
        assert_eq!(
            c.token("alice-token-0123456789")
                .map(|t| (t.user.as_str(), t.scope)),
            Some(("alice", Scope::Admin))
        );
        assert_eq!(
            c.token("bot-token-0123456789ab").map(|t| t.scope),
            Some(Scope::Read)
        );
        assert!(c.token("nope").is_none());
        assert!(Scope::Admin > Scope::Write && Scope::Write > Scope::Read);
        let err = Config::parse(
            "s.toml",
            "[[tokens]]\nuser = \"x\"\ntoken = \"short\"\nscope = \"read\"\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.toml: tokens[0] (x).token: shorter than 16 characters"
        );
    }

    #[test]
    fn environments_carry_their_gates_and_bad_ones_are_named() {
        let base = "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n";
        let c = Config::parse(
            "s.toml",
            &format!("{base}[[repos.environments]]\nname = \"dev\"\nimage = \"r/acme/web\"\ntag = \"dev\"\nauto = true\n[[repos.environments]]\nname = \"prod\"\nimage = \"r/acme/web\"\ntag = \"prod\"\nfrom = \"dev\"\napprovals = 2\napprovers = [\"a\", \"b\"]\nprevent_self_approval = true\nexpires_after = \"1h\"\n"),
        )
        .unwrap();
        let prod = c.repos[0].environment("prod").unwrap();
        assert_eq!(prod.approvals, 2);
        assert_eq!(prod.expires_after, std::time::Duration::from_secs(3600));
        assert_eq!(prod.reference(), "r/acme/web:prod");
        assert_eq!(
            c.repos[0].environment("dev").unwrap().expires_after,
            DEFAULT_EXPIRY
        );
        let Err(ConfigError::Invalid(problems)) = Config::parse(
            "s.toml",
            &format!(
                "{base}[[repos.environments]]\nname = \"qa\"\nimage = \"r/web:1\"\ntag = \"qa\"\nfrom = \"nope\"\napprovals = 1\nexpires_after = \"soon\"\n"
            ),
        ) else {
            panic!("accepted");
        };
        let all = problems.join("\n");
        for expected in [
            "environments[0] (qa).image: `r/web:1` must be a repository without tag or digest",
            "environments[0] (qa).from: `nope` is not an environment declared before this one",
            "environments[0] (qa).approvals: needs 1 approvals but lists 0 approvers",
            "environments[0] (qa).expires_after: `soon` is not a duration",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
    }
}
