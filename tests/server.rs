//! `slipway serve` end to end, in process: a signed real webhook body for a
//! commit of a local bare repository becomes a run in real Docker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_api::Store;
use slipway_tests::forge::{Call, FakeForge};
use slipway_tests::{
    BUSYBOX, Labelled, READER, REPO, Server, TOKENS, TempDir, WRITER, deliver, docker, git_repo,
    github_fixture, labelled, leftovers, pr_body, pr_event, push, push_body, restart, send,
    slow_pipeline, start, start_in, start_with, wait_done, wait_for, wait_step_running,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_push_runs_the_pipeline_of_that_commit() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin");
    let pipeline = format!(
        "name: from-git\nsteps:\n  show:\n    image: {BUSYBOX}\n    commands:\n      - cat hello.txt\n      - echo \"ci=$CI repo=$SLIPWAY_REPO ref=$SLIPWAY_REF branch=$SLIPWAY_BRANCH sha=$SLIPWAY_COMMIT_SHA\"\n"
    );
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[
            (".slipway.yml", &pipeline),
            ("hello.txt", "hello from git\n"),
        ],
    );
    let server = start(&format!("file://{}", bare.display())).await;

    let (status, json) = push(&server, &sha, "delivery-1").await;
    assert_eq!(status, 202, "{json}");
    let run_id = json["run"].as_str().unwrap().to_string();
    let (status, again) = push(&server, &sha, "delivery-1").await;
    assert_eq!(
        (status, again["run"].as_str()),
        (200, Some(run_id.as_str())),
        "redelivery names the first run"
    );

    let run = wait_done(&server.store, &run_id).await;
    let log = server.store.read_log(&run_id, "show").unwrap();
    assert_eq!(run.status.as_str(), "success", "{run:?}\n{log}");
    assert_eq!(run.pipeline, "from-git");
    assert!(log.contains("hello from git"), "{log}");
    assert!(
        log.contains(&format!(
            "ci=true repo={REPO} ref=refs/heads/master branch=master sha={sha}"
        )),
        "{log}"
    );
    assert_eq!(server.store.list_runs(10).unwrap().len(), 1);
    assert_eq!(leftovers(&d, &run_id).await, Vec::<String>::new());
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_commits_and_invalid_pipelines_end_the_run_with_the_reason() {
    docker().await;
    let repo_dir = TempDir::new("origin-bad");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[(
            ".slipway.yml",
            "steps:\n  a:\n    image: x\n    comands: [true]\n",
        )],
    );
    let server = start(&format!("file://{}", bare.display())).await;

    let (_, json) = push(&server, &sha, "bad-pipeline").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "error");
    let error = run.error.unwrap();
    assert!(
        error.contains(".slipway.yml:4:5: error: unknown key `comands` in step `a`"),
        "{error}"
    );

    let missing = "1111111111111111111111111111111111111111";
    let (_, json) = push(&server, missing, "unknown-commit").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "failed");
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains(&format!("commit {missing} is not in file://")),
        "{run:?}"
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_filters_skip_runs_the_pipeline_does_not_want() {
    docker().await;
    let repo_dir = TempDir::new("origin-on");
    let pipeline = format!(
        "on:\n  push: {{branches: [main]}}\nsteps:\n  a: {{image: {BUSYBOX}, commands: [true]}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start(&format!("file://{}", bare.display())).await;
    let (status, json) = push(&server, &sha, "on-filter").await;
    assert_eq!(status, 202);
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status.as_str(), "skipped");
    assert_eq!(
        run.error.as_deref(),
        Some("`on:` does not include pushes to branch `master`")
    );
    assert!(
        server.store.read_log(&run.id, "a").unwrap().is_empty(),
        "no step ran"
    );
    server.shutdown.cancel();
}

/// The real `slipway serve` binary, killed with SIGKILL and restarted.
mod crash {
    use super::*;
    use slipway_tests::{
        exit_within, free_addr, http, kill9, serve_binary, serve_config, serve_log, signal,
    };

    /// The data dir of the server under test, for its log in failures.
    static SERVE_DATA: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

    fn run_json(addr: &str, id: &str) -> serde_json::Value {
        let (status, body) = http(
            "GET",
            addr,
            &format!("/api/v1/runs/{id}"),
            &[("Authorization", &format!("Bearer {READER}"))],
            b"",
        );
        if status != 200 {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&body).unwrap()
    }

