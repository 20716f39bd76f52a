//! `slipway serve` end to end, in process: a signed real webhook body for a
//! commit of a local bare repository becomes a run in real Docker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_api::Store;
use slipway_api::config::Config;
use slipway_api::executor::Executor;
use slipway_api::server::{AppState, app};
use slipway_api::webhook::sign_github;
use slipway_runner::DockerBackend;
use slipway_runner::git::Mirrors;
use slipway_tests::{BUSYBOX, TempDir, docker, git_repo, github_fixture, http_post, leftovers};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "e2e-secret";
const REPO: &str = "Codertocat/Hello-World";

struct Server {
    addr: String,
    store: Store,
    shutdown: CancellationToken,
    _data: TempDir,
}

async fn start(clone_url: &str) -> Server {
    let data = TempDir::new("serve");
    let config = Config::parse(
        "test.toml",
        &format!("[[repos]]\nname = \"{REPO}\"\nprovider = \"github\"\nclone_url = \"{clone_url}\"\nwebhook_secret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let config = Arc::new(config);
    let store = Store::open(&data.path().join("db")).unwrap();
    let queued = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let executor = Arc::new(Executor {
        config: config.clone(),
        store: store.clone(),
        backend: Arc::new(
            DockerBackend::connect(Duration::from_secs(5))
                .await
                .unwrap(),
        ),
        mirrors: Arc::new(Mirrors::new(data.path().join("mirrors"))),
        work_root: data.path().join("work"),
        queued: queued.clone(),
        shutdown: shutdown.clone(),
    });
    executor.reconcile().await.unwrap();
    tokio::spawn(executor.run());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = AppState {
        config,
        store: store.clone(),
        queued,
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app(state))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
            .unwrap();
    });
    Server {
        addr,
        store,
        shutdown,
        _data: data,
    }
}

/// Sends the real push fixture, rewritten to `sha` on `master`.
async fn push(server: &Server, sha: &str, delivery: &str) -> (u16, serde_json::Value) {
    let body = github_fixture("push.branch-created.json")
        .replace("6113728f27ae82c7b1a177c8d03f9e96e0adf246", sha);
    let sig = sign_github(SECRET, body.as_bytes());
    let addr = server.addr.clone();
    let delivery = delivery.to_string();
    let (status, text) = tokio::task::spawn_blocking(move || {
        http_post(
            &addr,
            "/hooks/github",
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &delivery),
                ("X-Hub-Signature-256", &sig),
            ],
            body.as_bytes(),
        )
    })
    .await
    .unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

async fn wait_done(store: &Store, run: &str) -> slipway_api::RunRecord {
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
    assert_eq!(run.status, "success", "{run:?}\n{log}");
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
    assert_eq!(run.status, "error");
    let error = run.error.unwrap();
    assert!(
        error.contains(".slipway.yml:4:5: error: unknown key `comands` in step `a`"),
        "{error}"
    );

    let missing = "1111111111111111111111111111111111111111";
    let (_, json) = push(&server, missing, "unknown-commit").await;
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(run.status, "failed");
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
    assert_eq!(run.status, "skipped");
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
