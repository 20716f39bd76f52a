//! Remote runners (issue 16), with real processes: the `slipway serve`
//! binary (no built-in runner) and `slipway runner`s, each in a network
//! namespace of its own with its own address, all on this host's Docker.
//! Links are cut with `ip link`, processes killed with SIGKILL.
//!
//! The tests take turns (one lock): each starts a server and runners,
//! and lease timings on two cores must not depend on the other tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use slipway_tests::netns::Netns;
use slipway_tests::{
    BUSYBOX, READER, SECRET, TOKENS, TempDir, deliver, git_commit, git_repo, http, kill9,
    push_body, repo_config, run_view, serve_log, slipway_bin, wait_healthy,
};

static TURN: Mutex<()> = Mutex::new(());

const ADMIN: &str = "admin-token-0123456789";

struct Runner {
    name: String,
    token: String,
    labels: String,
    capacity: usize,
    net: Netns,
    data: PathBuf,
    child: Option<Child>,
}

impl Runner {
    fn log_path(&self) -> PathBuf {
        self.data.with_extension("log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn start(&mut self, port: u16) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .net
            .command(slipway_bin())
            .args(["runner", "--name", &self.name, "--capacity"])
            .arg(self.capacity.to_string())
            .args(["--labels", &self.labels, "--server"])
            .arg(format!("http://{}:{port}", self.net.host_ip))
            .env("SLIPWAY_RUNNER_TOKEN", &self.token)
            .env("SLIPWAY_DATA_DIR", &self.data)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start slipway runner");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}

struct Cluster {
    dir: TempDir,
    port: u16,
    config: PathBuf,
    data: PathBuf,
    server: Option<Child>,
    runners: Vec<Runner>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let (_, body) = http(
            "GET",
            &self.api_addr(),
            "/api/v1/runs?limit=200",
            &[("Authorization", &format!("Bearer {READER}"))],
            b"",
        );
        for r in &mut self.runners {
            r.kill();
        }
        if let Some(mut s) = self.server.take() {
            kill9(&mut s);
        }
        // Whatever runs were left running: their containers go with them.
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        for run in list["runs"].as_array().into_iter().flatten() {
            if let Some(id) = run["id"].as_str() {
                let _ = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "docker ps -aq --filter label=slipway.run={id} | xargs -r docker rm -f >/dev/null 2>&1; docker network ls -q --filter label=slipway.run={id} | xargs -r docker network rm >/dev/null 2>&1"
                    ))
                    .status();
            }
        }
    }
}

impl Cluster {
    fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        let child = Command::new(slipway_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("SLIPWAY_DATA_DIR", &self.data)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start slipway serve");
        self.server = Some(child);
        wait_healthy(&self.api_addr());
    }

    fn runner(&self, name: &str) -> &Runner {
        self.runners.iter().find(|r| r.name == name).unwrap()
    }

    fn runner_mut(&mut self, name: &str) -> &mut Runner {
        self.runners.iter_mut().find(|r| r.name == name).unwrap()
    }

    fn logs(&self) -> String {
        let mut out = format!("--- server\n{}", serve_log(&self.data));
        for r in &self.runners {
            out.push_str(&format!("--- runner {}\n{}", r.name, r.log()));
        }
        out
    }

    /// Queues a run of `sha` on master; returns its id.
    fn push(&self, sha: &str, delivery: &str) -> String {
        let (status, body) = deliver(&self.api_addr(), "push", delivery, &push_body(sha));
        assert_eq!(status, 202, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        json["run"].as_str().unwrap().to_string()
    }

    /// The `slipway` CLI against this server with `token`.
    fn cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        Command::new(slipway_bin())
            .args(args)
            .env("SLIPWAY_SERVER", format!("http://{}", self.api_addr()))
            .env("SLIPWAY_TOKEN", token)
            .output()
            .unwrap()
    }

    fn view(&self, id: &str) -> Value {
        run_view(&self.api_addr(), id)
    }

    fn wait(&self, what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what} within {secs}s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ended(&self, id: &str, secs: u64) -> Value {
        let mut last = Value::Null;
        self.wait(&format!("run {id} ends"), secs, || {
            last = self.view(id);
            !matches!(last["status"].as_str(), None | Some("queued" | "running"))
        });
        last
    }

    fn log_of(&self, id: &str, step: &str) -> String {
        let (_, body) = http(
            "GET",
            &self.api_addr(),
            &format!("/api/v1/runs/{id}/logs/{step}"),
            &[("Authorization", &format!("Bearer {READER}"))],
            b"",
        );
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        json["text"].as_str().unwrap_or_default().to_string()
    }
}