    /// Polls until the server answers and the run's status satisfies `done`.
    fn wait_status(addr: &str, id: &str, done: impl Fn(&str) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = run_json(addr, id);
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
            while run_json(&a, &id)["steps"][0]["status"] != "running" {
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
        let (slow_bare, slow_sha) =
            git_repo(&slow_dir, "master", &[(".slipway.yml", &slow_pipeline)]);
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
        let quick =
            tokio::task::spawn_blocking(move || webhook(&addr2, &quick_sha2, "kill-after-202"))
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
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_200_webhooks_makes_exactly_200_runs() {
    docker().await;
    let repo_dir = TempDir::new("origin-burst");
    // Refused by `on:`, so each run ends without a container: this test is
    // about acceptance and the queue, not about Docker.
    let pipeline = format!(
        "on:\n  push: {{branches: [main]}}\nsteps:\n  a: {{image: {BUSYBOX}, commands: [true]}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    // All 200 push the same ref; superseding would cancel all but the newest.
    let server = start_with(
        &format!("file://{}", bare.display()),
        "[server]\ncancel_superseded = false\n",
    )
    .await;
    let body = push_body(&sha);
    // 200 distinct deliveries, and 50 of them delivered twice, from 16 senders at once.
    let deliveries: Vec<String> = (0..200)
        .chain(0..50)
        .map(|i| format!("burst-{i}"))
        .collect();
    let chunks: Vec<Vec<String>> = deliveries
        .chunks(deliveries.len().div_ceil(16))
        .map(<[String]>::to_vec)
        .collect();
    let mut senders = Vec::new();
    for chunk in chunks {
        let (addr, body) = (server.addr.clone(), body.clone());
        senders.push(std::thread::spawn(move || {
            chunk
                .iter()
                .map(|d| deliver(&addr, "push", d, &body).0)
                .collect::<Vec<u16>>()
        }));
    }
    let statuses: Vec<u16> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 200),
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 200);
    let runs = server.store.list_runs(1000).unwrap();
    assert_eq!(runs.len(), 200);
    for run in runs {
        let done = wait_done(&server.store, &run.id).await;
        assert_eq!(done.status.as_str(), "skipped", "{done:?}");
    }
    assert!(server.store.queued().unwrap().is_empty());
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_cancels_a_running_run_and_a_reader_may_not() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin-cancel");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (_, json) = push(&server, &sha, "to-cancel").await;
    let id = json["run"].as_str().unwrap().to_string();
    wait_step_running(&server.store, &id).await;
    let path = format!("/api/v1/runs/{id}/cancel");
    let cancel = |token| server.api("POST", &path, token, "");
    let (status, body) = cancel(READER).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = cancel(WRITER).await;
    assert_eq!(status, 202, "{body}");
    let run = wait_done(&server.store, &id).await;
    assert_eq!(run.status.as_str(), "cancelled");
    assert_eq!(run.error.as_deref(), Some("cancelled by wendy"));
    assert_eq!(leftovers(&d, &id).await, Vec::<String>::new());
    let (status, body) = cancel(WRITER).await;
    assert_eq!(status, 409, "{body}");
    server.shutdown.cancel();
}

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

#[tokio::test(flavor = "multi_thread")]
async fn commit_statuses_go_pending_then_final_with_a_link_to_the_run() {
    docker().await;
    let forge = FakeForge::start().await;
    let repo_dir = TempDir::new("origin-status");
    let pipeline = format!("steps:\n  ok: {{image: {BUSYBOX}, commands: [true]}}\n");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let extra = format!(
        "api_url = \"{}\"\napi_token = \"forge-token-123\"\n[server]\npublic_url = \"https://ci.example.com\"\n",
        forge.url
    );
    let server = start_with(&format!("file://{}", bare.display()), &extra).await;
    let (_, json) = push(&server, &sha, "status").await;
    let id = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &id).await.status.as_str(),
        "success"
    );
    let states = wait_for(|| {
        let s = forge.commit_states();
        (s.last().map(String::as_str) == Some("success")).then_some(s)
    })
    .await;
    assert!(
        states.len() >= 2 && states[0] == "pending",
        "pending first, then the outcome: {states:?}"
    );
    let seen = forge.commit_statuses();
    let (target, auth, body) = seen.last().unwrap();
    assert_eq!(target, &format!("{REPO}@{sha}"));
    assert!(auth.ends_with("forge-token-123"), "{auth}");
    assert_eq!(body["context"], "slipway");
    assert_eq!(
        body["target_url"],
        format!("https://ci.example.com/api/v1/runs/{id}")
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forge_that_refuses_statuses_does_not_fail_the_run() {
    docker().await;
    let forge = FakeForge::refusing_first(usize::MAX).await;
    let repo_dir = TempDir::new("origin-status-down");
    let pipeline = format!("steps:\n  ok: {{image: {BUSYBOX}, commands: [true]}}\n");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let extra = format!(
        "api_url = \"{}\"\napi_token = \"forge-token-123\"\n",
        forge.url
    );
    let server = start_with(&format!("file://{}", bare.display()), &extra).await;
    let (_, json) = push(&server, &sha, "status-down").await;
    let id = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &id).await.status.as_str(),
        "success"
    );
    let notes = wait_for(|| {
        let run = server.store.get_run(&id).unwrap().unwrap();
        run.notes
            .iter()
            .any(|n| n.contains("passed"))
            .then_some(run.notes)
    })
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("after 3 attempts") && n.contains("unavailable")),
        "{notes:?}"
    );
    assert!(
        forge.commit_statuses().len() >= 6,
        "each report was tried 3 times"
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_failed_steps_reruns_them_and_what_they_need_only() {
    docker().await;
    let repo_dir = TempDir::new("origin-rerun");
    let pipeline = format!(
        "steps:\n  build: {{image: {BUSYBOX}, commands: ['echo built > out.txt']}}\n  flaky: {{image: {BUSYBOX}, needs: [build], commands: ['cat out.txt', 'test -n \"$SLIPWAY_RERUN_OF\"']}}\n  lint: {{image: {BUSYBOX}, commands: ['echo linted']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (_, json) = push(&server, &sha, "first").await;
    let first = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &first).await.status.as_str(),
        "failed"
    );

    let (status, json) = server
        .api(
            "POST",
            &format!("/api/v1/runs/{first}/rerun?failed=true"),
            WRITER,
            "",
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let again = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &again).await;
    assert_eq!(run.status.as_str(), "success", "{run:?}");
    let status_of = |name: &str| {
        run.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .status
            .as_str()
    };
    assert_eq!(
        status_of("build"),
        "success",
        "flaky needs build's output: build runs again"
    );
    assert_eq!(status_of("flaky"), "success");
    assert_eq!(status_of("lint"), "skipped");
    assert_eq!(
        server.store.read_log(&again, "lint").unwrap(),
        format!("slipway: skipped: succeeded in run {first}\n")
    );
    assert!(
        server
            .store
            .read_log(&again, "flaky")
            .unwrap()
            .contains("built")
    );

    let (status, json) = server
        .api(
            "POST",
            &format!("/api/v1/runs/{again}/rerun?failed=true"),
            WRITER,
            "",
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("nothing_failed"))
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_runs_what_a_ref_points_at() {
    docker().await;
    let repo_dir = TempDir::new("origin-trigger");
    let pipeline = format!(
        "steps:\n  show: {{image: {BUSYBOX}, commands: ['echo \"$SLIPWAY_EVENT $SLIPWAY_BRANCH $SLIPWAY_COMMIT_SHA\"']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (status, json) = server
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &format!("{{\"repo\": \"{REPO}\", \"ref\": \"master\"}}"),
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(
        (run.status.as_str(), run.event.as_str()),
        ("success", "manual")
    );
    assert_eq!(
        server
            .store
            .read_log(&run.id, "show")
            .unwrap()
            .lines()
            .last(),
        Some(format!("manual master {sha}").as_str())
    );
    let (status, json) = server
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &format!("{{\"repo\": \"{REPO}\", \"ref\": \"nope\"}}"),
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("unknown_ref"))
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_triggers_follows_lists_and_cancels_through_the_api() {
    docker().await;
    let repo_dir = TempDir::new("origin-cli");
    let pipeline = format!(
        "steps:\n  show: {{image: {BUSYBOX}, commands: ['echo one', 'sleep 1', 'echo two']}}\n"
    );
    let (bare, _) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let cli = |args: &[&str], token: &str| {
        let (addr, args, token) = (
            server.addr.clone(),
            args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            token.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(slipway_tests::slipway_bin())
                .args(&args)
                .env("SLIPWAY_SERVER", format!("http://{addr}"))
                .env("SLIPWAY_TOKEN", token)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (code, stdout, stderr) = cli(&["trigger", REPO, "master"], WRITER).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.trim().to_string();
    let (code, stdout, stderr) = cli(&["logs", &id, "-f"], READER).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("show | one") && stdout.contains("show | two"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with(&format!("run {id} success")),
        "{stdout}"
    );
    let (_, stdout, _) = cli(&["runs"], READER).await.unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("success") && l.contains("manual")),
        "{stdout}"
    );
    let (code, _, stderr) = cli(&["cancel", &id], WRITER).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("already ended: success"), "{stderr}");
    let (code, _, stderr) = cli(&["cancel", &id], READER).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("forbidden"), "{stderr}");
    server.shutdown.cancel();
}

