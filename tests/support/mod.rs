//! Shared helpers for the integration tests and benchmarks: the `slipway`
//! binary, scratch directories, git repositories (also served over HTTP
//! with a login), a real registry, plain HTTP, and Docker queries by label.
//! Modules:
//!
//! - [`server`]: the server under test, in process or as the real binary,
//!   and signed webhook deliveries (re-exported here);
//! - [`forge`]: one fake forge API that records what the server sends it;
//! - [`bench`]: Docker start times, process memory and percentiles for the benchmarks;
//! - [`browser`]: headless Chromium over WebDriver, for the web UI;
//! - [`wedge`]: a Docker daemon that stops answering when told to;
//! - [`netns`]: network namespaces as machines of their own, with links to cut.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod bench;
pub mod browser;
pub mod forge;
pub mod netns;
pub mod server;
pub mod wedge;

pub use server::*;
pub use wedge::Wedge;

use bollard::Docker;
use bollard::models::{ContainerSummary, Network, Volume};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};

/// The image `scripts/build-test-images.sh` builds.
pub const BUSYBOX: &str = "slipway.test/busybox:1";

/// The `slipway` binary, built once per test process. It lives in another
/// package, so cargo does not hand us its path; we build it ourselves.
pub fn slipway_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let profile_release = cfg!(not(debug_assertions));
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root)
            .args(["build", "-q", "-p", "slipway-api", "--bin", "slipway"]);
        if profile_release {
            cmd.arg("--release");
        }
        // Cargo sets CARGO_MANIFEST_DIR and friends for the test process;
        // inherited, they rerun build scripts that watch them (ring's does)
        // and rebuild the binary from scratch on every test run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let per_test = key.starts_with("CARGO_")
                && !matches!(
                    key.as_str(),
                    "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_TERM_COLOR"
                );
            if per_test || key == "OUT_DIR" {
                cmd.env_remove(&key);
            }
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the slipway binary failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target
            .join(if profile_release { "release" } else { "debug" })
            .join("slipway")
    })
}

