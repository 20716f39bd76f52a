//! Webhooks in: a signed push becomes a run of that commit (once, however
//! often it is delivered), or ends with the reason it cannot run.

use slipway_tests::{
    BUSYBOX, REPO, TempDir, deliver, docker, git_repo, leftovers, push, push_body, start,
    start_with, wait_done,
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