/// Reads events until `stop` says so or the stream ends.
async fn read_events(
    events: &mut slipway_api::client::EventStream,
    mut stop: impl FnMut(&slipway_api::client::SseMessage) -> bool,
) -> Vec<slipway_api::client::SseMessage> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("an event within 60 s")
            .expect("a readable stream");
        let Some(message) = next else { return out };
        let done = stop(&message);
        out.push(message);
        if done {
            return out;
        }
    }
}

fn data(message: &slipway_api::client::SseMessage) -> serde_json::Value {
    serde_json::from_str(&message.data).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_live_and_resume_from_last_event_id() {
    docker().await;
    let repo_dir = TempDir::new("origin-sse");
    let pipeline = format!(
        "steps:\n  talk: {{image: {BUSYBOX}, commands: ['echo first', 'sleep 2', 'echo second', 'echo third']}}\n  after: {{image: {BUSYBOX}, needs: [talk], commands: ['echo done']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let client =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), Some(READER.into()))
            .unwrap();
    let anonymous =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), None).unwrap();
    assert!(matches!(
        anonymous.events("/api/v1/events", None).await,
        Err(slipway_api::client::ClientError::Api { status, .. }) if status == 401
    ));
    // The feed of every run, opened before the run exists.
    let mut feed = client.events("/api/v1/events", None).await.unwrap();

    let (status, json) = push(&server, &sha, "sse-1").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();

    // Live: the first line arrives on its own, while the step still sleeps.
    let path = format!("/api/v1/runs/{id}/events");
    let mut first = client.events(&path, None).await.unwrap();
    let before = read_events(&mut first, |m| m.event == "log").await;
    let first_log = before.last().unwrap();
    let text = data(first_log)["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("first\n") && !text.contains("second"),
        "{text:?}"
    );
    assert!(
        !before
            .iter()
            .any(|m| m.event == "step" && data(m)["status"] == "success"),
        "the first line came only after the step ended: {before:?}"
    );
    drop(first);

    // Resume after the last event seen: nothing repeated, nothing missed.
    let last = first_log.id.clone().unwrap();
    let mut second = client.events(&path, Some(&last)).await.unwrap();
    let after = read_events(&mut second, |m| m.event == "end").await;
    assert_eq!(after.last().unwrap().event, "end");
    assert!(
        second.next().await.unwrap().is_none(),
        "the stream closes after `end`"
    );
    let all: Vec<_> = before
        .iter()
        .chain(&after)
        .filter(|m| m.id.is_some())
        .collect();
    let seqs: Vec<u64> = all
        .iter()
        .map(|m| m.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for step in ["talk", "after"] {
        let streamed: String = all
            .iter()
            .filter(|m| m.event == "log" && data(m)["step"] == step)
            .map(|m| data(m)["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            streamed,
            server.store.read_log(&id, step).unwrap(),
            "{step}"
        );
    }
    let statuses: Vec<String> = all
        .iter()
        .filter(|m| m.event == "run" || m.event == "step")
        .map(|m| {
            let d = data(m);
            format!(
                "{} {}",
                d["step"].as_str().unwrap_or("run"),
                d["status"].as_str().unwrap()
            )
        })
        .collect();
    let position = |s: &str| {
        statuses
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("no `{s}` in {statuses:?}"))
    };
    assert!(position("talk running") < position("talk success"));
    assert!(position("talk success") < position("after running"));
    assert_eq!(statuses.last().unwrap(), "run success", "{statuses:?}");

    // A finished run replays whole and ends.
    let mut replay = client.events(&path, None).await.unwrap();
    let whole = read_events(&mut replay, |m| m.event == "end").await;
    assert_eq!(whole.iter().filter(|m| m.id.is_some()).count(), all.len());

    // The feed saw this run queue, run and succeed, and nothing of its steps.
    let seen = read_events(&mut feed, |m| data(m)["status"] == "success").await;
    assert!(
        seen.iter()
            .all(|m| m.event == "run" && data(m)["run"] == id.as_str())
    );
    let feed_statuses: Vec<_> = seen.iter().map(|m| data(m)["status"].clone()).collect();
    assert_eq!(feed_statuses, ["queued", "running", "success"]);
    assert_eq!(data(&seen[0])["sha"], sha.as_str());
    // ...and resumes after any of its ids.
    let mut resumed = client
        .events("/api/v1/events", seen[0].id.as_deref())
        .await
        .unwrap();
    let again = read_events(&mut resumed, |m| data(m)["status"] == "success").await;
    assert_eq!(again, seen[1..]);
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_image_and_artifacts_are_on_the_run_in_the_api_and_cli() {
    docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let repo_dir = TempDir::new("origin-build");
    let pipeline = format!(
        "steps:
  compile:
    image: {BUSYBOX}
    artifacts: [\"dist/**\"]
    commands: ['mkdir -p dist/sub', 'echo binary > dist/app', 'echo notes > dist/sub/notes.txt']
  image:
    needs: [compile]
    build:
      tags: [\"{host}/acme/hello:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
"
    );
    let dockerfile = format!("FROM {BUSYBOX}\nCOPY dist/app /app\n");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[(".slipway.yml", &pipeline), ("Dockerfile", &dockerfile)],
    );
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (status, json) = push(&server, &sha, "build-1").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    assert_eq!(
        run.status.as_str(),
        "success",
        "{}",
        server.store.read_log(&id, "image").unwrap()
    );
    let client =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), Some(READER.into()))
            .unwrap();
    let view = client.get(&format!("/api/v1/runs/{id}")).await.unwrap();
    let image = view["steps"][1]["output"].as_str().unwrap().to_string();
    let digest = registry.manifest_digest("acme/hello", &sha).unwrap();
    assert_eq!(image, format!("{host}/acme/hello@{digest}"));
    let artifacts = &view["steps"][0]["artifacts"];
    assert_eq!(
        artifacts,
        &serde_json::json!([
            {"path": "dist/app", "size": 7},
            {"path": "dist/sub/notes.txt", "size": 6}
        ])
    );
    let bytes = client
        .get_bytes(&format!(
            "/api/v1/runs/{id}/artifacts/compile/dist/sub/notes.txt"
        ))
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"notes\n");
    // Only recorded artifacts are served: no way out of the run's directory.
    for path in ["dist/nope", "..%2F..%2Fdb", "../../conf"] {
        let missing = client
            .get_bytes(&format!("/api/v1/runs/{id}/artifacts/compile/{path}"))
            .await;
        assert!(
            matches!(&missing, Err(slipway_api::client::ClientError::Api { status, .. }) if *status == 404),
            "{path}: {missing:?}"
        );
    }
    // The CLI lists and downloads them.
    let out_dir = TempDir::new("artifact-download");
    let (addr, id2, target) = (
        server.addr.clone(),
        id.clone(),
        out_dir.path().join("app.bin"),
    );
    let (list, get) = tokio::task::spawn_blocking(move || {
        let cli = |args: &[&str]| {
            std::process::Command::new(slipway_tests::slipway_bin())
                .args(args)
                .env("SLIPWAY_SERVER", format!("http://{addr}"))
                .env("SLIPWAY_TOKEN", READER)
                .output()
                .unwrap()
        };
        (
            cli(&["artifacts", &id2]),
            cli(&[
                "artifacts",
                &id2,
                "compile/dist/app",
                "-o",
                target.to_str().unwrap(),
            ]),
        )
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("compile/dist/app  7 bytes")
            && listed.contains("compile/dist/sub/notes.txt"),
        "{listed}"
    );
    assert_eq!(
        get.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("app.bin")).unwrap(),
        "binary\n"
    );
    let _ = docker()
        .await
        .remove_image(
            &format!("{host}/acme/hello:{sha}"),
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    server.shutdown.cancel();
}

/// Promotions: users and the environments of the repository under test.
mod promotion {
    use super::*;
    use serde_json::{Value, json};

    pub const USERS: &str = "[[tokens]]\nuser = \"alice\"\ntoken = \"alice-token-0123456789\"\nscope = \"write\"\n[[tokens]]\nuser = \"bob\"\ntoken = \"bob-token-0123456789xx\"\nscope = \"write\"\n[[tokens]]\nuser = \"carol\"\ntoken = \"carol-token-0123456789\"\nscope = \"write\"\n[[tokens]]\nuser = \"dave\"\ntoken = \"dave-token-01234567890\"\nscope = \"write\"\n[[tokens]]\nuser = \"rita\"\ntoken = \"rita-token-01234567890\"\nscope = \"read\"\n";

    pub fn token(user: &str) -> &'static str {
        match user {
            "alice" => "alice-token-0123456789",
            "bob" => "bob-token-0123456789xx",
            "carol" => "carol-token-0123456789",
            "dave" => "dave-token-01234567890",
            _ => "rita-token-01234567890",
        }
    }

    /// The repository's settings: dev (auto), staging (one approver of
    /// alice/bob, no self-approval), prod (two of alice/bob/carol).
    pub fn config(host: &str, staging_approvals: usize, prod: &str) -> String {
        format!(
            "default_branch = \"master\"
[[repos.environments]]
name = \"dev\"
image = \"{host}/acme/web\"
tag = \"dev\"
auto = true
[[repos.environments]]
name = \"staging\"
image = \"{host}/acme/web-staging\"
tag = \"staging\"
from = \"dev\"
approvals = {staging_approvals}
approvers = [\"alice\", \"bob\"]
prevent_self_approval = true
[[repos.environments]]
name = \"prod\"
image = \"{host}/acme/web-prod\"
tag = \"prod\"
from = \"staging\"
{prod}
{USERS}"
        )
    }

    /// A registry, and a bare repository whose `master` commit (`sha`)
    /// builds and pushes an image; `marker` makes each test's image its own.
    pub fn promotion_repo(
        tag: &str,
        marker: &str,
    ) -> (slipway_tests::Registry, TempDir, std::path::PathBuf, String) {
        repo_for(slipway_tests::Registry::start(), tag, marker)
    }

    /// [`promotion_repo`] on a registry of the test's choosing.
    pub fn repo_for(
        registry: slipway_tests::Registry,
        tag: &str,
        marker: &str,
    ) -> (slipway_tests::Registry, TempDir, std::path::PathBuf, String) {
        let repo_dir = TempDir::new(tag);
        let (bare, sha) = git_repo(
            &repo_dir,
            "master",
            &[
                (".slipway.yml", &pipeline(&registry.host)),
                (
                    "Dockerfile",
                    &format!("FROM {BUSYBOX}\nRUN echo {marker} > /app\n"),
                ),
            ],
        );
        (registry, repo_dir, bare, sha)
    }

    pub fn pipeline(host: &str) -> String {
        format!(
            "steps:
  image:
    build:
      tags: [\"{host}/acme/web:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
  deploy-staging:
    image: {BUSYBOX}
    environment: staging
    commands: ['echo \"deploying $SLIPWAY_IMAGE to $SLIPWAY_ENVIRONMENT\"']
"
        )
    }

    /// An API request as `user`.
    pub async fn api(
        server: &Server,
        method: &str,
        path: &str,
        user: &str,
        body: Value,
    ) -> (u16, Value) {
        server
            .api(method, path, token(user), &body.to_string())
            .await
    }

    /// Waits until `env` holds a digest, or the promotion into it ends otherwise.
    pub async fn wait_promotion(server: &Server, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, p) = api(
                server,
                "GET",
                &format!("/api/v1/promotions/{id}"),
                "rita",
                Value::Null,
            )
            .await;
            if ["succeeded", "failed", "rejected", "expired"]
                .contains(&p["status"].as_str().unwrap_or(""))
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "promotion {id} still {}",
                p["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn env(server: &Server, name: &str) -> Value {
        let (status, envs) = api(
            server,
            "GET",
            &format!("/api/v1/repos/{REPO}/environments"),
            "rita",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{envs}");
        envs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap()
    }

    /// Pushes a commit and waits for its run and the automatic promotion
    /// to dev; returns the digest built.
    pub async fn build_into_dev(
        server: &Server,
        registry: &slipway_tests::Registry,
        sha: &str,
    ) -> String {
        let (status, json) = push(server, sha, &format!("promo-{sha}")).await;
        assert_eq!(status, 202, "{json}");
        let id = json["run"].as_str().unwrap().to_string();
        let run = wait_done(&server.store, &id).await;
        assert_eq!(
            run.status.as_str(),
            "success",
            "{}",
            server.store.read_log(&id, "image").unwrap()
        );
        let built = run.steps[0]
            .output
            .clone()
            .expect("the build step's output");
        let digest = built.split_once('@').unwrap().1.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while env(server, "dev").await["current"]["digest"] != digest.as_str() {
            assert!(
                Instant::now() < deadline,
                "dev never got {digest}: {:?}",
                server.store.get_run(&id)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            registry.manifest_digest("acme/web", "dev").as_deref(),
            Some(digest.as_str())
        );
        digest
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn images_move_by_digest_through_dev_staging_and_prod_behind_their_gates() {
        docker().await;
        let (registry, _repo_dir, bare, sha) = promotion_repo("origin-promote", "app");
        let host = registry.host.clone();
        let server = start_with(
            &format!("file://{}", bare.display()),
            &config(&host, 1, "approvals = 2\napprovers = [\"alice\", \"bob\", \"carol\"]\nprevent_self_approval = true"),
        )
        .await;
        let digest = build_into_dev(&server, &registry, &sha).await;
        let promotions = format!("/api/v1/repos/{REPO}/promotions");

        // A digest that never reached dev is refused, with the reason.
        let (status, body) = api(&server, "POST", &promotions, "dave", json!({"to": "staging", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"})).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("never reached `dev`"),
            "{body}"
        );
        // A reader cannot ask.
        let (status, _) = api(
            &server,
            "POST",
            &promotions,
            "rita",
            json!({"to": "staging"}),
        )
        .await;
        assert_eq!(status, 403);

        // Staging: dave asks (default: dev's digest); a non-approver and a
        // reader are refused; alice approves; the deploy step runs.
        let (status, p) = api(
            &server,
            "POST",
            &promotions,
            "dave",
            json!({"to": "staging"}),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        assert_eq!(p["status"], "pending");
        assert_eq!(p["digest"], digest.as_str());
        let id = p["id"].as_str().unwrap().to_string();
        let (status, body) = api(
            &server,
            "POST",
            &promotions,
            "carol",
            json!({"to": "staging"}),
        )
        .await;
        assert_eq!(status, 409, "one open promotion per environment: {body}");
        let approve = format!("/api/v1/promotions/{id}/approve");
        let (status, body) = api(&server, "POST", &approve, "dave", json!({})).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not an approver of `staging`")
        );
        let (status, _) = api(&server, "POST", &approve, "carol", json!({})).await;
        assert_eq!(status, 403, "an approver of prod is no approver of staging");
        let (status, _) = api(&server, "POST", &approve, "rita", json!({})).await;
        assert_eq!(status, 403);
        let (status, body) = api(
            &server,
            "POST",
            &approve,
            "alice",
            json!({"comment": "looks good"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let done = wait_promotion(&server, &id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            registry
                .manifest_digest("acme/web-staging", "staging")
                .as_deref(),
            Some(digest.as_str())
        );
        let staging = env(&server, "staging").await;
        assert_eq!(staging["current"]["digest"], digest.as_str());
        assert_eq!(
            staging["current"]["image"],
            format!("{host}/acme/web-staging@{digest}")
        );
        let deploy = server
            .store
            .list_runs(50)
            .unwrap()
            .into_iter()
            .find(|r| r.event == "promotion")
            .expect("a deploy run");
        assert_eq!(deploy.status.as_str(), "success");
        assert!(
            deploy.steps.iter().all(|s| s.name == "deploy-staging"),
            "only deploy steps run"
        );
        let log = server.store.read_log(&deploy.id, "deploy-staging").unwrap();
        assert!(
            log.contains(&format!(
                "deploying {host}/acme/web-staging@{digest} to staging"
            )),
            "{log}"
        );
        // The normal run never ran the deploy step.
        assert!(
            server
                .store
                .list_runs(50)
                .unwrap()
                .iter()
                .filter(|r| r.event == "push")
                .all(|r| r.steps.iter().all(|s| s.name != "deploy-staging"))
        );

        // Prod: two distinct approvers; the requester may not approve.
        let (status, p) = api(&server, "POST", &promotions, "alice", json!({"to": "prod"})).await;
        assert_eq!(status, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let approve = format!("/api/v1/promotions/{id}/approve");
        let (status, body) = api(&server, "POST", &approve, "alice", json!({})).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("forbids approving one's own"),
            "{body}"
        );
        let (status, p) = api(&server, "POST", &approve, "bob", json!({})).await;
        assert_eq!(
            (status, p["status"].as_str()),
            (200, Some("pending")),
            "{p}"
        );
        let (status, body) = api(&server, "POST", &approve, "bob", json!({})).await;
        assert_eq!(status, 409, "{body}");
        assert!(
            registry.manifest_digest("acme/web-prod", "prod").is_none(),
            "nothing moves before the second approval"
        );
        let (status, _) = api(&server, "POST", &approve, "carol", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
        assert_eq!(
            registry.manifest_digest("acme/web-prod", "prod").as_deref(),
            Some(digest.as_str())
        );

        // The audit log tells the story and no endpoint can change it.
        let (_, audit) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
        let story: Vec<String> = audit
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a["environment"].as_str().unwrap(),
                    a["user"].as_str().unwrap(),
                    a["action"].as_str().unwrap()
                )
            })
            .collect();
        for line in [
            "dev slipway requested",
            "dev slipway promoted",
            "staging dave requested",
            "staging alice approved",
            "staging slipway promoted",
            "prod alice requested",
            "prod bob approved",
            "prod carol approved",
            "prod slipway promoted",
        ] {
            assert!(story.iter().any(|s| s == line), "no `{line}` in {story:#?}");
        }
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["digest"] == digest.as_str())
        );
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let (status, _) = api(&server, method, "/api/v1/audit", "alice", json!([])).await;
            assert_eq!(status, 405, "{method} /api/v1/audit");
        }
        let (_, again) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
        assert_eq!(again, audit);
        server.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_approvals_promote_once_outages_fail_retryably_and_restarts_keep_requests() {
        docker().await;
        let (mut registry, _repo_dir, bare, sha) = promotion_repo("origin-promote-2", "two");
        let host = registry.host.clone();
        let url = format!("file://{}", bare.display());
        // Staging needs one of alice/bob; prod needs nobody.
        let settings = config(&host, 1, "");
        let server = start_with(&url, &settings).await;
        let digest = build_into_dev(&server, &registry, &sha).await;
        let promotions = format!("/api/v1/repos/{REPO}/promotions");

        // A pending request survives a restart of the server.
        let (_, p) = api(
            &server,
            "POST",
            &promotions,
            "carol",
            json!({"to": "staging"}),
        )
        .await;
        let id = p["id"].as_str().unwrap().to_string();
        let server = restart(server, &url, &settings).await;
        let (_, p) = api(
            &server,
            "GET",
            &format!("/api/v1/promotions/{id}"),
            "rita",
            Value::Null,
        )
        .await;
        assert_eq!(p["status"], "pending", "{p}");

        // Two approvers at the same instant: one promotion.
        let approve = format!("/api/v1/promotions/{id}/approve");
        let (a, b) = tokio::join!(
            api(&server, "POST", &approve, "alice", json!({})),
            api(&server, "POST", &approve, "bob", json!({}))
        );
        let mut codes = [a.0, b.0];
        codes.sort();
        assert_eq!(codes, [200, 409], "{a:?} {b:?}");
        assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
        let (_, audit) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
        let started = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["promotion"] == id.as_str() && e["action"] == "promoting")
            .count();
        assert_eq!(started, 1, "{audit:#}");

        // The registry is down: the promotion fails with the reason, prod
        // keeps what it had (nothing); after the outage a retry succeeds.
        registry.stop();
        let (status, p) = api(&server, "POST", &promotions, "dave", json!({"to": "prod"})).await;
        assert_eq!(status, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let failed = wait_promotion(&server, &id).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(
            failed["error"].as_str().unwrap().contains(&host),
            "the error names the registry: {failed}"
        );
        assert!(env(&server, "prod").await["current"].is_null());
        registry.restart();
        let (status, body) = api(
            &server,
            "POST",
            &format!("/api/v1/promotions/{id}/retry"),
            "dave",
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
        assert_eq!(
            env(&server, "prod").await["current"]["digest"],
            digest.as_str()
        );
        assert_eq!(
            registry.manifest_digest("acme/web-prod", "prod").as_deref(),
            Some(digest.as_str())
        );
        server.shutdown.cancel();
    }

    /// The registry answers nobody without a login: the build's push and the
    /// promotion's copy both use the `[[registries]]` login of the config.
    #[tokio::test(flavor = "multi_thread")]
    async fn builds_and_promotions_log_in_to_a_registry_that_requires_it() {
        docker().await;
        let (registry, _repo_dir, bare, sha) = repo_for(
            slipway_tests::Registry::start_with_login("ci", "s3cret-pass-1"),
            "origin-promote-auth",
            "auth",
        );
        let host = registry.host.clone();
        let h = host.clone();
        let (status, _) =
            tokio::task::spawn_blocking(move || slipway_tests::http("GET", &h, "/v2/", &[], b""))
                .await
                .unwrap();
        assert_eq!(status, 401, "the registry must refuse anonymous clients");
        // Staging needs no approval here.
        let server = start_with(
            &format!("file://{}", bare.display()),
            &format!(
                "{}[[registries]]\nhost = \"{host}\"\nusername = \"ci\"\npassword = \"s3cret-pass-1\"\n",
                config(&host, 0, "")
            ),
        )
        .await;
        let digest = build_into_dev(&server, &registry, &sha).await;
        let (status, p) = api(
            &server,
            "POST",
            &format!("/api/v1/repos/{REPO}/promotions"),
            "dave",
            json!({"to": "staging"}),
        )
        .await;
        assert_eq!(status, 201, "{p}");
        let done = wait_promotion(&server, p["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            registry
                .manifest_digest("acme/web-staging", "staging")
                .as_deref(),
            Some(digest.as_str())
        );
        server.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_deploy_leaves_the_environment_and_its_tag_where_they_were() {
        docker().await;
        let (registry, repo_dir, bare, sha) = promotion_repo("origin-promote-3", "three");
        let host = registry.host.clone();
        let forge = FakeForge::start().await;
        // Staging needs no approval here.
        let server = start_with(
            &format!("file://{}", bare.display()),
            &format!(
                "api_url = \"{}\"\napi_token = \"gh-token\"\n{}",
                forge.url,
                config(&host, 0, "")
            ),
        )
        .await;
        let promotions = format!("/api/v1/repos/{REPO}/promotions");
        let first = build_into_dev(&server, &registry, &sha).await;
        let (_, p) = api(
            &server,
            "POST",
            &promotions,
            "dave",
            json!({"to": "staging"}),
        )
        .await;
        let id = p["id"].as_str().unwrap().to_string();
        assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");

        // The next commit's deploy step fails.
        let failing = pipeline(&host).replace(
            "commands: ['echo \"deploying $SLIPWAY_IMAGE to $SLIPWAY_ENVIRONMENT\"']",
            "commands: ['echo deploy breaks', 'exit 3']",
        );
        assert_ne!(failing, pipeline(&host));
        let sha2 = slipway_tests::git_commit(
            &repo_dir,
            &["refs/heads/master"],
            &[
                (".slipway.yml", &failing),
                (
                    "Dockerfile",
                    &format!("FROM {BUSYBOX}\nRUN echo four > /app\n"),
                ),
            ],
        );
        let second = build_into_dev(&server, &registry, &sha2).await;
        assert_ne!(first, second);
        let (_, p) = api(
            &server,
            "POST",
            &promotions,
            "dave",
            json!({"to": "staging"}),
        )
        .await;
        let id = p["id"].as_str().unwrap().to_string();
        let failed = wait_promotion(&server, &id).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(
            failed["error"].as_str().unwrap().contains("deploy run"),
            "{failed}"
        );
        let staging = env(&server, "staging").await;
        assert_eq!(
            staging["current"]["digest"],
            first.as_str(),
            "staging keeps its digest"
        );
        assert_eq!(
            registry
                .manifest_digest("acme/web-staging", "staging")
                .as_deref(),
            Some(first.as_str()),
            "the tag points back at what staging holds"
        );

        // The forge saw each promotion as a deployment of its commit to the
        // environment: in progress, then success, or failure for the second.
        let states = |sha: &str, env: &str| forge.deployment_states(sha, env);
        let deadline = Instant::now() + Duration::from_secs(20);
        while states(&sha2, "staging").len() < 2 {
            assert!(Instant::now() < deadline, "{:?}", forge.requests());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(states(&sha, "staging"), ["in_progress", "success"]);
        assert_eq!(states(&sha2, "staging"), ["in_progress", "failure"]);
        assert_eq!(states(&sha, "dev"), ["in_progress", "success"]);
        server.shutdown.cancel();
    }
}

/// Previews: a live container per pull request, behind the preview proxy.
mod previews {
    use super::*;

    /// Both tests preview the same pull request (its containers are found
    /// by label), so they take turns.
    pub(super) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// GET through the preview proxy, by host name.
    fn get(proxy: &str, host: &str, path: &str) -> (u16, String) {
        slipway_tests::http("GET", proxy, path, &[("Host", host)], b"")
    }

    pub(super) async fn wait_preview(
        server: &Server,
        sha: &str,
    ) -> slipway_api::store::PreviewRecord {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(p) = server.store.preview(REPO, 2).unwrap()
                && p.sha == sha
            {
                return p;
            }
            let notes: Vec<String> = server
                .store
                .list_runs(10)
                .unwrap()
                .into_iter()
                .flat_map(|r| r.notes.into_iter().chain(r.error))
                .collect();
            assert!(Instant::now() < deadline, "no preview of {sha}: {notes:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A repository whose pull request head serves `commit <sha>` on 8080.
    pub(super) fn preview_repo(host: &str) -> (TempDir, std::path::PathBuf, String) {
        let repo_dir = TempDir::new("origin-preview");
        let pipeline = format!(
            "steps:
  page:
    image: {BUSYBOX}
    commands: ['mkdir -p www', 'echo \"commit $SLIPWAY_COMMIT_SHA\" > www/index.html']
  image:
    needs: [page]
    build:
      tags: [\"{host}/acme/preview:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
preview:
  image: image
  port: 8080
  health: /index.html
"
        );
        let dockerfile = format!(
            "FROM {BUSYBOX}\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
        );
        let (bare, _) = git_repo(
            &repo_dir,
            "master",
            &[(".slipway.yml", &pipeline), ("Dockerfile", &dockerfile)],
        );
        let first =
            slipway_tests::git_commit(&repo_dir, &["refs/heads/changes", "refs/pull/2/head"], &[]);
        (repo_dir, bare, first)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_pull_request_gets_a_live_preview_updated_without_errors_and_removed_on_close() {
        let _turn = SERIAL.lock().await;
        let d = docker().await;
        let registry = slipway_tests::Registry::start();
        let host = registry.host.clone();
        let forge = FakeForge::start().await;
        let (repo_dir, bare, first) = preview_repo(&host);
        let server = start_with(
            &format!("file://{}", bare.display()),
            &format!(
                "api_url = \"{}\"\napi_token = \"gh-token\"\n[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\n",
                forge.url
            ),
        )
        .await;
        let proxy = server.preview_addr();
        let site = "pr-2--codertocat-hello-world.preview.test";

        // Opened: the preview serves the head commit, by host and by path.
        let (status, body) =
            pr_event(&server, "pull_request.opened.json", &first, "pr-opened").await;
        assert_eq!(status, 202, "{body}");
        let live = wait_preview(&server, &first).await;
        assert_eq!(
            live.url,
            format!("http://{site}:{}/", proxy.rsplit(':').next().unwrap())
        );
        let p = proxy.clone();
        let (status, page) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
            .await
            .unwrap();
        assert_eq!(
            (status, page.trim()),
            (200, format!("commit {first}").as_str())
        );
        let p = proxy.clone();
        let (status, page) = tokio::task::spawn_blocking(move || {
            get(
                &p,
                "127.0.0.1",
                "/previews/Codertocat/Hello-World/2/index.html",
            )
        })
        .await
        .unwrap();
        assert_eq!(
            (status, page.trim()),
            (200, format!("commit {first}").as_str())
        );
        let p = proxy.clone();
        let (status, page) = tokio::task::spawn_blocking(move || {
            get(&p, "pr-9--codertocat-hello-world.preview.test", "/")
        })
        .await
        .unwrap();
        assert_eq!(status, 404);
        assert!(
            page.contains("Codertocat/Hello-World #2"),
            "the 404 names what exists: {page}"
        );

        // Synchronize: a client polling every 20 ms through the swap sees
        // no failed request, and then the new commit.
        let second = slipway_tests::git_commit(
            &repo_dir,
            &["refs/heads/changes", "refs/pull/2/head"],
            &[("NOTE", "two")],
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (p, stop, second) = (proxy.clone(), stop.clone(), second.clone());
            tokio::task::spawn_blocking(move || {
                let (mut failures, mut seen_new, mut polls) = (Vec::new(), false, 0);
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let (status, page) = get(&p, site, "/");
                    polls += 1;
                    if status != 200 {
                        failures.push(format!("{status}: {page}"));
                    } else if page.contains(&second) {
                        seen_new = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (failures, seen_new, polls)
            })
        };
        let (status, body) =
            pr_event(&server, "pull_request.synchronize.json", &second, "pr-sync").await;
        assert_eq!(status, 202, "{body}");
        let updated = wait_preview(&server, &second).await;
        // Let the old container drain and go while the client keeps polling.
        tokio::time::sleep(Duration::from_secs(4)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (failures, seen_new, polls) = poller.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} of {polls} polls failed: {failures:?}",
            failures.len()
        );
        assert!(seen_new, "the new commit was served ({polls} polls)");
        assert_ne!(updated.container, live.container);
        let containers = labelled(&d, "slipway.preview").await.containers;
        assert_eq!(containers.len(), 1, "the old container is gone");

        // One comment, edited in place.
        {
            let seen = forge.calls();
            let creates = seen
                .iter()
                .filter(|c| matches!(c, Call::CommentCreated { .. }))
                .count();
            assert_eq!(creates, 1, "{seen:?}");
            assert!(
                seen.iter()
                    .any(|c| matches!(c, Call::CommentEdited { id, body }
                    if *id == 1000 && body.contains(&second))),
                "{seen:?}"
            );
        }

        // Closed: 404, and no container or network left.
        let (status, body) =
            pr_event(&server, "pull_request.closed.json", &second, "pr-closed").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("closed")),
            "{body}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.store.preview(REPO, 2).unwrap().is_some() {
            assert!(Instant::now() < deadline, "the preview was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = proxy.clone();
        let (status, _) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
            .await
            .unwrap();
        assert_eq!(status, 404);
        let Labelled {
            containers: left,
            networks: nets,
            ..
        } = labelled(&d, "slipway.preview").await;
        assert!(left.is_empty(), "{left:?}");
        assert!(nets.is_empty(), "{nets:?}");
        assert!(
            d.inspect_image(&updated.image).await.is_err(),
            "the preview image is removed"
        );
        // The forge hears about the removal just after it is done.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !forge
            .deployment_statuses()
            .iter()
            .any(|(_, b)| b.starts_with("inactive"))
        {
            assert!(
                Instant::now() < deadline,
                "no inactive deployment status: {:?}",
                forge.requests()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = forge.calls();
        assert!(
            seen.iter()
                .rev()
                .find_map(|c| match c {
                    Call::CommentEdited { body, .. } => Some(body),
                    _ => None,
                })
                .is_some_and(|b| b.contains("removed")),
            "{seen:?}"
        );
        // A deployment per commit to `preview/pr-2`, each marked live with
        // the URL; the last one inactive after the close.
        let deployments = forge.deployments();
        assert_eq!(deployments.len(), 2, "{seen:?}");
        assert_eq!(deployments[0].1, format!("{first} preview/pr-2"));
        assert_eq!(deployments[1].1, format!("{second} preview/pr-2"));
        let statuses = forge.deployment_statuses();
        assert_eq!(statuses.len(), 3, "{seen:?}");
        assert_eq!(
            statuses[0],
            (deployments[0].0, format!("success {}", live.url))
        );
        assert_eq!(statuses[1].0, deployments[1].0);
        assert!(statuses[1].1.starts_with("success http://pr-2--"));
        assert_eq!(statuses[2], (deployments[1].0, "inactive ".to_string()));
        for sha in [&first, &second] {
            let _ = d
                .remove_image(
                    &format!("{host}/acme/preview:{sha}"),
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        server.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_preview_survives_a_server_restart_and_goes_when_idle_past_its_ttl() {
        let _turn = SERIAL.lock().await;
        let d = docker().await;
        let registry = slipway_tests::Registry::start();
        let host = registry.host.clone();
        let (_repo_dir, bare, first) = preview_repo(&host);
        let url = format!("file://{}", bare.display());
        let settings = "[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\npreview_ttl = \"4s\"\n";
        let server = start_with(&url, settings).await;
        let site = "pr-2--codertocat-hello-world.preview.test";
        let (status, body) =
            pr_event(&server, "pull_request.opened.json", &first, "ttl-opened").await;
        assert_eq!(status, 202, "{body}");
        let live = wait_preview(&server, &first).await;
        let server = restart(server, &url, settings).await;
        let p = server.preview_addr();
        let (status, page) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
            .await
            .unwrap();
        assert_eq!(
            (status, page.trim()),
            (200, format!("commit {first}").as_str()),
            "served after a restart"
        );
        assert_eq!(
            server.store.preview(REPO, 2).unwrap().unwrap().container,
            live.container
        );
        // Nobody asks for it now: within the TTL and a sweep it is gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.store.preview(REPO, 2).unwrap().is_some() {
            assert!(
                Instant::now() < deadline,
                "an idle preview outlived its TTL"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let p = server.preview_addr();
        let (status, _) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
            .await
            .unwrap();
        assert_eq!(status, 404);
        assert!(
            d.inspect_container(&live.container, None).await.is_err(),
            "its container is gone"
        );
        let _ = d
            .remove_image(
                &format!("{host}/acme/preview:{first}"),
                None::<bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await;
        server.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn previews_over_the_repository_cap_go_oldest_first() {
        let _turn = SERIAL.lock().await;
        let d = docker().await;
        let registry = slipway_tests::Registry::start();
        let host = registry.host.clone();
        let (repo_dir, bare, first) = preview_repo(&host);
        let server = start_with(
            &format!("file://{}", bare.display()),
            "max_previews = 1\n[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\n",
        )
        .await;
        let (status, body) = pr_event(&server, "pull_request.opened.json", &first, "cap-2").await;
        assert_eq!(status, 202, "{body}");
        let two = wait_preview(&server, &first).await;
        // Pull request #3, on a commit of its own.
        let third =
            slipway_tests::git_commit(&repo_dir, &["refs/pull/3/head"], &[("NOTE", "three")]);
        let body = pr_body("pull_request.opened.json", &third)
            .replace("\"number\": 2", "\"number\": 3")
            .replace("/pulls/2", "/pulls/3");
        let (status, text) = send(&server, "pull_request", "cap-3", body).await;
        assert_eq!(status, 202, "{text}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.store.preview(REPO, 3).unwrap().is_none()
            || server.store.preview(REPO, 2).unwrap().is_some()
        {
            assert!(
                Instant::now() < deadline,
                "#3 did not replace #2: {:?}",
                server.store.previews()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            d.inspect_container(&two.container, None).await.is_err(),
            "#2's container is gone"
        );
        let p = server.preview_addr();
        let (status, page) = tokio::task::spawn_blocking(move || {
            get(&p, "pr-3--codertocat-hello-world.preview.test", "/")
        })
        .await
        .unwrap();
        assert_eq!(
            (status, page.trim()),
            (200, format!("commit {third}").as_str())
        );
        let three = server.store.preview(REPO, 3).unwrap().unwrap();
        let (status, body) =
            pr_event(&server, "pull_request.closed.json", &first, "cap-close-2").await;
        assert_eq!(status, 200, "{body}");
        // Close #3 too.
        let close3 =
            github_fixture("pull_request.closed.json").replace("\"number\": 2", "\"number\": 3");
        send(&server, "pull_request", "cap-close-3", close3).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.store.preview(REPO, 3).unwrap().is_some() {
            assert!(Instant::now() < deadline, "#3 was not removed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(d.inspect_container(&three.container, None).await.is_err());
        for sha in [&first, &third] {
            let _ = d
                .remove_image(
                    &format!("{host}/acme/preview:{sha}"),
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        server.shutdown.cancel();
    }
}

#[path = "server_ui.rs"]
mod ui;