/// A server with no built-in runner (leases of `lease`), and `runners`
/// (name, labels, capacity) registered with `slipway runners add` and
/// started, each in a namespace of its own.
fn cluster(
    tag: &str,
    files: &[(&str, &str)],
    runners: &[(&str, &str, usize)],
) -> (Cluster, TempDir, String) {
    cluster_with(tag, files, runners, "")
}

/// [`cluster`] with `repo_extra` appended to the repository's table.
fn cluster_with(
    tag: &str,
    files: &[(&str, &str)],
    runners: &[(&str, &str, usize)],
    repo_extra: &str,
) -> (Cluster, TempDir, String) {
    let repo_dir = TempDir::new(&format!("{tag}-repo"));
    let (bare, sha) = git_repo(&repo_dir, "master", files);
    let dir = TempDir::new(tag);
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.write(
        "slipway.toml",
        &(format!(
            "[server]\nlisten = \"0.0.0.0:{port}\"\nlocal_runner = false\nrunner_lease = \"3s\"\ncancel_superseded = false\nrequeue_interrupted = true\nsecrets_key = \"{}\"\n{TOKENS}[[tokens]]\nuser = \"ada\"\ntoken = \"{ADMIN}\"\nscope = \"admin\"\n{}",
            dir.path().join("secrets.key").display(),
            repo_config(&format!("file://{}", bare.display()))
        ) + repo_extra),
    );
    let data = dir.path().join("data");
    let mut c = Cluster {
        port,
        config,
        data,
        server: None,
        runners: Vec::new(),
        dir,
    };
    c.start_server();
    for (name, labels, capacity) in runners {
        let out = Command::new(slipway_bin())
            .args(["runners", "add", name])
            .env("SLIPWAY_SERVER", format!("http://{}", c.api_addr()))
            .env("SLIPWAY_TOKEN", ADMIN)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "runners add {name}");
        let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(token.starts_with("slrt_"), "a token on stdout: {token}");
        let mut r = Runner {
            name: name.to_string(),
            token,
            labels: labels.to_string(),
            capacity: *capacity,
            net: Netns::create(),
            data: c.dir.path().join(format!("runner-{name}")),
            child: None,
        };
        r.start(port);
        c.runners.push(r);
    }
    // Every runner is online before the first push.
    c.wait("runners online", 30, || {
        let (_, body) = http(
            "GET",
            &c.api_addr(),
            "/api/v1/runners",
            &[("Authorization", &format!("Bearer {READER}"))],
            b"",
        );
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        list.as_array()
            .is_some_and(|l| l.iter().filter(|r| r["online"] == true).count() == runners.len())
    });
    let _ = SECRET;
    (c, repo_dir, sha)
}

fn pipeline(body: &str) -> String {
    format!("steps:\n  main:\n    image: {BUSYBOX}\n    commands:\n{body}")
}

