//! The `slipway` binary as a user runs it: exit codes, output, the store.
use slipway_tests::{TempDir, slipway_bin};
use std::process::Command;

#[test]
fn validate_reports_every_problem_with_file_line_and_column() {
    let dir = TempDir::new("cli");
    let file = dir.write(".slipway.yml", "steps:\n  a:\n    image: x\n    comands: [true]\n  b:\n    image: x\n    commands: [true]\n    needs: [c]\n");
    let out = Command::new(slipway_bin())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    assert!(
        stderr.contains(&format!(
            "{f}:4:5: error: unknown key `comands` in step `a`\n  hint: did you mean `commands`?"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{f}:8:13: error: step `b` needs unknown step `c`")),
        "{stderr}"
    );
    assert!(stderr.contains("3 errors"), "{stderr}");
}

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use slipway_tests::{BUSYBOX, docker, leftovers};

fn slipway(data: &Path) -> Command {
    let mut c = Command::new(slipway_bin());
    c.env("SLIPWAY_DATA_DIR", data).env_remove("SLIPWAY_LOG");
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `slipway run` and returns once its first step printed `marker`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which waits for it"
)]
fn start_run_until(data: &Path, file: &Path, marker: &str) -> (Child, String) {
    let mut child = slipway(data)
        .args(["run", "--grace", "3s"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut run_id = String::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("marker never printed");
        if let Some(rest) = line.strip_prefix("slipway: run ") {
            run_id = rest.split_whitespace().next().unwrap().to_string();
        }
        if line.ends_with(marker) {
            return (child, run_id);
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

const LONG: &str = "steps:\n  long: {image: BUSYBOX, commands: [echo marker-up, sleep 300]}\n  after: {image: BUSYBOX, commands: [true], needs: [long]}\n";

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_the_run_removes_everything_and_exits_130() {
    let d = docker().await;
    let dir = TempDir::new("sigint");
    let file = dir.write(".slipway.yml", &LONG.replace("BUSYBOX", BUSYBOX));
    let data = dir.path().join("data");
    let (mut child, run_id) = start_run_until(&data, &file, "marker-up");
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(leftovers(&d, &run_id).await, Vec::<String>::new());
    let runs = text(&slipway(&data).arg("runs").output().unwrap());
    assert!(
        runs.contains(&run_id) && runs.contains("cancelled"),
        "{runs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_the_next_run_removes_the_leftovers() {
    let d = docker().await;
    let dir = TempDir::new("crash");
    let file = dir.write(".slipway.yml", &LONG.replace("BUSYBOX", BUSYBOX));
    let data = dir.path().join("data");
    let (mut child, run_id) = start_run_until(&data, &file, "marker-up");
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert!(
        !leftovers(&d, &run_id).await.is_empty(),
        "a killed run leaves its container running"
    );
    let quick = dir.write(
        "quick.yml",
        &format!("steps:\n  ok: {{image: {BUSYBOX}, commands: [true]}}\n"),
    );
    let out = slipway(&data).arg("run").arg(&quick).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(leftovers(&d, &run_id).await, Vec::<String>::new());
}

#[test]
fn runs_and_logs_read_the_store_after_the_run() {
    let dir = TempDir::new("logs");
    let file = dir.write(
        ".slipway.yml",
        &format!("name: demo\nsteps:\n  hello: {{image: {BUSYBOX}, commands: ['echo hi from hello']}}\n  bad: {{image: {BUSYBOX}, commands: ['exit 4'], needs: [hello]}}\n"),
    );
    let data = dir.path().join("data");
    let out = slipway(&data).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hello | hi from hello"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bad    failed") && l.contains("   4  1")),
        "{stdout}"
    );
    let run_id = stdout
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();

    let runs = text(&slipway(&data).arg("runs").output().unwrap());
    assert!(
        runs.contains(&run_id) && runs.contains("demo") && runs.contains("failed"),
        "{runs}"
    );
    let logs = slipway(&data)
        .args(["logs", &run_id[..6], "--step", "hello"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout),
        "+ echo hi from hello\nhi from hello\n"
    );
    let all = text(&slipway(&data).args(["logs", &run_id]).output().unwrap());
    assert!(all.contains("  bad | slipway: exit code 4"), "{all}");
    let missing = slipway(&data)
        .args(["logs", "ffffffffffff"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("no run matches `ffffffffffff`"));
}

#[test]
fn a_data_dir_in_use_is_named_in_the_error() {
    let dir = TempDir::new("lock");
    let file = dir.write(".slipway.yml", &LONG.replace("BUSYBOX", BUSYBOX));
    let data = dir.path().join("data");
    let (mut child, _) = start_run_until(&data, &file, "marker-up");
    let out = slipway(&data).arg("runs").output().unwrap();
    signal(&child, "-TERM");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(130),
        "SIGTERM cancels like Ctrl-C"
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("is in use by another slipway process"),
        "{}",
        text(&out)
    );
}

#[test]
fn graph_prints_text_dot_and_mermaid() {
    let dir = TempDir::new("graph");
    let file = dir.write(
        ".slipway.yml",
        "name: g\nsteps:\n  build: {image: x, commands: [true]}\n  test: {image: x, commands: [true], needs: [build]}\n",
    );
    let run = |fmt: &str| {
        String::from_utf8_lossy(
            &Command::new(slipway_bin())
                .args(["graph", "--format", fmt])
                .arg(&file)
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    assert!(
        run("text").contains("stage 2   test   <- build"),
        "{}",
        run("text")
    );
    assert!(run("dot").contains("\"build\" -> \"test\";"));
    assert!(run("mermaid").contains("s0 --> s1"));
}

#[test]
fn server_commands_say_they_need_a_server() {
    let out = Command::new(slipway_bin())
        .args(["cancel", "abc"])
        .env_remove("SLIPWAY_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out)
            .contains("`slipway cancel` talks to a server: pass --server or set SLIPWAY_SERVER"),
        "{}",
        text(&out)
    );
    let out = Command::new(slipway_bin())
        .args(["logs", "abc", "-f"])
        .env_remove("SLIPWAY_SERVER")
        .output()
        .unwrap();
    assert!(
        text(&out).contains("--follow reads a server's live logs"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_local_run_saves_its_cache_which_the_cache_commands_list_and_remove() {
    let data = TempDir::new("cli-cache");
    let dir = TempDir::new("cli-cache-src");
    let file = dir.write(
        ".slipway.yml",
        &format!(
            "steps:\n  deps:\n    image: {BUSYBOX}\n    cache: [{{ key: \"deps-v1\", paths: [deps] }}]\n    commands: ['mkdir -p deps', 'echo x > deps/x']\n"
        ),
    );
    let out = slipway(data.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("cache `deps-v1` saved"),
        "{}",
        text(&out)
    );
    let ls = slipway(data.path()).args(["cache", "ls"]).output().unwrap();
    assert!(
        text(&ls).lines().any(|l| l.starts_with("deps-v1 ")),
        "{}",
        text(&ls)
    );
    assert!(text(&ls).contains("1 entries"), "{}", text(&ls));
    let rm = slipway(data.path())
        .args(["cache", "rm", "deps-v1"])
        .output()
        .unwrap();
    assert_eq!(rm.status.code(), Some(0), "{}", text(&rm));
    let again = slipway(data.path())
        .args(["cache", "rm", "deps-v1"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("no cache entry `deps-v1`"),
        "{}",
        text(&again)
    );
    let ls = slipway(data.path()).args(["cache", "ls"]).output().unwrap();
    assert!(text(&ls).contains("no cache entries"), "{}", text(&ls));
}

#[test]
fn a_local_runs_artifacts_are_listed_and_copied_without_a_server() {
    let data = TempDir::new("cli-artifacts");
    let dir = TempDir::new("cli-artifacts-src");
    let file = dir.write(
        ".slipway.yml",
        &format!(
            "steps:\n  pack:\n    image: {BUSYBOX}\n    artifacts: [dist/app.txt]\n    commands: ['mkdir -p dist', 'echo packed > dist/app.txt']\n"
        ),
    );
    let out = slipway(data.path()).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = slipway(data.path()).args(["runs"]).output().unwrap();
    let id = text(&run)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("the run is listed")
        .to_string();
    let ls = slipway(data.path())
        .args(["artifacts", &id])
        .env_remove("SLIPWAY_SERVER")
        .output()
        .unwrap();
    assert_eq!(ls.status.code(), Some(0), "{}", text(&ls));
    assert_eq!(text(&ls).trim(), "pack/dist/app.txt  7 bytes");
    let copy = dir.path().join("copied.txt");
    let get = slipway(data.path())
        .args(["artifacts", &id, "pack/dist/app.txt", "-o"])
        .arg(&copy)
        .env_remove("SLIPWAY_SERVER")
        .output()
        .unwrap();
    assert_eq!(get.status.code(), Some(0), "{}", text(&get));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "packed\n");
    // Only what the run recorded: no way out of its folder.
    let escape = slipway(data.path())
        .args(["artifacts", &id, "pack/../../../etc/passwd"])
        .env_remove("SLIPWAY_SERVER")
        .output()
        .unwrap();
    assert_eq!(escape.status.code(), Some(2));
    assert!(
        text(&escape).contains("kept no artifact"),
        "{}",
        text(&escape)
    );
}
