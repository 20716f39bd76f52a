//! The server under test: `slipway serve` in process ([`start`], a
//! [`Server`] on a free port with the test's config), or the real binary
//! ([`serve_binary`], for crash tests and benchmarks); signed deliveries of
//! the real webhook fixtures; and waiting for runs to get somewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_api::config::Config;
use slipway_api::forge::webhook::sign_github;
use slipway_api::store::{StepStatus, StoreError};
use slipway_api::{RunRecord, Store};
use slipway_runner::DockerBackend;
use tokio_util::sync::CancellationToken;

use crate::{BUSYBOX, TempDir, git_commit, git_repo, github_fixture, http, slipway_bin};

/// The repository every server test configures: the fixtures' repository.
pub const REPO: &str = "Codertocat/Hello-World";
/// Its webhook secret; [`deliver`] signs with it.
pub const SECRET: &str = "e2e-secret";
/// A writer (wendy) and a reader (rita), as config lines.
pub const TOKENS: &str = "[[tokens]]\nuser = \"wendy\"\ntoken = \"writer-token-0123456789\"\nscope = \"write\"\n[[tokens]]\nuser = \"rita\"\ntoken = \"reader-token-0123456789\"\nscope = \"read\"\n";
/// wendy's token in [`TOKENS`].
pub const WRITER: &str = "writer-token-0123456789";
/// rita's token in [`TOKENS`].
pub const READER: &str = "reader-token-0123456789";

/// The `[[repos]]` table of [`REPO`], cloned from `clone_url`. Lines after
/// it without a table header of their own land in it.
pub fn repo_config(clone_url: &str) -> String {
    format!(
        "[[repos]]\nname = \"{REPO}\"\nprovider = \"github\"\nclone_url = \"{clone_url}\"\nwebhook_secret = \"{SECRET}\"\n"
    )
}

/// `slipway serve` running in this process, on a free loopback port.
pub struct Server {
    /// `127.0.0.1:<port>` of the API and webhooks.
    pub addr: String,
    pub store: Store,
    /// Cancel to stop the server.
    pub shutdown: CancellationToken,
    pub running: Option<slipway_api::serve::Running>,
    _data: TempDir,
}

impl Server {
    /// Where it keeps its data (the store is in `db/` under it).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Stops the server and waits until its store is free for another
    /// process; returns its data, for [`start_in`] later.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.stopped(Duration::from_secs(10)).await;
        }
        let Server { store, _data, .. } = self;
        drop(store);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Store::open(&_data.path().join("db")) {
                Ok(_) => break,
                Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        _data
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The preview proxy's address; the config must turn previews on.
    pub fn preview_addr(&self) -> String {
        self.running
            .as_ref()
            .and_then(|r| r.preview_addr)
            .expect("previews are on")
            .to_string()
    }

    /// An API request with `token`; see [`api`].
    pub async fn api(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        api(&self.addr, method, path, token, body).await
    }
}

/// A server for [`REPO`] cloned from `clone_url`.
pub async fn start(clone_url: &str) -> Server {
    start_with(clone_url, "").await
}

/// `extra` is appended to the test's config (tokens, limits).
pub async fn start_with(clone_url: &str, extra: &str) -> Server {
    start_in(TempDir::new("serve"), clone_url, extra).await
}

/// Stops the server and starts it again on the same data.
pub async fn restart(mut server: Server, clone_url: &str, extra: &str) -> Server {
    server.shutdown.cancel();
    if let Some(running) = server.running.take() {
        running.stopped(Duration::from_secs(10)).await;
    }
    let Server { store, _data, .. } = server;
    drop(store);
    start_in(_data, clone_url, extra).await
}