/// Containers (running or not) labelled with run `id`.
fn containers_of(id: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=slipway.run={id}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The run that an interrupted run was queued again as.
fn requeued_as(view: &Value) -> String {
    view["notes"]
        .as_array()
        .and_then(|n| {
            n.iter()
                .find_map(|n| n.as_str()?.strip_prefix("queued again as run "))
        })
        .map(str::to_string)
        .unwrap_or_else(|| panic!("requeued: {view}"))
}

fn took(runner_log: &str, id: &str) -> usize {
    runner_log
        .lines()
        .filter(|l| l.contains("took a run") && l.contains(id))
        .count()
}

#[test]
fn thirty_runs_over_three_runners_run_once_each_and_labels_route_them() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let files = [(
        ".slipway.yml",
        pipeline("      - echo \"hello from $SLIPWAY_COMMIT_SHA\"\n").as_str(),
    )]
    .map(|(a, b)| (a, b.to_string()));
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let (c, repo_dir, sha) = cluster(
        "runners-30",
        &files,
        &[
            ("a", "linux", 2),
            ("b", "linux", 2),
            ("c", "linux,large", 2),
        ],
    );
    let started = Instant::now();
    let ids: Vec<String> = (0..30).map(|i| c.push(&sha, &format!("r30-{i}"))).collect();
    let mut per_runner = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        let view = c.wait_ended(id, 120);
        assert_eq!(view["status"], "success", "{view}\n{}", c.logs());
        let runner = view["runner"].as_str().unwrap().to_string();
        let log = c.log_of(id, "main");
        assert_eq!(
            log.lines().filter(|l| l.starts_with("hello from")).count(),
            1,
            "run {id}'s log holds its one line once: {log}"
        );
        let everywhere: usize = c.runners.iter().map(|r| took(&r.log(), id)).sum();
        assert_eq!(everywhere, 1, "run {id} was taken by exactly one runner");
        assert_eq!(took(&c.runner(&runner).log(), id), 1);
        *per_runner.entry(runner).or_default() += 1;
    }
    println!(
        "30 runs over 3 runners (capacity 2 each) in {:?}: {per_runner:?}",
        started.elapsed()
    );
    assert_eq!(per_runner.values().sum::<usize>(), 30);
    // A run that ended normally lets go of its lease: nobody was fenced.
    for r in &c.runners {
        assert!(
            !r.log().contains("fenced"),
            "runner {}:\n{}",
            r.name,
            r.log()
        );
    }

    // Labels route: only `c` has `large`.
    let large = git_commit(
        &repo_dir,
        &["refs/heads/master"],
        &[(
            ".slipway.yml",
            &format!("runs_on: [large]\n{}", pipeline("      - echo big\n")),
        )],
    );
    for i in 0..3 {
        let id = c.push(&large, &format!("large-{i}"));
        let view = c.wait_ended(&id, 60);
        assert_eq!(view["status"], "success", "{view}");
        assert_eq!(view["runner"], "c", "only `c` has label `large`: {view}");
        assert_eq!(view["runs_on"], serde_json::json!(["large"]));
    }

    // A label nobody has: the run waits and says why.
    let gpu = git_commit(
        &repo_dir,
        &["refs/heads/master"],
        &[(
            ".slipway.yml",
            &format!("runs_on: [linux, gpu]\n{}", pipeline("      - echo gpu\n")),
        )],
    );
    let id = c.push(&gpu, "gpu-0");
    c.wait("the reason a run waits", 15, || {
        c.view(&id)["waiting"] == "no online runner has label `gpu`"
    });
    assert_eq!(c.view(&id)["status"], "queued");
    let out = c.cli(READER, &["runs", "--limit", "3"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("waiting: no online runner has label `gpu`"),
        "`slipway runs` says why: {listed}"
    );
    let (status, _) = http(
        "POST",
        &c.api_addr(),
        &format!("/api/v1/runs/{id}/cancel"),
        &[(
            "Authorization",
            &format!("Bearer {}", slipway_tests::WRITER),
        )],
        b"",
    );
    assert_eq!(status, 200);
    let (_, metrics) = http("GET", &c.api_addr(), "/metrics", &[], b"");
    for name in ["a", "b", "c"] {
        for line in [
            format!("slipway_runner_online{{runner=\"{name}\"}} 1"),
            format!("slipway_runner_healthy{{runner=\"{name}\"}} 1"),
            format!("slipway_runner_capacity{{runner=\"{name}\"}} 2"),
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }
    }
    // `slipway runners ls` shows them all, with the runs they ran gone.
    let out = c.cli(READER, &["runners", "ls"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for name in ["a", "b", "c"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains("online")),
            "{table}"
        );
    }
}

/// Waits for the run's `main` step to print `started` on some runner;
/// returns that runner's name.
fn running_on(c: &Cluster, id: &str) -> String {
    c.wait("the step started", 60, || {
        c.log_of(id, "main").contains("started")
    });
    c.view(id)["runner"].as_str().unwrap().to_string()
}

#[test]
fn a_runner_cut_off_loses_its_run_to_another_and_is_fenced_when_it_comes_back() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let text = pipeline("      - echo started\n      - sleep 12\n      - echo done\n");
    let (c, _repo, sha) = cluster(
        "runners-cut",
        &[(".slipway.yml", &text)],
        &[("a", "", 1), ("b", "", 1)],
    );
    let first = c.push(&sha, "cut-0");
    let lost = running_on(&c, &first);
    let other = if lost == "a" { "b" } else { "a" };
    assert!(!containers_of(&first).is_empty(), "its step runs");
    c.runner(&lost).net.cut();
    let cut_at = Instant::now();
    let view = c.wait_ended(&first, 20);
    let expired_after = cut_at.elapsed();
    assert_eq!(view["status"], "interrupted", "{view}");
    assert!(
        view["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("runner `{lost}` stopped answering"))),
        "{view}"
    );
    let again = requeued_as(&view);
    // Back on the link while the new attempt runs elsewhere: fenced.
    c.runner(&lost).net.restore();
    let fenced_by = Instant::now();
    let mut gone = false;
    while fenced_by.elapsed() < Duration::from_secs(20) {
        if containers_of(&first).is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        gone,
        "the fenced runner removed its containers\n{}",
        c.logs()
    );
    assert!(
        c.runner(&lost).log().contains("fenced"),
        "{}",
        c.runner(&lost).log()
    );
    let view2 = c.wait_ended(&again, 60);
    assert_eq!(view2["status"], "success", "{view2}\n{}", c.logs());
    assert_eq!(view2["runner"], other);
    // Nothing the fenced runner said after its lease landed in either run.
    let old_log = c.log_of(&first, "main");
    assert!(!old_log.contains("done"), "{old_log}");
    assert_eq!(c.view(&first)["status"], "interrupted");
    println!("lease expired {expired_after:?} after the cut (lease 3s)");
}

