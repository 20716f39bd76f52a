//! Retention: `slipway gc` (the real binary) and the server's own sweep
//! remove old runs of a real server, with their logs, artifacts and git
//! mirror; `--dry-run` removes nothing; a bad duration is named.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use slipway_tests::{
    BUSYBOX, READER, TempDir, deliver, docker, exit_within, free_addr, git_repo, http, leftovers,
    push_body, run_view, serve_binary, serve_config, serve_log, signal, slipway_bin, wait_healthy,
};

/// One step that keeps an artifact.
fn pipeline() -> String {
    format!(
        "steps:\n  pack:\n    image: {BUSYBOX}\n    artifacts: [dist/app.txt]\n    commands: ['mkdir -p dist', 'echo packed > dist/app.txt']\n"
    )
}

/// Starts the real server on `data`, has it run a push of `sha`, waits
/// for the run to succeed and stops the server (SIGTERM). Returns the run id.
fn one_finished_run(config: &Path, data: &Path, addr: &str, sha: &str, delivery: &str) -> String {
    let mut server = serve_binary(config, data);
    wait_healthy(addr);
    let (status, body) = deliver(addr, "push", delivery, &push_body(sha));
    assert_eq!(status, 202, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while run_view(addr, &id)["status"] != "success" {
        assert!(
            Instant::now() < deadline,
            "run {id} did not succeed: {}\nserver output:\n{}",
            run_view(addr, &id),
            serve_log(data)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(&mut server, data);
    id
}

fn stop(server: &mut Child, data: &Path) {
    signal(server, "TERM");
    assert!(exit_within(server, Duration::from_secs(30), data).success());
}

fn gc(config: &Path, data: &Path, extra: &[&str]) -> Output {
    Command::new(slipway_bin())
        .arg("gc")
        .arg("--config")
        .arg(config)
        .args(extra)
        .env("SLIPWAY_DATA_DIR", data)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mirror_of(data: &Path) -> PathBuf {
    data.join("mirrors").join("Codertocat_Hello-World.git")
}

/// The run ids `GET /api/v1/runs` lists.
fn listed_runs(addr: &str) -> Vec<String> {
    let (status, body) = http(
        "GET",
        addr,
        "/api/v1/runs",
        &[("Authorization", &format!("Bearer {READER}"))],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {json}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 14: runs, logs, artifacts and git mirrors were never deleted.
#[tokio::test(flavor = "multi_thread")]
async fn slipway_gc_removes_old_runs_their_artifacts_and_idle_mirrors() {
    let d = docker().await;
    let dir = TempDir::new("gc");
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", &pipeline())]);
    let addr = free_addr();
    let config = serve_config(&dir, &addr, "", &format!("file://{}", bare.display()));
    let data = dir.path().join("data");
    let (c, dt, a, s) = (config.clone(), data.clone(), addr.clone(), sha.clone());
    let id = tokio::task::spawn_blocking(move || one_finished_run(&c, &dt, &a, &s, "gc-1"))
        .await
        .unwrap();
    let artifacts = data.join("artifacts").join(&id);
    assert!(artifacts.join("pack/dist/app.txt").exists());
    assert!(mirror_of(&data).join("HEAD").exists());
    std::thread::sleep(Duration::from_millis(1100));

    let gc_config = dir.write(
        "gc.toml",
        "[server]\nkeep_runs = \"1s\"\nkeep_mirrors = \"1s\"\n",
    );
    let dry = gc(&gc_config, &data, &["--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let said = text(&dry);
    assert!(
        said.contains(&format!("would remove run {id} ")) && said.contains("artifacts 7 B"),
        "{said}"
    );
    assert!(
        said.contains("would remove git mirror") && said.contains("Codertocat_Hello-World.git"),
        "{said}"
    );
    assert!(artifacts.exists(), "a dry run removes nothing");
    assert!(mirror_of(&data).join("HEAD").exists());

    let done = gc(&gc_config, &data, &[]);
    assert!(done.status.success(), "{}", text(&done));
    let said = text(&done);
    assert!(said.contains(&format!("removed run {id} ")), "{said}");
    assert!(
        said.contains("removed 1 run(s)") && said.contains("1 git mirror(s)"),
        "{said}"
    );
    assert!(!artifacts.exists(), "{said}");
    assert!(!mirror_of(&data).exists(), "{said}");

    // The server knows nothing of it any more, and builds again (a new mirror).
    let (c, dt, a) = (config.clone(), data.clone(), addr.clone());
    let listed = tokio::task::spawn_blocking(move || {
        let mut server = serve_binary(&c, &dt);
        wait_healthy(&a);
        let listed = listed_runs(&a);
        let gone = run_view(&a, &id);
        stop(&mut server, &dt);
        (listed, gone, id)
    })
    .await
    .unwrap();
    assert!(listed.0.is_empty(), "{:?}", listed.0);
    assert!(listed.1.is_null(), "{}", listed.1);
    assert_eq!(leftovers(&d, &listed.2).await, Vec::<String>::new());
}

/// The server sweeps at start with its own `keep_runs`.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_sweeps_old_runs_when_it_starts() {
    docker().await;
    let dir = TempDir::new("gc-serve");
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", &pipeline())]);
    let addr = free_addr();
    let url = format!("file://{}", bare.display());
    let config = serve_config(&dir, &addr, "", &url);
    let data = dir.path().join("data");
    let (c, dt, a, s) = (config.clone(), data.clone(), addr.clone(), sha.clone());
    let id = tokio::task::spawn_blocking(move || one_finished_run(&c, &dt, &a, &s, "gc-serve-1"))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let config = serve_config(&dir, &addr, "keep_runs = \"1s\"\n", &url);
    let (dt, a) = (data.clone(), addr.clone());
    let (listed, artifacts_left) = tokio::task::spawn_blocking(move || {
        let mut server = serve_binary(&config, &dt);
        wait_healthy(&a);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listed_runs(&a).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let listed = listed_runs(&a);
        stop(&mut server, &dt);
        (listed, dt.join("artifacts").join(&id).exists())
    })
    .await
    .unwrap();
    assert!(listed.is_empty(), "{listed:?}\n{}", serve_log(&data));
    assert!(!artifacts_left);
}

#[test]
fn a_bad_duration_is_named_with_file_line_and_key() {
    let dir = TempDir::new("gc-bad");
    let config = dir.write("bad.toml", "[server]\nkeep_runs = \"a month\"\n");
    let out = gc(&config, &dir.path().join("data"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "{}:2:13: server.keep_runs: `a month` is not a duration",
            config.display()
        )),
        "{said}"
    );
}