/// The sections a benchmark was asked for (`cargo bench ... -- a b`): true
/// for a section named on the command line, or for every one if none was.
pub fn bench_sections() -> impl Fn(&str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |section| only.is_empty() || only.iter().any(|o| o == section)
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("slipway-{tag}-{}", slipway_api::ids::new_run_id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, content).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The local daemon. Docker tests must run: a missing daemon fails loudly.
pub async fn docker() -> Docker {
    let d = Docker::connect_with_local_defaults()
        .expect("Docker tests need a daemon: run scripts/ensure-docker.sh")
        .negotiate_version()
        .await
        .expect("Docker daemon must answer (scripts/ensure-docker.sh)");
    d.inspect_image(BUSYBOX)
        .await
        .unwrap_or_else(|e| panic!("{BUSYBOX} missing ({e}): run scripts/build-test-images.sh"));
    d
}

/// What carries a Docker label.
pub struct Labelled {
    pub containers: Vec<ContainerSummary>,
    pub networks: Vec<Network>,
    pub volumes: Vec<Volume>,
}

impl Labelled {
    /// One line per object, for assertions that want none.
    pub fn names(&self) -> Vec<String> {
        let containers = self
            .containers
            .iter()
            .map(|c| format!("container {:?}", c.names));
        let networks = self
            .networks
            .iter()
            .map(|n| format!("network {:?}", n.name));
        let volumes = self.volumes.iter().map(|v| format!("volume {}", v.name));
        containers.chain(networks).chain(volumes).collect()
    }
}

/// Containers (running or not), networks and volumes carrying `label`
/// (`key` or `key=value`).
pub async fn labelled(docker: &Docker, label: &str) -> Labelled {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let containers = ListContainersOptionsBuilder::default().all(true);
    let networks = ListNetworksOptionsBuilder::default();
    let volumes = ListVolumesOptionsBuilder::default();
    let (containers, networks, volumes) = tokio::try_join!(
        docker.list_containers(Some(containers.filters(&filters).build())),
        docker.list_networks(Some(networks.filters(&filters).build())),
        docker.list_volumes(Some(volumes.filters(&filters).build())),
    )
    .unwrap_or_else(|e| panic!("list what carries {label}: {e}"));
    Labelled {
        containers,
        networks,
        volumes: volumes.volumes.unwrap_or_default(),
    }
}

/// Containers, networks and volumes still carrying `slipway.run=<run_id>`.
pub async fn leftovers(docker: &Docker, run_id: &str) -> Vec<String> {
    labelled(docker, &format!("slipway.run={run_id}"))
        .await
        .names()
}

/// A real OCI registry (Debian's `docker-registry`) on a free loopback port,
/// with storage and config of its own; stopped when dropped.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:<port>`, usable in image references.
    pub host: String,
    /// `Authorization` value for a registry that requires a login.
    login: Option<String>,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// A registry that answers only `user` with `password` (htpasswd with
    /// bcrypt, from Debian's apache2-utils).
    pub fn start_with_login(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Registry {
        let dir = TempDir::new("registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.write(
            "config.yml",
            &format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{}",
                dir.path().join("data").display(),
                match login {
                    None => String::new(),
                    Some((user, password)) => {
                        let out = Command::new("htpasswd")
                            .args(["-Bbn", user, password])
                            .output()
                            .expect("htpasswd (apt-get install apache2-utils; scripts/test does)");
                        assert!(out.status.success(), "htpasswd failed");
                        let file = dir.write("htpasswd", &String::from_utf8_lossy(&out.stdout));
                        format!(
                            "auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n",
                            file.display()
                        )
                    }
                }
            ),
        );
        let child = Self::spawn(&dir, &config);
        let mut registry = Registry {
            child,
            host,
            login: login.map(|(user, password)| {
                use base64::Engine;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            }),
            _dir: dir,
        };
        registry.wait_until_up();
        registry
    }

    fn spawn(dir: &TempDir, config: &std::path::Path) -> std::process::Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join("registry.log"))
            .expect("log file");
        Command::new("docker-registry")
            .arg("serve")
            .arg(config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect(
                "docker-registry must be installed (apt-get install docker-registry; .ci/run does)",
            )
    }

    /// Stops the registry (its data stays), as an outage.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same address with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self._dir, &self._dir.path().join("config.yml"));
        self.wait_until_up();
    }

    fn wait_until_up(&mut self) {
        let registry = self;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !registry.answers() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited with {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not answer on {}",
                registry.host
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Extra request headers: the login, if the registry wants one.
    fn auth_header(&self) -> String {
        self.login
            .as_ref()
            .map(|l| format!("Authorization: {l}\r\n"))
            .unwrap_or_default()
    }

    /// `GET /v2/` answers 200 (with the login, if any): the registry is serving.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.host) else {
            return false;
        };
        let req = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n",
            self.host,
            self.auth_header()
        );
        let mut answer = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    /// The digest the registry itself gives for `repo:tag`'s manifest
    /// (`Docker-Content-Digest` of a HEAD), or `None` if it has none.
    pub fn manifest_digest(&self, repo: &str, tag: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.host).ok()?;
        let req = format!(
            "HEAD /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json\r\n\r\n",
            self.host,
            self.auth_header()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        if !answer.starts_with("HTTP/1.1 200") {
            return None;
        }
        answer.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_string())
        })
    }

    /// Pushes a local image under `repo:tag` and returns the full reference.
    pub fn push(&self, local: &str, repo_tag: &str) -> String {
        let reference = format!("{}/{repo_tag}", self.host);
        docker_cli(&["tag", local, &reference]);
        docker_cli(&["push", "-q", &reference]);
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program` (in `cwd`, if given), panicking with its stderr when it
/// fails; returns its stdout.
fn run(program: &str, cwd: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the docker CLI, panicking with its output when it fails.
pub fn docker_cli(args: &[&str]) -> String {
    run("docker", None, args)
}

/// Runs git in `cwd`; returns its stdout, trimmed.
fn git(cwd: &Path, args: &[&str]) -> String {
    run("git", Some(cwd), args).trim().to_string()
}

/// A bare git repository with one commit on `branch` holding `files`.
/// Returns the bare repository's path and the commit's sha.
pub fn git_repo(dir: &TempDir, branch: &str, files: &[(&str, &str)]) -> (PathBuf, String) {
    let bare = dir.path().join("origin.git");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let bare_path = bare.to_str().expect("utf-8 path");
    git(dir.path(), &["init", "-q", "--bare", bare_path]);
    git(&work, &["init", "-q", "-b", branch]);
    let sha = git_commit(dir, &[&format!("refs/heads/{branch}")], files);
    (bare, sha)
}

/// Git's smart HTTP protocol (`git http-backend`, as CGI under busybox
/// httpd) on a free loopback port, serving the bare repositories in a
/// folder to `user` with `password` only (HTTP basic auth); stopped when
/// dropped.
pub struct GitHttp {
    child: std::process::Child,
    /// `http://127.0.0.1:<port>/git`: a repository `x.git` of the folder is
    /// at `<url>/x.git`.
    pub url: String,
    _dir: TempDir,
}

