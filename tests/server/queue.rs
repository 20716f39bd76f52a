//! The run queue: a newer push to a ref supersedes the running run, and a
//! repository's concurrency limit keeps its next run queued.

use std::time::Duration;

use slipway_tests::{
    TOKENS, TempDir, WRITER, docker, git_repo, leftovers, push, slow_pipeline, start, start_with,
    wait_done, wait_step_running,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_push_to_the_same_ref_supersedes_the_running_run() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin-supersede");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    let server = start(&format!("file://{}", bare.display())).await;
    let (_, json) = push(&server, &sha, "older").await;
    let older = json["run"].as_str().unwrap().to_string();
    wait_step_running(&server.store, &older).await;
    let (_, json) = push(&server, &sha, "newer").await;
    let newer = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &older).await;
    assert_eq!(run.status.as_str(), "cancelled");
    assert_eq!(run.error, Some(format!("superseded by run {newer}")));
    assert_eq!(leftovers(&d, &older).await, Vec::<String>::new());
    wait_step_running(&server.store, &newer).await;
    server.shutdown.cancel();
    let run = wait_done(&server.store, &newer).await;
    assert_eq!(
        run.status.as_str(),
        "cancelled",
        "shutdown cancels what runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repository_limit_keeps_its_next_run_queued() {
    docker().await;
    let repo_dir = TempDir::new("origin-limit");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    // repos[0] is the last [[repos]] table opened, so this key lands in it.
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!("max_concurrent_runs = 1\n{TOKENS}[server]\ncancel_superseded = false\n"),
    )
    .await;
    let (_, json) = push(&server, &sha, "first").await;
    let first = json["run"].as_str().unwrap().to_string();
    wait_step_running(&server.store, &first).await;
    let (_, json) = push(&server, &sha, "second").await;
    let second = json["run"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        server
            .store
            .get_run(&second)
            .unwrap()
            .unwrap()
            .status
            .as_str(),
        "queued",
        "the repository's limit is 1"
    );
    let path = format!("/api/v1/runs/{first}/cancel");
    let (status, _) = server.api("POST", &path, WRITER, "").await;
    assert_eq!(status, 202);
    wait_step_running(&server.store, &second).await;
    server.shutdown.cancel();
    wait_done(&server.store, &second).await;
}

/// Issue 14: steps and runs had no default timeout, so a pull request's
/// `sleep 300` held a slot as long as it liked. A step without `timeout:`
/// gets the server's `step_timeout`; a run still going after `run_timeout`
/// is cancelled, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn steps_and_runs_stop_at_the_servers_default_timeouts() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin-timeouts");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!(
                "steps:\n  slow:\n    image: {}\n    commands: [sleep 300]\n",
                slipway_tests::BUSYBOX
            ),
        )],
    );
    let url = format!("file://{}", bare.display());
    let server = start_with(&url, "[server]\nstep_timeout = \"2s\"\n").await;
    let (_, json) = push(&server, &sha, "step-timeout").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "failed", "{run:?}");
    assert_eq!(run.steps[0].status.as_str(), "timed_out", "{run:?}");
    assert_eq!(leftovers(&d, &run.id).await, Vec::<String>::new());
    server.shutdown.cancel();

    let repo_dir2 = TempDir::new("origin-run-timeout");
    let (bare2, sha2) = git_repo(
        &repo_dir2,
        "master",
        &[(
            ".slipway.yml",
            &format!(
                "steps:\n  slow:\n    image: {}\n    timeout: 10m\n    commands: [sleep 300]\n",
                slipway_tests::BUSYBOX
            ),
        )],
    );
    let server = start_with(
        &format!("file://{}", bare2.display()),
        "[server]\nrun_timeout = \"3s\"\n",
    )
    .await;
    let (_, json) = push(&server, &sha2, "run-timeout").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "cancelled", "{run:?}");
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("longer than 3.0s (the server's run_timeout)")),
        "{run:?}"
    );
    assert_eq!(leftovers(&d, &run.id).await, Vec::<String>::new());
    server.shutdown.cancel();
}

/// Issue 14: server runs had no limits. The server's `step_*` defaults and
/// log cap reach a step's container; a step asking for more than
/// `max_step_*` is refused before anything runs, naming file and line.
#[tokio::test(flavor = "multi_thread")]
async fn steps_get_the_servers_limits_and_one_asking_above_the_maximum_is_refused() {
    let d = docker().await;
    let config = "[server]\nstep_pids = 77\nlog_max_size = \"4KiB\"\nmax_step_memory = \"1GiB\"\n";
    let repo_dir = TempDir::new("origin-limits");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!(
                "steps:\n  noisy:\n    image: {}\n    commands: ['cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max', 'yes 0123456789 | head -c 200000']\n",
                slipway_tests::BUSYBOX
            ),
        )],
    );
    let server = start_with(&format!("file://{}", bare.display()), config).await;
    let (_, json) = push(&server, &sha, "limits").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "success", "{run:?}");
    let log = server.store.read_log(&run.id, "noisy").unwrap();
    assert!(log.contains("\n77\n"), "{log}");
    assert!(
        log.ends_with("slipway: log truncated: this step wrote more than 4.0 KiB; the rest is not kept (the step keeps running)\n"),
        "{log}"
    );
    assert!(log.len() < 4096 + 200, "{} bytes kept", log.len());
    assert_eq!(leftovers(&d, &run.id).await, Vec::<String>::new());
    server.shutdown.cancel();

    let repo_dir2 = TempDir::new("origin-limits-max");
    let (bare2, sha2) = git_repo(
        &repo_dir2,
        "master",
        &[(
            ".slipway.yml",
            &format!(
                "steps:\n  ok:\n    image: {0}\n    commands: [true]\n  big:\n    image: {0}\n    resources: {{ memory: 8GiB }}\n    commands: [true]\n",
                slipway_tests::BUSYBOX
            ),
        )],
    );
    let server = start_with(&format!("file://{}", bare2.display()), config).await;
    let (_, json) = push(&server, &sha2, "too-big").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "error", "{run:?}");
    assert_eq!(
        run.error.as_deref(),
        Some(
            ".slipway.yml:5: step `big` asks for memory: 8.0 GiB; this server allows at most 1.0 GiB (server.max_step_memory)"
        ),
        "{run:?}"
    );
    assert!(run.steps.is_empty(), "refused before any step: {run:?}");
    server.shutdown.cancel();
}