#[test]
fn a_server_killed_mid_run_loses_nothing_of_a_remote_run() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let text = pipeline("      - for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 1; done\n");
    let (mut c, _repo, sha) = cluster("runners-crash", &[(".slipway.yml", &text)], &[("a", "", 1)]);
    let id = c.push(&sha, "crash-0");
    c.wait("line-1", 60, || c.log_of(&id, "main").contains("line-1"));
    kill9(c.server.as_mut().unwrap());
    c.server = None;
    std::thread::sleep(Duration::from_secs(2));
    c.start_server();
    let view = c.wait_ended(&id, 60);
    assert_eq!(view["status"], "success", "{view}\n{}", c.logs());
    assert_eq!(view["runner"], "a");
    let log = c.log_of(&id, "main");
    for i in 1..=8 {
        assert_eq!(
            log.matches(&format!("line-{i}\n")).count(),
            1,
            "line-{i} once in the whole log:\n{log}"
        );
    }
}

#[test]
fn a_killed_runner_removes_its_orphans_on_restart_and_a_cancel_reaches_it_within_a_second() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let text = pipeline("      - echo started\n      - sleep 300\n");
    let (mut c, _repo, sha) = cluster("runners-kill", &[(".slipway.yml", &text)], &[("a", "", 1)]);
    let first = c.push(&sha, "kill-0");
    running_on(&c, &first);
    c.runner_mut("a").kill();
    assert!(
        !containers_of(&first).is_empty(),
        "a killed runner leaves its containers"
    );
    let port = c.port;
    c.runner_mut("a").start(port);
    let restarted = Instant::now();
    while !containers_of(&first).is_empty() {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "orphans removed on restart\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let view = c.wait_ended(&first, 30);
    assert_eq!(view["status"], "interrupted", "{view}");
    let again = requeued_as(&view);
    running_on(&c, &again);
    let asked = Instant::now();
    let (status, body) = http(
        "POST",
        &c.api_addr(),
        &format!("/api/v1/runs/{again}/cancel"),
        &[(
            "Authorization",
            &format!("Bearer {}", slipway_tests::WRITER),
        )],
        b"",
    );
    assert_eq!(status, 202, "{body}");
    // The step's container stops when the cancel reaches the runner.
    let mut stopped = None;
    while asked.elapsed() < Duration::from_secs(10) {
        let running = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=slipway.run={again}"),
            ])
            .output()
            .unwrap();
        if running.stdout.is_empty() {
            stopped = Some(asked.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = stopped.unwrap_or_else(|| panic!("the container stopped\n{}", c.logs()));
    let view = c.wait_ended(&again, 10);
    let ended = asked.elapsed();
    assert_eq!(view["status"], "cancelled", "{view}");
    println!(
        "cancel of a remote run: container stopped after {stopped:?}, run recorded cancelled after {ended:?}"
    );
    assert!(
        stopped < Duration::from_secs(1),
        "a cancel reaches a remote run within a second: {stopped:?}"
    );
    // Removed: its token stops working and the runner stops, saying why.
    let out = c.cli(ADMIN, &["runners", "rm", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = c.runner_mut("a").child.take().unwrap();
    let removed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            removed.elapsed() < Duration::from_secs(40),
            "a removed runner stops\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(
        c.runner("a")
            .log()
            .contains("was it removed with `slipway runners rm`?"),
        "{}",
        c.runner("a").log()
    );
}

fn cached_pipeline(label: &str) -> String {
    format!(
        r#"runs_on: [{label}]
steps:
  main:
    image: {BUSYBOX}
    cache:
      - key: deps-v1
        paths: [deps]
    artifacts: [out/report.txt]
    secrets: [DEPLOY_TOKEN]
    commands:
      - test "${{#DEPLOY_TOKEN}}" -eq 18 && echo "the secret arrived"
      - |
        if [ -f deps/made ]; then echo "deps restored: $(cat deps/made)"
        else mkdir -p deps; echo "$SLIPWAY_COMMIT_SHA" > deps/made; echo "deps made"; fi
      - mkdir -p out
      - echo "report of $SLIPWAY_COMMIT_SHA" > out/report.txt
"#
    )
}

#[test]
fn caches_and_artifacts_follow_runs_from_one_runner_to_another_through_the_server() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let (c, repo_dir, first_sha) = cluster_with(
        "runners-cache",
        &[(".slipway.yml", &cached_pipeline("one"))],
        &[("a", "one", 1), ("b", "two", 1)],
        "[repos.secrets]\nDEPLOY_TOKEN = \"runner-secret-4b1d\"\n",
    );
    let first = c.push(&first_sha, "cache-0");
    let view = c.wait_ended(&first, 60);
    assert_eq!(view["status"], "success", "{view}\n{}", c.logs());
    assert_eq!(view["runner"], "a");
    let log = c.log_of(&first, "main");
    assert!(log.contains("deps made"), "{log}");
    assert!(log.contains("shared with the server"), "{log}");
    // The artifact was made on `a`; the server serves it.
    let (status, report) = http(
        "GET",
        &c.api_addr(),
        &format!("/api/v1/runs/{first}/artifacts/main/out/report.txt"),
        &[("Authorization", &format!("Bearer {READER}"))],
        b"",
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report.trim(), format!("report of {first_sha}"));

    // The same cache key on the other runner: restored from what `a` made.
    let second_sha = git_commit(
        &repo_dir,
        &["refs/heads/master"],
        &[(".slipway.yml", &cached_pipeline("two"))],
    );
    let second = c.push(&second_sha, "cache-1");
    let view = c.wait_ended(&second, 60);
    assert_eq!(view["status"], "success", "{view}\n{}", c.logs());
    assert_eq!(view["runner"], "b");
    let log = c.log_of(&second, "main");
    assert!(log.contains("fetched from the server"), "{log}");
    assert!(
        log.contains(&format!("deps restored: {first_sha}")),
        "b restored a's cache: {log}"
    );
    assert!(log.contains("\nthe secret arrived"), "{log}");
    // The secret reached the step, and nothing the runners keep holds it.
    for r in &c.runners {
        let found = Command::new("grep")
            .args(["-r", "-l", "runner-secret-4b1d"])
            .arg(&r.data)
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "runner {} wrote the secret to {}",
            r.name,
            String::from_utf8_lossy(&found.stdout)
        );
        assert!(!r.log().contains("runner-secret-4b1d"));
    }
}