/// A server keeping its data in `data` (which may hold a store already).
pub async fn start_in(data: TempDir, clone_url: &str, extra: &str) -> Server {
    let mut config =
        Config::parse("test.toml", &format!("{}{extra}", repo_config(clone_url))).unwrap();
    // Each test's own key, not the user's ~/.config one; tests of the key
    // itself say where theirs is.
    if !extra.contains("secrets_key") {
        config.secrets_key = data.path().join("secrets.key");
    }
    // After a restart, background tasks of the stopped server may hold the
    // store for a moment longer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let store = loop {
        match Store::open(&data.path().join("db")) {
            Ok(store) => break store,
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let backend = Arc::new(
        DockerBackend::connect(Duration::from_secs(5))
            .await
            .unwrap(),
    );
    start_on(data, config, store, backend).await
}

/// A server on `backend` (a daemon behind a [`crate::Wedge`], say).
pub async fn start_with_backend(clone_url: &str, extra: &str, backend: DockerBackend) -> Server {
    let data = TempDir::new("serve");
    let mut config =
        Config::parse("test.toml", &format!("{}{extra}", repo_config(clone_url))).unwrap();
    config.secrets_key = data.path().join("secrets.key");
    let store = Store::open(&data.path().join("db")).unwrap();
    start_on(data, config, store, Arc::new(backend)).await
}

async fn start_on(
    data: TempDir,
    config: Config,
    store: Store,
    backend: Arc<DockerBackend>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = slipway_api::serve::start(config, store.clone(), data.path(), backend, listener)
        .await
        .unwrap();
    let addr = running.addr.to_string();
    let shutdown = running.shutdown.clone();
    Server {
        addr,
        store,
        shutdown,
        running: Some(running),
        _data: data,
    }
}

/// The real push fixture, rewritten to `sha` on `master`.
pub fn push_body(sha: &str) -> String {
    github_fixture("push.branch-created.json")
        .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", sha)
}

/// A real pull request fixture (`pull_request.<action>.json`, #2), its
/// head rewritten to `sha`.
pub fn pr_body(fixture: &str, sha: &str) -> String {
    github_fixture(fixture).replace("ec26c3e57ca3a959ca5aad62de7213c562f8c821", sha)
}

/// The real `pull_request.opened` fixture for `head`, opened from
/// `head_repo` (`owner/name`): the fixture's own head is the repository
/// itself, so another `head_repo` makes it a fork's pull request.
pub fn pr_from(head: &str, head_repo: &str) -> String {
    let mut body: serde_json::Value =
        serde_json::from_str(&pr_body("pull_request.opened.json", head)).expect("fixture");
    body["pull_request"]["head"]["repo"]["full_name"] = head_repo.into();
    if let Some((owner, _)) = head_repo.split_once('/') {
        body["pull_request"]["head"]["repo"]["owner"]["login"] = owner.into();
    }
    body.to_string()
}

/// A repository whose pull request #2 head (the sha returned, also on
/// `changes`) serves `commit <sha>` on port 8080 as its preview: a step
/// writes the page, the image is built and pushed to `<host>/<image>`.
/// `health` is the preview's health check path, if any.
pub fn preview_repo(host: &str, image: &str, health: Option<&str>) -> (TempDir, PathBuf, String) {
    let repo_dir = TempDir::new("origin-preview");
    let health = health.map_or(String::new(), |h| format!("  health: {h}\n"));
    let pipeline = format!(
        "steps:
  page:
    image: {BUSYBOX}
    commands: ['mkdir -p www', 'echo \"commit $SLIPWAY_COMMIT_SHA\" > www/index.html']
  image:
    needs: [page]
    build:
      tags: [\"{host}/{image}:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
preview:
  image: image
  port: 8080
{health}"
    );
    let dockerfile = format!(
        "FROM {BUSYBOX}\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    );
    let (bare, _) = git_repo(
        &repo_dir,
        "master",
        &[(".slipway.yml", &pipeline), ("Dockerfile", &dockerfile)],
    );
    let head = git_commit(&repo_dir, &["refs/heads/changes", "refs/pull/2/head"], &[]);
    (repo_dir, bare, head)
}

/// Delivers a GitHub `event` signed with [`SECRET`] to the server at
/// `addr`; returns status and body (status 0 if nothing answered).
pub fn deliver(addr: &str, event: &str, delivery: &str, body: &str) -> (u16, String) {
    let sig = sign_github(SECRET, body.as_bytes());
    http(
        "POST",
        addr,
        "/hooks/github",
        &[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ],
        body.as_bytes(),
    )
}

/// [`deliver`] off the async runtime; the answer as JSON (null if none).
pub async fn send(server: &Server, event: &str, delivery: &str, body: String) -> (u16, Value) {
    let (addr, event, delivery) = (server.addr.clone(), event.to_string(), delivery.to_string());
    let (status, text) =
        tokio::task::spawn_blocking(move || deliver(&addr, &event, &delivery, &body))
            .await
            .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends the real push fixture, rewritten to `sha` on `master`.
pub async fn push(server: &Server, sha: &str, delivery: &str) -> (u16, Value) {
    send(server, "push", delivery, push_body(sha)).await
}

/// Sends a pull request fixture (see [`pr_body`]).
pub async fn pr_event(server: &Server, fixture: &str, sha: &str, delivery: &str) -> (u16, Value) {
    send(server, "pull_request", delivery, pr_body(fixture, sha)).await
}

/// An API request to `addr` with `token`, off the async runtime; the
/// answer as JSON (null if none).
pub async fn api(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let (addr, method, path) = (addr.to_string(), method.to_string(), path.to_string());
    let (auth, body) = (format!("Bearer {token}"), body.to_string());
    let (status, text) = tokio::task::spawn_blocking(move || {
        http(
            &method,
            &addr,
            &path,
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
    })
    .await
    .unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The run as the API at `addr` shows it to [`READER`], or null if it
/// does not answer 200 (not up yet, or no such run).
pub fn run_view(addr: &str, id: &str) -> Value {
    let auth = format!("Bearer {READER}");
    let path = format!("/api/v1/runs/{id}");
    let (status, body) = http("GET", addr, &path, &[("Authorization", &auth)], b"");
    match status {
        200 => serde_json::from_str(&body).unwrap(),
        _ => Value::Null,
    }
}

/// Waits for the run to end (two minutes at most).
pub async fn wait_done(store: &Store, run: &str) -> RunRecord {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = store.get_run(run).unwrap().expect("run exists");
        if !["queued", "running"].contains(&r.status.as_str()) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} still {} after 120 s",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the run's first step to be running.
pub async fn wait_step_running(store: &Store, run: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store
        .get_run(run)
        .unwrap()
        .map(|r| r.steps.first().map(|s| s.status))
        != Some(Some(StepStatus::Running))
    {
        assert!(Instant::now() < deadline, "step of {run} never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `probe` until it gives a value (30 s at most).
pub async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One step, `slow`, that prints `started` and sleeps five minutes.
pub fn slow_pipeline() -> String {
    format!("steps:\n  slow:\n    image: {BUSYBOX}\n    commands: [echo started, sleep 300]\n")
}

/// `127.0.0.1:<port>` of a port that was free a moment ago.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// `slipway.toml` in `dir` for the real binary: listening on `addr` with
/// `server` lines in `[server]`, the [`TOKENS`], and [`REPO`] cloned from
/// `clone_url`. Written again on each call.
pub fn serve_config(dir: &TempDir, addr: &str, server: &str, clone_url: &str) -> PathBuf {
    dir.write(
        "slipway.toml",
        &format!(
            "[server]\nlisten = \"{addr}\"\n{server}{TOKENS}{}",
            repo_config(clone_url)
        ),
    )
}

/// The real `slipway serve` binary with `config`, keeping its data in `data`.
/// Its output is appended to `<data>.log`; see [`serve_log`].
pub fn serve_binary(config: &Path, data: &Path) -> Child {
    let log_path = data.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("server log");
    Command::new(slipway_bin())
        .args(["serve", "--config"])
        .arg(config)
        .env("SLIPWAY_DATA_DIR", data)
        .stdout(log.try_clone().expect("server log"))
        .stderr(log)
        .spawn()
        .expect("start slipway serve")
}

/// What the servers started by [`serve_binary`] on `data` printed, for
/// failure messages.
pub fn serve_log(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

/// Polls `GET /healthz` until the server at `addr` answers 200 (30 s at most).
pub fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http("GET", addr, "/healthz", &[], b"").0 != 200 {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends signal `name` (`TERM`, `INT`, `KILL`) to the process.
pub fn signal(child: &Child, name: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Kills the process with SIGKILL, as a crash, and reaps it.
pub fn kill9(child: &mut Child) {
    signal(child, "KILL");
    child.wait().unwrap();
}

/// Waits for the process to exit by itself, at most `limit`; past that it
/// is killed and the test fails with the log of the server on `data`.
pub fn exit_within(child: &mut Child, limit: Duration, data: &Path) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            kill9(child);
            panic!(
                "slipway serve did not exit within {limit:?}\nserver output:\n{}",
                serve_log(data)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
