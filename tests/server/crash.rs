//! The real `slipway serve` binary, stopped by signals or killed with
//! SIGKILL and restarted: no accepted run is lost, no container is left.

use std::time::{Duration, Instant};

use slipway_api::Store;
use slipway_tests::{
    BUSYBOX, READER, TempDir, deliver, docker, exit_within, free_addr, git_repo, http, kill9,
    leftovers, push_body, run_view, serve_binary, serve_config, serve_log, signal, slow_pipeline,
};

/// The data dir of the server under test, for its log in failures.
static SERVE_DATA: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

/// Polls until the server answers and the run's status satisfies `done`.
fn wait_status(addr: &str, id: &str, done: impl Fn(&str) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let run = run_view(addr, id);
        if run["status"].as_str().is_some_and(&done) {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never got there: {run}\nserver output:\n{}",
            SERVE_DATA
                .lock()
                .unwrap()
                .as_deref()
                .map(serve_log)
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the served API until the run's first step is running.
async fn wait_first_step_running(addr: &str, id: &str) {
    let (a, id) = (addr.to_string(), id.to_string());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while run_view(&a, &id)["steps"][0]["status"] != "running" {
            assert!(Instant::now() < deadline, "step never started");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
}

/// The run an interrupted run was queued again as, from its note.
fn queued_again_as(run: &serde_json::Value) -> String {
    run["notes"][0]
        .as_str()
        .and_then(|n| n.strip_prefix("queued again as run "))
        .unwrap_or_else(|| panic!("interrupted but not queued again: {run}"))
        .to_string()
}

/// Delivers a push of `sha`, until the server (perhaps starting) takes it.
fn webhook(addr: &str, sha: &str, delivery: &str) -> String {
    let body = push_body(sha);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = deliver(addr, "push", delivery, &body);
        if status == 202 {
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            return json["run"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "server never accepted the webhook: {status} {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the stopped server stored, read straight from its data dir.
fn stored_run(data: &std::path::Path, id: &str) -> slipway_api::RunRecord {
    let store = Store::open(data).unwrap();
    store.get_run(id).unwrap().expect("run stored")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_running_runs_removes_their_containers_and_records_why() {
    let d = docker().await;
    let dir = TempDir::new("sigterm");
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    let addr = free_addr();
    let config = serve_config(&dir, &addr, "", &format!("file://{}", bare.display()));
    let data = dir.path().join("data");
    *SERVE_DATA.lock().unwrap() = Some(data.clone());
    let mut server = serve_binary(&config, &data);
    let (a, s) = (addr.clone(), sha.clone());
    let slow = tokio::task::spawn_blocking(move || webhook(&a, &s, "sigterm-mid-run"))
        .await
        .unwrap();
    wait_first_step_running(&addr, &slow).await;
    // The step has printed, and the server has recorded it, before the stop.
    let (a, id) = (addr.clone(), slow.clone());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, body) = http(
                "GET",
                &a,
                &format!("/api/v1/runs/{id}/logs/slow"),
                &[("Authorization", &format!("Bearer {READER}"))],
                b"",
            );
            if body.contains("started") {
                return;
            }
            assert!(Instant::now() < deadline, "the step never printed: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(
        !leftovers(&d, &slow).await.is_empty(),
        "the step's container runs"
    );

    let sent = Instant::now();
    signal(&server, "TERM");
    let status = exit_within(&mut server, Duration::from_secs(40), &data);
    let took = sent.elapsed();
    assert!(
        status.success(),
        "exit status {status}: {}",
        serve_log(&data)
    );
    // Nothing left for a next start to clean up: the server did it.
    assert_eq!(leftovers(&d, &slow).await, Vec::<String>::new());
    let run = stored_run(&data, &slow);
    assert_eq!(run.status.as_str(), "cancelled", "{run:?}");
    assert_eq!(
        run.error.as_deref(),
        Some(slipway_api::serve::SHUTDOWN_REASON)
    );
    assert!(run.finished_ms.is_some());
    assert_eq!(run.steps[0].status.as_str(), "cancelled");
    let store = Store::open(&data).unwrap();
    let log = store.read_log(&slow, "slow").unwrap();
    assert!(log.contains("started"), "the step's log is kept: {log}");
    drop(store);
    let out = serve_log(&data);
    assert!(
        out.contains("cancelling 1 running run(s)")
            && out.contains("every run stopped and recorded"),
        "{out}"
    );
    // `sleep` ignores SIGTERM as PID 1, so the stop waits for the kill.
    eprintln!("SIGTERM -> exit with one running step: {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_shutdown_wait_running_runs_finish_and_a_second_signal_cancels() {
    let d = docker().await;
    let dir = TempDir::new("sigterm-wait");
    let pipeline = format!(
        "steps:\n  short:\n    image: {BUSYBOX}\n    commands: [echo started, sleep 3, echo finished]\n"
    );
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", &pipeline)]);
    let addr = free_addr();
    let url = format!("file://{}", bare.display());
    let config = serve_config(&dir, &addr, "shutdown = \"wait\"\n", &url);
    let data = dir.path().join("data");
    *SERVE_DATA.lock().unwrap() = Some(data.clone());

    // 1. One signal: no new webhooks, the running run finishes.
    let mut server = serve_binary(&config, &data);
    let (a, s) = (addr.clone(), sha.clone());
    let short = tokio::task::spawn_blocking(move || webhook(&a, &s, "wait-1"))
        .await
        .unwrap();
    wait_first_step_running(&addr, &short).await;
    signal(&server, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.try_wait().unwrap().is_none(),
        "still waiting for the run"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "webhooks are no longer accepted"
    );
    let status = exit_within(&mut server, Duration::from_secs(60), &data);
    assert!(status.success(), "exit status {status}");
    let run = stored_run(&data, &short);
    assert_eq!(run.status.as_str(), "success", "{run:?}");
    assert_eq!(leftovers(&d, &short).await, Vec::<String>::new());

    // 2. A second signal cancels what is still running.
    let slow_pipeline =
        format!("steps:\n  slow:\n    image: {BUSYBOX}\n    commands: [sleep 300]\n");
    let slow_dir = TempDir::new("sigterm-wait-slow");
    let (slow_bare, slow_sha) = git_repo(&slow_dir, "master", &[(".slipway.yml", &slow_pipeline)]);
    let addr = free_addr();
    let url = format!("file://{}", slow_bare.display());
    let config = serve_config(&dir, &addr, "shutdown = \"wait\"\n", &url);
    let mut server = serve_binary(&config, &data);
    let (a, s) = (addr.clone(), slow_sha.clone());
    let slow = tokio::task::spawn_blocking(move || webhook(&a, &s, "wait-2"))
        .await
        .unwrap();
    wait_first_step_running(&addr, &slow).await;
    signal(&server, "TERM");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        server.try_wait().unwrap().is_none(),
        "waiting, not cancelling"
    );
    signal(&server, "INT");
    let status = exit_within(&mut server, Duration::from_secs(40), &data);
    assert!(status.success(), "exit status {status}");
    let run = stored_run(&data, &slow);
    assert_eq!(run.status.as_str(), "cancelled", "{run:?}");
    assert_eq!(
        run.error.as_deref(),
        Some(slipway_api::serve::SHUTDOWN_REASON)
    );
    assert_eq!(leftovers(&d, &slow).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_loses_no_accepted_run_and_leaves_no_container() {
    let d = docker().await;
    let dir = TempDir::new("crash");
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    let quick_dir = TempDir::new("crash-quick");
    let (quick_bare, quick_sha) = git_repo(
        &quick_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!("steps:\n  ok:\n    image: {BUSYBOX}\n    commands: [echo done]\n"),
        )],
    );
    let addr = free_addr();
    let write_config = |url: &std::path::Path, server: &str| {
        serve_config(&dir, &addr, server, &format!("file://{}", url.display()))
    };
    let data = dir.path().join("data");
    *SERVE_DATA.lock().unwrap() = Some(data.clone());
    let addr2 = addr.clone();

    // 1. Killed right after answering 202: the commit is still built
    //    after a restart, by that run (the kill came before the executor
    //    claimed it) or by the run it was queued again as (after).
    let config = write_config(&quick_bare, "requeue_interrupted = true\n");
    let mut server = serve_binary(&config, &data);
    let quick_sha2 = quick_sha.clone();
    let quick = tokio::task::spawn_blocking(move || webhook(&addr2, &quick_sha2, "kill-after-202"))
        .await
        .unwrap();
    kill9(&mut server);
    let mut server = serve_binary(&config, &data);
    let a = addr.clone();
    let q = quick.clone();
    let run = tokio::task::spawn_blocking(move || {
        wait_status(&a, &q, |s| !["queued", "running"].contains(&s))
    })
    .await
    .unwrap();
    let built = if run["status"] == "interrupted" {
        let again = queued_again_as(&run);
        let a = addr.clone();
        tokio::task::spawn_blocking(move || {
            wait_status(&a, &again, |s| !["queued", "running"].contains(&s))
        })
        .await
        .unwrap()
    } else {
        run
    };
    assert_eq!(built["status"], "success", "{built}");
    assert_eq!(built["sha"], quick_sha.as_str());
    kill9(&mut server);

    // 2. Killed mid-run: after a restart the run is interrupted and its container gone.
    let config = write_config(&bare, "");
    let mut server = serve_binary(&config, &data);
    let (a, s) = (addr.clone(), sha.clone());
    let slow = tokio::task::spawn_blocking(move || webhook(&a, &s, "kill-mid-run"))
        .await
        .unwrap();
    wait_first_step_running(&addr, &slow).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill9(&mut server);
    assert!(
        !leftovers(&d, &slow).await.is_empty(),
        "the killed server's container is still there"
    );
    let mut server = serve_binary(&config, &data);
    let (a, id) = (addr.clone(), slow.clone());
    let run = tokio::task::spawn_blocking(move || wait_status(&a, &id, |s| s == "interrupted"))
        .await
        .unwrap();
    assert_eq!(
        run["error"],
        "the server stopped while this run was running"
    );
    assert_eq!(leftovers(&d, &slow).await, Vec::<String>::new());
    kill9(&mut server);

    // 3. With `requeue_interrupted`, a run killed mid-run is marked and
    //    queued again as a new run of the same commit, which finishes.
    let short_dir = TempDir::new("crash-short");
    let (short_bare, short_sha) = git_repo(
        &short_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!("steps:\n  short:\n    image: {BUSYBOX}\n    commands: [sleep 4]\n"),
        )],
    );
    let config = write_config(&short_bare, "requeue_interrupted = true\n");
    let mut server = serve_binary(&config, &data);
    let (a, s) = (addr.clone(), short_sha.clone());
    let short = tokio::task::spawn_blocking(move || webhook(&a, &s, "kill-requeue"))
        .await
        .unwrap();
    wait_first_step_running(&addr, &short).await;
    kill9(&mut server);
    let mut server = serve_binary(&config, &data);
    let (a, id) = (addr.clone(), short.clone());
    let old = tokio::task::spawn_blocking(move || wait_status(&a, &id, |s| s == "interrupted"))
        .await
        .unwrap();
    let again = queued_again_as(&old);
    let (a, id) = (addr.clone(), again.clone());
    let run = tokio::task::spawn_blocking(move || {
        wait_status(&a, &id, |s| !["queued", "running"].contains(&s))
    })
    .await
    .unwrap();
    assert_eq!(run["status"], "success", "{run}");
    assert_eq!(run["sha"], short_sha.as_str());
    assert_eq!(leftovers(&d, &short).await, Vec::<String>::new());
    kill9(&mut server);
}