/// A TLS front on `0.0.0.0:<port>` for `backend` (plain HTTP), with a
/// certificate for `ip` signed by a CA of its own; returns the port and
/// the CA's PEM path.
fn tls_front(dir: &TempDir, ip: &str, backend: String) -> (u16, PathBuf) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let d = dir.path();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=slipway-test-ca 2>/dev/null",
    );
    sh(&format!(
        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN={ip} 2>/dev/null && printf 'subjectAltName=IP:{ip}\\nbasicConstraints=CA:FALSE\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 -extfile ext 2>/dev/null"
    ));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(d.join("srv.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(d.join("srv.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    (port, d.join("ca.pem"))
}

#[test]
fn a_runner_takes_runs_from_an_https_server_with_a_private_ca() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let text = pipeline("      - echo over-tls\n");
    let (mut c, _repo, sha) = cluster("runners-tls", &[(".slipway.yml", &text)], &[]);
    let net = Netns::create();
    let tls_dir = TempDir::new("runners-tls-ca");
    let (tls_port, ca) = tls_front(&tls_dir, &net.host_ip, c.api_addr());
    let token = {
        let out = c.cli(ADMIN, &["runners", "add", "secure"]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let data = c.dir.path().join("runner-secure");
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    let child = net
        .command(slipway_bin())
        .args(["runner", "--name", "secure", "--ca-cert"])
        .arg(&ca)
        .arg("--server")
        .arg(format!("https://{}:{tls_port}", net.host_ip))
        .env("SLIPWAY_RUNNER_TOKEN", &token)
        .env("SLIPWAY_DATA_DIR", &data)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    c.runners.push(Runner {
        name: "secure".into(),
        token,
        labels: String::new(),
        capacity: 1,
        net,
        data,
        child: Some(child),
    });
    let id = c.push(&sha, "tls-0");
    let view = c.wait_ended(&id, 60);
    assert_eq!(view["status"], "success", "{view}\n{}", c.logs());
    assert_eq!(view["runner"], "secure");
    assert!(
        c.log_of(&id, "main").contains("\nover-tls"),
        "{}",
        c.log_of(&id, "main")
    );
}