impl GitHttp {
    pub fn serve(repos: &Path, user: &str, password: &str) -> GitHttp {
        let dir = TempDir::new("git-http");
        let exec_path = run("git", None, &["--exec-path"]);
        let script = dir.write(
            "www/cgi-bin/git",
            &format!(
                "#!/bin/sh\nexport GIT_PROJECT_ROOT='{}' GIT_HTTP_EXPORT_ALL=1\nexec '{}/git-http-backend'\n",
                repos.display(),
                exec_path.trim()
            ),
        );
        run("chmod", None, &["+x", script.to_str().expect("utf-8 path")]);
        // busybox httpd asks for a login for every path under /cgi-bin.
        let conf = dir.write("httpd.conf", &format!("/cgi-bin:{user}:{password}\n"));
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let child = Command::new("busybox")
            .args(["httpd", "-f", "-r", "slipway-test", "-p"])
            .arg(addr.to_string())
            .arg("-h")
            .arg(dir.path().join("www"))
            .arg("-c")
            .arg(conf)
            .spawn()
            .expect(
                "busybox must be installed (apt-get install busybox-static; scripts/test does)",
            );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "busybox httpd did not listen on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        GitHttp {
            child,
            url: format!("http://{addr}/cgi-bin/git"),
            _dir: dir,
        }
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real webhook body from `tests/fixtures/webhooks/github/`.
pub fn github_fixture(name: &str) -> String {
    webhook_fixture(&format!("github/{name}"))
}

/// A forge's documented webhook body, `tests/fixtures/webhooks/<forge>/<file>`
/// (sources in the README there).
pub fn webhook_fixture(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/webhooks")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A minimal HTTP/1.1 POST over a plain socket; returns status and body.
pub fn http_post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    http("POST", addr, path, headers, body)
}

/// A minimal HTTP/1.1 request over a plain socket; returns status and body.
/// Any I/O failure (nothing listening, a connection reset by a server that
/// is being killed or restarted) is status 0, so callers can poll.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        // A `Host` among `headers` replaces the default one (the address).
        let host = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host"))
            .map_or(addr, |(_, v)| *v);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
            body.len()
        );
        for (k, v) in headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let Ok(answer) = exchange() else {
        return (0, String::new());
    };
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Removes these images (tags), forcibly; ones already gone are no error.
pub async fn remove_images(references: &[String]) {
    let d = docker().await;
    for r in references {
        let force = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true);
        let _ = d.remove_image(r, Some(force.build()), None).await;
    }
}

/// An operator's own local image named `name` (made from [`BUSYBOX`],
/// never pushed), whose `/whoami` says `word`; returns its ID.
pub fn operator_image(name: &str, word: &str) -> String {
    let maker = format!("slipway-operator-{}", slipway_api::ids::new_run_id());
    let script = format!("echo {word} > /whoami");
    docker_cli(&["run", "--name", &maker, BUSYBOX, "sh", "-c", &script]);
    docker_cli(&["commit", &maker, name]);
    docker_cli(&["rm", &maker]);
    image_id(name).expect("the operator's image")
}

/// The ID of the image the daemon names `name`, if it names one.
pub fn image_id(name: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", name])
        .output()
        .expect("docker image inspect");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes these images and the daemon's whole build cache, as on a fresh
/// builder that shares only the registry.
pub async fn forget_local_builds(references: &[String]) {
    remove_images(references).await;
    docker()
        .await
        .prune_build(Some(
            bollard::query_parameters::PruneBuildOptionsBuilder::default()
                .all(true)
                .build(),
        ))
        .await
        .expect("prune the build cache");
}

/// Commits `files` on top of what [`git_repo`] made in `dir` (or as its
/// first commit) and pushes the commit to each of `refs` of its bare
/// repository; returns the sha.
pub fn git_commit(dir: &TempDir, refs: &[&str], files: &[(&str, &str)]) -> String {
    let work = dir.path().join("work");
    let bare = dir.path().join("origin.git");
    let git = |args: &[&str]| git(&work, args);
    for (path, content) in files {
        dir.write(&format!("work/{path}"), content);
    }
    git(&["add", "-A"]);
    let author = ["-c", "user.name=t", "-c", "user.email=t@example.com"];
    git(&[
        &author[..],
        &["commit", "-q", "--allow-empty", "-m", "test commit"],
    ]
    .concat());
    let bare = bare.to_str().expect("utf-8 path");
    for r in refs {
        git(&["push", "-q", "-f", bare, &format!("HEAD:{r}")]);
    }
    git(&["rev-parse", "HEAD"])
}
